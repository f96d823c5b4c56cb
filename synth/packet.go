package synth

import (
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// ipPacket is one IPv4 packet as the capturing host saw it.
type ipPacket struct {
	ts       time.Time
	toServer bool // sent by the capturing (client) side
	payload  bool // carries a transport payload: a packet the reference keeps
	data     []byte
}

// host is one end of a conversation: its address, the TTL its packets
// arrive with, and the IP identification counter of its stack.
type host struct {
	addr netip.Addr
	ttl  uint8
	id   uint16
}

var serializeOpts = gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}

// ipv4 is the header src puts on a packet to dst. Like Linux, every packet
// has DF set and a per-host incrementing identification.
func (src *host) ipv4(dst *host, proto layers.IPProtocol) *layers.IPv4 {
	src.id++
	return &layers.IPv4{
		Version:  4,
		IHL:      5,
		TTL:      src.ttl,
		Id:       src.id,
		Flags:    layers.IPv4DontFragment,
		Protocol: proto,
		SrcIP:    src.addr.AsSlice(),
		DstIP:    dst.addr.AsSlice(),
	}
}

// serialize builds an IPv4 packet with correct lengths and checksums.
func serialize(ip *layers.IPv4, l4 gopacket.SerializableLayer, payload []byte) []byte {
	switch t := l4.(type) {
	case *layers.TCP:
		t.SetNetworkLayerForChecksum(ip)
	case *layers.UDP:
		t.SetNetworkLayerForChecksum(ip)
	}
	// Room for the Ethernet header too, which the writer prepends.
	buf := gopacket.NewSerializeBufferExpectedSize(14+20+32, len(payload))
	if err := gopacket.SerializeLayers(buf, serializeOpts, ip, l4, gopacket.Payload(payload)); err != nil {
		// Only impossible inputs (a payload over 64 kB) fail; the generators never make them.
		panic(err)
	}
	return buf.Bytes()
}

// udpPacket builds a UDP datagram from src to dst.
func udpPacket(src, dst *host, sport, dport uint16, payload []byte) []byte {
	return serialize(src.ipv4(dst, layers.IPProtocolUDP),
		&layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, payload)
}

// udpEnds is a UDP conversation between the capturing client and a server.
type udpEnds struct {
	cli, srv         *host
	cliPort, srvPort uint16
}

func (u *udpEnds) packet(ts time.Time, toServer bool, payload []byte) ipPacket {
	var data []byte
	if toServer {
		data = udpPacket(u.cli, u.srv, u.cliPort, u.srvPort, payload)
	} else {
		data = udpPacket(u.srv, u.cli, u.srvPort, u.cliPort, payload)
	}
	return ipPacket{ts: ts, toServer: toServer, payload: true, data: data}
}
