package synth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
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
type tunnelFlow struct {
	rng      *source
	ends     udpEnds
	inner    flow
	aead     [2]cipher.AEAD
	index    [2]uint32 // receiver indices: [0] the server's, [1] the client's
	counter  [2]uint64
	start    time.Time
	rtt      time.Duration
	shakeDue bool
}

func newTunnelFlow(rng *source, ends udpEnds, inner flow, at time.Time, rtt time.Duration) (*tunnelFlow, error) {
	t := &tunnelFlow{rng: rng, ends: ends, inner: inner, start: at, rtt: rtt, shakeDue: true}
	for i := range t.aead {
		blk, err := aes.NewCipher(rng.bytes(32))
		if err != nil {
			return nil, err
		}
		if t.aead[i], err = cipher.NewGCM(blk); err != nil {
			return nil, err
		}
		t.index[i] = rng.Uint32()
	}
	return t, nil
}

func (t *tunnelFlow) next() ([]ipPacket, error) {
	var out []ipPacket
	if t.shakeDue {
		t.shakeDue = false
		init, resp, err := t.handshake()
		if err != nil {
			return nil, err
		}
		out = append(out, t.ends.packet(t.start, true, init), t.ends.packet(t.start.Add(t.rtt), false, resp))
	}
	batch, err := t.inner.next()
	if err != nil {
		if len(out) > 0 {
			return out, nil
		}
		return nil, err
	}
	for _, p := range batch {
		out = append(out, t.ends.packet(p.ts, p.toServer, t.transport(p.toServer, p.data)))
	}
	return out, nil
}

// transport seals an inner packet into a transport data message.
func (t *tunnelFlow) transport(toServer bool, inner []byte) []byte {
	side := 1
	if toServer {
		side = 0
	}
	msg := make([]byte, 16, 16+len(inner)+32)
	msg[0] = wgTransport
	binary.LittleEndian.PutUint32(msg[4:], t.index[side])
	binary.LittleEndian.PutUint64(msg[8:], t.counter[side])
	var nonce [12]byte
	binary.LittleEndian.PutUint64(nonce[4:], t.counter[side])
	t.counter[side]++
	plain := make([]byte, (len(inner)+15)/16*16)
	copy(plain, inner)
	return t.aead[side].Seal(msg, nonce[:], plain, nil)
}

// handshake builds the initiation and response messages with their real
// layout: ephemeral X25519 public keys, the sealed static key and timestamp,
// and the two MACs.
func (t *tunnelFlow) handshake() (init, resp []byte, err error) {
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
	binary.LittleEndian.PutUint32(init[4:], t.index[1])
	e, err := eph()
	if err != nil {
		return nil, nil, err
	}
	init = append(init, e...)
	init = t.aead[0].Seal(init, nonce[:], t.rng.bytes(32), init)       // static key
	init = t.aead[0].Seal(init, nonce[:], t.tai64n(t.start), init[:8]) // timestamp
	init = append(init, mac(init)...)
	init = append(init, make([]byte, 16)...) // mac2 is zero unless the server is under load

	resp = make([]byte, 12, wgResponseSize)
	resp[0] = wgResponse
	binary.LittleEndian.PutUint32(resp[4:], t.index[0])
	binary.LittleEndian.PutUint32(resp[8:], t.index[1])
	if e, err = eph(); err != nil {
		return nil, nil, err
	}
	resp = append(resp, e...)
	resp = t.aead[1].Seal(resp, nonce[:], nil, resp) // empty
	resp = append(resp, mac(resp)...)
	resp = append(resp, make([]byte, 16)...)
	return init, resp, nil
}

// tai64n is the 12-byte TAI64N timestamp of the initiation.
func (t *tunnelFlow) tai64n(at time.Time) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(at.Unix())+0x400000000000000a)
	return binary.BigEndian.AppendUint32(b, uint32(at.Nanosecond()))
}
