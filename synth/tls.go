package synth

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// chunk is bytes one side wrote onto the wire.
type chunk struct {
	toServer bool
	data     []byte
}

// codec turns application messages into the bytes a protocol puts on a TCP
// stream: TLS records, SSH packets, or the messages themselves.
type codec interface {
	// open returns the protocol's opening exchange.
	open() ([]chunk, error)
	// send returns what crosses the wire when one side sends msg.
	send(toServer bool, msg []byte) ([]chunk, error)
	// close releases the codec's resources.
	close()
}

// plainCodec is a protocol without a handshake of its own (BitTorrent's peer
// wire protocol, for one): messages cross as they are.
type plainCodec struct{}

func (plainCodec) open() ([]chunk, error) { return nil, nil }
func (plainCodec) send(toServer bool, msg []byte) ([]chunk, error) {
	return []chunk{{toServer, msg}}, nil
}
func (plainCodec) close() {}

// tlsCodec runs a real TLS 1.2 or 1.3 session between an in-process crypto/tls
// client and server and returns the records each writes.
type tlsCodec struct {
	client, server *tls.Conn
	toServer       *pipeHalf // what the client writes
	toClient       *pipeHalf // what the server writes
	recordSize     int       // the largest record written; 0 for TLS's limit
}

// tlsIdentity is a server's self-signed certificate. Ed25519 keeps both the
// key (from a seed) and its signatures deterministic.
type tlsIdentity struct {
	cert tls.Certificate
	pool *x509.CertPool
}

func newTLSIdentity(rng *source, name string, notBefore time.Time) (*tlsIdentity, error) {
	key := ed25519.NewKeyFromSeed(rng.bytes(ed25519.SeedSize))
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(rng.bytes(16)),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             notBefore.Add(-30 * 24 * time.Hour),
		NotAfter:              notBefore.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rng, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: %w", name, err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(parsed)
	return &tlsIdentity{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: parsed}, pool: pool}, nil
}

// tlsProfile is how a service's client and server speak TLS, which
// differs between real services: the version and cipher suite they settle
// on (TLS 1.2's records show an explicit nonce or IV, its CBC suites pad),
// the ALPN protocols the client offers, and the largest record the sender
// writes (some servers keep records to one TCP segment).
type tlsProfile struct {
	version    uint16 // the highest version both ends speak
	suite      uint16 // the TLS 1.2 cipher suite; TLS 1.3 uses its default
	alpn       []string
	recordSize int // 0: as large as TLS allows (16 kB)
}

// newTLSCodec prepares a session with server name name at time now. Each
// end draws from its own stream so that the two goroutines of the handshake
// cannot interleave their reads of one source.
func newTLSCodec(seed int64, label string, id *tlsIdentity, name string, now time.Time, prof tlsProfile) *tlsCodec {
	clock := func() time.Time { return now }
	writes := new(atomic.Int64)
	toServer, toClient := newPipeHalf(writes), newPipeHalf(writes)
	var suites []uint16
	if prof.suite != 0 {
		suites = []uint16{prof.suite}
	}
	client := tls.Client(&pipeConn{r: toClient, w: toServer}, &tls.Config{
		Rand:             newSource(seed, label, "tls client"),
		Time:             clock,
		ServerName:       name,
		RootCAs:          id.pool,
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       prof.version,
		CipherSuites:     suites,
		CurvePreferences: []tls.CurveID{tls.X25519}, // ML-KEM encapsulation ignores Config.Rand
		NextProtos:       prof.alpn,
	})
	server := tls.Server(&pipeConn{r: toServer, w: toClient}, &tls.Config{
		Rand:                   newSource(seed, label, "tls server"),
		Time:                   clock,
		Certificates:           []tls.Certificate{id.cert},
		MinVersion:             tls.VersionTLS12,
		MaxVersion:             prof.version,
		CipherSuites:           suites,
		CurvePreferences:       []tls.CurveID{tls.X25519},
		NextProtos:             prof.alpn,
		SessionTicketsDisabled: true,
	})
	return &tlsCodec{client: client, server: server, toServer: toServer, toClient: toClient, recordSize: prof.recordSize}
}

