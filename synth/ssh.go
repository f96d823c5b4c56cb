package synth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"math/big"
)

// SSH message numbers (RFC 4250).
const (
	sshMsgServiceRequest  = 5
	sshMsgServiceAccept   = 6
	sshMsgKexInit         = 20
	sshMsgNewKeys         = 21
	sshMsgKexECDHInit     = 30
	sshMsgKexECDHReply    = 31
	sshMsgUserauthRequest = 50
	sshMsgUserauthSuccess = 52
	sshMsgChannelOpen     = 90
	sshMsgChannelOpenConf = 91
	sshMsgChannelData     = 94
	sshMsgChannelRequest  = 98
	sshMsgChannelSuccess  = 99
	sshMaxChannelData     = 32768
)

// sshCodec speaks the SSH transport protocol as OpenSSH does by default for
// sftp and scp: curve25519-sha256 key exchange with an ed25519 host key,
// aes128-ctr with hmac-sha2-256, password authentication, one session
// channel running the sftp subsystem or an scp command. The key exchange,
// exchange hash, key derivation, encryption and MACs are the real ones; the
// application's messages travel as channel data.
type sshCodec struct {
	rng     *source
	command string // "" runs the sftp subsystem
	side    [2]sshDirection
}

// sshDirection is the cipher state of one direction, [0] client to server.
type sshDirection struct {
	seq    uint32
	stream cipher.Stream
	mac    hash.Hash
}

func newSSHCodec(rng *source, command string) *sshCodec {
	return &sshCodec{rng: rng, command: command}
}

// sshWriter appends SSH wire types.
type sshWriter []byte

func (w *sshWriter) byte(b byte)     { *w = append(*w, b) }
func (w *sshWriter) uint32(v uint32) { *w = binary.BigEndian.AppendUint32(*w, v) }
func (w *sshWriter) bool(b bool) {
	if b {
		w.byte(1)
	} else {
		w.byte(0)
	}
}
func (w *sshWriter) string(s []byte) { w.uint32(uint32(len(s))); *w = append(*w, s...) }
func (w *sshWriter) text(s string)   { w.string([]byte(s)) }

// mpint encodes a big-endian unsigned value as an SSH mpint.
func (w *sshWriter) mpint(v []byte) {
	b := new(big.Int).SetBytes(v).Bytes()
	if len(b) > 0 && b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	w.string(b)
}

func (s *sshCodec) kexInit() []byte {
	var w sshWriter
	w.byte(sshMsgKexInit)
	w = append(w, s.rng.bytes(16)...)
	for _, list := range []string{
		"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256",
		"ssh-ed25519,rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256",
		"aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com",
		"aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com",
		"hmac-sha2-256,hmac-sha2-512,hmac-sha1",
		"hmac-sha2-256,hmac-sha2-512,hmac-sha1",
		"none,zlib@openssh.com", "none,zlib@openssh.com", "", "",
	} {
		w.text(list)
	}
	w.bool(false)
	w.uint32(0)
	return w
}

// packet frames payload as one binary packet from side, encrypted and
// MACed once keys are in use.
func (s *sshCodec) packet(side int, payload []byte) []byte {
	d := &s.side[side]
	block := 8
	if d.stream != nil {
		block = aes.BlockSize
	}
	pad := block - (5+len(payload))%block
	if pad < 4 {
		pad += block
	}
	var w sshWriter
	w.uint32(uint32(1 + len(payload) + pad))
	w.byte(byte(pad))
	w = append(w, payload...)
	w = append(w, s.rng.bytes(pad)...)
	out := []byte(w)
	if d.stream != nil {
		d.mac.Reset()
		var seq [4]byte
		binary.BigEndian.PutUint32(seq[:], d.seq)
		d.mac.Write(seq[:])
		d.mac.Write(out)
		sum := d.mac.Sum(nil)
		d.stream.XORKeyStream(out, out)
		out = append(out, sum...)
	}
	d.seq++
	return out
}

// open is the connection's start: versions and key exchange in the clear,
// then, encrypted under the new keys, user authentication and a session
// channel running the command (sftp when there is none).
func (s *sshCodec) open() ([]chunk, error) {
	out, kex, err := s.keyExchange()
	if err != nil {
		return nil, err
	}
	if err := s.useKeys(kex); err != nil {
		return nil, err
	}
	return append(out, s.session(kex.newKeys)...), nil
}

// sshKex is what a key exchange leaves: the shared secret, the exchange hash
// (also the session id) and the client's NEWKEYS, sent with the first
// encrypted packet.
type sshKex struct {
	secret, hash, newKeys []byte
}

