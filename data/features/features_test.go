package features_test

import (
	"bytes"
	"encoding/hex"
	"net"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/deeppacket/deeppacket/data/capture"
	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/internal/testenv"
)

var (
	macA, _ = net.ParseMAC("00:11:22:33:44:55")
	macB, _ = net.ParseMAC("66:77:88:99:aa:bb")
	v4a     = net.IPv4(10, 0, 0, 1).To4()
	v4b     = net.IPv4(10, 0, 0, 2).To4()
	v6a     = net.ParseIP("2001:db8::1")
	v6b     = net.ParseIP("2001:db8::2")
)

// frame serialises an Ethernet frame (lengths and checksums filled in) and
// appends trailer bytes after it, as short frames carry.
func frame(t *testing.T, trailer []byte, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	for _, l := range ls {
		if n, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			for _, nl := range ls {
				if ip, ok := nl.(gopacket.NetworkLayer); ok {
					n.SetNetworkLayerForChecksum(ip)
					break
				}
			}
		}
	}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatal(err)
	}
	return append(bytes.Clone(buf.Bytes()), trailer...)
}

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: t}
}

func ip4(proto layers.IPProtocol, flags layers.IPv4Flag) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, Flags: flags, SrcIP: v4a, DstIP: v4b}
}

func ip6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: v6a, DstIP: v6b}
}

// want builds an expected vector from hex pieces.
func want(t *testing.T, parts ...string) []byte {
	var out []byte
	for _, p := range parts {
		b, err := hex.DecodeString(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// TestRules pins each rule of both layouts on hand-made frames.
func TestRules(t *testing.T) {
	// Long enough that no frame needs Ethernet's minimum-size padding.
	payload := gopacket.Payload(bytes.Repeat([]byte("hi!!"), 8))
	pl := hex.EncodeToString(payload)
	trailer := []byte{0xee, 0xee}
	udp := frame(t, trailer, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP, 0),
		&layers.UDP{SrcPort: 1234, DstPort: 443}, payload)
	// udp: 14 Ethernet + 20 IP + 8 UDP + 4 payload + 2 trailer.
	ipHdr := func(f []byte, masked bool) string {
		h := bytes.Clone(f[14:34])
		if masked {
			clear(h[12:20])
		}
		return hex.EncodeToString(h)
	}
	synDF := frame(t, nil, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP, layers.IPv4DontFragment),
		&layers.TCP{SrcPort: 1, DstPort: 2, SYN: true, Window: 1})
	synNoDF := frame(t, nil, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP, 0),
		&layers.TCP{SrcPort: 1, DstPort: 2, SYN: true, Window: 1})
	pshNoFlagsSet := frame(t, nil, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP, layers.IPv4DontFragment),
		&layers.TCP{SrcPort: 1, DstPort: 2, PSH: true, Window: 1})
	ack6 := frame(t, nil, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 1, DstPort: 2, ACK: true, Window: 1})
	data6 := frame(t, nil, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 1, DstPort: 2, ACK: true, Window: 1}, payload)
	dns := frame(t, nil, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP, 0),
		&layers.UDP{SrcPort: 5000, DstPort: 53}, &layers.DNS{ID: 7, RD: true, Questions: []layers.DNSQuestion{{Name: []byte("a.example"), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}})
	arp := frame(t, nil, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, SourceHwAddress: macA, SourceProtAddress: v4a, DstHwAddress: macB, DstProtAddress: v4b})
	vlan := frame(t, nil, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 5, Type: layers.EthernetTypeIPv4},
		ip4(layers.IPProtocolUDP, 0), &layers.UDP{SrcPort: 1234, DstPort: 443}, payload)

	ref := features.Options{Layout: features.LayoutReference}
	paper := features.Options{Layout: features.LayoutPaper}
	ports := features.Options{Layout: features.LayoutPaper, MaskPorts: true}
	short := features.Options{Layout: features.LayoutReference, SignalLength: 30}
	zeros := "000000000000000000000000"
	tests := []struct {
		name    string
		opts    features.Options
		frame   []byte
		verdict features.Verdict
		feature []byte
	}{
		{"reference: UDP zeros after the payload, before the trailer", ref, udp, features.Kept,
			want(t, ipHdr(udp, true), hex.EncodeToString(udp[34:42]), pl, zeros, "eeee")},
		{"paper: UDP zeros after the header, no trailer", paper, udp, features.Kept,
			want(t, ipHdr(udp, true), hex.EncodeToString(udp[34:42]), zeros, pl)},
		{"paper: ports masked", ports, udp, features.Kept,
			want(t, ipHdr(udp, true), "00000000", hex.EncodeToString(udp[38:42]), zeros, pl)},
		{"reference: truncated to the signal length", short, udp, features.Kept,
			want(t, ipHdr(udp, true), hex.EncodeToString(udp[34:42]), "6869")},
		{"reference: SYN without payload, IPv4 DF: omitted", ref, synDF, features.OmitNoPayload, nil},
		{"reference: SYN without payload, no DF: kept (reads the IP flags)", ref, synNoDF, features.Kept,
			want(t, ipHdr(synNoDF, true), hex.EncodeToString(synNoDF[34:]))},
		{"paper: SYN without payload: omitted", paper, synNoDF, features.OmitNoPayload, nil},
		{"reference: PSH only without payload, DF: omitted", ref, pshNoFlagsSet, features.OmitNoPayload, nil},
		{"paper: PSH only without payload: kept", paper, pshNoFlagsSet, features.Kept,
			want(t, ipHdr(pshNoFlagsSet, true), hex.EncodeToString(pshNoFlagsSet[34:54]))}, // the frame's padding dropped
		{"reference: IPv6 ACK without payload: omitted (TCP flags)", ref, ack6, features.OmitNoPayload, nil},
		{"reference: IPv6 addresses stay", ref, data6, features.Kept, data6[14:]},
		{"paper: IPv6 addresses masked", paper, data6, features.Kept,
			want(t, hex.EncodeToString(data6[14:22]), zeros+zeros+"0000000000000000", hex.EncodeToString(data6[54:]))},
		{"reference: DNS omitted", ref, dns, features.OmitDNS, nil},
		{"paper: DNS omitted", paper, dns, features.OmitDNS, nil},
		{"reference: ARP kept raw", ref, arp, features.Kept, arp[14:]},
		{"paper: ARP omitted", paper, arp, features.OmitNonIP, nil},
		{"reference: 802.1Q tag stays in front", ref, vlan, features.Kept,
			want(t, hex.EncodeToString(vlan[14:18]), ipHdrAt(vlan, 18), hex.EncodeToString(vlan[38:46]), pl, zeros)},
		{"paper: 802.1Q tag removed", paper, vlan, features.Kept,
			want(t, ipHdrAt(vlan, 18), hex.EncodeToString(vlan[38:46]), zeros, pl)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := features.New(tc.opts).Transform(tc.frame, layers.LinkTypeEthernet)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != tc.verdict || !bytes.Equal(res.Feature, tc.feature) {
				t.Errorf("got %s %x\nwant %s %x", res.Verdict, res.Feature, tc.verdict, tc.feature)
			}
		})
	}
}

