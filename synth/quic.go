package synth

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"io"
	"time"
)

// quicFlow is a QUIC-like connection on UDP: RFC 9000 long-header Initial
// and Handshake packets padded as the protocol demands, then short-header
// 1-RTT packets, every payload sealed with AES-128-GCM under the packet
// number and every header masked as RFC 9001 section 5.4 does. The frames
// inside are a type byte and opaque bytes, not a full QUIC stack.
type quicFlow struct {
	rng     *source
	ends    udpEnds
	cid     [2][]byte // connection IDs: [0] the server's, which the client writes, [1] the client's
	keys    [2]quicKeys
	pn      [2]uint64
	now     time.Time
	rtt     time.Duration
	rate    [2]float64
	script  script
	state   int
	last    int       // side that spoke last
	lastReq time.Time // when the client's last packet left
}

type quicKeys struct {
	aead cipher.AEAD
	iv   []byte
	hp   cipher.Block
}

const quicMaxDatagram = 1350

func newQUICFlow(rng *source, ends udpEnds, at time.Time, rtt time.Duration, upRate, downRate float64, s script) (*quicFlow, error) {
	f := &quicFlow{rng: rng, ends: ends, now: at, rtt: rtt, rate: [2]float64{upRate, downRate}, script: s, last: -1}
	f.cid = [2][]byte{rng.bytes(8), rng.bytes(8)}
	for i := range f.keys {
		blk, err := aes.NewCipher(rng.bytes(16))
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(blk)
		if err != nil {
			return nil, err
		}
		hp, err := aes.NewCipher(rng.bytes(16))
		if err != nil {
			return nil, err
		}
		f.keys[i] = quicKeys{aead: aead, iv: rng.bytes(12), hp: hp}
	}
	return f, nil
}

// packet seals plaintext from side into a datagram. long is 0 for a short
// header, else the long-header type plus one (Initial 1, Handshake 3).
func (f *quicFlow) packet(side int, long int, plaintext []byte) []byte {
	k := f.keys[side]
	pn := f.pn[side]
	f.pn[side]++
	const pnLen = 2
	var hdr []byte
	if long > 0 {
		hdr = []byte{0xc0 | byte(long-1)<<4 | (pnLen - 1)}
		hdr = binary.BigEndian.AppendUint32(hdr, 1)
		hdr = append(hdr, 8)
		hdr = append(hdr, f.cid[side]...)
		hdr = append(hdr, 8)
		hdr = append(hdr, f.cid[1-side]...)
		if long == 1 {
			hdr = append(hdr, 0) // no token
		}
		hdr = binary.BigEndian.AppendUint16(hdr, 0x4000|uint16(pnLen+len(plaintext)+16))
	} else {
		hdr = []byte{0x40 | byte(f.rng.IntN(2))<<5 | (pnLen - 1)}
		hdr = append(hdr, f.cid[side]...)
	}
	pnOff := len(hdr)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(pn))
	nonce := append([]byte(nil), k.iv...)
	for i := 0; i < 8; i++ {
		nonce[11-i] ^= byte(pn >> (8 * i))
	}
	out := k.aead.Seal(hdr, nonce, plaintext, hdr)
	mask := make([]byte, 16)
	k.hp.Encrypt(mask, out[pnOff+4:pnOff+20])
	if long > 0 {
		out[0] ^= mask[0] & 0x0f
	} else {
		out[0] ^= mask[0] & 0x1f
	}
	for i := 0; i < pnLen; i++ {
		out[pnOff+i] ^= mask[1+i]
	}
	return out
}

// frames is a plaintext of n bytes starting with frame type typ.
func (f *quicFlow) frames(typ byte, n int) []byte {
	p := f.rng.bytes(max(n, 1))
	p[0] = typ
	return p
}

// padded is a plaintext that fills a datagram to 1200 bytes, as Initial
// packets must (RFC 9000 section 14.1).
func (f *quicFlow) padded(typ byte, n int) []byte {
	p := make([]byte, 1200-44) // less the 28-byte header and 16-byte tag
	copy(p, f.frames(typ, n))
	return p
}

func (f *quicFlow) next() ([]ipPacket, error) {
	var out []ipPacket
	switch f.state {
	case 0:
		t := f.now
		out = append(out, f.ends.packet(t, true, f.packet(0, 1, f.padded(0x06, f.rng.between(250, 550)))))
		t = t.Add(f.rtt)
		for range f.rng.between(2, 4) {
			out = append(out, f.ends.packet(t, false, f.packet(1, 3, f.frames(0x06, quicMaxDatagram-60))))
			t = t.Add(f.gap(1, quicMaxDatagram))
		}
		t = t.Add(f.smallDelay())
		out = append(out, f.ends.packet(t, true, f.packet(0, 3, f.frames(0x06, f.rng.between(40, 80)))))
		f.now = t
		f.state = 1
	case 1:
		m, ok := f.script()
		if !ok {
			f.now = f.now.Add(f.smallDelay())
			out = append(out, f.ends.packet(f.now, true, f.packet(0, 0, f.frames(0x1c, f.rng.between(8, 30)))))
			f.state = 2
			break
		}
		side := 1
		if m.toServer {
			side = 0
		}
		if side == 1 && f.last == 0 {
			f.now = later(f.now, f.lastReq.Add(f.rtt+m.gap)) // as tcpConn.send
		} else {
			f.now = f.now.Add(m.gap)
		}
		f.last = side
		t, end := f.now, f.now
		for i, data := 0, len(m.data); data > 0; i++ {
			n := min(data, quicMaxDatagram-30)
			data -= n
			out = append(out, f.ends.packet(t, side == 0, f.packet(side, 0, f.frames(0x0a, n))))
			if side == 0 {
				f.lastReq = t
			}
			if i%2 == 1 || data == 0 {
				at := t.Add(f.smallDelay())
				if side == 0 {
					at = at.Add(f.rtt)
				}
				end = later(end, at)
				out = append(out, f.ends.packet(at, side == 1, f.packet(1-side, 0, f.frames(0x02, f.rng.between(6, 24)))))
			}
			t = t.Add(f.gap(side, n+30))
		}
		f.now = later(t, end)
		sortByTime(out)
	default:
		return nil, io.EOF
	}
	return out, nil
}

func (f *quicFlow) gap(side, n int) time.Duration {
	return time.Duration(float64(n+28) / f.rate[side] * float64(time.Second))
}

func (f *quicFlow) smallDelay() time.Duration {
	return time.Duration(f.rng.between(30, 400)) * time.Microsecond
}
