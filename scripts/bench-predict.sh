#!/usr/bin/env bash
# Benchmark of `deeppacket predict` (capture to label) against the reference
# path (scapy transform + the same model in PyTorch) with the reference's
# published traffic ResNet (../shared/fixtures/reference_traffic_resnet.ckpt)
# over the same captures: the 41 ISCX captures of ../shared/pcaps/iscx,
# REPEAT times over (default 3).
#
# Both run on one core (OMP_NUM_THREADS=1, torch.set_num_threads(1)), batches
# of 1024. Rates are packets read per CPU-second (user + system) of the whole
# process, model loading included: the machines this runs on are shared, and
# wall time there says more about the neighbours than the code; wall-clock
# rates are printed too. The kept packet counts of both must agree. The last
# line is: go_packets_per_s=… reference_packets_per_s=… ratio=…
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
ISCX="$SHARED/pcaps/iscx"
MODEL="${MODEL:-$SHARED/fixtures/reference_traffic_resnet.ckpt}"
PYTHON="${PYTHON:-/usr/bin/python3}"
REPEAT="${REPEAT:-3}"
export OMP_NUM_THREADS=1

[ -d "$ISCX" ] || { echo "bench-predict: $ISCX is missing" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "bench-predict: $MODEL is missing" >&2; exit 1; }
BIN="$ROOT/bin/deeppacket"
[ -x "$BIN" ] || { echo "bench-predict: bin/deeppacket is missing (make build)" >&2; exit 1; }
TMP="$(mktemp -d "${TMPDIR:-/tmp}/bench-predict.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

captures=()
for _ in $(seq 1 "$REPEAT"); do captures+=("$ISCX"/*.pcap); done

timed() { /usr/bin/time -v -o "$TMP/time.txt" "$@"; }
field() { awk -v k="$1" -F': ' 'index($0, k) { print $2 }' "$TMP/time.txt"; }
elapsed() { field "Elapsed (wall clock)" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }'; }
cpu() { awk "BEGIN { print $(field "User time (seconds)") + $(field "System time (seconds)") }"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "model: $MODEL; captures: ${#captures[@]} (${REPEAT} x the ISCX captures)"

timed "$BIN" predict --quiet --log-format json --device cpu --batch-size 1024 --model "$MODEL" \
	-o "$TMP/pred.csv" "${captures[@]}" 2> "$TMP/go.log"
go_seconds=$(elapsed)
go_cpu=$(cpu)
go_rss=$(field "Maximum resident set size")
summary=$(grep '"msg":"predicted"' "$TMP/go.log")
go_packets=$(sed 's/.*"packets":\([0-9]*\).*/\1/' <<<"$summary")
go_kept=$(sed 's/.*"classified":\([0-9]*\).*/\1/' <<<"$summary")
rows=$(grep -c '^packet,' "$TMP/pred.csv")
echo "go: read=$go_packets classified=$go_kept rows=$rows in ${go_seconds}s wall, ${go_cpu}s CPU, peak RSS $((go_rss / 1024)) MB"

ref=$("$PYTHON" "$ROOT/scripts/bench_predict_reference.py" "$MODEL" "${captures[@]}")
echo "$ref"
ref_packets=$(sed 's/.*reference_packets=\([0-9]*\).*/\1/' <<<"$ref")
ref_kept=$(sed 's/.*reference_kept=\([0-9]*\).*/\1/' <<<"$ref")
ref_seconds=$(sed 's/.*reference_seconds=\([0-9.]*\).*/\1/' <<<"$ref")
ref_cpu=$(sed 's/.*reference_cpu_seconds=\([0-9.]*\).*/\1/' <<<"$ref")
if [ "$go_packets" != "$ref_packets" ] || [ "$go_kept" != "$ref_kept" ] || [ "$rows" != "$go_kept" ]; then
	echo "bench-predict: packet counts differ (go $go_packets/$go_kept, reference $ref_packets/$ref_kept)" >&2
	exit 1
fi

awk -v gp="$go_packets" -v gs="$go_seconds" -v gc="$go_cpu" -v rp="$ref_packets" -v rs="$ref_seconds" -v rc="$ref_cpu" 'BEGIN {
	printf "wall clock: go_packets_per_s=%.0f reference_packets_per_s=%.0f\n", gp / gs, rp / rs
	g = gp / gc; r = rp / rc
	printf "go_packets_per_s=%.0f reference_packets_per_s=%.0f ratio=%.1f\n", g, r, g / r
}'
