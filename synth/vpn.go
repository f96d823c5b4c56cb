package synth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"time"
)

// WireGuard message types and sizes (the WireGuard paper, section 5.4).
const (
	wgInitiation     = 1
	wgResponse       = 2
	wgTransport      = 4
	wgInitiationSize = 148
	wgResponseSize   = 92
	wgPort           = 51820
)

// tunnelFlow carries a merged set of inner flows through a WireGuard-like
// UDP tunnel between the client and a VPN server: a handshake initiation
// and response, then every inner IPv4 packet, zero-padded to a multiple of
// 16 bytes, sealed with AES-256-GCM (WireGuard uses ChaCha20-Poly1305, which
// the standard library lacks) behind the 16-byte transport header. What the
// capture shows is only the outer UDP packets, as with a real VPN.
//
// The client reconnects now and then (as after a network change): a new
// session from a new port, perhaps to another of the provider's servers,
// with its own handshake and keys. As on a WireGuard rekey, the old session
// carries the traffic until the new handshake's response arrives, and the
// inner connections carry on through the change, as they keep the
// client's tunnel address. The client starts the handshake a round trip's
// worth of packets before the old session has carried its share.
type tunnelFlow struct {
	rng      *source
	client   *host
	servers  []*host
	sessions []int          // packets of each session still to start, the handshake's included
	cur      *tunnelSession // the session carrying the traffic
	coming   *tunnelSession // the session whose handshake is under way, if any
	held     []ipPacket     // what was sent since coming's initiation, which needs its response
	waiting  []ipPacket     // inner packets waiting for coming's response
	recent   [256]time.Time // the last inner packets' times, a ring
	nRecent  int            // inner packets so far
	inner    flow
	start    time.Time
	rtt      time.Duration
}

// tunnelSession is one session's UDP ends, keys and counters.
type tunnelSession struct {
	ends     udpEnds
	aead     [2]cipher.AEAD
	index    [2]uint32 // receiver indices: [0] the server's, [1] the client's
	counter  [2]uint64
	share    int      // packets it aims to carry
	left     int      // packets of its share still to carry
	response ipPacket // the handshake's response; traffic moves to the session when it arrives
}

func newTunnelFlow(rng *source, client *host, servers []*host, sessions []int, inner flow, at time.Time, rtt time.Duration) *tunnelFlow {
	return &tunnelFlow{rng: rng, client: client, servers: servers, sessions: sessions, inner: inner, start: at, rtt: rtt}
}

func (t *tunnelFlow) next() ([]ipPacket, error) {
	var out []ipPacket
	if t.cur == nil {
		s, init, err := t.session(t.start)
		if err != nil {
			return nil, err
		}
		t.cur = s
		out = append(out, init, s.response)
	}
	batch, err := t.inner.next()
	if err == io.EOF && t.coming != nil {
		if len(t.waiting) > 0 {
			out = t.switchOver(out)
		} else {
			// The traffic ended before the new session was up: it never
			// carries any, so its initiation (held[0]) goes unrecorded.
			out = append(out, t.held[1:]...)
			t.coming, t.held = nil, nil
		}
	}
	if err != nil {
		if len(out) > 0 {
			return out, nil
		}
		return nil, err
	}
	for _, p := range batch {
		if t.coming != nil && !p.ts.Before(t.coming.response.ts) {
			out = t.switchOver(out)
		}
		if flying := t.inFlight(p.ts); t.coming == nil && len(t.sessions) > 0 && t.cur.left <= flying {
			s, init, err := t.session(p.ts)
			if err != nil {
				return nil, err
			}
			t.coming = s
			t.held = append(t.held, init)
		}
		if t.coming != nil && (len(t.waiting) > 0 || t.cur.left <= -t.cur.share/2) {
			// A burst during the handshake: the old session has carried
			// enough, and the rest waits for the new one.
			t.waiting = append(t.waiting, p)
			continue
		}
		t.cur.left--
		q := t.cur.ends.packet(p.ts, p.toServer, t.cur.transport(p.toServer, p.data))
		if t.coming != nil {
			t.held = append(t.held, q)
		} else {
			out = append(out, q)
		}
	}
	return out, nil
}

// switchOver completes the handshake under way: what the old session sent
// meanwhile, the response, and the packets that waited for it go to out,
// and the new session carries the traffic from then on.
func (t *tunnelFlow) switchOver(out []ipPacket) []ipPacket {
	s := t.coming
	out = append(append(out, t.held...), s.response)
	// What the old session carried over or under its share comes off or on the new one's.
	s.left += t.cur.left
	t.cur, t.coming, t.held = s, nil, nil
	for _, p := range t.waiting {
		s.left--
		out = append(out, s.ends.packet(later(p.ts, s.response.ts), p.toServer, s.transport(p.toServer, p.data)))
	}
	t.waiting = t.waiting[:0]
	return out
}