// open runs the handshake and returns each end's writes in the order they
// were made, which follows the exchange: the server answers what it has
// read, and so does the client.
func (t *tlsCodec) open() ([]chunk, error) {
	errs := make(chan error, 1)
	go func() { errs <- t.server.Handshake() }()
	cerr := t.client.Handshake()
	serr := <-errs
	if err := errors.Join(cerr, serr); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	cw, sw := t.toServer.takeWrites(), t.toClient.takeWrites()
	if len(cw) == 0 || len(sw) == 0 {
		return nil, errors.New("TLS handshake: a side wrote nothing")
	}
	var out []chunk
	for len(cw) > 0 || len(sw) > 0 {
		if len(sw) == 0 || len(cw) > 0 && cw[0].seq < sw[0].seq {
			out, cw = append(out, chunk{true, cw[0].data}), cw[1:]
		} else {
			out, sw = append(out, chunk{false, sw[0].data}), sw[1:]
		}
	}
	return out, nil
}

// send writes msg on one end and reads it on the other. The receiving end
// may answer on its own (a TLS stack can send post-handshake messages); what
// it wrote follows the message.
func (t *tlsCodec) send(toServer bool, msg []byte) ([]chunk, error) {
	w, r, wp, rp := t.server, t.client, t.toClient, t.toServer
	if toServer {
		w, r, wp, rp = t.client, t.server, t.toServer, t.toClient
	}
	step := len(msg)
	if t.recordSize > 0 {
		step = t.recordSize
	}
	for rest := msg; len(rest) > 0; rest = rest[min(step, len(rest)):] {
		if _, err := w.Write(rest[:min(step, len(rest))]); err != nil {
			return nil, fmt.Errorf("TLS write: %w", err)
		}
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("TLS read: %w", err)
	}
	out := []chunk{{toServer, join(wp.takeWrites())}}
	if reply := rp.takeWrites(); len(reply) > 0 {
		out = append(out, chunk{!toServer, join(reply)})
	}
	return out, nil
}

func (t *tlsCodec) close() {
	t.toServer.closeWrite()
	t.toClient.closeWrite()
}

func join(ws []write) []byte {
	var out []byte
	for _, w := range ws {
		out = append(out, w.data...)
	}
	return out
}

// write is one write to a pipe, numbered in the order of all writes to
// both halves.
type write struct {
	seq  int64
	data []byte
}

// pipeHalf is one direction of an in-memory connection. Unlike net.Pipe a
// write never waits for the reader, so both TLS ends may write at once (as
// the client's second flight and the server's first do) without deadlock;
// it also keeps each write so the caller can put it on the wire.
type pipeHalf struct {
	mu     sync.Mutex
	cond   *sync.Cond
	unread []byte
	writes []write
	clock  *atomic.Int64 // numbers the writes of both halves
	closed bool
}

func newPipeHalf(clock *atomic.Int64) *pipeHalf {
	p := &pipeHalf{clock: clock}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *pipeHalf) write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, net.ErrClosed
	}
	p.unread = append(p.unread, b...)
	p.writes = append(p.writes, write{p.clock.Add(1), append([]byte(nil), b...)})
	p.cond.Broadcast()
	return len(b), nil
}

func (p *pipeHalf) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.unread) == 0 && !p.closed {
		p.cond.Wait()
	}
	if len(p.unread) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.unread)
	p.unread = p.unread[n:]
	return n, nil
}

func (p *pipeHalf) takeWrites() []write {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.writes
	p.writes = nil
	return w
}

func (p *pipeHalf) closeWrite() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.cond.Broadcast()
}

// pipeConn is one end of the in-memory connection.
type pipeConn struct{ r, w *pipeHalf }

func (c *pipeConn) Read(b []byte) (int, error)  { return c.r.read(b) }
func (c *pipeConn) Write(b []byte) (int, error) { return c.w.write(b) }
func (c *pipeConn) Close() error {
	c.w.closeWrite()
	return nil
}
func (c *pipeConn) LocalAddr() net.Addr              { return pipeAddr{} }
func (c *pipeConn) RemoteAddr() net.Addr             { return pipeAddr{} }
func (c *pipeConn) SetDeadline(time.Time) error      { return nil }
func (c *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *pipeConn) SetWriteDeadline(time.Time) error { return nil }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
