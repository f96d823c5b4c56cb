package features

import (
	"encoding/binary"

	"github.com/gopacket/gopacket/layers"
)

// maxIPHeaders bounds the IP headers remembered per packet for masking; a
// tunnel deeper than this keeps its innermost addresses.
const maxIPHeaders = 4

// dissection is what one walk over a packet's headers finds. The walk
// follows scapy's default dissector (the reference preprocesses with scapy
// 2.5): the same bindings between layers, the same "first layer of a kind
// anywhere" semantics, and the same idea of padding (bytes beyond a
// layer's length field). All offsets index the captured frame.
type dissection struct {
	start  int // first byte after the link-layer header scapy's Ether removes
	net    int // first byte of the first network-layer header, -1 if none
	nonPad int // end of the bytes scapy does not treat as padding

	ipv4 int // first IPv4 header (the one the reference masks), -1 if none
	ips  [maxIPHeaders]int
	nips int
	// ipEnd is where the first IP packet ends by its own length field.
	ipEnd int

	udp, tcp int // first UDP and TCP headers, -1 if none
	// tcpPayload is the number of bytes after the first TCP header that
	// scapy does not call padding.
	tcpPayload int
	tcpFlags   uint16

	// flags is the first field named "flags" in scapy's layer chain, which
	// is what the reference's packet.flags reads.
	flags    uint16
	hasFlags bool
	dns      bool

	// tunnels follows what scapy binds only in modules the reference does
	// not import (VXLAN, PPPoE, PPP, AH): the reference imports scapy's
	// l2, inet, inet6 and dns layers alone, so it leaves those raw.
	tunnels bool
}

func (d *dissection) reset(n int) {
	*d = dissection{net: -1, nonPad: n, ipv4: -1, ipEnd: n, udp: -1, tcp: -1, tunnels: d.tunnels}
}

func (d *dissection) setFlags(v uint16) {
	if !d.hasFlags {
		d.flags, d.hasFlags = v, true
	}
}

// limit marks bytes from end on as padding.
func (d *dissection) limit(end int) {
	if end < d.nonPad {
		d.nonPad = end
	}
}

// Link types the transform reads.
const (
	linkSLL2 layers.LinkType = 276
	linkIPv4 layers.LinkType = 228
	linkIPv6 layers.LinkType = 229
)

// Supported reports whether the transform reads frames of link type lt.
func Supported(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, linkSLL2, layers.LinkTypeRaw,
		linkIPv4, linkIPv6, layers.LinkTypeNull, layers.LinkTypeLoop:
		return true
	}
	return false
}

// dissect walks frame b of link type lt.
func (d *dissection) dissect(b []byte, lt layers.LinkType) {
	d.reset(len(b))
	switch lt {
	case layers.LinkTypeEthernet:
		d.ethernetFrame(b)
	case layers.LinkTypeLinuxSLL:
		if len(b) >= 16 {
			d.start = 16
			d.etherType(b, 16, binary.BigEndian.Uint16(b[14:16]), len(b))
		}
	case linkSLL2:
		if len(b) >= 20 {
			d.start = 20
			d.etherType(b, 20, binary.BigEndian.Uint16(b[0:2]), len(b))
		}
	case layers.LinkTypeRaw:
		// scapy's IPv46: version 6 is IPv6, anything else IPv4.
		if len(b) > 0 && b[0]>>4 == 6 {
			d.ipv6(b, 0, len(b))
		} else {
			d.ipv4Header(b, 0, len(b))
		}
	case linkIPv4:
		d.ipv4Header(b, 0, len(b))
	case linkIPv6:
		d.ipv6(b, 0, len(b))
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(b) >= 4 {
			d.start = 4
			// NULL stores the family in the writer's byte order, LOOP in
			// network order: accept either.
			fam := binary.LittleEndian.Uint32(b)
			if fam > 0xffff {
				fam = binary.BigEndian.Uint32(b)
			}
			switch fam {
			case 2:
				d.ipv4Header(b, 4, len(b))
			case 10, 24, 28, 30:
				d.ipv6(b, 4, len(b))
			}
		}
	}
}

