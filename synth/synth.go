// Package synth writes synthetic, labelled packet captures for trying the
// pipeline without the 28 GB ISCX VPN-nonVPN data set. Each capture carries
// one application's traffic under a file name the reference's label maps
// know (netflix1.pcap, skype_chat1a.pcap, vpn_bittorrent.pcap, ...), and the
// set covers every traffic class.
//
// The bytes are real protocols, not noise: TCP flows carry TLS 1.2 or 1.3
// sessions run between an in-process crypto/tls client and server, with the
// version, cipher suite and record sizes each service used, or SSH sessions
// (sftp, scp) with a real key exchange and cipher; UDP flows carry SRTP
// calls after STUN checks, or QUIC-like packets; BitTorrent speaks its peer
// wire protocol; VPN captures wrap the same traffic in a WireGuard-like
// encrypted UDP tunnel, reconnecting now and then. Each application behaves
// as its class does: streaming is bulk from server to client, chat is short
// messages both ways with pauses, file transfer is bulk one way, VoIP is
// small packets at a fixed rate, torrent talks to many peers. Frames are Ethernet with correct
// IPv4, TCP and UDP headers and checksums, TCP handshakes, sequence numbers
// and teardowns, and timestamps paced by round trips and link rates.
//
// Output is a pure function of the seed: every random choice, TLS's Rand and
// Time, and all keys come from streams derived from it. Go 1.26 ignores the
// random source given to crypto key generation unless the program runs with
// GODEBUG=cryptocustomrand=1 (the deeppacket command sets it with a
// //go:debug line); without it the TLS bytes differ between runs and Write
// logs a warning.
//
// Imports: internal/atomicfile; nothing of the pipeline, whose input
// its captures are.
package synth

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/deeppacket/deeppacket/internal/atomicfile"
)

// PacketsPerClass is how many packets the reference keeps (those with a
// transport payload) that each traffic class gets at scale 1, shared among
// the class's captures.
const PacketsPerClass = 400

// Options control a run.
type Options struct {
	Seed  int64
	Scale float64 // multiplies the packets of every capture; 1 is a small set, 1000 many GB
}

// Capture is one file of the set.
type Capture struct {
	Name  string // file name; its stem is a prefix of the reference's label maps
	Class string // traffic class, as the reference names it
	App   string // the application that made it
	VPN   bool   // the traffic goes through a VPN tunnel
	app   app
}

// Stats describes a written capture.
type Stats struct {
	Name    string
	Packets int   // frames written
	Kept    int   // frames with a transport payload, which the reference keeps
	Bytes   int64 // file size
}

var (
	aol       = []string{"64.12.0.0/16", "205.188.0.0/16"}
	icq       = []string{"178.237.0.0/16"}
	microsoft = []string{"13.107.0.0/16", "40.126.0.0/16", "52.114.0.0/16"}
	facebook  = []string{"157.240.0.0/16", "31.13.0.0/16"}
	google    = []string{"172.217.0.0/16", "216.58.0.0/16", "74.125.0.0/16"}
	netflix   = []string{"198.38.0.0/16", "45.57.0.0/16"}
	fastly    = []string{"151.101.0.0/16"}
	spotify   = []string{"35.186.0.0/16", "104.199.0.0/16"}
	campus    = []string{"131.202.0.0/16"}
	voipProv  = []string{"77.72.0.0/16"}
	peers     = []string{"86.12.0.0/16", "95.24.0.0/16", "112.65.0.0/16", "187.34.0.0/16", "73.158.0.0/16", "2.86.0.0/16", "5.18.0.0/16"}
)

