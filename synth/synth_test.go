//go:debug cryptocustomrand=1

package synth

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/deeppacket/deeppacket/labels"
)

// classes are the reference's traffic classes.
var classes = func() []string {
	var names []string
	for id := range labels.NumTraffic {
		names = append(names, labels.TrafficName(id))
	}
	return names
}()

var (
	setOnce  sync.Once
	setDir   string
	setStats map[string]Stats
	setErr   error
)

// testSet writes the default set (seed 1, scale 1) once for all tests.
func testSet(t *testing.T) (string, map[string]Stats) {
	t.Helper()
	setOnce.Do(func() {
		setDir, setErr = os.MkdirTemp("", "synth-test-")
		if setErr != nil {
			return
		}
		var stats []Stats
		stats, setErr = Generate(setDir, Options{Seed: 1, Scale: 1}, nil)
		setStats = map[string]Stats{}
		for _, s := range stats {
			setStats[s.Name] = s
		}
	})
	if setErr != nil {
		t.Fatal(setErr)
	}
	return setDir, setStats
}

func TestMain(m *testing.M) {
	code := m.Run()
	if setDir != "" {
		os.RemoveAll(setDir)
	}
	os.Exit(code)
}

func TestCatalogueCoversEveryClass(t *testing.T) {
	cs := Captures()
	byClass := map[string][]string{}
	apps := map[string]bool{}
	for _, c := range cs {
		stem, _, _ := strings.Cut(strings.ToLower(c.Name), ".")
		if !strings.HasSuffix(c.Name, ".pcap") || stem != c.Name[:len(c.Name)-len(".pcap")] {
			t.Errorf("%s: want a lower-case name.pcap whose stem the label maps look up", c.Name)
		}
		if c.VPN != strings.HasPrefix(c.Name, "vpn_") || c.VPN != strings.HasPrefix(c.Class, "VPN: ") {
			t.Errorf("%s: VPN %v does not match its name and class %q", c.Name, c.VPN, c.Class)
		}
		// The built-in label maps must give the capture the class and
		// application it was made as.
		l := labels.Builtin().Lookup(c.Name)
		if l.Traffic == nil || labels.TrafficName(int(*l.Traffic)) != c.Class {
			t.Errorf("%s: label maps give traffic %v, want %q", c.Name, l.Traffic, c.Class)
		}
		if !c.VPN && (l.App == nil || labels.AppName(int(*l.App)) != c.App) {
			t.Errorf("%s: label maps give application %v, want %q", c.Name, l.App, c.App)
		}
		byClass[c.Class] = append(byClass[c.Class], c.Name)
		apps[c.App] = true
	}
	for _, class := range classes {
		if len(byClass[class]) == 0 {
			t.Errorf("no capture of class %q", class)
		}
	}
	if len(byClass) != len(classes) {
		t.Errorf("classes %v, want exactly %v", byClass, classes)
	}
	if len(apps) < 10 {
		t.Errorf("%d applications, want at least 10", len(apps))
	}
}

// decoded is a capture read back with gopacket.
type decoded struct {
	ts                time.Time
	ip                *layers.IPv4
	tcp               *layers.TCP
	udp               *layers.UDP
	payload           []byte
	fromClient        bool
	clientIP          string
	srcPort, dstPort  uint16
	flowKey, ipSource string
}

func readCapture(t *testing.T, path string) []decoded {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("%s: link type %v", path, r.LinkType())
	}
	var out []decoded
	for i := 0; ; i++ {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, layers.LinkTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("%s packet %d: %v", path, i, el.Error())
		}
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if eth == nil || ip == nil {
			t.Fatalf("%s packet %d: not Ethernet and IPv4: %v", path, i, p)
		}
		d := decoded{ts: ci.Timestamp, ip: ip, fromClient: bytes.Equal(eth.SrcMAC, clientMAC)}
		if !checksumOK(ip.Contents) {
			t.Errorf("%s packet %d: bad IPv4 header checksum", path, i)
		}
		segment := data[14+len(ip.Contents) : 14+int(ip.Length)]
		if !checksumOK(append(pseudoHeader(ip, len(segment)), segment...)) {
			t.Errorf("%s packet %d: bad %v checksum", path, i, ip.Protocol)
		}
		switch l4 := p.TransportLayer().(type) {
		case *layers.TCP:
			d.tcp, d.payload, d.srcPort, d.dstPort = l4, l4.Payload, uint16(l4.SrcPort), uint16(l4.DstPort)
		case *layers.UDP:
			d.udp, d.payload, d.srcPort, d.dstPort = l4, l4.Payload, uint16(l4.SrcPort), uint16(l4.DstPort)
		default:
			t.Fatalf("%s packet %d: no TCP or UDP", path, i)
		}
		cli, srv := ip.SrcIP.String(), ip.DstIP.String()
		cport, sport := d.srcPort, d.dstPort
		if !d.fromClient {
			cli, srv, cport, sport = srv, cli, sport, cport
		}
		d.clientIP = cli
		d.flowKey = fmt.Sprintf("%v %s:%d-%s:%d", ip.Protocol, cli, cport, srv, sport)
		out = append(out, d)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no packets", path)
	}
	return out
}