// ethernetFrame dissects an Ethernet II frame. scapy calls a frame whose
// type field is a length (<= 1500) 802.3, which the reference's
// remove_ether_header does not remove.
func (d *dissection) ethernetFrame(b []byte) {
	if len(b) < 14 || binary.BigEndian.Uint16(b[12:14]) <= 1500 {
		return
	}
	d.start = 14
	d.etherType(b, 14, binary.BigEndian.Uint16(b[12:14]), len(b))
}

// innerEthernet dissects an Ethernet frame carried in a tunnel.
func (d *dissection) innerEthernet(b []byte, off, lim int) {
	if lim-off < 14 {
		return
	}
	t := binary.BigEndian.Uint16(b[off+12:])
	if t <= 1500 {
		return
	}
	d.etherType(b, off+14, t, lim)
}

func (d *dissection) etherType(b []byte, off int, t uint16, lim int) {
	for range 8 { // VLAN tags: scapy's Dot1Q and Dot1AD, nested
		if t != 0x8100 && t != 0x88a8 {
			break
		}
		if lim-off < 4 {
			return
		}
		t = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	switch t {
	case 0x0800:
		d.ipv4Header(b, off, lim)
	case 0x86dd:
		d.ipv6(b, off, lim)
	case 0x8864: // PPPoE session: 6-byte header, then PPP
		if d.tunnels && lim-off >= 6 && b[off+1] == 0 {
			d.ppp(b, off+6, lim)
		}
	}
}

// ppp dissects a PPP header, whose protocol field is one byte when odd
// (RFC 1661 compression) and two otherwise, as scapy reads it.
func (d *dissection) ppp(b []byte, off, lim int) {
	if off >= lim {
		return
	}
	if b[off] == 0xff { // HDLC address and control bytes
		off += 2
		if off >= lim {
			return
		}
	}
	var proto uint16
	if b[off]&1 == 1 {
		proto, off = uint16(b[off]), off+1
	} else {
		if lim-off < 2 {
			return
		}
		proto, off = binary.BigEndian.Uint16(b[off:]), off+2
	}
	switch proto {
	case 0x21:
		d.ipv4Header(b, off, lim)
	case 0x57:
		d.ipv6(b, off, lim)
	}
}

func (d *dissection) addIP(off int, end int) {
	if d.net < 0 {
		d.net = off
		d.ipEnd = end
	}
	if d.nips < maxIPHeaders {
		d.ips[d.nips] = off
		d.nips++
	}
}

func (d *dissection) ipv4Header(b []byte, off, lim int) {
	if lim-off < 20 {
		return // scapy cannot dissect it: the bytes stay raw
	}
	hl := int(b[off]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[off+2:]))
	hdrEnd := min(off+max(hl, 20), lim)
	payEnd := lim
	// scapy: len - ihl*4 bytes of payload; a negative count (a total
	// length of 0 from segmentation offload) means the rest of the frame.
	if n := total - hl; n >= 0 {
		payEnd = min(hdrEnd+n, lim)
	}
	ipEnd := lim
	if total != 0 {
		ipEnd = min(off+total, lim)
	}
	d.addIP(off, ipEnd)
	if d.ipv4 < 0 {
		d.ipv4 = off
	}
	d.setFlags(uint16(b[off+6] >> 5))
	d.limit(payEnd)
	if binary.BigEndian.Uint16(b[off+6:])&0x1fff != 0 {
		return // a later fragment: scapy leaves it raw
	}
	d.ipPayload(b, b[off+9], hdrEnd, payEnd)
}

func (d *dissection) ipPayload(b []byte, proto byte, off, lim int) {
	if off >= lim {
		return
	}
	switch proto {
	case 6:
		d.tcpHeader(b, off, lim)
	case 17:
		d.udpHeader(b, off, lim)
	case 4:
		d.ipv4Header(b, off, lim)
	case 41:
		d.ipv6(b, off, lim)
	case 47:
		d.gre(b, off, lim)
	case 51: // AH
		if d.tunnels && lim-off >= 12 {
			d.ipPayload(b, b[off], off+(int(b[off+1])+2)*4, lim)
		}
	}
}

