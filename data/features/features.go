// Package features turns captured frames into Deep Packet feature vectors:
// the link-layer header removed, UDP padded with 12 zero bytes, IP
// addresses masked, packets without payload and DNS packets omitted, the
// bytes truncated to the signal length. Padding to the signal length and
// scaling by 1/255 happen when the vectors are loaded; the bytes stay bytes.
//
// Two layouts exist. LayoutReference reproduces byte for byte what the
// PyTorch reference (scapy) produces, quirks included, so that its published
// checkpoints see the inputs they were trained on. LayoutPaper does what the
// Deep Packet paper describes.
//
// Imports: data/capture, data/dataset, labels; no torch or model code.
package features

import (
	"errors"
	"fmt"

	"github.com/gopacket/gopacket/layers"

	"github.com/deeppacket/deeppacket/data/capture"
)

// Layout chooses how a packet becomes a vector.
type Layout int

const (
	// LayoutReference: what the reference's scapy code produces. The 12
	// zeros for UDP land after the payload, link-layer trailer bytes stay,
	// the "no payload" rule reads the IPv4 header's flags (DF/MF) where
	// the reference's packet.flags finds them first, non-IP packets are
	// kept and an 802.1Q tag stays at the front.
	LayoutReference Layout = iota
	// LayoutPaper: 12 zeros right after the 8-byte UDP header, the IP
	// packet only (trailer dropped), TCP segments without payload omitted
	// when SYN, ACK or FIN is set, non-IP packets omitted, IPv6 addresses
	// masked as well as IPv4 ones.
	LayoutPaper
)

func (l Layout) String() string {
	if l == LayoutPaper {
		return "paper"
	}
	return "reference"
}

// ParseLayout reads "reference" or "paper".
func ParseLayout(s string) (Layout, error) {
	switch s {
	case "reference", "":
		return LayoutReference, nil
	case "paper":
		return LayoutPaper, nil
	}
	return 0, fmt.Errorf("layout %q: want reference or paper", s)
}

// Verdict says whether a packet was kept and, if not, why. The values of
// the first three are those of the reference's golden files.
type Verdict uint8

const (
	Kept          Verdict = 0
	OmitNoPayload Verdict = 1 // a TCP segment without payload
	OmitDNS       Verdict = 2
	OmitNonIP     Verdict = 3 // paper layout only
)

// NumVerdicts is the number of distinct verdicts, for counting by verdict.
const NumVerdicts = 4