// keyExchange is the version lines, KEXINITs and an X25519 exchange with an
// Ed25519 host key, as chunks.
func (s *sshCodec) keyExchange() ([]chunk, sshKex, error) {
	vc := []byte("SSH-2.0-OpenSSH_7.2p2 Ubuntu-4ubuntu2.1")
	vs := []byte("SSH-2.0-OpenSSH_7.4")
	ic, is := s.kexInit(), s.kexInit()
	out := []chunk{
		{true, append(append([]byte(nil), vc...), "\r\n"...)},
		{false, append(append([]byte(nil), vs...), "\r\n"...)},
		{true, s.packet(0, ic)},
		{false, s.packet(1, is)},
	}
	cliKey, err := ecdh.X25519().NewPrivateKey(s.rng.bytes(32))
	if err != nil {
		return nil, sshKex{}, err
	}
	srvKey, err := ecdh.X25519().NewPrivateKey(s.rng.bytes(32))
	if err != nil {
		return nil, sshKex{}, err
	}
	secret, err := srvKey.ECDH(cliKey.PublicKey())
	if err != nil {
		return nil, sshKex{}, fmt.Errorf("SSH key exchange: %w", err)
	}
	hostKey := ed25519.NewKeyFromSeed(s.rng.bytes(ed25519.SeedSize))
	var ks sshWriter
	ks.text("ssh-ed25519")
	ks.string(hostKey.Public().(ed25519.PublicKey))

	var h sshWriter
	h.string(vc)
	h.string(vs)
	h.string(ic)
	h.string(is)
	h.string(ks)
	h.string(cliKey.PublicKey().Bytes())
	h.string(srvKey.PublicKey().Bytes())
	h.mpint(secret)
	exchangeHash := sha256.Sum256(h)

	var init sshWriter
	init.byte(sshMsgKexECDHInit)
	init.string(cliKey.PublicKey().Bytes())
	var sig sshWriter
	sig.text("ssh-ed25519")
	sig.string(ed25519.Sign(hostKey, exchangeHash[:]))
	var reply sshWriter
	reply.byte(sshMsgKexECDHReply)
	reply.string(ks)
	reply.string(srvKey.PublicKey().Bytes())
	reply.string(sig)
	out = append(out,
		chunk{true, s.packet(0, init)},
		chunk{false, append(s.packet(1, reply), s.packet(1, []byte{sshMsgNewKeys})...)})
	newKeys := s.packet(0, []byte{sshMsgNewKeys})
	return out, sshKex{secret: secret, hash: exchangeHash[:], newKeys: newKeys}, nil
}

// useKeys turns on each side's AES-128-CTR and HMAC-SHA256 with the keys
// RFC 4253 section 7.2 derives: HASH(K || H || letter || session_id).
func (s *sshCodec) useKeys(kex sshKex) error {
	derive := func(letter byte, n int) []byte {
		var k sshWriter
		k.mpint(kex.secret)
		d := sha256.New()
		d.Write(k)
		d.Write(kex.hash)
		d.Write([]byte{letter})
		d.Write(kex.hash)
		return d.Sum(nil)[:n]
	}
	for side, letters := range [2]string{"ACE", "BDF"} {
		blk, err := aes.NewCipher(derive(letters[1], 16))
		if err != nil {
			return err
		}
		s.side[side].stream = cipher.NewCTR(blk, derive(letters[0], 16))
		s.side[side].mac = hmac.New(sha256.New, derive(letters[2], 32))
	}
	return nil
}

// session is the encrypted start: the userauth service, a password login,
// and a session channel with its subsystem or exec request, each answered.
// newKeys (the client's NEWKEYS) travels with the first.
func (s *sshCodec) session(newKeys []byte) []chunk {
	var req, accept sshWriter
	req.byte(sshMsgServiceRequest)
	req.text("ssh-userauth")
	accept.byte(sshMsgServiceAccept)
	accept.text("ssh-userauth")
	var auth sshWriter
	auth.byte(sshMsgUserauthRequest)
	auth.text("user")
	auth.text("ssh-connection")
	auth.text("password")
	auth.bool(false)
	auth.string(s.rng.bytes(s.rng.between(8, 16)))
	var chOpen sshWriter
	chOpen.byte(sshMsgChannelOpen)
	chOpen.text("session")
	chOpen.uint32(0)
	chOpen.uint32(2 << 20)
	chOpen.uint32(sshMaxChannelData)
	var chConf sshWriter
	chConf.byte(sshMsgChannelOpenConf)
	chConf.uint32(0)
	chConf.uint32(0)
	chConf.uint32(2 << 20)
	chConf.uint32(sshMaxChannelData)
	var chReq sshWriter
	chReq.byte(sshMsgChannelRequest)
	chReq.uint32(0)
	if s.command == "" {
		chReq.text("subsystem")
		chReq.bool(true)
		chReq.text("sftp")
	} else {
		chReq.text("exec")
		chReq.bool(true)
		chReq.text(s.command)
	}
	var chOK sshWriter
	chOK.byte(sshMsgChannelSuccess)
	chOK.uint32(0)
	return []chunk{
		{true, append(newKeys, s.packet(0, req)...)},
		{false, s.packet(1, accept)},
		{true, s.packet(0, auth)},
		{false, s.packet(1, []byte{sshMsgUserauthSuccess})},
		{true, s.packet(0, chOpen)},
		{false, s.packet(1, chConf)},
		{true, s.packet(0, chReq)},
		{false, s.packet(1, chOK)},
	}
}

// send carries msg as channel data, split at the channel's maximum packet.
func (s *sshCodec) send(toServer bool, msg []byte) ([]chunk, error) {
	side := 1
	if toServer {
		side = 0
	}
	var wire []byte
	for len(msg) > 0 {
		n := min(len(msg), sshMaxChannelData)
		var w sshWriter
		w.byte(sshMsgChannelData)
		w.uint32(0)
		w.string(msg[:n])
		wire = append(wire, s.packet(side, w)...)
		msg = msg[n:]
	}
	return []chunk{{toServer, wire}}, nil
}

func (s *sshCodec) close() {}
