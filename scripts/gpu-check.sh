#!/usr/bin/env bash
# The CUDA checks, on a machine with an NVIDIA GPU and a Python with a CUDA
# PyTorch, from a copy of the repository. Two steps:
#
#   scripts/gpu-check.sh prepare   where Go is (here): builds the CLI and the
#                                  binding's test binary into build/gpu
#   scripts/gpu-check.sh           on the GPU machine (build/gpu copied along):
#                                  builds the shim against that machine's
#                                  PyTorch (PYTHON, default python3), then runs
#                                  the checks and prints one summary line each
#
# Checks: the binding's parity tests (ops, CNN init and Adam, TorchScript) on
# cuda against PyTorch on cuda; a training step of the reference application
# CNN on cuda through the binding and through PyTorch eager (ratio, as
# `make bench-train`); `deeppacket predict` with a reference-shaped ResNet on
# cuda and on the CPU over synthetic captures (packets/s); data-parallel
# training over c10d's Gloo (two ranks: this build binds no NCCL, so the
# ranks train on the CPU even here; a Go and a Python rank in one group, the
# 2-rank/1-process equivalence, a lost rank). Exit status: the
# number of failed checks. Record what it prints in BENCHMARKS.md with the GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=build/gpu

if [ "${1:-}" = "prepare" ]; then
	mkdir -p "$OUT"
	go test -c -o "$OUT/torch.test" ./torch && go test -c -o "$OUT/dist.test" ./dist &&
		go build -o "$OUT/deeppacket" ./cmd/deeppacket || exit 1
	ls -la "$OUT"
	exit 0
fi

PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-200}
failed=0
summary() { printf 'gpu-check: %s\n' "$*"; }
check() { # check NAME COMMAND...: runs COMMAND, prints NAME=pass|fail
	local name=$1
	shift
	if "$@" >"$OUT/$name.log" 2>&1; then
		summary "$name=pass"
	else
		summary "$name=fail (log: $OUT/$name.log)"
		tail -20 "$OUT/$name.log"
		failed=$((failed + 1))
	fi
}

[ -x "$OUT/torch.test" ] && [ -x "$OUT/deeppacket" ] || { echo "gpu-check: run 'scripts/gpu-check.sh prepare' first (where Go is)" >&2; exit 1; }
summary "gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1)"
if ! make --no-print-directory shim SHIM="$OUT/libdptorch.so" PYTHON="$PYTHON" >"$OUT/shim.log" 2>&1; then
	summary "shim=fail"
	tail -20 "$OUT/shim.log"
	exit 1
fi
export DEEPPACKET_SHIM=$ROOT/$OUT/libdptorch.so DEEPPACKET_PYTHON=$PYTHON
summary "version=$("$OUT/deeppacket" version | tr '\n' ' ')"

# Parity on cuda: both sides compute on the GPU (DEEPPACKET_TEST_DEVICE).
check parity_cuda env DEEPPACKET_TEST_DEVICE=cuda sh -c "cd torch && ../$OUT/torch.test -test.count=1 -test.run 'Parity|AdamFused' -test.v"

# One training step, binding vs PyTorch eager, both on cuda.
go_line=$(cd torch && DEEPPACKET_TEST_DEVICE=cuda "../$OUT/torch.test" -test.run '^$' -test.bench '^BenchmarkTrainStep$' \
	-test.benchtime "${STEPS}x" 2>&1 | grep '^BenchmarkTrainStep')
py_out=$(DEEPPACKET_TEST_DEVICE=cuda "$PYTHON" scripts/bench_train_step.py "$STEPS" 2>&1)
go_rate=$(sed -n 's/.* \([0-9.]*\) samples\/s.*/\1/p' <<<"$go_line")
py_rate=$(sed -n 's/^pytorch_samples_per_s=\([0-9.]*\)/\1/p' <<<"$py_out")
if [ -n "$go_rate" ] && [ -n "$py_rate" ]; then
	summary "bench_train_cuda go_samples_per_s=$go_rate pytorch_samples_per_s=$py_rate ratio=$(awk -v g="$go_rate" -v p="$py_rate" 'BEGIN { printf "%.2f", g / p }') ($(grep -o 'pytorch_compile[^ ]*' <<<"$py_out" | head -1))"
else
	summary "bench_train_cuda=fail"
	printf '%s\n%s\n' "$go_line" "$py_out" | tail -20
	failed=$((failed + 1))
fi

# predict: a ResNet of the reference's traffic shape (seeded weights, written
# as safetensors by Python), over synthetic captures, on cuda and on the CPU.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" - "$tmp/model.safetensors" <<'PY' >"$OUT/model.log" 2>&1 || { summary "predict_model=fail"; failed=$((failed + 1)); }
import json, sys
import torch
from safetensors.torch import save_file
sys.path.insert(0, "scripts")
from reference_models import ResNet
hp = dict(c1_output_dim=16, c1_kernel_size=4, c1_stride=3, c1_groups=1, c1_n_block=4, output_dim=12, signal_length=1500)
torch.manual_seed(9876)
save_file(ResNet(**hp).state_dict(), sys.argv[1], metadata={"hyper_parameters": json.dumps(hp)})
PY
"$OUT/deeppacket" synth --quiet --seed 1 --scale 2 -o "$tmp/captures" >/dev/null
for device in cuda cpu; do
	start=$(date +%s.%N)
	if "$OUT/deeppacket" predict --quiet --log-format json --device "$device" --batch-size 1024 --model "$tmp/model.safetensors" \
		-o "$tmp/pred-$device.csv" "$tmp"/captures/*.pcap 2>"$OUT/predict-$device.log"; then
		seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
		packets=$(grep -o '"packets":[0-9]*' "$OUT/predict-$device.log" | tail -1 | cut -d: -f2)
		summary "predict_$device packets=$packets seconds=$seconds packets_per_s=$(awk -v p="$packets" -v s="$seconds" 'BEGIN { printf "%.0f", p / s }')"
	else
		summary "predict_$device=fail"
		tail -20 "$OUT/predict-$device.log"
		failed=$((failed + 1))
	fi
done
# Distributed: c10d's Gloo group (NCCL is not bound: CPU ranks).
check dist_gloo sh -c "cd dist && ../$OUT/dist.test -test.count=1 -test.run 'TestGoAndPythonTrainAsOneDDP|TestTwoRanksEqualOneProcess|TestLostRank' -test.v"

summary "failed=$failed"
exit "$failed"