func (v Verdict) String() string {
	switch v {
	case Kept:
		return "kept"
	case OmitNoPayload:
		return "no payload"
	case OmitDNS:
		return "dns"
	case OmitNonIP:
		return "not ip"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// DefaultSignalLength is the vector length of the paper and the reference.
const DefaultSignalLength = 1500

// Options configure a Transformer.
type Options struct {
	Layout Layout
	// MaskPorts zeroes TCP and UDP ports (paper layout), so that a model
	// cannot learn flows by their ports.
	MaskPorts bool
	// SignalLength truncates the vector; 0 means DefaultSignalLength.
	SignalLength int
}

// ErrLinkType is returned for frames of a link type the transform does not
// read.
var ErrLinkType = errors.New("unsupported link type")

// Result is what Transform makes of one frame.
type Result struct {
	// Feature holds the vector's bytes, at most SignalLength of them, before
	// zero-padding and scaling. It is owned by the Transformer and valid
	// until the next call; nil unless Verdict is Kept.
	Feature []byte
	Verdict Verdict
	// Flow identifies the direction-independent 5-tuple (0 for non-IP),
	// and Tuple is that 5-tuple.
	Flow  int64
	Tuple FiveTuple
}

// Transformer turns frames into feature vectors, reusing one buffer so that
// the hot path allocates nothing. It is not safe for concurrent use.
type Transformer struct {
	opts Options
	buf  []byte // backing store of the vectors, SignalLength bytes
	out  []byte // the vector last emitted, a prefix of buf
	d    dissection
}

// New returns a Transformer.
func New(opts Options) *Transformer {
	if opts.SignalLength <= 0 {
		opts.SignalLength = DefaultSignalLength
	}
	t := &Transformer{opts: opts, buf: make([]byte, opts.SignalLength)}
	t.d.tunnels = opts.Layout == LayoutPaper
	return t
}

// Options returns the Transformer's options, defaults filled in.
func (t *Transformer) Options() Options { return t.opts }

// udpPad is the number of zero bytes the paper adds to UDP packets so that
// their header is as long as TCP's.
const udpPad = 12

// Transform makes the feature vector of frame, a packet of link type lt.
func (t *Transformer) Transform(frame []byte, lt layers.LinkType) (Result, error) {
	if !Supported(lt) {
		return Result{}, fmt.Errorf("%w %d (%s)", ErrLinkType, int(lt), capture.LinkTypeName(lt))
	}
	d := &t.d
	d.dissect(frame, lt)
	var res Result
	res.Flow, res.Tuple = flowID(frame, d)
	if t.opts.Layout == LayoutPaper {
		res.Verdict = t.paper(frame, &res)
	} else {
		res.Verdict = t.reference(frame, &res)
	}
	return res, nil
}

func (t *Transformer) reference(frame []byte, res *Result) Verdict {
	d := &t.d
	if d.tcp >= 0 && d.flags&0x13 != 0 && d.tcpPayload == 0 {
		return OmitNoPayload
	}
	if d.dns {
		return OmitDNS
	}
	pad := 0
	if d.udp >= 0 {
		pad = udpPad
	}
	// scapy builds padding layers last: the 12 zeros come after the
	// payload, before the bytes beyond the IP/UDP length fields.
	res.Feature = t.emit(frame, d.start, len(frame), d.nonPad, pad)
	if d.ipv4 >= 0 {
		t.zero(d.ipv4+12, d.ipv4+20, d.start, d.nonPad, pad)
	}
	return Kept
}

func (t *Transformer) paper(frame []byte, res *Result) Verdict {
	d := &t.d
	if d.net < 0 {
		return OmitNonIP
	}
	if d.tcp >= 0 && d.tcpFlags&0x13 != 0 && d.tcpPayload == 0 {
		return OmitNoPayload
	}
	if d.dns {
		return OmitDNS
	}
	at, pad := d.ipEnd, 0
	if d.udp >= 0 && d.udp+8 <= d.ipEnd {
		at, pad = d.udp+8, udpPad
	}
	res.Feature = t.emit(frame, d.net, d.ipEnd, at, pad)
	for _, ip := range d.ips[:d.nips] {
		if frame[ip]>>4 == 6 {
			t.zero(ip+8, ip+40, d.net, at, pad)
		} else {
			t.zero(ip+12, ip+20, d.net, at, pad)
		}
	}
	if t.opts.MaskPorts {
		for _, l4 := range [2]int{d.tcp, d.udp} {
			if l4 >= 0 {
				t.zero(l4, l4+4, d.net, at, pad)
			}
		}
	}
	return Kept
}

// emit copies frame[start:end] into the buffer with pad zero bytes inserted
// before frame[at], truncated to the signal length.
func (t *Transformer) emit(frame []byte, start, end, at, pad int) []byte {
	at = min(max(at, start), end)
	out := t.buf[:0]
	limit := t.opts.SignalLength
	out = append(out, frame[start:min(at, start+limit)]...)
	for i := 0; i < pad && len(out) < limit; i++ {
		out = append(out, 0)
	}
	if rest := limit - len(out); rest > 0 {
		out = append(out, frame[at:min(end, at+rest)]...)
	}
	t.out = out
	return out
}

// zero clears frame bytes [from, to) in the emitted vector, mapping frame
// offsets through the insertion emit made.
func (t *Transformer) zero(from, to, start, at, pad int) {
	at = max(at, start)
	for p := from; p < to; p++ {
		q := p - start
		if p >= at {
			q += pad
		}
		if q >= 0 && q < len(t.out) {
			t.out[q] = 0
		}
	}
}