// checksumOK reports whether the ones' complement sum of b is all ones, as
// it is over a header or pseudo-header and segment with a correct checksum.
func checksumOK(b []byte) bool {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func pseudoHeader(ip *layers.IPv4, n int) []byte {
	b := append(append([]byte(nil), ip.SrcIP.To4()...), ip.DstIP.To4()...)
	return append(b, 0, byte(ip.Protocol), byte(n>>8), byte(n))
}

func flows(pkts []decoded) map[string][]decoded {
	m := map[string][]decoded{}
	for _, p := range pkts {
		m[p.flowKey] = append(m[p.flowKey], p)
	}
	return m
}

// TestReadBackWithGopacket: every frame decodes, checksums hold, time never
// goes back, the kept count matches, and every TCP connection opens with a
// handshake, numbers its bytes without gaps, acknowledges only what was
// sent, and closes with FINs both ways.
func TestReadBackWithGopacket(t *testing.T) {
	dir, stats := testSet(t)
	for _, c := range Captures() {
		t.Run(c.Name, func(t *testing.T) {
			pkts := readCapture(t, filepath.Join(dir, c.Name))
			kept := 0
			for i, p := range pkts {
				if i > 0 && p.ts.Before(pkts[i-1].ts) {
					t.Fatalf("packet %d at %v is before packet %d at %v", i, p.ts, i-1, pkts[i-1].ts)
				}
				if len(p.payload) > 0 {
					kept++
				}
			}
			if st := stats[c.Name]; st.Packets != len(pkts) || st.Kept != kept {
				t.Errorf("stats %+v, read %d packets, %d with payload", st, len(pkts), kept)
			}
			for key, f := range flows(pkts) {
				if f[0].tcp != nil {
					checkTCPFlow(t, key, f)
				}
			}
		})
	}
}

func checkTCPFlow(t *testing.T, key string, f []decoded) {
	t.Helper()
	if len(f) < 3 || !f[0].tcp.SYN || f[0].tcp.ACK || !f[1].tcp.SYN || !f[1].tcp.ACK || f[1].fromClient {
		t.Fatalf("%s: does not open with SYN, SYN-ACK", key)
	}
	next := map[bool]uint32{true: f[0].tcp.Seq, false: f[1].tcp.Seq}
	fins := map[bool]bool{}
	for i, p := range f {
		tcp := p.tcp
		if tcp.Seq != next[p.fromClient] {
			t.Fatalf("%s packet %d: seq %d, want %d", key, i, tcp.Seq, next[p.fromClient])
		}
		next[p.fromClient] += uint32(len(p.payload))
		if tcp.SYN || tcp.FIN {
			next[p.fromClient]++
		}
		if tcp.ACK && int32(tcp.Ack-next[!p.fromClient]) > 0 {
			t.Fatalf("%s packet %d: acknowledges %d, beyond the %d sent", key, i, tcp.Ack, next[!p.fromClient])
		}
		if tcp.FIN {
			fins[p.fromClient] = true
		}
		if len(p.payload) > tcpMSS {
			t.Fatalf("%s packet %d: %d bytes, over the MSS", key, i, len(p.payload))
		}
	}
	if !fins[true] || !fins[false] {
		t.Errorf("%s: not closed with a FIN from each side", key)
	}
	if last := f[len(f)-1].tcp; last.FIN || !last.ACK || len(f[len(f)-1].payload) > 0 {
		t.Errorf("%s: does not end with the ACK of the last FIN", key)
	}
}

// TestClassBalance: each class has a few hundred packets the reference keeps.
func TestClassBalance(t *testing.T) {
	_, stats := testSet(t)
	perClass := map[string]int{}
	for _, c := range Captures() {
		perClass[c.Class] += stats[c.Name].Kept
	}
	for _, class := range classes {
		if n := perClass[class]; n < PacketsPerClass*3/4 || n > PacketsPerClass*3/2 {
			t.Errorf("%s: %d kept packets, want about %d", class, n, PacketsPerClass)
		}
	}
}

// TestEveryClassHasManyFlows: each traffic class spreads over at least
// MinFlowsPerClass flows with kept packets, none of them a large part of
// the class, so that a split keeping flows whole puts part of every class
// on each side.
func TestEveryClassHasManyFlows(t *testing.T) {
	dir, _ := testSet(t)
	perClass := map[string]map[string]int{} // kept packets of each flow
	for _, c := range Captures() {
		if perClass[c.Class] == nil {
			perClass[c.Class] = map[string]int{}
		}
		for key, f := range flows(readCapture(t, filepath.Join(dir, c.Name))) {
			for _, p := range f {
				if len(p.payload) > 0 {
					perClass[c.Class][c.Name+" "+key]++
				}
			}
		}
	}
	for _, class := range classes {
		fs := perClass[class]
		total, largest := 0, 0
		for _, n := range fs {
			total += n
			largest = max(largest, n)
		}
		if len(fs) < MinFlowsPerClass {
			t.Errorf("%s: %d flows, want at least %d", class, len(fs), MinFlowsPerClass)
		}
		// A split cuts at the flow boundary nearest to 20% of the rows: the
		// first flow in its order ends below 40% when no flow is as large.
		if largest > total/4 {
			t.Errorf("%s: one flow has %d of the class's %d kept packets, want at most a quarter", class, largest, total)
		}
	}
}

func payloadBytes(pkts []decoded, fromClient bool) int {
	n := 0
	for _, p := range pkts {
		if p.fromClient == fromClient {
			n += len(p.payload)
		}
	}
	return n
}

// TestApplicationShapes checks the behaviour each class is known by.
func TestApplicationShapes(t *testing.T) {
	dir, _ := testSet(t)
	for _, c := range Captures() {
		t.Run(c.Name, func(t *testing.T) {
			pkts := readCapture(t, filepath.Join(dir, c.Name))
			if c.VPN {
				checkTunnel(t, pkts)
			}
			up, down := payloadBytes(pkts, true), payloadBytes(pkts, false)
			switch strings.TrimPrefix(c.Class, "VPN: ") {
			case "Streaming":
				if down < 9*up {
					t.Errorf("streaming: %d bytes down, %d up; want bulk from the server", down, up)
				}
			case "File Transfer":
				if max(up, down) < 9*min(up, down) {
					t.Errorf("file transfer: %d bytes up, %d down; want bulk one way", up, down)
				}
			case "Chat":
				checkChat(t, pkts)
			case "Voip":
				checkVoIP(t, pkts, c.VPN)
			}
		})
	}
}

func checkChat(t *testing.T, pkts []decoded) {
	var sizes []int
	dirs := map[bool]int{}
	longPauses := 0
	var last time.Time
	for _, p := range pkts {
		if len(p.payload) == 0 {
			continue
		}
		sizes = append(sizes, len(p.payload))
		dirs[p.fromClient]++
		if !last.IsZero() && p.ts.Sub(last) > time.Second {
			longPauses++
		}
		last = p.ts
	}
	slices.Sort(sizes)
	if median := sizes[len(sizes)/2]; median > 400 {
		t.Errorf("chat: median payload %d bytes, want small messages", median)
	}
	if dirs[true] < len(sizes)/5 || dirs[false] < len(sizes)/5 {
		t.Errorf("chat: %d messages up, %d down; want both ways", dirs[true], dirs[false])
	}
	if longPauses < len(sizes)/10 {
		t.Errorf("chat: %d pauses over a second among %d packets", longPauses, len(sizes))
	}
}

// checkVoIP: each direction of each call sends at 50 packets a second.
func checkVoIP(t *testing.T, pkts []decoded, vpn bool) {
	for key, f := range flows(pkts) {
		for _, fromClient := range []bool{true, false} {
			var gaps []time.Duration
			var last time.Time
			for _, p := range f {
				if p.fromClient != fromClient || p.udp == nil || len(p.payload) > 400 {
					continue
				}
				if !vpn && p.payload[0] != 0x80 { // STUN before the media
					continue
				}
				if vpn && p.payload[0] != wgTransport {
					continue
				}
				if !last.IsZero() {
					gaps = append(gaps, p.ts.Sub(last))
				}
				last = p.ts
			}
			// A call at scale 1 is short: a few hundred milliseconds.
			if len(gaps) < 5 {
				t.Fatalf("%s: %d media packets from client=%v", key, len(gaps)+1, fromClient)
			}
			steady := 0
			for _, g := range gaps {
				if g > 17*time.Millisecond && g < 23*time.Millisecond {
					steady++
				}
			}
			if steady < len(gaps)*9/10 {
				t.Errorf("%s client=%v: %d of %d gaps within 20±3 ms", key, fromClient, steady, len(gaps))
			}
		}
	}
}

// checkTunnel: a VPN capture is WireGuard-like UDP tunnel sessions only,
// from several client ports as the client reconnects: each a handshake,
// then transport messages whose counters count up by one.
func checkTunnel(t *testing.T, pkts []decoded) {
	sessions := flows(pkts)
	if len(sessions) < 2 {
		t.Errorf("VPN capture has %d tunnel sessions, want the client to reconnect", len(sessions))
	}
	for key, f := range sessions {
		if len(f) < 3 {
			t.Fatalf("%s: %d packets, want a handshake and traffic", key, len(f))
		}
		if p := f[0]; p.udp == nil || p.dstPort != wgPort || len(p.payload) != wgInitiationSize || p.payload[0] != wgInitiation {
			t.Fatalf("%s: first packet is not a handshake initiation to port %d", key, wgPort)
		}
		if p := f[1]; p.srcPort != wgPort || len(p.payload) != wgResponseSize || p.payload[0] != wgResponse {
			t.Fatalf("%s: second packet is not a handshake response", key)
		}
		counter := map[bool]uint64{}
		for i, p := range f[2:] {
			if p.payload[0] != wgTransport || (len(p.payload)-32)%16 != 0 {
				t.Fatalf("%s packet %d: not a transport message", key, i+2)
			}
			if got := binary.LittleEndian.Uint64(p.payload[8:]); got != counter[p.fromClient] {
				t.Fatalf("%s packet %d: counter %d, want %d", key, i+2, got, counter[p.fromClient])
			}
			counter[p.fromClient]++
		}
	}
}

// TestTorrentTalksToManyPeers looks inside the tunnel: the BitTorrent flows
// go to many peers at once.
func TestTorrentTalksToManyPeers(t *testing.T) {
	var c Capture
	for _, o := range Captures() {
		if o.Name == "vpn_bittorrent.pcap" {
			c = o
		}
	}
	c.VPN = false // the same traffic, without the tunnel
	var buf bytes.Buffer
	if _, err := c.Write(&buf, Options{Seed: 1, Scale: 1}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "torrent.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	pkts := readCapture(t, path)
	fs := flows(pkts)
	peers := map[string]bool{}
	overlapping := 0
	type span struct{ from, to time.Time }
	var spans []span
	for _, f := range fs {
		peers[f[0].ip.DstIP.String()] = true
		if string(f[3].payload[1:20]) != "BitTorrent protocol" {
			t.Errorf("first payload %q is not a BitTorrent handshake", f[3].payload[:20])
		}
		spans = append(spans, span{f[0].ts, f[len(f)-1].ts})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].from.Before(spans[j].from) })
	for i := 1; i < len(spans); i++ {
		if spans[i].from.Before(spans[i-1].to) {
			overlapping++
		}
	}
	if len(peers) < 5 || overlapping < 2 {
		t.Errorf("%d peers, %d connections overlapping another; want many peers at once", len(peers), overlapping)
	}
}