// inFlight records an inner packet at time at and counts the recent ones
// within a round trip before it: about as many as will pass during a
// handshake.
func (t *tunnelFlow) inFlight(at time.Time) int {
	t.recent[t.nRecent%len(t.recent)] = at
	t.nRecent++
	n := 0
	for n < min(t.nRecent, len(t.recent)) && at.Sub(t.recent[(t.nRecent-1-n)%len(t.recent)]) < t.rtt {
		n++
	}
	return n
}

// session starts the next session at time at: a new client port, a
// server, keys and indices. It returns the handshake's initiation.
func (t *tunnelFlow) session(at time.Time) (*tunnelSession, ipPacket, error) {
	s := &tunnelSession{left: 1 << 62}
	if len(t.sessions) > 0 {
		s.share, t.sessions = t.sessions[0]-2, t.sessions[1:]
		s.left = s.share
	}
	s.ends = udpEnds{cli: t.client, srv: t.servers[t.rng.IntN(len(t.servers))], cliPort: ephemeralPort(t.rng), srvPort: wgPort}
	for i := range s.aead {
		blk, err := aes.NewCipher(t.rng.bytes(32))
		if err != nil {
			return nil, ipPacket{}, err
		}
		if s.aead[i], err = cipher.NewGCM(blk); err != nil {
			return nil, ipPacket{}, err
		}
		s.index[i] = t.rng.Uint32()
	}
	init, resp, err := t.handshake(s, at)
	if err != nil {
		return nil, ipPacket{}, err
	}
	s.response = s.ends.packet(at.Add(t.rtt), false, resp)
	return s, s.ends.packet(at, true, init), nil
}

// transport seals an inner packet into a transport data message.
func (s *tunnelSession) transport(toServer bool, inner []byte) []byte {
	side := 1
	if toServer {
		side = 0
	}
	msg := make([]byte, 16, 16+len(inner)+32)
	msg[0] = wgTransport
	binary.LittleEndian.PutUint32(msg[4:], s.index[side])
	binary.LittleEndian.PutUint64(msg[8:], s.counter[side])
	var nonce [12]byte
	binary.LittleEndian.PutUint64(nonce[4:], s.counter[side])
	s.counter[side]++
	plain := make([]byte, (len(inner)+15)/16*16)
	copy(plain, inner)
	return s.aead[side].Seal(msg, nonce[:], plain, nil)
}

// handshake builds the initiation and response messages with their real
// layout: ephemeral X25519 public keys, the sealed static key and timestamp,
// and the two MACs.
func (t *tunnelFlow) handshake(s *tunnelSession, at time.Time) (init, resp []byte, err error) {
	eph := func() ([]byte, error) {
		k, err := ecdh.X25519().NewPrivateKey(t.rng.bytes(32))
		if err != nil {
			return nil, err
		}
		return k.PublicKey().Bytes(), nil
	}
	mac := func(msg []byte) []byte {
		m := hmac.New(sha256.New, t.rng.bytes(32))
		m.Write(msg)
		return m.Sum(nil)[:16]
	}
	var nonce [12]byte
	init = make([]byte, 8, wgInitiationSize)
	init[0] = wgInitiation
	binary.LittleEndian.PutUint32(init[4:], s.index[1])
	e, err := eph()
	if err != nil {
		return nil, nil, err
	}
	init = append(init, e...)
	init = s.aead[0].Seal(init, nonce[:], t.rng.bytes(32), init) // static key
	init = s.aead[0].Seal(init, nonce[:], tai64n(at), init[:8])  // timestamp
	init = append(init, mac(init)...)
	init = append(init, make([]byte, 16)...) // mac2 is zero unless the server is under load

	resp = make([]byte, 12, wgResponseSize)
	resp[0] = wgResponse
	binary.LittleEndian.PutUint32(resp[4:], s.index[0])
	binary.LittleEndian.PutUint32(resp[8:], s.index[1])
	if e, err = eph(); err != nil {
		return nil, nil, err
	}
	resp = append(resp, e...)
	resp = s.aead[1].Seal(resp, nonce[:], nil, resp) // empty
	resp = append(resp, mac(resp)...)
	resp = append(resp, make([]byte, 16)...)
	return init, resp, nil
}

// tai64n is the 12-byte TAI64N timestamp of the initiation.
func tai64n(at time.Time) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(at.Unix())+0x400000000000000a)
	return binary.BigEndian.AppendUint32(b, uint32(at.Nanosecond()))
}
