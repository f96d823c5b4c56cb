#!/usr/bin/env python3
"""Read pcap files with scapy and report, per file, what scapy makes of them.

Usage: scapy_read.py FILE...

Prints one JSON object mapping each file's base name to its counts: packets,
packets without Ethernet/IPv4, wrong IPv4/TCP/UDP checksums (recomputed by
scapy), packets the reference preprocessing keeps (its should_omit_packet
rule, verbatim), TCP flows whose first client and server payloads scapy
dissects as a TLS ClientHello and ServerHello or that open with an SSH
version line, and UDP payloads that parse as RTP version 2. The synth
package's tests run it to check its captures against an independent reader.
"""
import json
import os
import sys

from scapy.all import load_layer
from scapy.layers.dns import DNS
from scapy.layers.inet import IP, TCP, UDP, in4_chksum
from scapy.layers.l2 import Ether
from scapy.layers.rtp import RTP
from scapy.packet import Padding
from scapy.utils import PcapReader, checksum

load_layer("tls")
from scapy.layers.tls.handshake import TLSClientHello, TLSServerHello  # noqa: E402
from scapy.layers.tls.record import TLS  # noqa: E402


def should_omit_packet(packet):
    # The reference's rule, as in its utils.py.
    if TCP in packet and (packet.flags & 0x13):
        layers = packet[TCP].payload.layers()
        if not layers or (Padding in layers and len(layers) == 1):
            return True
    if DNS in packet:
        return True
    return False


def checksums_ok(ip):
    """None when the IPv4 header's and the TCP or UDP checksum right after it
    are right, else the name of the first wrong one. Computed over the
    bytes as captured, with scapy's checksum functions: rebuilding the
    packet instead would re-encode its upper layers (TLS), which scapy 2.6
    and later do differently from the bytes on the wire."""
    data = bytes(ip.original)[:ip.len]
    header = ip.ihl * 4
    if checksum(data[:10] + b"\0\0" + data[12:header]) != ip.chksum:
        return "ip"
    for layer, proto, at in ((TCP, 6, 16), (UDP, 17, 6)):
        if isinstance(ip.payload, layer):
            segment = data[header:]
            want = in4_chksum(proto, ip, segment[:at] + b"\0\0" + segment[at + 2:])
            if proto == 17 and want == 0:
                want = 0xFFFF
            if want != ip.payload.chksum:
                return layer.__name__.lower()
    return None


def payload(layer):
    return bytes(layer.payload.getlayer(0).original) if layer.payload and not isinstance(layer.payload, Padding) else b""


def report(path):
    r = dict(packets=0, not_ipv4=0, bad_ip=0, bad_tcp=0, bad_udp=0, kept=0,
             tcp_flows=0, tls_client_hello=0, tls_server_hello=0, ssh_banner=0, rtp_v2=0)
    first = {}  # flow -> [client payload, server payload]
    for p in PcapReader(path):
        r["packets"] += 1
        if not should_omit_packet(p):
            r["kept"] += 1
        if Ether not in p or IP not in p:
            r["not_ipv4"] += 1
            continue
        ip = p[IP]
        bad = checksums_ok(ip)
        if bad:
            r["bad_" + bad] += 1
        if TCP in ip:
            t = ip[TCP]
            data = bytes(t.payload) if not isinstance(t.payload, Padding) else b""
            if isinstance(t.payload, Padding):
                data = b""
            # TLS dissection may have split the payload into layers; rebuild the raw bytes.
            data = bytes(t)[t.dataofs * 4:] if data else b""
            data = data[: ip.len - ip.ihl * 4 - t.dataofs * 4]
            if t.flags.S and not t.flags.A:
                first[(ip.src, t.sport, ip.dst, t.dport)] = [None, None]
                r["tcp_flows"] += 1
            if not data:
                continue
            key, side = (ip.src, t.sport, ip.dst, t.dport), 0
            if key not in first:
                key, side = (ip.dst, t.dport, ip.src, t.sport), 1
            if key in first and first[key][side] is None:
                first[key][side] = data
        elif UDP in ip:
            u = ip[UDP]
            data = bytes(u)[8:u.len]
            if len(data) >= 12 and data[0] == 0x80 and RTP(data).version == 2:
                r["rtp_v2"] += 1
    for client, server in first.values():
        if client is None or server is None:
            continue
        if client.startswith(b"SSH-2.0-") and server.startswith(b"SSH-2.0-"):
            r["ssh_banner"] += 1
            continue
        if TLSClientHello in TLS(client):
            r["tls_client_hello"] += 1
        if TLSServerHello in TLS(server):
            r["tls_server_hello"] += 1
    return r


def main():
    out = {os.path.basename(path): report(path) for path in sys.argv[1:]}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
