#!/usr/bin/env bash
# One training step of the reference application CNN (batch 16, Adam) through
# the Go binding and through PyTorch, on the same machine and thread count, in
# one run. Last line: go_samples_per_s=… pytorch_samples_per_s=… ratio=…
# Env: DEEPPACKET_THREADS (default: the number of cores), STEPS (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
export DEEPPACKET_THREADS=${DEEPPACKET_THREADS:-$(nproc)}
steps=${STEPS:-30}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads=$DEEPPACKET_THREADS"
go_line=$(go test -run '^$' -bench '^BenchmarkTrainStep$' -benchtime "${steps}x" ./torch | tee /dev/stderr | grep '^BenchmarkTrainStep')
go_rate=$(awk '{for (i = 1; i < NF; i++) if ($(i+1) == "samples/s") print $i}' <<<"$go_line")
py_rate=$("$PYTHON" scripts/bench_train_step.py "$steps" | tee /dev/stderr | sed -n 's/^pytorch_samples_per_s=//p')
ratio=$(awk -v g="$go_rate" -v p="$py_rate" 'BEGIN { printf "%.2f", g / p }')
echo "go_samples_per_s=$go_rate pytorch_samples_per_s=$py_rate ratio=$ratio"
