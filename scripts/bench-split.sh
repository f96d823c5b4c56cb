#!/usr/bin/env bash
# Benchmark of `deeppacket split`: rows per second and peak resident memory
# on a few million preprocessed rows (targets: >= 1,000,000 rows/s, < 512 MB).
#
# The input is real: `deeppacket preprocess` on the ISCX captures of
# ../shared/pcaps/iscx, whose rows are then copied under new capture names
# (data/split/internal/benchinput) into FILES files holding ROWS rows. The
# split runs with the default settings (compact format, packet split, -j of
# all cores), then once more with --format reference on the same input.
# Rows per second count the input rows over the wall time of the command;
# rows per CPU-second over its user + system time, which says more on a
# machine shared with other work (wall time there depends on the neighbours).
# After each run, the I/O floor: the system time of reading the same input
# and writing as many bytes as the output, three times (scripts/lib.sh,
# io_floor).
# The last line is: split_rows=… split_rows_per_s=… split_rows_per_cpu_s=…
# split_peak_rss_mb=…
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROWS="${ROWS:-4000000}"
FILES="${FILES:-40}"

[ -d "$ISCX" ] || die "$ISCX is missing"
bench_tmp
deeppacket_bin

machine "$(free -g | awk '/Mem:/ { print $2 " GB" }')"

"$BIN" preprocess --quiet --log-level error --labels "$ISCX/labels.tsv" -o "$TMP/iscx" "$ISCX" > /dev/null
(cd "$ROOT" && go run ./data/split/internal/benchinput -from "$TMP/iscx" -o "$TMP/input" -rows "$ROWS" -files "$FILES")
echo "input: $ROWS rows in $FILES files, $(du -sh "$TMP/input" | cut -f1)"

run() {
	local name="$1"; shift
	sync
	timed "$BIN" split --quiet -o "$TMP/out-$name" "$@" "$TMP/input" > "$TMP/$name.txt"
	local s rss cpu
	s=$(elapsed)
	rss=$(( $(field "Maximum resident set size") / 1024 ))
	cpu=$(cpu_seconds)
	rate=$(awk -v n="$ROWS" -v s="$s" 'BEGIN { printf "%d", n / s }')
	cpu_rate=$(awk -v n="$ROWS" -v s="$cpu" 'BEGIN { printf "%d", n / s }')
	echo "$name: ${s}s wall, ${cpu}s cpu ($(cpu_split)), $rate rows/s, $cpu_rate rows per cpu-second, peak RSS $rss MB, output $(du -sh "$TMP/out-$name" | cut -f1)"
	local floor
	floor=$(io_floor "$(du -sb "$TMP/out-$name" | cut -f1)" "$TMP"/input/*)
	floor_line "$name" $floor
	peak=$rss
}
run compact
head -20 "$TMP/compact.txt"
compact_rate=$rate compact_cpu_rate=$cpu_rate compact_rss=$peak
run reference --format reference
echo "split_rows=$ROWS split_rows_per_s=$compact_rate split_rows_per_cpu_s=$compact_cpu_rate split_peak_rss_mb=$compact_rss"
