package features

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// FiveTuple is a flow's endpoints, in the fixed order its id hashes them
// (the lower address, or port on equal addresses, first).
type FiveTuple struct {
	Proto        uint8 // IP protocol number: 6 TCP, 17 UDP
	A, B         netip.Addr
	PortA, PortB uint16
}

// String is "tcp 10.0.0.1:443 10.0.0.2:51000" ("proto-N" for other
// protocols; ports left out when the protocol has none); "" for no flow.
func (t FiveTuple) String() string {
	if !t.A.IsValid() {
		return ""
	}
	name := map[uint8]string{6: "tcp", 17: "udp"}[t.Proto]
	if name == "" {
		return fmt.Sprintf("proto-%d %s %s", t.Proto, t.A, t.B)
	}
	return fmt.Sprintf("%s %s %s", name, netip.AddrPortFrom(t.A, t.PortA), netip.AddrPortFrom(t.B, t.PortB))
}

// flowID hashes the first IP header's addresses, the protocol and the first
// transport header's ports (FNV-1a, 64 bits) with the two endpoints in a
// fixed order, so that both directions of a connection share one id; it
// also returns that 5-tuple.
func flowID(frame []byte, d *dissection) (int64, FiveTuple) {
	if d.net < 0 {
		return 0, FiveTuple{}
	}
	ip := d.net
	var a, b []byte
	var proto byte
	if frame[ip]>>4 == 6 {
		a, b, proto = frame[ip+8:ip+24], frame[ip+24:ip+40], frame[ip+6]
	} else {
		a, b, proto = frame[ip+12:ip+16], frame[ip+16:ip+20], frame[ip+9]
	}
	var pa, pb uint16
	l4 := d.tcp
	if d.udp >= 0 && (l4 < 0 || d.udp < l4) {
		l4 = d.udp
	}
	// A TCP header cut at a field boundary may lack its ports.
	if l4 >= 0 && l4+4 <= len(frame) {
		pa, pb = binary.BigEndian.Uint16(frame[l4:]), binary.BigEndian.Uint16(frame[l4+2:])
	}
	if c := bytes.Compare(a, b); c > 0 || c == 0 && pa > pb {
		a, b, pa, pb = b, a, pb, pa
	}
	h := uint64(14695981039346656037)
	mix := func(p []byte) {
		for _, c := range p {
			h ^= uint64(c)
			h *= 1099511628211
		}
	}
	mix(a)
	mix([]byte{byte(pa >> 8), byte(pa), proto})
	mix(b)
	mix([]byte{byte(pb >> 8), byte(pb)})
	addr := func(p []byte) netip.Addr {
		if len(p) == 4 {
			return netip.AddrFrom4([4]byte(p))
		}
		return netip.AddrFrom16([16]byte(p))
	}
	return int64(h), FiveTuple{Proto: proto, A: addr(a), B: addr(b), PortA: pa, PortB: pb}
}
