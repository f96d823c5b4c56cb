#!/usr/bin/python3
"""Time the reference's preprocessing transform (scapy) over captures.

It imports the scapy modules the PyTorch reference's preprocessing imports
(l2, inet, inet6 through dns) and nothing more, so packets dissect as they do
there, and applies the seed's steps to every packet: omit TCP packets
without payload (the reference reads packet.flags) and DNS packets, remove
the Ethernet header, pad UDP with 12 zero bytes, mask the IPv4 addresses,
take the first 1500 bytes. Writing Parquet is left out (pyarrow is not
installed), which only flatters the reference.

Prints one line: reference_packets=N reference_kept=K reference_seconds=S
reference_cpu_seconds=C (wall and CPU time: on a shared machine the CPU time
is what says how fast one core is).

With --golden DIR first, it also writes DIR/<capture>.golden in
../shared/golden's format (DPGOLD1: index, verdict, the bytes), so that a
test can check that this script gives the reference's bytes with the scapy
it runs on (Debian's 2.5, as the reference ran, and the newest from PyPI).
"""
import os
import struct
import sys
import time

from scapy.compat import raw
from scapy.layers.dns import DNS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Padding, Raw
from scapy.utils import rdpcap


def omitted(pkt):
    """The golden files' verdict: 0 kept, 1 TCP without payload, 2 DNS."""
    if TCP in pkt and (pkt.flags & 0x13):
        rest = pkt[TCP].payload.layers()
        if not rest or (Padding in rest and len(rest) == 1):
            return 1
    return 2 if dns_in(pkt) else 0


# Scapy 2.6 and later keep a DNS message's records in lists (2.5 chains them).
SCAPY_25 = not isinstance(DNS().qd, list)


def dns_in(pkt):
    """DNS in pkt, as the reference's scapy 2.5 decides it. Where 2.5's DNS
    dissector raises (a message cut short by fragmentation, say) it leaves
    the packet raw, and later versions raise and accept elsewhere. With
    those, dns_ok_25 replays 2.5's checks (the ones deeppacket's Go
    preprocessing models: data/features/dissect.go, dnsOK) on the bytes, as
    captured, after every TCP or UDP header on DNS's ports."""
    if SCAPY_25:
        return DNS in pkt
    layer = pkt
    while layer:
        if isinstance(layer, (TCP, UDP)):
            raw_layer = bytes(layer.original)
            if isinstance(layer, TCP) and 53 in (layer.sport, layer.dport):
                if dns_ok_25(raw_layer[max(layer.dataofs * 4, 20):], True):
                    return True
            elif isinstance(layer, UDP) and {layer.sport, layer.dport} & {53, 5353}:
                n, have = layer.len - 8, len(raw_layer) - 8
                if n < 0:  # scapy: s[:len - 8], a negative index
                    n = max(have + n, 0)
                message = raw_layer[8:8 + min(n, have)]
                if message and dns_ok_25(message, False):
                    return True
        layer = layer.payload
    return False


def dns_ok_25(p, over_tcp):
    if over_tcp:
        if len(p) < 2:
            return False
        n = int.from_bytes(p[:2], "big")
        if n < 14 or len(p) < n:
            return False
        p = p[2:]
    if len(p) < 12:
        return len(p) % 2 == 0 or len(p) == 3
    if len(p) == 12:
        return True
    counts = [int.from_bytes(p[i:i + 2], "big") for i in (4, 6, 8, 10)]
    s, pos = p[12:], 0
    for section, c in enumerate(counts):
        if c > len(s):
            pos = 0  # scapy 2.5 skips the section and the next starts over
            continue
        for _ in range(c):
            pos = dns_name_25(s, pos)
            if section == 0:
                if len(s) - pos in (1, 3):  # half a field of a question
                    return False
                pos += 4
                continue
            if pos < 0 or pos + 10 > len(s):
                return False
            typ, rdlen = int.from_bytes(s[pos:pos + 2], "big"), int.from_bytes(s[pos + 8:pos + 10], "big")
            pos += 10
            have = min(rdlen, max(len(s) - pos, 0))
            if (typ == 1 and 0 < have < 4) or (typ == 28 and 0 < have < 16):
                return False  # an address cut short
            pos += rdlen
    return True


def dns_name_25(s, pos):
    """The position after a (possibly compressed) name, as scapy 2.5's
    dns_get_str walks it (Python indexing, negative from the end)."""
    after, seen = -1, 0
    for _ in range(256):
        if pos >= len(s) or -pos > len(s):
            break
        c = s[pos]
        pos += 1
        if c & 0xc0:
            if after < 0:
                after = pos + 1
            if pos >= len(s) or -pos > len(s):
                break
            pos = ((c & ~0xc0) << 8) + s[pos] - 12
            seen += 1
            if seen > 64:
                break
            continue
        if c == 0:
            break
        pos += c
    return after if after >= 0 else pos


def as_scapy25(pkt):
    """pkt dissected as scapy 2.5 dissects it: 2.6 and later leave the
    payload of a first IPv4 fragment (offset 0, more fragments) raw, where
    2.5 dissects its TCP or UDP header."""
    if IP not in pkt or not isinstance(pkt[IP].payload, Raw):
        return pkt
    ip = pkt[IP]
    layer = {6: TCP, 17: UDP}.get(ip.proto)
    if layer is None or ip.frag != 0 or not ip.flags.MF:
        return pkt
    data, pad = ip.payload.load, ip.payload.payload
    if layer is TCP and len(data) < 20:
        # 2.5 dissects a cut TCP header as far as it goes, with no payload;
        # with MF set, the packet is then omitted as TCP without payload,
        # which is all its zero-filled rest is used for here.
        data += bytes(20 - len(data))
    try:
        inner = layer(data)
    except Exception:  # noqa: BLE001 - scapy 2.5 leaves what it cannot dissect raw
        return pkt
    ip.remove_payload()
    if isinstance(pad, Padding):
        inner = inner / Padding(pad.load)
    ip.add_payload(inner)
    return pkt


def transform(pkt):
    if omitted(pkt):
        return None
    if Ether in pkt:
        pkt = pkt[Ether].payload
    if UDP in pkt:
        after = pkt[UDP].payload.copy()
        zeros = Padding()
        zeros.load = b"\x00" * 12
        before = pkt.copy()
        before[UDP].remove_payload()
        pkt = before / zeros / after
    if IP in pkt:
        pkt[IP].src = "0.0.0.0"
        pkt[IP].dst = "0.0.0.0"
    return raw(pkt)[:1500]


def main(paths, golden=None):
    packets = kept = 0
    start, cpu = time.perf_counter(), os.times()
    for path in paths:
        out = open(os.path.join(golden, os.path.basename(path) + ".golden"), "wb") if golden else None
        if out:
            out.write(b"DPGOLD1\n")
        for i, pkt in enumerate(map(as_scapy25, rdpcap(path))):
            packets += 1
            vector = transform(pkt)
            if vector is not None:
                kept += 1
            if out:
                out.write(struct.pack("<IBH", i, omitted(pkt) if vector is None else 0, len(vector or b"")) + (vector or b""))
        if out:
            out.close()
    seconds, end = time.perf_counter() - start, os.times()
    user, system = end.user - cpu.user, end.system - cpu.system
    print(f"reference_packets={packets} reference_kept={kept} reference_seconds={seconds:.3f} "
          f"reference_cpu_seconds={user + system:.3f} reference_user_seconds={user:.3f} reference_system_seconds={system:.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--golden"]:
        main(sys.argv[3:], sys.argv[2])
    else:
        main(sys.argv[1:])
