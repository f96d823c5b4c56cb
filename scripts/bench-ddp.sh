#!/usr/bin/env bash
# Data-parallel training on this machine: one epoch of the reference
# application CNN (batch 16 per rank, Adam, seed 9876) over the ISCX
# application training set (preprocessed and split by flow), as
#   1. deeppacket train, 1 process x 2 threads;
#   2. deeppacket train, 2 ranks x 1 thread, launched by torchrun (c10d,
#      Gloo, the gradients averaged by c10d's Reducer, as DDP does);
#   3. PyTorch's DistributedDataParallel, 2 ranks x 1 thread, launched by the
#      same torchrun (scripts/bench_ddp.py).
# Rates are samples per second of wall time for the whole group (the ranks
# share the machine's cores). CPU time is printed for the timed command
# (torchrun and its ranks) and, from GNU time around each rank, for the
# ranks alone, on both sides. Last line:
#   go_samples_per_s=… pytorch_samples_per_s=… ratio=…   (2 ranks each)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
bench_tmp
deeppacket_bin
TORCHRUN="$(dirname "$PYTHON")/torchrun"
[ -x "$TORCHRUN" ] || die "no torchrun beside $PYTHON (scripts/install-deps.sh makes .venv)"
[ -d "$ISCX" ] || die "$ISCX is missing"
machine "load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" --quiet --log-level warn preprocess --labels "$ISCX/labels.tsv" -o "$TMP/pre" "$ISCX" >/dev/null
"$BIN" --quiet --log-level warn split --split-by flow -o "$TMP/sets" "$TMP/pre" >/dev/null
set_dir="$TMP/sets/application_classification/train.parquet"
cat > "$TMP/ddp.yaml" <<YAML
data:
  train: $set_dir
task: application
epochs: 1
batch_size: 16
device: cpu
early_stopping:
  enabled: false
checkpoint:
  torchscript: false
YAML
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# rate RUN: the epoch's samples per second from the run's metrics.
rate() { sed -n 's/.*"samples_per_s":\([0-9.]*\).*/\1/p' "$1/metrics.jsonl" | tail -1 | xargs printf %.1f; }

timed "$BIN" train --quiet --log-level warn --config "$TMP/ddp.yaml" --set threads=2 -o "$TMP/one" >/dev/null 2>&1
one=$(rate "$TMP/one")
echo "deeppacket 1 process x 2 threads: $one samples/s ($(cpu_split))"

timed "$TORCHRUN" --no-python --nnodes 1 --nproc-per-node 2 --rdzv-backend c10d --rdzv-endpoint "127.0.0.1:$(port)" \
	/usr/bin/time -v -a -o "$TMP/go-ranks.txt" \
	"$BIN" train --quiet --log-level warn --config "$TMP/ddp.yaml" --set threads=1 -o "$TMP/two" >/dev/null 2>&1
two=$(rate "$TMP/two")
echo "deeppacket 2 ranks x 1 thread (torchrun): $two samples/s ($(cpu_split)); the ranks alone: $(cpu_split "$TMP/go-ranks.txt")"

DEEPPACKET_THREADS=1 "$TORCHRUN" --no-python --nnodes 1 --nproc-per-node 2 --rdzv-backend c10d --rdzv-endpoint "127.0.0.1:$(port)" \
	/usr/bin/time -v -a -o "$TMP/py-ranks.txt" \
	"$PYTHON" scripts/bench_ddp.py "$set_dir" > "$TMP/py.log" 2>&1 || py_rc=$?
py=$(grep pytorch_ddp_ranks "$TMP/py.log") || { cat "$TMP/py.log" >&2; die "PyTorch DDP failed"; }
echo "$py"
# PyTorch's ranks have been seen to abort in destroy_process_group ("terminate
# called without an active exception") after the epoch and its report: the
# figures stand, and the failure is said.
[ -z "${py_rc:-}" ] || echo "PyTorch DDP exited with status $py_rc after its report: $(grep -m1 -E 'terminate|Error' "$TMP/py.log" || true)"
echo "pytorch 2 ranks x 1 thread, the ranks alone: $(cpu_split "$TMP/py-ranks.txt")"
ratio_line 2 %s go_samples_per_s "$two" pytorch_samples_per_s "$(value pytorch_samples_per_s <<<"$py")"