// The TLS each service spoke around 2016, when the ISCX captures were made:
// TLS 1.2 with the server's preferred suite (the old OSCAR and campus
// servers CBC, Google ChaCha20 in records that fit a segment, the CDNs
// AES-GCM), Facebook's early TLS 1.3, and the ALPN its client offers.
var (
	aolTLS       = tlsProfile{version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	campusTLS    = tlsProfile{version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
	microsoftTLS = tlsProfile{version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, recordSize: 4096}
	gmailTLS     = tlsProfile{version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, recordSize: 1400}
	hangoutsTLS  = tlsProfile{version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, alpn: []string{"h2", "http/1.1"}, recordSize: 1400}
	facebookTLS  = tlsProfile{version: tls.VersionTLS13, alpn: []string{"h2", "http/1.1"}}
	netflixTLS   = tlsProfile{version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, alpn: []string{"http/1.1"}}
	fastlyTLS    = tlsProfile{version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, alpn: []string{"h2", "http/1.1"}}
	spotifyTLS   = tlsProfile{version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, alpn: []string{"http/1.1"}}
)

func catalogue() []Capture {
	sec := time.Second
	chat := func(name string, port uint16, nets []string, prof tlsProfile, meanSize int) app {
		return tcpApp(endpoint{name, port, nets, prof}, 90*sec, 60, 2.0, "tls", true, chatScript(4*sec, meanSize, 1200))
	}
	imap := tcpApp(endpoint{"imap.gmail.com", 993, google, gmailTLS}, 40*sec, 80, 1.7, "tls", true, emailScript(false))
	smtp := tcpApp(endpoint{"smtp.gmail.com", 465, google, gmailTLS}, 40*sec, 80, 1.7, "tls", true, emailScript(true))
	email := app{spacing: 40 * sec, flowSize: 80, wire: imap.wire, overhead: imap.overhead, newFlow: func(e *env, rng *source, at time.Time, budget int) (flow, error) {
		if rng.IntN(3) == 0 {
			return smtp.newFlow(e, rng, at, budget)
		}
		return imap.newFlow(e, rng, at, budget)
	}}
	sftpUp := tcpApp(endpoint{"sftp", 22, campus, tlsProfile{}}, 20*sec, 150, 1.55, "sftp", true, bulkScript(true, 32768+13))
	scpDown := tcpApp(endpoint{"scp", 22, campus, tlsProfile{}}, 20*sec, 150, 1.55, "scp", true, bulkScript(false, 65536))
	ftpsData := tcpApp(endpoint{"ftp.unb.ca", 0, campus, campusTLS}, 20*sec, 150, 1.55, "tls", false, bulkScript(false, 65536))
	ftpsControl := tcpApp(endpoint{"ftp.unb.ca", 990, campus, campusTLS}, 20*sec, 10, 2.1, "tls", true, chatScript(200*time.Millisecond, 40, 200))
	// An FTPS session is a control connection and, a moment later, the
	// data connection it opened.
	ftps := app{spacing: 15 * sec, flowSize: 100, wire: ftpsData.wire, overhead: ftpsControl.overhead + ftpsData.overhead, newFlow: func(e *env, rng *source, at time.Time, budget int) (flow, error) {
		control, err := ftpsControl.newFlow(e, rng, at, max(1, budget/8))
		if err != nil {
			return nil, err
		}
		dataAt := at.Add(time.Duration(rng.between(300, 1500)) * time.Millisecond)
		data, err := ftpsData.newFlow(e, newSource(e.seed, e.name, "ftps data", rng.IntN(1<<30)), dataAt, max(1, budget-budget/8))
		if err != nil {
			return nil, err
		}
		return newMux(fixedFlows([]time.Time{at, dataAt}, []flow{control, data}))
	}}
	skypeFile := tcpApp(endpoint{"api.asm.skype.com", 443, microsoft, microsoftTLS}, 20*sec, 150, 1.55, "tls", true, bulkScript(true, 16384))
	netflixApp := tcpApp(endpoint{"ipv4-c001-yyz001-ix.1.oca.nflxvideo.net", 443, netflix, netflixTLS}, 30*sec, 200, 1.5, "tls", true, streamScript(60_000, 600_000, 2*sec))
	vimeoApp := tcpApp(endpoint{"vod-progressive.akamaized.net", 443, fastly, fastlyTLS}, 30*sec, 200, 1.5, "tls", true, streamScript(40_000, 400_000, 2*sec))
	spotifyApp := tcpApp(endpoint{"audio-fa.scdn.co", 443, spotify, spotifyTLS}, 30*sec, 120, 1.5, "tls", true, streamScript(20_000, 160_000, 3*sec))
	youtubeApp := quicApp(endpoint{"r4---sn-ni5f-t8gl.googlevideo.com", 443, google, tlsProfile{}}, 30*sec, 200, streamScript(50_000, 500_000, 2*sec))
	torrent := tcpApp(endpoint{"peer", 0, peers, tlsProfile{}}, 300*time.Millisecond, 60, 1.9, "plain", true, torrentScript(newSource(0, "infohash").bytes(20)))
	skypeAudio := voipApp(endpoint{"skype relay", 0, microsoft, tlsProfile{}}, 60*sec, 800, voiceCodec{payloadType: 96, ptime: 20 * time.Millisecond, minSize: 50, maxSize: 130, clockRate: 16000})
	fbAudio := voipApp(endpoint{"facebook", 3478, facebook, tlsProfile{}}, 60*sec, 800, voiceCodec{payloadType: 111, ptime: 20 * time.Millisecond, minSize: 40, maxSize: 140, clockRate: 48000})
	hangoutsAudio := voipApp(endpoint{"hangouts", 19305, google, tlsProfile{}}, 60*sec, 800, voiceCodec{payloadType: 111, ptime: 20 * time.Millisecond, minSize: 60, maxSize: 160, clockRate: 48000})
	voipbuster := voipApp(endpoint{"voipbuster", 0, voipProv, tlsProfile{}}, 60*sec, 800, voiceCodec{payloadType: 0, ptime: 20 * time.Millisecond, minSize: 160, maxSize: 160, clockRate: 8000})

	return []Capture{
		{Name: "aimchat1.pcap", Class: "Chat", App: "AIM Chat", app: chat("login.oscar.aol.com", 5190, aol, aolTLS, 60)},
		{Name: "icq_chat_3a.pcap", Class: "Chat", App: "ICQ", app: chat("login.icq.com", 5190, icq, aolTLS, 60)},
		{Name: "skype_chat1a.pcap", Class: "Chat", App: "Skype", app: chat("client-s.gateway.messenger.live.com", 443, microsoft, microsoftTLS, 120)},
		{Name: "facebookchat1.pcap", Class: "Chat", App: "Facebook", app: chat("edge-chat.facebook.com", 443, facebook, facebookTLS, 150)},
		{Name: "gmailchat1.pcap", Class: "Chat", App: "Gmail", app: chat("mtalk.google.com", 5228, google, gmailTLS, 80)},
		{Name: "hangouts_chat_4a.pcap", Class: "Chat", App: "Hangouts", app: chat("hangouts.google.com", 443, google, hangoutsTLS, 100)},
		{Name: "email1a.pcap", Class: "Email", App: "Email", app: email},
		{Name: "ftps_down_1a.pcap", Class: "File Transfer", App: "FTPS", app: ftps},
		{Name: "scpdown1.pcap", Class: "File Transfer", App: "SCP", app: scpDown},
		{Name: "sftp1.pcap", Class: "File Transfer", App: "SFTP", app: sftpUp},
		{Name: "skype_file1.pcap", Class: "File Transfer", App: "Skype", app: skypeFile},
		{Name: "netflix1.pcap", Class: "Streaming", App: "Netflix", app: netflixApp},
		{Name: "spotify1.pcap", Class: "Streaming", App: "Spotify", app: spotifyApp},
		{Name: "vimeo1.pcap", Class: "Streaming", App: "Vimeo", app: vimeoApp},
		{Name: "youtube1.pcap", Class: "Streaming", App: "Youtube", app: youtubeApp},
		{Name: "facebook_audio1a.pcap", Class: "Voip", App: "Facebook", app: fbAudio},
		{Name: "hangouts_audio1a.pcap", Class: "Voip", App: "Hangouts", app: hangoutsAudio},
		{Name: "skype_audio1a.pcap", Class: "Voip", App: "Skype", app: skypeAudio},
		{Name: "voipbuster1b.pcap", Class: "Voip", App: "Voipbuster", app: voipbuster},
		{Name: "vpn_aim_chat1a.pcap", Class: "VPN: Chat", App: "AIM Chat", VPN: true, app: chat("login.oscar.aol.com", 5190, aol, aolTLS, 60)},
		{Name: "vpn_hangouts_chat1a.pcap", Class: "VPN: Chat", App: "Hangouts", VPN: true, app: chat("hangouts.google.com", 443, google, hangoutsTLS, 100)},
		{Name: "vpn_icq_chat1a.pcap", Class: "VPN: Chat", App: "ICQ", VPN: true, app: chat("login.icq.com", 5190, icq, aolTLS, 60)},
		{Name: "vpn_skype_chat1a.pcap", Class: "VPN: Chat", App: "Skype", VPN: true, app: chat("client-s.gateway.messenger.live.com", 443, microsoft, microsoftTLS, 120)},
		{Name: "vpn_email2a.pcap", Class: "VPN: Email", App: "Email", VPN: true, app: email},
		{Name: "vpn_ftps_a.pcap", Class: "VPN: File Transfer", App: "FTPS", VPN: true, app: ftps},
		{Name: "vpn_sftp_a.pcap", Class: "VPN: File Transfer", App: "SFTP", VPN: true, app: sftpUp},
		{Name: "vpn_skype_files1a.pcap", Class: "VPN: File Transfer", App: "Skype", VPN: true, app: skypeFile},
		{Name: "vpn_vimeo_a.pcap", Class: "VPN: Streaming", App: "Vimeo", VPN: true, app: vimeoApp},
		{Name: "vpn_youtube_a.pcap", Class: "VPN: Streaming", App: "Youtube", VPN: true, app: youtubeApp},
		{Name: "vpn_bittorrent.pcap", Class: "VPN: Torrent", App: "BitTorrent", VPN: true, app: torrent},
		{Name: "vpn_facebook_audio2.pcap", Class: "VPN: Voip", App: "Facebook", VPN: true, app: fbAudio},
		{Name: "vpn_skype_audio1.pcap", Class: "VPN: Voip", App: "Skype", VPN: true, app: skypeAudio},
	}
}

// Captures lists the set Generate writes, in file-name order.
func Captures() []Capture {
	cs := catalogue()
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	return cs
}

// MinFlowsPerClass is the fewest flows (TCP connections, UDP conversations,
// VPN tunnel sessions: distinct 5-tuples) each traffic class has across its
// captures, at any scale. A split that keeps flows whole (split --split-by
// flow) cuts each class at the flow nearest to its test share, so every
// class needs many flows of similar size to land on both sides.
const MinFlowsPerClass = 16

// sessionFlows is about how many of an application's flows' packets one
// VPN tunnel session carries before the client reconnects, when the
// capture is large enough to need no more sessions than MinFlowsPerClass
// asks.
const sessionFlows = 8

// vpnRate is the most bytes per second a VPN server forwards to a client.
const vpnRate = 2_000_000

// classCaptures counts the captures of class.
func classCaptures(class string) int {
	n := 0
	for _, o := range catalogue() {
		if o.Class == class {
			n++
		}
	}
	return n
}

// target is how many kept packets capture c aims at under opt (in a VPN
// capture every packet).
func (c Capture) target(opt Options) int {
	return max(10, int(math.Ceil(PacketsPerClass*opt.Scale/float64(classCaptures(c.Class)))))
}

// flows is how many flows (for a VPN capture, tunnel sessions) capture c
// shares target among: as many as the application's flow size needs, and
// at least the capture's part of MinFlowsPerClass if target is large
// enough.
func (c Capture) flows(target int) int {
	size := c.app.flowSize
	if c.VPN {
		size = int(sessionFlows * c.app.packets(c.app.flowSize))
	}
	captures := classCaptures(c.Class)
	n := max((target+size-1)/size, (MinFlowsPerClass+captures-1)/captures)
	return max(1, min(n, target/minFlowPackets))
}

// minFlowPackets is the fewest kept packets a flow or tunnel session aims
// at, which only a capture smaller than scale 1's makes it go down to:
// fewer would be little more than a handshake.
const minFlowPackets = 20

// shares cuts total into n positive parts of similar, jittered sizes (fewer
// when total < n).
func shares(rng *source, total, n int) []int {
	n = max(1, min(n, total))
	w := make([]float64, n)
	var sum float64
	for i := range w {
		w[i] = rng.jitter(1, 0.3)
		sum += w[i]
	}
	out := make([]int, n)
	var acc float64
	handed := 0
	for i := range w {
		acc += w[i]
		// Each part gets at least 1; rounding the running total keeps the sum exact.
		next := max(handed+1, min(total-(n-1-i), int(math.Round(acc/sum*float64(total)))))
		out[i] = next - handed
		handed = next
	}
	return out
}

// starter starts the application's flows, n of them sharing target kept
// packets, at jittered intervals from at.
func (c Capture) starter(e *env, at time.Time, target, n int) flowStarter {
	budgets := shares(newSource(e.seed, e.name, "shares"), target, n)
	spacing := newSource(e.seed, e.name, "spacing")
	i := 0
	return func() (time.Time, flow, bool, error) {
		if i == len(budgets) {
			return time.Time{}, nil, false, nil
		}
		f, err := c.app.newFlow(e, newSource(e.seed, e.name, "flow", i), at, budgets[i])
		if err != nil {
			return time.Time{}, nil, false, fmt.Errorf("%s: flow %d: %w", c.Name, i+1, err)
		}
		i++
		begun := at
		at = at.Add(time.Duration(spacing.jitter(float64(c.app.spacing), 0.6)))
		return begun, f, true, nil
	}
}

// packets is the capture's traffic as one time-ordered flow.
func (c Capture) packets(opt Options) (flow, error) {
	rng := newSource(opt.Seed, c.Name, "capture")
	start := time.Date(2016, 3, 1, 8, 0, 0, 0, time.UTC).
		Add(time.Duration(rng.IntN(30*24*3600)) * time.Second).
		Add(time.Duration(rng.IntN(1_000_000)) * time.Microsecond)
	lan := netip.AddrFrom4([4]byte{192, 168, 1, byte(rng.between(10, 250))})
	target := c.target(opt)
	if !c.VPN {
		e := &env{seed: opt.Seed, name: c.Name, client: lan, ids: map[string]*tlsIdentity{}}
		return newMux(c.starter(e, start, target, c.flows(target)))
	}
	// The tunnel carries the application's flows, which send every one of
	// the target's packets but the sessions' handshakes; the client
	// reconnects often enough to make the capture's share of
	// MinFlowsPerClass sessions.
	tunnel := netip.AddrFrom4([4]byte{10, 8, 0, byte(rng.between(2, 250))})
	e := &env{seed: opt.Seed, name: c.Name, client: tunnel, ids: map[string]*tlsIdentity{}, maxRate: vpnRate}
	// The last session takes what the estimate of the inner packets misses.
	sessions := shares(newSource(opt.Seed, c.Name, "sessions"), target*9/10, c.flows(target))
	n := max(1, int(math.Round(float64(target)/c.app.packets(c.app.flowSize))))
	budget := max(n, int((float64(target-2*len(sessions))-float64(n)*c.app.overhead)/c.app.wire))
	// The provider's server is near: a round trip of a few milliseconds,
	// during which a reconnecting client's old session still carries
	// traffic.
	rtt := time.Duration(rng.between(2000, 10000)) * time.Microsecond
	inner, err := newMux(c.starter(e, start.Add(2*rtt), budget, n))
	if err != nil {
		return nil, err
	}
	servers := []*host{e.serverHost(rng, endpoint{networks: campus}), e.serverHost(rng, endpoint{networks: campus})}
	client := &host{addr: lan, ttl: 64, id: uint16(rng.Uint32())}
	return newTunnelFlow(rng, client, servers, sessions, inner, start, rtt), nil
}

var (
	clientMAC  = []byte{0x08, 0x00, 0x27, 0x5e, 0x1a, 0x03} // a VirtualBox NIC, as ISCX's capture hosts were
	gatewayMAC = []byte{0x00, 0x1b, 0x21, 0x3a, 0x9c, 0x40}
)

var warnOnce sync.Once

// Write writes capture c as a pcap (Ethernet, microsecond timestamps) to w.
func (c Capture) Write(w io.Writer, opt Options) (Stats, error) {
	if opt.Scale <= 0 {
		return Stats{}, fmt.Errorf("scale %v: want a positive number", opt.Scale)
	}
	warnOnce.Do(func() {
		if !cryptoRandHonoured() {
			slog.Warn("synth: this program ignores custom random sources in crypto, so TLS bytes will differ between runs; run with GODEBUG=cryptocustomrand=1 for reproducible captures")
		}
	})
	st := Stats{Name: c.Name}
	src, err := c.packets(opt)
	if err != nil {
		return st, err
	}
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 1<<20)
	pw := pcapgo.NewWriter(bw)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return st, err
	}
	buf := gopacket.NewSerializeBuffer()
	for {
		batch, err := src.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, err
		}
		for _, p := range batch {
			eth := &layers.Ethernet{SrcMAC: gatewayMAC, DstMAC: clientMAC, EthernetType: layers.EthernetTypeIPv4}
			if p.toServer {
				eth.SrcMAC, eth.DstMAC = clientMAC, gatewayMAC
			}
			if err := gopacket.SerializeLayers(buf, serializeOpts, eth, gopacket.Payload(p.data)); err != nil {
				return st, err
			}
			frame := buf.Bytes()
			ci := gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(frame), Length: len(frame)}
			if err := pw.WritePacket(ci, frame); err != nil {
				return st, err
			}
			st.Packets++
			if p.payload {
				st.Kept++
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	st.Bytes = cw.n
	return st, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteFile writes capture c to path atomically.
func (c Capture) WriteFile(path string, opt Options) (Stats, error) {
	f, err := atomicfile.Create(path)
	if err != nil {
		return Stats{}, err
	}
	defer f.Abort()
	st, err := c.Write(f, opt)
	if err != nil {
		return st, fmt.Errorf("write %s: %w", path, err)
	}
	return st, f.Commit()
}

// Generate writes every capture into dir, several at once, and calls done
// (if not nil, one call at a time) as each is finished. Captures written
// before an error stay in place.
func Generate(dir string, opt Options, done func(Stats)) ([]Stats, error) {
	cs := Captures()
	stats := make([]Stats, len(cs))
	errs := make([]error, len(cs))
	var mu sync.Mutex
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(cs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				stats[i], errs[i] = cs[i].WriteFile(filepath.Join(dir, cs[i].Name), opt)
				if errs[i] == nil && done != nil {
					mu.Lock()
					done(stats[i])
					mu.Unlock()
				}
			}
		}()
	}
	for i := range cs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return stats, errors.Join(errs...)
}

// cryptoRandHonoured reports whether crypto key generation reads the random
// source it is given, which determinism needs.
func cryptoRandHonoured() bool {
	key := func() []byte {
		k, err := ecdh.X25519().GenerateKey(newSource(0, "probe"))
		if err != nil {
			return nil
		}
		return k.Bytes()
	}
	a, b := key(), key()
	return a != nil && bytes.Equal(a, b)
}
