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
"""
import sys
import time

from scapy.compat import raw
from scapy.layers.dns import DNS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Padding
from scapy.utils import rdpcap


def omitted(pkt):
    if TCP in pkt and (pkt.flags & 0x13):
        rest = pkt[TCP].payload.layers()
        if not rest or (Padding in rest and len(rest) == 1):
            return True
    return DNS in pkt


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


def main(paths):
    packets = kept = 0
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        for pkt in rdpcap(path):
            packets += 1
            if transform(pkt) is not None:
                kept += 1
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"reference_packets={packets} reference_kept={kept} reference_seconds={seconds:.3f} reference_cpu_seconds={cpu:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
