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
. "$(dirname "$0")/lib.sh"

MODEL="${MODEL:-$SHARED/fixtures/reference_traffic_resnet.ckpt}"
REPEAT="${REPEAT:-3}"
export OMP_NUM_THREADS=1

[ -d "$ISCX" ] || die "$ISCX is missing"
[ -f "$MODEL" ] || die "$MODEL is missing"
BIN="$ROOT/bin/deeppacket"
[ -x "$BIN" ] || die "bin/deeppacket is missing (make build)"
bench_tmp

captures=()
for _ in $(seq 1 "$REPEAT"); do captures+=("$ISCX"/*.pcap); done

machine
echo "model: $MODEL; captures: ${#captures[@]} (${REPEAT} x the ISCX captures)"

timed "$BIN" predict --quiet --log-format json --device cpu --batch-size 1024 --model "$MODEL" \
	-o "$TMP/pred.csv" "${captures[@]}" 2> "$TMP/go.log"
go_seconds=$(elapsed)
go_cpu=$(cpu_seconds)
go_rss=$(field "Maximum resident set size")
summary=$(grep '"msg":"predicted"' "$TMP/go.log")
go_packets=$(sed 's/.*"packets":\([0-9]*\).*/\1/' <<<"$summary")
go_kept=$(sed 's/.*"classified":\([0-9]*\).*/\1/' <<<"$summary")
rows=$(grep -c '^packet,' "$TMP/pred.csv")
echo "go: read=$go_packets classified=$go_kept rows=$rows in ${go_seconds}s wall, ${go_cpu}s CPU, peak RSS $((go_rss / 1024)) MB"

ref=$("$PYTHON" "$ROOT/scripts/bench_predict_reference.py" "$MODEL" "${captures[@]}")
echo "$ref"
ref_packets=$(value reference_packets <<<"$ref")
ref_kept=$(value reference_kept <<<"$ref")
ref_seconds=$(value reference_seconds <<<"$ref")
ref_cpu=$(value reference_cpu_seconds <<<"$ref")
if [ "$go_packets" != "$ref_packets" ] || [ "$go_kept" != "$ref_kept" ] || [ "$rows" != "$go_kept" ]; then
	die "packet counts differ (go $go_packets/$go_kept, reference $ref_packets/$ref_kept)"
fi

echo "wall clock: $(ratio_line 1 %.0f go_packets_per_s "$(per_s "$go_packets" "$go_seconds")" \
	reference_packets_per_s "$(per_s "$ref_packets" "$ref_seconds")")"
ratio_line 1 %.0f go_packets_per_s "$(per_s "$go_packets" "$go_cpu")" reference_packets_per_s "$(per_s "$ref_packets" "$ref_cpu")"
