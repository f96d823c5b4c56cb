#!/usr/bin/env bash
# Benchmark of `deeppacket live` on a veth pair between two network
# namespaces (needs root, ip and tcpreplay: scripts/install-deps.sh), with the
# model of bench-predict (the reference's published traffic ResNet), on the
# 41 ISCX captures of ../shared/pcaps/iscx (written as Ethernet captures,
# which tcpreplay sends; tcprewrite --dlt=enet overwrites the first 14 bytes
# of raw-IP packets instead of prepending a header).
#
# 1. Offline: `live --read-file ALL --replay-speed 0` (the same engine fed as
#    fast as it takes packets): packets per second.
# 2. Drop-free rate: tcpreplay sends the captures at R packets/s (--pps) for
#    TRIAL seconds (default 15) to live on the other end, run with a small
#    queue (--queue 512; the kernel ring its default 64 MiB, 512 blocks of
#    128 KiB at the default snap length), so that a rate above what it
#    sustains overflows within the trial instead of being absorbed by
#    buffers; a rate passes when every packet sent was received
#    and none was dropped (by the kernel or by live). R doubles from 250 to
#    the first failure, then bisects (3 steps). The highest passing R is
#    reported.
# 3. Verdict latency at 1x: every ISCX capture replayed at its recorded pace
#    at once (41 tcpreplay processes) for LATENCY_SECONDS (default 20) into
#    live with its defaults (--verdict-after 1, --max-delay 200ms,
#    --batch-size 64, as predict): median and 99th percentile of latency_ms, from a
#    packet's capture to its flow's first verdict.
# The last line: live_drop_free_pps=… offline_pps=… ratio=… (the share of
# its offline speed live sustains on the wire).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

MODEL="${MODEL:-$SHARED/fixtures/reference_traffic_resnet.ckpt}"
TRIAL="${TRIAL:-15}"
LATENCY_SECONDS="${LATENCY_SECONDS:-20}"

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, veth, capture)"
for tool in ip tcpreplay python3; do command -v "$tool" >/dev/null || die "needs $tool (scripts/install-deps.sh)"; done
[ -d "$ISCX" ] || die "$ISCX is missing"
[ -f "$MODEL" ] || die "$MODEL is missing"
bench_tmp
deeppacket_bin

