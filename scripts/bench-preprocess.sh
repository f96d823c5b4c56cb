#!/usr/bin/env bash
# Benchmark of `deeppacket preprocess` against the reference transform
# (scapy, the seed's steps) on the same captures, one core each.
#
#   1. both run over the 41 ISCX captures of ../shared/pcaps/iscx; the kept
#      packet counts must agree;
#   2. ours runs (-j 1) over one capture of a few GB made by repeating those
#      same packets (REPEAT_DOUBLINGS doublings, 9 = 512 copies, ~2.2 GB), in
#      a temporary folder, for packets per second and peak resident memory.
#
# After the big run, the I/O floor: the system time of reading the same
# capture and writing as many bytes as the output, three times (scripts/lib.sh,
# io_floor).
# Rates are packets per CPU-second of one process (user + system time), one
# core each: the machines this runs on are shared, and wall time there says
# more about the neighbours than about the code. Wall-clock rates are printed
# too. The last line is: go_packets_per_s=… reference_packets_per_s=… ratio=…
# Needs bin/deeppacket (make build) or builds one into the temporary folder.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DOUBLINGS="${REPEAT_DOUBLINGS:-9}"

[ -d "$ISCX" ] || die "$ISCX is missing"
bench_tmp
deeppacket_bin

machine
echo "go: $("$BIN" --help >/dev/null 2>&1 && echo "$BIN"), python: $("$PYTHON" -c 'import scapy; print("scapy", scapy.__version__)')"

# 1. The same 41 captures through both.
timed "$BIN" preprocess --quiet --log-level error -j 1 --labels "$ISCX/labels.tsv" -o "$TMP/small" "$ISCX" > "$TMP/small.txt"
# The summary's last table line: total: N captures  read  kept  …
totals() { sed -n 's/^ *total: [0-9]* captures *\([0-9]*\) *\([0-9]*\).*/\1 \2/p' "$1"; }
read -r go_small_read go_small_kept < <(totals "$TMP/small.txt")
ref=$("$PYTHON" "$ROOT/scripts/bench_preprocess_reference.py" "$ISCX"/*.pcap)
echo "$ref"
ref_packets=$(value reference_packets <<<"$ref")
ref_kept=$(value reference_kept <<<"$ref")
ref_seconds=$(value reference_seconds <<<"$ref")
ref_cpu=$(value reference_cpu_seconds <<<"$ref")
echo "iscx: go read=$go_small_read kept=$go_small_kept, reference read=$ref_packets kept=$ref_kept"
if [ "$go_small_read" != "$ref_packets" ] || [ "$go_small_kept" != "$ref_kept" ]; then
	die "packet counts differ from the reference"
fi

# 2. A capture of a few GB: the same packets, repeated.
mkdir -p "$TMP/big"
big="$TMP/big/skype_video.pcap" # a name labels.tsv labels
head -c 24 "$ISCX/aim_chat.pcap" > "$TMP/hdr"
for f in "$ISCX"/*.pcap; do tail -c +25 "$f"; done > "$TMP/rec0"
for i in $(seq 1 "$DOUBLINGS"); do
	cat "$TMP/rec$((i - 1))" "$TMP/rec$((i - 1))" > "$TMP/rec$i"
	rm "$TMP/rec$((i - 1))"
done
cat "$TMP/hdr" "$TMP/rec$DOUBLINGS" > "$big"
rm "$TMP/rec$DOUBLINGS"
size=$(stat -c %s "$big")
timed "$BIN" preprocess --quiet --log-level error -j 1 --labels "$ISCX/labels.tsv" -o "$TMP/bigout" "$big" > "$TMP/big.txt"
read -r big_read _ < <(totals "$TMP/big.txt")
big_seconds=$(elapsed)
big_cpu=$(cpu_seconds)
rss_kb=$(field "Maximum resident set size")
out_size=$(stat -c %s "$TMP/bigout/skype_video.pcap.parquet")
echo "big capture: $size bytes, $big_read packets in ${big_seconds}s wall, ${big_cpu}s CPU ($(cpu_split)), peak RSS $((rss_kb / 1024)) MB, output $out_size bytes"
floor_line "big capture" $(io_floor "$out_size" "$big")

awk -v rss="$rss_kb" 'BEGIN { printf "peak_rss_mb=%.0f\n", rss / 1024 }'
echo "wall clock: $(ratio_line 0 %.0f go_packets_per_s "$(per_s "$big_read" "$big_seconds")" \
	reference_packets_per_s "$(per_s "$ref_packets" "$ref_seconds")")"
ratio_line 0 %.0f go_packets_per_s "$(per_s "$big_read" "$big_cpu")" reference_packets_per_s "$(per_s "$ref_packets" "$ref_cpu")"