func (d *dissection) ipv6(b []byte, off, lim int) {
	if lim-off < 40 {
		return
	}
	plen := int(binary.BigEndian.Uint16(b[off+4:]))
	hdrEnd := off + 40
	payEnd := min(hdrEnd+plen, lim)
	d.addIP(off, payEnd)
	d.limit(payEnd)
	nh := b[off+6]
	off = hdrEnd
	for range 16 { // extension headers
		switch nh {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if payEnd-off < 2 {
				return
			}
			nh, off = b[off], off+(int(b[off+1])+1)*8
		case 44: // fragment
			if payEnd-off < 8 {
				return
			}
			if binary.BigEndian.Uint16(b[off+2:])>>3 != 0 {
				return // a later fragment: raw
			}
			nh, off = b[off], off+8
		default:
			d.ipPayload(b, nh, off, payEnd)
			return
		}
	}
}

func (d *dissection) tcpHeader(b []byte, off, lim int) {
	if n := lim - off; n < 20 {
		// scapy stops at the end of the bytes between two fields and
		// fails (leaving raw bytes) inside one.
		switch n {
		case 2, 4, 8, 12, 14, 16, 18:
			var flags uint16 = 2 // scapy's default: SYN
			if n >= 14 {
				flags = binary.BigEndian.Uint16(b[off+12:]) & 0x1ff
			}
			if d.tcp < 0 {
				d.tcp, d.tcpFlags, d.tcpPayload = off, flags, 0
			}
			d.setFlags(flags)
		}
		return
	}
	flags := binary.BigEndian.Uint16(b[off+12:]) & 0x1ff
	if d.tcp < 0 {
		d.tcp = off
		d.tcpFlags = flags
		pay := off + max(int(b[off+12]>>4)*4, 20)
		d.tcpPayload = max(lim-pay, 0)
	}
	d.setFlags(flags)
	pay := min(off+max(int(b[off+12]>>4)*4, 20), lim)
	sport, dport := binary.BigEndian.Uint16(b[off:]), binary.BigEndian.Uint16(b[off+2:])
	if pay < lim && (sport == 53 || dport == 53) {
		// DNS over TCP starts with a two-byte length.
		d.dns = d.dns || dnsOK(b[pay:lim], true)
	}
}

func (d *dissection) udpHeader(b []byte, off, lim int) {
	if lim-off < 8 {
		return
	}
	if d.udp < 0 {
		d.udp = off
	}
	s := lim - (off + 8)
	// scapy: s[:len-8], with Python's meaning of a negative index.
	n := int(binary.BigEndian.Uint16(b[off+4:])) - 8
	if n < 0 {
		n = max(s+n, 0)
	}
	payEnd := off + 8 + min(n, s)
	d.limit(payEnd)
	pay := off + 8
	if pay >= payEnd {
		return
	}
	sport, dport := binary.BigEndian.Uint16(b[off:]), binary.BigEndian.Uint16(b[off+2:])
	switch {
	case sport == 53 || dport == 53 || sport == 5353 || dport == 5353:
		d.dns = d.dns || dnsOK(b[pay:payEnd], false)
	case d.tunnels && (vxlanPort(dport) || vxlanPort(sport) && sport != 48879):
		d.vxlan(b, pay, payEnd)
	}
}

func vxlanPort(p uint16) bool {
	return p == 4789 || p == 4790 || p == 6633 || p == 8472 || p == 48879
}

func (d *dissection) vxlan(b []byte, off, lim int) {
	if lim-off < 8 {
		return
	}
	flags := b[off]
	d.setFlags(uint16(flags))
	if flags&0x04 != 0 { // VXLAN-GPE: the next protocol says what follows
		switch b[off+3] {
		case 1:
			d.ipv4Header(b, off+8, lim)
		case 2:
			d.ipv6(b, off+8, lim)
		case 3:
			d.innerEthernet(b, off+8, lim)
		}
		return
	}
	d.innerEthernet(b, off+8, lim)
}

