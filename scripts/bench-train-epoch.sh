#!/usr/bin/env bash
# One full epoch of the reference application CNN (batch 16, Adam, seed 9876)
# on the ISCX application training set (preprocessed, split by flow as
# `deeppacket split` does by default), through our trainer (loader, progress,
# metrics, all) and through the equivalent PyTorch loop over the same rows
# held in memory, with the same thread count, in one run. Run by
# `make bench-train-epoch` after `make build`.
#
# Rates are samples per CPU-second of each process (user + system, all
# threads): on a shared machine wall time measures the neighbours. The
# wall-clock rates are printed on the line before. Last line:
#   go_samples_per_s=… pytorch_samples_per_s=… ratio=…
# Env: DEEPPACKET_THREADS (default: the number of cores), PYTHON,
# DEEPPACKET_BENCH_SET (a training set to use instead of ISCX's),
# SPLIT_FLAGS (extra flags for split, e.g. --under-sampling=false for a
# larger epoch).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
export DEEPPACKET_THREADS=${DEEPPACKET_THREADS:-$(nproc)}
bench_tmp
machine "threads=$DEEPPACKET_THREADS" "load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "${DEEPPACKET_BENCH_SET:-}" ]; then
	[ -d "$ISCX" ] || die "$ISCX is missing"
	bin/deeppacket --quiet --log-level warn preprocess --labels "$ISCX/labels.tsv" -o "$TMP/pre" "$ISCX" >/dev/null
	# shellcheck disable=SC2086
	bin/deeppacket --quiet --log-level warn split --split-by flow ${SPLIT_FLAGS:-} -o "$TMP/sets" "$TMP/pre" >/dev/null
	export DEEPPACKET_BENCH_SET="$TMP/sets/application_classification/train.parquet"
fi
export DEEPPACKET_BENCH_DUMP="$TMP/data.pt"
go_out=$(go test -run '^$' -bench '^BenchmarkTrainEpoch$' -benchtime 1x ./train 2>&1)
printf '%s\n' "$go_out"
go_line=$(grep '^BenchmarkTrainEpoch' <<<"$go_out")
go_wall=$(bench_value samples/s <<<"$go_line")
go_cpu=$(bench_value samples/cpu-s <<<"$go_line")
py_out=$("$PYTHON" scripts/bench_train_epoch.py "$DEEPPACKET_BENCH_DUMP")
printf '%s\n' "$py_out"
py_wall=$(value pytorch_samples_per_wall_s <<<"$py_out")
py_cpu=$(value pytorch_samples_per_cpu_s <<<"$py_out")
echo "wall clock: $(ratio_line 2 %s go_samples_per_s "$go_wall" pytorch_samples_per_s "$py_wall")"
ratio_line 2 %s go_samples_per_s "$go_cpu" pytorch_samples_per_s "$py_cpu"
