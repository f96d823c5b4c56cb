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
# cpu_split: "U s user + Y s system (Z% system)" of the last timed command.
cpu_split() {
	awk -v u="$(field "User time (seconds)")" -v s="$(field "System time (seconds)")" \
		'BEGIN { printf "%.2f s user + %.2f s system (%.0f%% system)", u, s, (u + s > 0 ? 100 * s / (u + s) : 0) }'
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
