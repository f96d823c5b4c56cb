package synth

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// env is what the flows of one capture share: the run's seed, the
// capture's name (every random stream is labelled with it), the client's
// address and the servers' certificates.
type env struct {
	seed    int64
	name    string
	client  netip.Addr
	ids     map[string]*tlsIdentity
	maxRate float64 // bytes per second the path allows each way (a VPN server's); 0 for no limit
}

// rate is a link rate in bytes per second, uniform in [lo, hi] and within
// what the path allows.
func (e *env) rate(rng *source, lo, hi int) float64 {
	r := float64(rng.between(lo, hi))
	if e.maxRate > 0 {
		r = min(r, e.maxRate)
	}
	return r
}

// app is an application's behaviour: how its flows look and how often one starts.
type app struct {
	spacing  time.Duration // mean time between two flows' starts
	flowSize int           // kept packets one flow aims at
	// A flow with a budget of n kept packets sends about overhead + wire*n
	// packets: wire counts TCP's payload-free ACKs, overhead its handshake
	// and teardown. Inside a VPN tunnel every packet becomes one the
	// reference keeps, so a VPN capture gives its flows that much less
	// budget to keep the classes balanced.
	wire     float64
	overhead float64
	newFlow  func(e *env, rng *source, at time.Time, budget int) (flow, error)
}

// endpoint is a service: a server name, its port, the /16 networks its
// addresses come from, and how it speaks TLS if it does.
type endpoint struct {
	name     string
	port     uint16
	networks []string
	tls      tlsProfile
}

func (e *env) clientHost(rng *source) *host {
	return &host{addr: e.client, ttl: 64, id: uint16(rng.Uint32())}
}

func (e *env) serverHost(rng *source, ep endpoint) *host {
	prefix := netip.MustParsePrefix(ep.networks[rng.IntN(len(ep.networks))]).Addr().As4()
	prefix[2], prefix[3] = byte(rng.IntN(256)), byte(rng.between(1, 254))
	// Servers are a dozen or so hops away; Linux servers start at TTL 64, Windows at 128.
	ttl := uint8(64 - rng.between(8, 20))
	if rng.IntN(4) == 0 {
		ttl = uint8(128 - rng.between(8, 20))
	}
	return &host{addr: netip.AddrFrom4(prefix), ttl: ttl, id: uint16(rng.Uint32())}
}

func ephemeralPort(rng *source) uint16 { return uint16(rng.between(32768, 60999)) }

func randomRTT(rng *source) time.Duration {
	return time.Duration(rng.between(8000, 90000)) * time.Microsecond
}

// identity is the certificate of a TLS server name, made once per capture.
func (e *env) identity(name string, at time.Time) (*tlsIdentity, error) {
	if id, ok := e.ids[name]; ok {
		return id, nil
	}
	id, err := newTLSIdentity(newSource(e.seed, e.name, "certificate", name), name, at)
	if err != nil {
		return nil, err
	}
	e.ids[name] = id
	return id, nil
}

// tcpOverhead is about how many packets a TCP flow speaking a protocol
// sends besides its budget's share: the three-way handshake, the FIN
// teardown, and the ACKs of the codec's opening.
var tcpOverhead = map[string]float64{"tls": 8, "sftp": 15, "scp": 15, "plain": 6}

// tcpApp is an application on TCP: the codec each connection speaks and
// the script of its messages.
func tcpApp(ep endpoint, spacing time.Duration, flowSize int, wire float64, proto string, closeByClient bool, newScript func(*source, int) script) app {
	return app{spacing: spacing, flowSize: flowSize, wire: wire, overhead: tcpOverhead[proto], newFlow: func(e *env, rng *source, at time.Time, budget int) (flow, error) {
		var c codec
		switch proto {
		case "tls":
			id, err := e.identity(ep.name, at)
			if err != nil {
				return nil, err
			}
			c = newTLSCodec(e.seed, fmt.Sprint(e.name, "/", rng.Uint64()), id, ep.name, at, ep.tls)
		case "sftp":
			c = newSSHCodec(rng, "")
		case "scp":
			c = newSSHCodec(rng, "scp -f /home/user/"+hexString(rng.bytes(4))+".tar.gz")
		default:
			c = plainCodec{}
		}
		port := ep.port
		if port == 0 { // a peer or a passive data port
			port = uint16(rng.between(10000, 65000))
		}
		conn := newTCPConn(rng, e.clientHost(rng), e.serverHost(rng, ep), ephemeralPort(rng), port, at,
			randomRTT(rng), e.rate(rng, 300_000, 2_000_000), e.rate(rng, 1_000_000, 12_000_000))
		return &tcpFlow{conn: conn, codec: c, budget: budget, closeByClient: closeByClient,
			newScript: func(budget int) script { return newScript(rng, budget) }}, nil
	}}
}