func (d *dissection) gre(b []byte, off, lim int) {
	if lim-off < 4 {
		return
	}
	f0 := b[off]
	proto := binary.BigEndian.Uint16(b[off+2:])
	if proto == 0x880b { // enhanced GRE of PPTP, then PPP
		n := 8
		if f0&0x10 != 0 {
			n += 4
		}
		if b[off+1]&0x80 != 0 {
			n += 4
		}
		d.setFlags(uint16(b[off+1]>>3) & 0x0f)
		if d.tunnels && lim-off >= n {
			d.ppp(b, off+n, lim)
		}
		return
	}
	d.setFlags(uint16(b[off+1]>>3) & 0x1f)
	n := 4
	if f0&0xc0 != 0 { // checksum or routing present
		n += 4
	}
	if f0&0x20 != 0 {
		n += 4
	}
	if f0&0x10 != 0 {
		n += 4
	}
	if f0&0x40 != 0 || lim-off < n {
		return // source routing: scapy's GRErouting chain, not followed
	}
	if proto == 0x6558 { // transparent Ethernet bridging
		d.innerEthernet(b, off+n, lim)
		return
	}
	d.etherType(b, off+n, proto, lim)
}

// dnsOK reports whether scapy 2.5's DNS dissector accepts the message p;
// where it raises (a message cut short by fragmentation, say) the reference
// keeps the packet as raw bytes. Over TCP the message starts with its
// length, which scapy checks first.
func dnsOK(p []byte, overTCP bool) bool {
	if overTCP {
		if len(p) < 2 {
			return false
		}
		if n := int(binary.BigEndian.Uint16(p)); n < 14 || len(p) < n {
			return false
		}
		p = p[2:]
	}
	// The fixed header: a field cut in the middle fails, one missing
	// entirely just stays unset.
	switch {
	case len(p) < 12:
		return len(p)%2 == 0 || len(p) == 3
	case len(p) == 12:
		return true
	}
	counts := [4]int{
		int(binary.BigEndian.Uint16(p[4:])), int(binary.BigEndian.Uint16(p[6:])),
		int(binary.BigEndian.Uint16(p[8:])), int(binary.BigEndian.Uint16(p[10:])),
	}
	s := p[12:]
	pos := 0
	for section, c := range counts {
		if c > len(s) {
			pos = 0 // scapy skips the section and the next starts over
			continue
		}
		for ; c > 0; c-- {
			pos = dnsName(s, pos)
			if section == 0 {
				// A question's type and class: a half field fails.
				if rest := len(s) - pos; rest == 1 || rest == 3 {
					return false
				}
				pos += 4
				continue
			}
			if pos < 0 || pos+10 > len(s) {
				return false
			}
			typ := binary.BigEndian.Uint16(s[pos:])
			rdlen := int(binary.BigEndian.Uint16(s[pos+8:]))
			pos += 10
			have := min(rdlen, max(len(s)-pos, 0))
			if (typ == 1 && have > 0 && have < 4) || (typ == 28 && have > 0 && have < 16) {
				return false // an address cut short
			}
			pos += rdlen
		}
	}
	return true
}

// dnsName skips a (possibly compressed) name at pos in s, the message after
// its 12-byte header, the way scapy's dns_get_str does, and returns the
// position after it.
func dnsName(s []byte, pos int) int {
	after := -1
	seen := 0
	for range 256 {
		if pos >= len(s) || -pos > len(s) {
			break
		}
		c := int(s[index(s, pos)])
		pos++
		if c&0xc0 != 0 {
			if after < 0 {
				after = pos + 1
			}
			if pos >= len(s) || -pos > len(s) {
				break
			}
			pos = (c&^0xc0)<<8 + int(s[index(s, pos)]) - 12
			if seen++; seen > 64 {
				break // scapy stops at a pointer loop
			}
			continue
		}
		if c == 0 {
			break
		}
		pos += c
	}
	if after >= 0 {
		return after
	}
	return pos
}

// index maps a Python index (negative counts from the end) into s.
func index(s []byte, i int) int {
	if i < 0 {
		return len(s) + i
	}
	return i
}
