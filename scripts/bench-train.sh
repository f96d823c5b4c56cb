#!/usr/bin/env bash
# One training step of the reference application CNN (batch 16, Adam) through
# the Go binding and through PyTorch, on the same machine and thread count, in
# one run, with each side's user and system CPU seconds. Last line:
# go_samples_per_s=… pytorch_samples_per_s=… ratio=…
# Env: DEEPPACKET_THREADS (default: the number of cores), STEPS (default 30).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
export DEEPPACKET_THREADS=${DEEPPACKET_THREADS:-$(nproc)}
steps=${STEPS:-30}
machine "threads=$DEEPPACKET_THREADS"
go_line=$(go test -run '^$' -bench '^BenchmarkTrainStep$' -benchtime "${steps}x" ./torch | tee /dev/stderr | grep '^BenchmarkTrainStep')
go_rate=$(bench_value samples/s <<<"$go_line")
awk -v u="$(bench_value user-s <<<"$go_line")" -v s="$(bench_value system-s <<<"$go_line")" \
	'BEGIN { printf "go: %.2f s user + %.2f s system (%.0f%% system)\n", u, s, 100 * s / (u + s) }'
py_rate=$("$PYTHON" scripts/bench_train_step.py "$steps" | tee /dev/stderr | value pytorch_samples_per_s)
ratio_line 2 %s go_samples_per_s "$go_rate" pytorch_samples_per_s "$py_rate"