// TestDeterministic: the same seed gives the same bytes, TLS handshakes
// and keys included; another seed gives other bytes.
func TestDeterministic(t *testing.T) {
	write := func(c Capture, seed int64) []byte {
		var buf bytes.Buffer
		if _, err := c.Write(&buf, Options{Seed: seed, Scale: 1}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	for _, c := range Captures() {
		switch c.Name {
		case "netflix1.pcap", "sftp1.pcap", "vpn_youtube_a.pcap", "skype_audio1a.pcap", "vpn_email2a.pcap":
			a, b, other := write(c, 7), write(c, 7), write(c, 8)
			if !bytes.Equal(a, b) {
				t.Errorf("%s: two runs with seed 7 differ", c.Name)
			}
			if bytes.Equal(a, other) {
				t.Errorf("%s: seeds 7 and 8 give the same bytes", c.Name)
			}
		}
	}
}

func TestScaleGrowsOutput(t *testing.T) {
	c := Captures()[0]
	var small, big bytes.Buffer
	s1, err := c.Write(&small, Options{Seed: 1, Scale: 1})
	if err != nil {
		t.Fatal(err)
	}
	s4, err := c.Write(&big, Options{Seed: 1, Scale: 4})
	if err != nil {
		t.Fatal(err)
	}
	if s4.Kept < 3*s1.Kept || s4.Bytes < 3*s1.Bytes {
		t.Errorf("scale 4 gives %+v, scale 1 %+v; want about four times as much", s4, s1)
	}
	if _, err := c.Write(&small, Options{Seed: 1, Scale: 0}); err == nil {
		t.Error("scale 0: no error")
	}
}

// BenchmarkGenerate measures generation speed in bytes of pcap per second.
func BenchmarkGenerate(b *testing.B) {
	dir := b.TempDir()
	for b.Loop() {
		stats, err := Generate(dir, Options{Seed: 1, Scale: 10}, nil)
		if err != nil {
			b.Fatal(err)
		}
		var n int64
		for _, s := range stats {
			n += s.Bytes
		}
		b.SetBytes(n)
	}
}
