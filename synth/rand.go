package synth

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
)

// source is a deterministic random stream derived from the run's seed and a
// label, so that each capture, flow and TLS endpoint draws from its own stream
// and adding a flow never shifts the bytes of another.
type source struct {
	*rand.Rand
	cc *rand.ChaCha8
}

func newSource(seed int64, label ...any) *source {
	h := sha256.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	for _, l := range label {
		switch v := l.(type) {
		case string:
			h.Write([]byte(v))
		case int:
			binary.LittleEndian.PutUint64(b[:], uint64(v))
			h.Write(b[:])
		}
		h.Write([]byte{0})
	}
	var key [32]byte
	copy(key[:], h.Sum(nil))
	cc := rand.NewChaCha8(key)
	return &source{Rand: rand.New(cc), cc: cc}
}

// Read fills p with deterministic bytes; it is the io.Reader given to
// crypto/tls and crypto keys. A read of exactly one byte returns 0 and leaves
// the stream where it was: with GODEBUG=cryptocustomrand=1 the crypto packages
// call randutil.MaybeReadByte, which reads one byte or not at random, and that
// coin toss must not shift every byte after it.
func (s *source) Read(p []byte) (int, error) {
	if len(p) == 1 {
		p[0] = 0
		return 1, nil
	}
	return s.cc.Read(p)
}

// bytes returns n random bytes.
func (s *source) bytes(n int) []byte {
	p := make([]byte, n)
	s.cc.Read(p)
	return p
}

// between returns a uniform integer in [lo, hi].
func (s *source) between(lo, hi int) int { return lo + s.IntN(hi-lo+1) }

// jitter returns d scaled by a uniform factor in [1-f, 1+f].
func (s *source) jitter(d float64, f float64) float64 { return d * (1 - f + 2*f*s.Float64()) }
