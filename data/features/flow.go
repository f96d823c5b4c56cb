package features

import (
	"bytes"
	"encoding/binary"
)

// flowID hashes the first IP header's addresses, the protocol and the first
// transport header's ports (FNV-1a, 64 bits) with the two endpoints in a
// fixed order, so that both directions of a connection share one id.
func flowID(frame []byte, d *dissection) int64 {
	if d.net < 0 {
		return 0
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
	return int64(h)
}
