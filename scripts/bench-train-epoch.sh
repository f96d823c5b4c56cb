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
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
export DEEPPACKET_THREADS=${DEEPPACKET_THREADS:-$(nproc)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads=$DEEPPACKET_THREADS, load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "${DEEPPACKET_BENCH_SET:-}" ]; then
	iscx=../shared/pcaps/iscx
	[ -d "$iscx" ] || { echo "bench-train-epoch: $iscx is missing" >&2; exit 1; }
	bin/deeppacket --quiet --log-level warn preprocess --labels "$iscx/labels.tsv" -o "$tmp/pre" "$iscx" >/dev/null
	# shellcheck disable=SC2086
	bin/deeppacket --quiet --log-level warn split --split-by flow ${SPLIT_FLAGS:-} -o "$tmp/sets" "$tmp/pre" >/dev/null
	export DEEPPACKET_BENCH_SET="$tmp/sets/application_classification/train.parquet"
fi
export DEEPPACKET_BENCH_DUMP="$tmp/data.pt"
go_out=$(go test -run '^$' -bench '^BenchmarkTrainEpoch$' -benchtime 1x ./train 2>&1)
printf '%s\n' "$go_out"
go_line=$(grep '^BenchmarkTrainEpoch' <<<"$go_out")
rate() { awk -v unit="$1" '{for (i = 1; i < NF; i++) if ($(i+1) == unit) print $i}'; }
go_wall=$(rate samples/s <<<"$go_line")
go_cpu=$(rate samples/cpu-s <<<"$go_line")
py_out=$("$PYTHON" scripts/bench_train_epoch.py "$DEEPPACKET_BENCH_DUMP")
printf '%s\n' "$py_out"
py_wall=$(sed -n 's/^pytorch_samples_per_wall_s=//p' <<<"$py_out")
py_cpu=$(sed -n 's/^pytorch_samples_per_cpu_s=//p' <<<"$py_out")
ratio() { awk -v g="$1" -v p="$2" 'BEGIN { printf "%.2f", g / p }'; }
echo "wall clock: go_samples_per_s=$go_wall pytorch_samples_per_s=$py_wall ratio=$(ratio "$go_wall" "$py_wall")"
echo "go_samples_per_s=$go_cpu pytorch_samples_per_s=$py_cpu ratio=$(ratio "$go_cpu" "$py_cpu")"