// quicApp is an application on QUIC-like UDP.
func quicApp(ep endpoint, spacing time.Duration, flowSize int, newScript func(*source, int) script) app {
	// The handshake's packets come on top of the script's.
	return app{spacing: spacing, flowSize: flowSize, wire: 1, overhead: 5, newFlow: func(e *env, rng *source, at time.Time, budget int) (flow, error) {
		ends := udpEnds{cli: e.clientHost(rng), srv: e.serverHost(rng, ep), cliPort: ephemeralPort(rng), srvPort: ep.port}
		return newQUICFlow(rng, ends, at, randomRTT(rng), e.rate(rng, 300_000, 2_000_000),
			// Every datagram is kept, the receiver's ACK packets too, and a
			// datagram carries a little less than a TCP segment: about 1.6
			// kept packets per segment the script counts.
			e.rate(rng, 1_000_000, 12_000_000), newScript(rng, max(1, budget*10/16)))
	}}
}

// voipApp is a VoIP application: each flow is one call.
func voipApp(ep endpoint, spacing time.Duration, flowSize int, vc voiceCodec) app {
	return app{spacing: spacing, flowSize: flowSize, wire: 1, newFlow: func(e *env, rng *source, at time.Time, budget int) (flow, error) {
		port := ep.port
		if port == 0 {
			port = uint16(rng.between(10000, 20000))
		}
		ends := udpEnds{cli: e.clientHost(rng), srv: e.serverHost(rng, ep), cliPort: ephemeralPort(rng), srvPort: port}
		return newRTPFlow(rng, ends, vc, at, randomRTT(rng), max(budget/2-1, 1))
	}}
}

// segments is about how many TCP segments n bytes of application data take.
func segments(n int) int { return (n + tcpMSS - 1) / tcpMSS }

// pause is an exponentially distributed pause with the given mean, within [lo, hi].
func pause(rng *source, mean, lo, hi time.Duration) time.Duration {
	return min(max(time.Duration(rng.ExpFloat64()*float64(mean)), lo), hi)
}

// chatScript: short messages both ways with human pauses, some followed at
// once by a short receipt or typing notice from the other side.
func chatScript(meanPause time.Duration, meanSize, maxSize int) func(*source, int) script {
	return func(rng *source, budget int) script {
		receipt := false
		toServer := true
		return func() (message, bool) {
			if budget <= 0 {
				return message{}, false
			}
			budget--
			if receipt {
				receipt = false
				return message{!toServer, time.Duration(rng.between(30, 400)) * time.Millisecond, rng.bytes(rng.between(15, 70))}, true
			}
			toServer = rng.IntN(2) == 0
			receipt = rng.IntN(10) < 4
			size := min(20+int(rng.ExpFloat64()*float64(meanSize)), maxSize)
			return message{toServer, pause(rng, meanPause, 300*time.Millisecond, 30*time.Second), rng.bytes(size)}, true
		}
	}
}

// emailScript: a mail session, commands from the client answered by the
// server, now and then a whole message fetched (IMAP) or submitted (SMTP).
func emailScript(submit bool) func(*source, int) script {
	return func(rng *source, budget int) script {
		command := true
		return func() (message, bool) {
			if budget <= 0 {
				return message{}, false
			}
			if command {
				command = false
				budget--
				if submit && rng.IntN(4) == 0 {
					body := min(rng.between(2_000, 40_000), max(budget, 1)*tcpMSS)
					budget -= segments(body)
					return message{true, pause(rng, time.Second, 50*time.Millisecond, 10*time.Second), rng.bytes(body)}, true
				}
				return message{true, pause(rng, 800*time.Millisecond, 20*time.Millisecond, 10*time.Second), rng.bytes(rng.between(14, 120))}, true
			}
			command = true
			size := rng.between(30, 900)
			if !submit && rng.IntN(6) == 0 {
				size = rng.between(3_000, 60_000)
			}
			size = min(size, max(budget, 1)*tcpMSS)
			budget -= segments(size)
			return message{false, time.Duration(rng.between(1, 30)) * time.Millisecond, rng.bytes(size)}, true
		}
	}
}

