package synth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"hash/crc32"
	"io"
	"time"
)

// voiceCodec describes the audio a VoIP application sends.
type voiceCodec struct {
	payloadType      byte
	ptime            time.Duration // audio per packet
	minSize, maxSize int           // encoded frame bytes (equal for constant bit rate)
	clockRate        int
}

// rtpFlow is a call: STUN connectivity checks, then SRTP packets both ways
// at the codec's fixed packet rate. SRTP is RFC 3711's AES-CM encryption
// with an 80-bit HMAC-SHA1 tag, keyed from the flow's stream.
type rtpFlow struct {
	rng    *source
	ends   udpEnds
	codec  voiceCodec
	now    time.Time
	rtt    time.Duration
	ticks  int           // packets left each way
	phase  time.Duration // when in each tick the peer's packet arrives
	stun   bool
	dir    [2]srtpSender
	stunPw []byte
}

type srtpSender struct {
	ssrc   uint32
	seq    uint16
	ts     uint32
	roc    uint32
	block  cipher.Block
	salt   []byte
	authKy []byte
}

func newRTPFlow(rng *source, ends udpEnds, codec voiceCodec, at time.Time, rtt time.Duration, ticks int) (*rtpFlow, error) {
	f := &rtpFlow{rng: rng, ends: ends, codec: codec, now: at, rtt: rtt, ticks: ticks, stun: true, stunPw: rng.bytes(22)}
	f.phase = time.Duration(rng.Int64N(int64(codec.ptime - 2*time.Millisecond)))
	for i := range f.dir {
		blk, err := aes.NewCipher(rng.bytes(16))
		if err != nil {
			return nil, err
		}
		f.dir[i] = srtpSender{ssrc: rng.Uint32(), seq: uint16(rng.Uint32()), ts: rng.Uint32(), block: blk, salt: rng.bytes(14), authKy: rng.bytes(20)}
	}
	return f, nil
}

func (f *rtpFlow) next() ([]ipPacket, error) {
	if f.stun {
		f.stun = false
		out := f.connectivityCheck()
		f.now = f.now.Add(f.rtt + time.Duration(f.rng.between(1, 50))*time.Millisecond)
		return out, nil
	}
	if f.ticks == 0 {
		return nil, io.EOF
	}
	f.ticks--
	var out []ipPacket
	// The capturing host sends on its own clock; the peer's packets arrive
	// at their own phase of the tick, with a millisecond or so of jitter.
	out = append(out, f.ends.packet(f.now.Add(time.Duration(f.rng.IntN(200))*time.Microsecond), true, f.srtp(0)))
	in := f.now.Add(f.phase + time.Duration(f.rng.IntN(1500))*time.Microsecond)
	out = append(out, f.ends.packet(in, false, f.srtp(1)))
	f.now = f.now.Add(f.codec.ptime)
	if out[1].ts.Before(out[0].ts) {
		out[0], out[1] = out[1], out[0]
	}
	return out, nil
}

// srtp builds one SRTP packet from side (0 the client).
func (f *rtpFlow) srtp(side int) []byte {
	s := &f.dir[side]
	size := f.rng.between(f.codec.minSize, f.codec.maxSize)
	pkt := make([]byte, 12, 12+size+10)
	pkt[0] = 0x80
	pkt[1] = f.codec.payloadType
	binary.BigEndian.PutUint16(pkt[2:], s.seq)
	binary.BigEndian.PutUint32(pkt[4:], s.ts)
	binary.BigEndian.PutUint32(pkt[8:], s.ssrc)
	frame := f.rng.bytes(size)
	// RFC 3711 4.1.1: IV = salt*2^16 XOR SSRC*2^64 XOR index*2^16.
	iv := make([]byte, 16)
	copy(iv, s.salt)
	var ssrc [4]byte
	binary.BigEndian.PutUint32(ssrc[:], s.ssrc)
	for i := range ssrc {
		iv[4+i] ^= ssrc[i]
	}
	index := uint64(s.roc)<<16 | uint64(s.seq)
	for i := 0; i < 6; i++ {
		iv[8+i] ^= byte(index >> (40 - 8*i))
	}
	cipher.NewCTR(s.block, iv).XORKeyStream(frame, frame)
	pkt = append(pkt, frame...)
	mac := hmac.New(sha1.New, s.authKy)
	mac.Write(pkt)
	binary.Write(mac, binary.BigEndian, s.roc)
	pkt = append(pkt, mac.Sum(nil)[:10]...)
	s.seq++
	if s.seq == 0 {
		s.roc++
	}
	s.ts += uint32(f.codec.clockRate / int(time.Second/f.codec.ptime))
	return pkt
}

// connectivityCheck is an ICE STUN binding request and its success response
// (RFC 5389), with MESSAGE-INTEGRITY and FINGERPRINT.
func (f *rtpFlow) connectivityCheck() []ipPacket {
	txid := f.rng.bytes(12)
	user := f.rng.bytes(4)
	req := f.stunMessage(0x0001, txid, []stunAttr{
		{0x0006, []byte(hexString(user))},                      // USERNAME
		{0x0024, binary.BigEndian.AppendUint32(nil, 0x6e7fff)}, // PRIORITY
		{0x802a, f.rng.bytes(8)},                               // ICE-CONTROLLING
	})
	// XOR-MAPPED-ADDRESS of the client as the server saw it.
	addr := f.ends.cli.addr.As4()
	xaddr := []byte{0, 1, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(xaddr[2:], f.ends.cliPort^0x2112)
	binary.BigEndian.PutUint32(xaddr[4:], binary.BigEndian.Uint32(addr[:])^0x2112A442)
	resp := f.stunMessage(0x0101, txid, []stunAttr{{0x0020, xaddr}})
	return []ipPacket{
		f.ends.packet(f.now, true, req),
		f.ends.packet(f.now.Add(f.rtt), false, resp),
	}
}

type stunAttr struct {
	typ   uint16
	value []byte
}

func (f *rtpFlow) stunMessage(typ uint16, txid []byte, attrs []stunAttr) []byte {
	msg := binary.BigEndian.AppendUint16(nil, typ)
	msg = append(msg, 0, 0)
	msg = binary.BigEndian.AppendUint32(msg, 0x2112A442)
	msg = append(msg, txid...)
	add := func(t uint16, v []byte) {
		msg = binary.BigEndian.AppendUint16(msg, t)
		msg = binary.BigEndian.AppendUint16(msg, uint16(len(v)))
		msg = append(msg, v...)
		for len(msg)%4 != 0 {
			msg = append(msg, 0)
		}
	}
	setLen := func(extra int) { binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)-20+extra)) }
	for _, a := range attrs {
		add(a.typ, a.value)
	}
	setLen(24)
	mac := hmac.New(sha1.New, f.stunPw)
	mac.Write(msg)
	add(0x0008, mac.Sum(nil)) // MESSAGE-INTEGRITY
	setLen(8)
	add(0x8028, binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(msg)^0x5354554e)) // FINGERPRINT
	return msg
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