id="dpb$$"
TX="$id-tx" RX="$id-rx"
cleanup() { ip netns del "$TX" 2>/dev/null || true; ip netns del "$RX" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
for ns in "$TX" "$RX"; do
	ip netns add "$ns"
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$TX" link add tx0 type veth peer name rx0 netns "$RX"
ip -n "$RX" link set rx0 address 02:db:00:00:00:02 up
ip -n "$TX" link set tx0 up

# Ethernet copies of the raw-IP captures, and all of them in one file.
mkdir -p "$TMP/eth"
python3 - "$TMP/eth" "$ISCX"/*.pcap <<'PY'
import struct, sys, os
out, paths = sys.argv[1], sys.argv[2:]
eth_hdr = bytes.fromhex("02db00000002" "02db00000001")
def packets(path):
    b = open(path, "rb").read()
    assert struct.unpack("<I", b[:4])[0] == 0xa1b2c3d4 and struct.unpack("<I", b[20:24])[0] == 101, path
    off = 24
    while off + 16 <= len(b):
        s, us, incl, orig = struct.unpack("<IIII", b[off:off + 16])
        data = b[off + 16:off + 16 + incl]
        off += 16 + incl
        et = b"\x86\xdd" if data[0] >> 4 == 6 else b"\x08\x00"
        yield s, us, eth_hdr + et + data
def header(f):
    f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
with open(os.path.join(out, "all.pcap"), "wb") as everything:
    header(everything)
    for p in paths:
        with open(os.path.join(out, os.path.basename(p)), "wb") as f:
            header(f)
            for s, us, frame in packets(p):
                rec = struct.pack("<IIII", s, us, len(frame), len(frame)) + frame
                f.write(rec)
                everything.write(rec)
PY
ALL="$TMP/eth/all.pcap"
total=$(python3 -c "import sys,struct;b=open(sys.argv[1],'rb').read();o=24;n=0
while o+16<=len(b): o+=16+struct.unpack('<I',b[o+8:o+12])[0];n+=1
print(n)" "$ALL")

machine "$(nproc) threads for libtorch"
echo "model: $MODEL; $total packets in the 41 ISCX captures"

export DEEPPACKET_SHIM="${DEEPPACKET_SHIM:-$ROOT/build/libdptorch.so}"
# counter NAME FILE: a counter of live's final counters line in FILE.
counter() { grep '"msg":"live: final counters"' "$2" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

start=$(date +%s.%N)
timed "$BIN" live --quiet --log-format json --device cpu --model "$MODEL" --read-file "$ALL" --replay-speed 0 \
	-o "$TMP/offline.jsonl" 2> "$TMP/offline.log"
offline_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
offline_received=$(counter received "$TMP/offline.log")
offline_pps=$(per_s "$offline_received" "$offline_s")
echo "offline: $offline_received packets ($(counter classified "$TMP/offline.log") classified) in ${offline_s}s, model loading included: $(printf %.0f "$offline_pps") packets/s, $(cpu_split)"

# start_live LOG ARGS...: live on rx0 in the background, once it captures.
start_live() {
	local log=$1
	shift
	ip netns exec "$RX" "$BIN" live --quiet --log-format json --device cpu --model "$MODEL" --interface rx0 \
		--stats-interval 0 "$@" 2> "$log" &
	LIVE=$!
	for _ in $(seq 1 600); do
		grep -q '"msg":"capturing"' "$log" && return 0
		kill -0 "$LIVE" 2>/dev/null || { cat "$log" >&2; die "live exited"; }
		sleep 0.1
	done
	die "live did not start"
}
stop_live() {
	sleep 2
	kill -INT "$LIVE"
	wait "$LIVE" || die "live exited with status $?"
}

# trial RATE: 0 when live received all of TRIAL seconds at RATE packets/s
# and dropped none.
trial() {
	local rate=$1 n=$(($1 * TRIAL))
	start_live "$TMP/trial.log" --queue 512 -o "$TMP/trial.jsonl" --overwrite
	ip netns exec "$TX" tcpreplay -q -i tx0 --pps "$rate" --limit "$n" --loop 0 "$ALL" > /dev/null 2>&1
	stop_live
	local received kdrop drop
	received=$(counter received "$TMP/trial.log")
	kdrop=$(counter kernel_dropped "$TMP/trial.log")
	drop=$(counter dropped "$TMP/trial.log")
	echo "  $rate packets/s for ${TRIAL}s: sent $n, received $received, dropped by the kernel $kdrop, by live $drop" >&2
	[ "$received" -eq "$n" ] && [ "$kdrop" -eq 0 ] && [ "$drop" -eq 0 ]
}

echo "drop-free rate (tcpreplay --pps, ${TRIAL}s a trial, --queue 512):"
good=0 bad=0 rate=250
while trial "$rate"; do
	good=$rate
	rate=$((rate * 2))
	[ "$rate" -le 64000 ] || break
done
bad=$rate
for _ in 1 2 3; do
	[ "$good" -gt 0 ] || break
	mid=$(((good + bad) / 2))
	if trial "$mid"; then good=$mid; else bad=$mid; fi
done
echo "highest drop-free rate: $good packets/s"

echo "verdict latency at 1x: the 41 captures at once for ${LATENCY_SECONDS}s, live's defaults:"
start_live "$TMP/latency.log" -o "$TMP/latency.jsonl"
pids=()
for f in "$TMP"/eth/*.pcap; do
	[ "$f" = "$ALL" ] && continue
	ip netns exec "$TX" tcpreplay -q -i tx0 --multiplier 1 --duration "$LATENCY_SECONDS" "$f" > /dev/null 2>&1 &
	pids+=($!)
done
wait "${pids[@]}"
stop_live
latencies=$(grep -o '"latency_ms":[0-9.e+-]*' "$TMP/latency.jsonl" | cut -d: -f2 | sort -g)
n=$(wc -l <<<"$latencies")
p50=$(sed -n "$(((n + 1) / 2))p" <<<"$latencies")
p99=$(sed -n "$(((n * 99 + 99) / 100))p" <<<"$latencies")
echo "  $n first verdicts ($(counter received "$TMP/latency.log") packets received, $(counter dropped "$TMP/latency.log") + $(counter kernel_dropped "$TMP/latency.log") dropped)"
printf 'latency_p50_ms=%.1f latency_p99_ms=%.1f\n' "$p50" "$p99"
ratio_line 2 %.0f live_drop_free_pps "$good" offline_pps "$offline_pps"
