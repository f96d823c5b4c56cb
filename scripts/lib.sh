# Shared parts of the scripts/bench-*.sh benchmarks; sourced, not run:
#   . "$(dirname "$0")/lib.sh"
# Sets ROOT (the repository), SHARED (../shared beside it unless set), ISCX
# (the ISCX captures there) and PYTHON (unless set: the repository's .venv,
# with the PyTorch 2.x the shim is built against, else Debian's 1.13).
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
ISCX="$SHARED/pcaps/iscx"
PYTHON="${PYTHON:-$(if [ -x "$ROOT/.venv/bin/python" ]; then echo "$ROOT/.venv/bin/python"; else echo /usr/bin/python3; fi)}"

# die MESSAGE: MESSAGE to stderr, named after the benchmark, and exit 1.
die() {
	echo "$(basename "$0" .sh): $*" >&2
	exit 1
}

# machine [MORE...]: the line each benchmark starts with (cores, CPU model),
# MORE appended comma-separated, so results can be told apart by machine.
# nproc counts the machine's cores, not the OMP_NUM_THREADS a benchmark sets.
machine() {
	local line more
	line="machine: $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
	for more in "$@"; do line+=", $more"; done
	echo "$line"
}

# bench_tmp: a temporary folder in TMP, removed when the script exits.
bench_tmp() {
	TMP="$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX")"
	trap 'rm -rf "$TMP"' EXIT
}

# deeppacket_bin: BIN is bin/deeppacket, or a copy built in TMP when it is
# not built (make build).
deeppacket_bin() {
	BIN="$ROOT/bin/deeppacket"
	if [ ! -x "$BIN" ]; then
		echo "bin/deeppacket not built (make build): building a copy in $TMP" >&2
		(cd "$ROOT" && go build -o "$TMP/deeppacket" ./cmd/deeppacket)
		BIN="$TMP/deeppacket"
	fi
}

# timed COMMAND...: runs COMMAND under GNU time, whose report goes to
# $TMP/time.txt for field, elapsed and cpu_seconds to read.
timed() { /usr/bin/time -v -o "$TMP/time.txt" "$@"; }
field() { awk -v k="$1" -F': ' 'index($0, k) { print $2 }' "$TMP/time.txt"; }
elapsed() { field "Elapsed (wall clock)" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }'; }
# cpu_seconds: user + system time of the last timed command. The benchmarks
# rate by it: on a shared machine wall time says more about the neighbours
# than about the code.
cpu_seconds() { awk -v u="$(field "User time (seconds)")" -v s="$(field "System time (seconds)")" 'BEGIN { print u + s }'; }
# cpu_split [FILE]: "U s user + Y s system (Z% system)" of the GNU time
# reports in FILE (default: the last timed command's), summed when several
# processes appended theirs to it (the ranks of bench-ddp).
cpu_split() {
	awk -F': ' 'index($0, "User time (seconds)") { u += $2 } index($0, "System time (seconds)") { s += $2 }
		END { printf "%.2f s user + %.2f s system (%.0f%% system)", u, s, (u + s > 0 ? 100 * s / (u + s) : 0) }' "${1:-$TMP/time.txt}"
}

# value KEY: the number after KEY= in the text on stdin (a Python side's
# report line).
value() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

# bench_value UNIT: the number before UNIT in a `go test -bench` line on stdin.
bench_value() { awk -v unit="$1" '{ for (i = 1; i < NF; i++) if ($(i+1) == unit) print $i }'; }

# per_s COUNT SECONDS: COUNT / SECONDS, unrounded enough for a ratio.
per_s() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.6f", n / s }'; }

# ratio_line DIGITS RATE_FORMAT GO_KEY GO_RATE REF_KEY REF_RATE: the
# comparison line "GO_KEY=… REF_KEY=… ratio=…", rates printed with
# RATE_FORMAT (a printf format), the ratio GO_RATE / REF_RATE to DIGITS
# decimals.
ratio_line() {
	awk -v d="$1" -v f="$2" -v gk="$3" -v g="$4" -v rk="$5" -v r="$6" \
		'BEGIN { printf "%s=" f " %s=" f " ratio=%." d "f\n", gk, g, rk, r, g / r }'
}

# io_floor WRITE_BYTES FILE...: "R W1 W2 W3", the system seconds this
# machine's kernel takes, now, to read FILE... from the page cache (cat) and,
# three times, to write WRITE_BYTES to a new file in 32 kB writes and fsync
# it: the kernel's cost of the bytes a command moves, whatever the command
# does with them. On a VM whose freed memory goes back to the host
# (virtio-balloon free page reporting), the writes' cost varies from one
# write to the next with the state of the guest's free memory.
io_floor() {
	local bytes="$1" i out
	shift
	sync
	/usr/bin/time -f %S -o "$TMP/floor.txt" cat "$@" > /dev/null
	out=$(tail -1 "$TMP/floor.txt")
	for i in 1 2 3; do
		/usr/bin/time -f %S -o "$TMP/floor.txt" python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
left, block = int(sys.argv[2]), bytes(32768)
while left > 0:
    left -= os.write(fd, block[:left] if left < len(block) else block)
os.fsync(fd)
os.close(fd)' "$TMP/floor.out" "$bytes"
		rm -f "$TMP/floor.out"
		out+=" $(tail -1 "$TMP/floor.txt")"
	done
	echo "$out"
}

# floor_line NAME R W1 W2 W3: the last timed command's system time beside
# the I/O floor io_floor measured.
floor_line() {
	awk -v name="$1" -v r="$2" -v a="$3" -v b="$4" -v c="$5" -v s="$(field "System time (seconds)")" 'BEGIN {
		lo = a; hi = a
		if (b < lo) lo = b; if (c < lo) lo = c
		if (b > hi) hi = b; if (c > hi) hi = c
		printf "%s: system %.2f s; the same bytes through plain reads and writes: %.2f-%.2f s (reading the input %.2f s, writing the output %.2f, %.2f, %.2f s)\n",
			name, s, r + lo, r + hi, r, a, b, c }'
}