// bulkScript: a transfer in one direction. The receiving side asks for it,
// then the data flows in chunks with a short status now and then from the
// receiver (an SFTP status or an FTP reply).
func bulkScript(toServer bool, chunk int) func(*source, int) script {
	return func(rng *source, budget int) script {
		n := 0
		return func() (message, bool) {
			if budget <= 0 {
				return message{}, false
			}
			n++
			if n == 1 || n%8 == 0 {
				budget--
				return message{!toServer, time.Duration(rng.between(1, 20)) * time.Millisecond, rng.bytes(rng.between(24, 160))}, true
			}
			size := min(chunk, max(budget, 1)*tcpMSS)
			budget -= segments(size)
			return message{toServer, time.Duration(rng.IntN(2000)) * time.Microsecond, rng.bytes(size)}, true
		}
	}
}

// streamScript: the client requests a segment of media and the server
// sends it in bulk, then the player waits until its buffer drains.
func streamScript(minChunk, maxChunk int, meanPause time.Duration) func(*source, int) script {
	return func(rng *source, budget int) script {
		request := true
		return func() (message, bool) {
			if budget <= 0 {
				return message{}, false
			}
			if request {
				request = false
				budget--
				return message{true, pause(rng, meanPause, 50*time.Millisecond, 8*time.Second), rng.bytes(rng.between(180, 900))}, true
			}
			request = true
			size := min(rng.between(minChunk, maxChunk), max(budget, 1)*tcpMSS)
			budget -= segments(size)
			return message{false, time.Duration(rng.between(5, 60)) * time.Millisecond, rng.bytes(size)}, true
		}
	}
}

// torrentScript: BitTorrent's peer wire protocol (BEP 3) with one peer:
// handshakes, bitfields, interest and unchoke, then block requests answered
// by 16 kB pieces, and now and then a piece uploaded to the peer.
func torrentScript(infoHash []byte) func(*source, int) script {
	return func(rng *source, budget int) script {
		step := 0
		pieces := uint32(rng.between(400, 4000))
		msg := func(id byte, body []byte) []byte {
			b := binary.BigEndian.AppendUint32(nil, uint32(1+len(body)))
			return append(append(b, id), body...)
		}
		block := func(index, begin uint32) []byte {
			b := binary.BigEndian.AppendUint32(nil, index)
			return binary.BigEndian.AppendUint32(b, begin)
		}
		handshake := func() []byte {
			b := append([]byte{19}, "BitTorrent protocol"...)
			b = append(b, 0, 0, 0, 0, 0, 0x10, 0, 0x05)
			b = append(b, infoHash...)
			return append(b, "-qB3300-"+hexString(rng.bytes(6))...)
		}
		return func() (message, bool) {
			if budget <= 0 {
				return message{}, false
			}
			step++
			budget--
			ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
			switch step {
			case 1:
				return message{true, 0, handshake()}, true
			case 2:
				return message{false, ms(1), handshake()}, true
			case 3:
				return message{true, ms(1), msg(5, rng.bytes(int(pieces+7)/8))}, true // bitfield
			case 4:
				return message{false, ms(2), msg(5, rng.bytes(int(pieces+7)/8))}, true
			case 5:
				return message{true, ms(rng.between(1, 50)), msg(2, nil)}, true // interested
			case 6:
				return message{false, ms(rng.between(1, 50)), msg(1, nil)}, true // unchoke
			}
			index := uint32(rng.IntN(int(pieces)))
			// Up to four blocks of a piece, as many as the budget has room for.
			k := min(rng.between(1, 4), max(1, budget/segments(1<<14)))
			if step%2 == 1 {
				var reqs []byte
				for j := range k {
					reqs = append(reqs, msg(6, binary.BigEndian.AppendUint32(block(index, uint32(j)<<14), 1<<14))...)
				}
				if rng.IntN(5) == 0 { // a have for a piece just completed
					reqs = append(reqs, msg(4, binary.BigEndian.AppendUint32(nil, uint32(rng.IntN(int(pieces)))))...)
				}
				return message{true, ms(rng.between(0, 300)), reqs}, true
			}
			var data []byte
			for j := range k {
				data = append(data, msg(7, append(block(index, uint32(j)<<14), rng.bytes(1<<14)...))...)
			}
			budget -= segments(len(data)) - 1
			return message{rng.IntN(8) == 0, ms(rng.between(1, 80)), data}, true
		}
	}
}

// packets is about how many packets a flow of the application with a
// budget of n kept packets sends.
func (a app) packets(n int) float64 { return a.overhead + a.wire*float64(n) }
