#!/usr/bin/env bash
# Benchmark of `deeppacket predict` (capture to label) against the reference
# path (scapy transform + the same model in PyTorch) with the reference's
# published traffic ResNet (../shared/fixtures/reference_traffic_resnet.ckpt)
# over the same captures: the 41 ISCX captures of ../shared/pcaps/iscx,
# REPEAT times over (default 3). deeppacket's one-core run is made GO_RUNS
# times (default 3) and rated by its median.
#
# Both run on one core (OMP_NUM_THREADS=1, torch.set_num_threads(1)). Rates
# are packets read per CPU-second (user + system) of the whole process,
# start-up and model loading included on both sides (deeppacket's loading of
# libtorch, Python's start and imports, torch's among them, which load the
# same libtorch), as a user running either pays it; the reference's rate
# from after its imports (its script's own clock) is printed beside it. The
# machines this runs on are shared, and wall time there says more about the
# neighbours than the code; wall-clock rates are printed too, and user and
# system time apart. The reference is measured at its best: eager PyTorch in
# inference mode, batches of 64 and of 1024, with glibc's default allocator
# and with the setting that keeps freed memory (GLIBC_TUNABLES, as deeppacket
# sets its allocator itself), and through torch.compile where it runs (batch
# 64, tuned allocator, its compilations counted); the ratio is taken against
# the fastest of these. A line follows for deeppacket on all the machine's
# cores. The kept packet counts of all must agree. The last line is:
# go_packets_per_s=… reference_packets_per_s=… ratio=…
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

# deeppacket's one-core run GO_RUNS times (default 3), rated by the median
# CPU time: a run takes 3 s, which one burst of the neighbours can stretch
# by 15%. (The reference is rated by the best of its five runs.)
go_runs=()
for run in $(seq 1 "${GO_RUNS:-3}"); do
	rm -f "$TMP/pred.csv"
	timed "$BIN" predict --quiet --log-format json --device cpu --threads 1 --model "$MODEL" \
		-o "$TMP/pred.csv" "${captures[@]}" 2> "$TMP/go.log"
	go_runs+=("$(cpu_seconds) $(elapsed) $(field "Maximum resident set size") $run")
	cp "$TMP/time.txt" "$TMP/time-$run.txt"
done
read -r go_cpu go_seconds go_rss median < <(printf '%s\n' "${go_runs[@]}" | sort -n | sed -n "$(((${#go_runs[@]} + 1) / 2))p")
echo "go (1 core) CPU seconds of the ${#go_runs[@]} runs: $(printf '%s\n' "${go_runs[@]}" | cut -d' ' -f1 | sort -n | tr '\n' ' ')(the median rates)"
cp "$TMP/time-$median.txt" "$TMP/time.txt"
go_split=$(cpu_split)
summary=$(grep '"msg":"predicted"' "$TMP/go.log")
go_packets=$(sed 's/.*"packets":\([0-9]*\).*/\1/' <<<"$summary")
go_kept=$(sed 's/.*"classified":\([0-9]*\).*/\1/' <<<"$summary")
rows=$(grep -c '^packet,' "$TMP/pred.csv")
echo "go (1 core): read=$go_packets classified=$go_kept rows=$rows in ${go_seconds}s wall, ${go_cpu}s CPU ($go_split), peak RSS $((go_rss / 1024)) MB"
[ "$rows" = "$go_kept" ] || die "predict wrote $rows packet rows for $go_kept classified packets"

cores=$(env -u OMP_NUM_THREADS nproc)
timed env -u OMP_NUM_THREADS "$BIN" predict --quiet --log-format json --device cpu --model "$MODEL" \
	-o "$TMP/pred-all.csv" "${captures[@]}" 2> "$TMP/go-all.log"
all_seconds=$(elapsed)
echo "go (all $cores cores): $(per_s "$go_packets" "$all_seconds" | cut -d. -f1) packets/s wall, $(awk -v r="$(per_s "$go_packets" "$all_seconds")" -v c="$cores" 'BEGIN { printf "%.0f", r / c }') per core; $(cpu_seconds)s CPU ($(cpu_split)), peak RSS $(($(field "Maximum resident set size") / 1024)) MB"
cmp -s <(cut -d, -f1-8 "$TMP/pred.csv") <(cut -d, -f1-8 "$TMP/pred-all.csv") || die "predict on all cores gives other labels than on one"

best_rate=0
best=""
# reference BATCH ALLOCATOR [--compile]: one run of the reference path, its
# line, and the best so far.
reference() {
	local batch=$1 alloc=$2 how="batch $1, allocator $2${3:+, torch.compile}" ref ref_packets ref_kept rate tunables=()
	if [ "$alloc" = tuned ]; then
		tunables=(GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295)
	fi
	ref=$(timed env "${tunables[@]}" "$PYTHON" "$ROOT/scripts/bench_predict_reference.py" --batch "$batch" ${3:-} "$MODEL" "${captures[@]}")
	if grep -q '^reference_skipped=' <<<"$ref"; then
		echo "reference ($how): not run: $(sed 's/^reference_skipped=//' <<<"$ref")"
		return
	fi
	ref_packets=$(value reference_packets <<<"$ref")
	ref_kept=$(value reference_kept <<<"$ref")
	if [ "$go_packets" != "$ref_packets" ] || [ "$go_kept" != "$ref_kept" ]; then
		die "packet counts differ (go $go_packets/$go_kept, reference $ref_packets/$ref_kept)"
	fi
	rate=$(per_s "$ref_packets" "$(cpu_seconds)")
	echo "reference ($how): $(printf %.0f "$rate") packets/CPU-s, $(elapsed)s wall, $(cpu_split); after its imports $(printf %.0f "$(per_s "$ref_packets" "$(value reference_cpu_seconds <<<"$ref")")") packets/CPU-s, $(value reference_user_seconds <<<"$ref") s user + $(value reference_system_seconds <<<"$ref") s system"
	if awk -v a="$rate" -v b="$best_rate" 'BEGIN { exit !(a > b) }'; then
		best_rate=$rate best=$how
	fi
}
for batch in 64 1024; do
	for alloc in default tuned; do
		reference "$batch" "$alloc"
	done
done
reference 64 tuned --compile
echo "reference at its best: $best"
ratio_line 1 %.0f go_packets_per_s "$(per_s "$go_packets" "$go_cpu")" reference_packets_per_s "$best_rate"