func ipHdrAt(f []byte, off int) string {
	h := bytes.Clone(f[off : off+20])
	clear(h[12:20])
	return hex.EncodeToString(h)
}

// TestFlowBothDirections: both directions of a connection share a flow id,
// another connection has another.
func TestFlowBothDirections(t *testing.T) {
	mk := func(src, dst net.IP, sp, dp layers.TCPPort) []byte {
		l := ip4(layers.IPProtocolTCP, 0)
		l.SrcIP, l.DstIP = src, dst
		return frame(t, nil, eth(layers.EthernetTypeIPv4), l, &layers.TCP{SrcPort: sp, DstPort: dp, ACK: true, Window: 1}, gopacket.Payload("x"))
	}
	tr := features.New(features.Options{})
	flow := func(f []byte) int64 {
		res, err := tr.Transform(f, layers.LinkTypeEthernet)
		if err != nil {
			t.Fatal(err)
		}
		return res.Flow
	}
	a, b, c := flow(mk(v4a, v4b, 1000, 443)), flow(mk(v4b, v4a, 443, 1000)), flow(mk(v4a, v4b, 1001, 443))
	if a != b || a == c || a == 0 {
		t.Errorf("flows %d %d %d: want the first two equal, the third different", a, b, c)
	}
}

func TestUnsupportedLinkType(t *testing.T) {
	_, err := features.New(features.Options{}).Transform([]byte{1, 2, 3}, 239)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("239 (NFLOG)")) {
		t.Errorf("error %v, want one naming link type 239 (NFLOG)", err)
	}
}

// captureFrames reads up to n frames of each capture matching pattern.
func captureFrames(t testing.TB, pattern string, n int) (frames [][]byte, lts []layers.LinkType) {
	files, _ := filepath.Glob(pattern)
	for _, p := range files {
		r, err := capture.Open(p)
		if err != nil {
			continue
		}
		var rec capture.Record
		for i := 0; i < n && r.Next(&rec) == nil; i++ {
			frames = append(frames, bytes.Clone(rec.Data))
			lts = append(lts, rec.LinkType)
		}
		r.Close()
	}
	return frames, lts
}

// TestTransformDoesNotAllocate: the hot path reuses its buffers.
func TestTransformDoesNotAllocate(t *testing.T) {
	frames, lts := captureFrames(t, filepath.Join(testenv.Shared(t, "pcaps/iscx"), "*.pcap"), 50)
	for _, layout := range []features.Layout{features.LayoutReference, features.LayoutPaper} {
		tr := features.New(features.Options{Layout: layout})
		allocs := testing.AllocsPerRun(3, func() {
			for i, f := range frames {
				tr.Transform(f, lts[i])
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.0f allocations per %d packets, want 0", layout, allocs, len(frames))
		}
	}
}

// FuzzTransform runs both layouts over arbitrary frames of every link type
// the transform reads, seeded with packets of the robustness corpus.
func FuzzTransform(f *testing.F) {
	frames, lts := captureFrames(f, filepath.Join(testenv.Shared(f, "pcaps/robustness"), "*", "*"), 8)
	for i := range frames {
		f.Add(uint16(lts[i]), frames[i])
	}
	trs := []*features.Transformer{
		features.New(features.Options{Layout: features.LayoutReference}),
		features.New(features.Options{Layout: features.LayoutPaper, MaskPorts: true}),
		features.New(features.Options{Layout: features.LayoutReference, SignalLength: 64}),
	}
	f.Fuzz(func(t *testing.T, lt uint16, frame []byte) {
		for _, tr := range trs {
			res, err := tr.Transform(frame, layers.LinkType(lt))
			if err != nil {
				if features.Supported(layers.LinkType(lt)) {
					t.Fatalf("link type %d is supported but: %v", lt, err)
				}
				return
			}
			if n := len(res.Feature); n > tr.Options().SignalLength || n > len(frame)+12 {
				t.Fatalf("%d feature bytes from a %d-byte frame", n, len(frame))
			}
			if (res.Verdict == features.Kept) != (res.Feature != nil) {
				t.Fatalf("verdict %s with %d feature bytes", res.Verdict, len(res.Feature))
			}
		}
	})
}
