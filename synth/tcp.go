package synth

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// tcpMSS is the payload of a full segment: a 1500-byte MTU less the IPv4,
// TCP and timestamp-option headers.
const tcpMSS = 1500 - 20 - 20 - 12

// tcpConn frames two byte streams into the TCP segments a client-side capture
// records: the three-way handshake, data segments of at most tcpMSS bytes with
// running sequence and acknowledgement numbers, an ACK from the receiver for
// every second segment, and the FIN teardown. Packets collect in out until
// the flow hands them on.
type tcpConn struct {
	rng      *source
	ends     [2]*host   // [0] the client, [1] the server
	ports    [2]uint16  // the same order
	seq      [2]uint32  // next sequence number each side sends
	window   [2]uint16  // advertised (scaled) windows
	rate     [2]float64 // bytes per second each side sends at
	tsBase   [2]uint32  // TCP timestamp clock offsets
	rtt      time.Duration
	start    time.Time
	now      time.Time
	lastFrom int       // side of the last data, to add a round trip when the turn changes
	lastReq  time.Time // when the client's last data segment left
	out      []ipPacket
}

func newTCPConn(rng *source, cli, srv *host, cliPort, srvPort uint16, at time.Time, rtt time.Duration, upRate, downRate float64) *tcpConn {
	return &tcpConn{
		rng:      rng,
		ends:     [2]*host{cli, srv},
		ports:    [2]uint16{cliPort, srvPort},
		seq:      [2]uint32{rng.Uint32(), rng.Uint32()},
		window:   [2]uint16{uint16(rng.between(500, 2050)), uint16(rng.between(230, 1000))},
		rate:     [2]float64{upRate, downRate},
		tsBase:   [2]uint32{rng.Uint32(), rng.Uint32()},
		rtt:      rtt,
		start:    at,
		now:      at,
		lastFrom: -1,
	}
}

type tcpFlags struct{ syn, ack, psh, fin bool }

// segment records one segment sent by side from at ts.
func (c *tcpConn) segment(ts time.Time, from int, f tcpFlags, payload []byte) {
	to := 1 - from
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(c.ports[from]),
		DstPort: layers.TCPPort(c.ports[to]),
		Seq:     c.seq[from],
		SYN:     f.syn,
		ACK:     f.ack,
		PSH:     f.psh,
		FIN:     f.fin,
		Window:  c.window[from],
	}
	if f.ack {
		tcp.Ack = c.seq[to]
	}
	tsval := make([]byte, 8)
	ms := uint32(ts.Sub(c.start) / time.Millisecond)
	binary.BigEndian.PutUint32(tsval, c.tsBase[from]+ms)
	if f.ack {
		binary.BigEndian.PutUint32(tsval[4:], c.tsBase[to]+ms)
	}
	if f.syn {
		// A SYN's window is never scaled; it advertises the full 64 kB.
		tcp.Window = 64240
		tcp.Options = []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: tsval},
			{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
		}
	} else {
		tcp.Options = []layers.TCPOption{
			{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
			{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: tsval},
		}
	}
	data := serialize(c.ends[from].ipv4(c.ends[to], layers.IPProtocolTCP), tcp, payload)
	c.out = append(c.out, ipPacket{ts: ts, toServer: from == 0, payload: len(payload) > 0, data: data})
	c.seq[from] += uint32(len(payload))
	if f.syn || f.fin {
		c.seq[from]++
	}
}

// open records the three-way handshake.
func (c *tcpConn) open() {
	c.segment(c.now, 0, tcpFlags{syn: true}, nil)
	c.segment(c.now.Add(c.rtt), 1, tcpFlags{syn: true, ack: true}, nil)
	c.now = c.now.Add(c.rtt + c.small())
	c.segment(c.now, 0, tcpFlags{ack: true}, nil)
}

// small is a host's processing delay, tens to hundreds of microseconds.
func (c *tcpConn) small() time.Duration {
	return time.Duration(c.rng.between(30, 400)) * time.Microsecond
}

// send records data sent by one side after gap: segments paced at that
// side's rate, and the receiver's acknowledgements (seen a round trip later
// when the server receives, at once when the client does). A server's reply
// to the client arrives a round trip after the client last spoke.
func (c *tcpConn) send(toServer bool, gap time.Duration, data []byte) {
	from := 1
	if toServer {
		from = 0
	}
	if from == 1 && c.lastFrom == 0 {
		// The reply leaves the server gap after the request reached it,
		// and reaches the client a round trip after the request left.
		c.now = later(c.now, c.lastReq.Add(c.rtt+gap))
	} else {
		c.now = c.now.Add(gap)
	}
	c.lastFrom = from
	ackDelay := c.small
	if from == 0 {
		ackDelay = func() time.Duration { return c.rtt + c.small() }
	}
	ts := c.now
	last := ts
	for i := 0; len(data) > 0; i++ {
		n := min(len(data), tcpMSS)
		c.segment(ts, from, tcpFlags{ack: true, psh: n == len(data)}, data[:n])
		if from == 0 {
			c.lastReq = ts
		}
		data = data[n:]
		if i%2 == 1 || len(data) == 0 {
			last = ts.Add(ackDelay())
			c.segment(last, 1-from, tcpFlags{ack: true}, nil)
		}
		ts = ts.Add(time.Duration(float64(n+52) / c.rate[from] * float64(time.Second)))
	}
	c.now = later(ts, last)
}

// close records the teardown started by the client or the server after gap.
func (c *tcpConn) close(byClient bool, gap time.Duration) {
	c.now = c.now.Add(gap)
	fin := tcpFlags{ack: true, fin: true}
	if byClient {
		c.segment(c.now, 0, fin, nil)
		c.now = c.now.Add(c.rtt)
		c.segment(c.now, 1, fin, nil)
		c.now = c.now.Add(c.small())
		c.segment(c.now, 0, tcpFlags{ack: true}, nil)
		return
	}
	c.segment(c.now, 1, fin, nil)
	c.now = c.now.Add(c.small())
	c.segment(c.now, 0, fin, nil)
	c.now = c.now.Add(c.rtt)
	c.segment(c.now, 1, tcpFlags{ack: true}, nil)
}

// take hands on the packets recorded so far, in time order.
func (c *tcpConn) take() []ipPacket {
	out := c.out
	c.out = nil
	sortByTime(out)
	return out
}

// sortByTime orders a batch by timestamp, keeping the order of equal times.
func sortByTime(b []ipPacket) {
	slices.SortStableFunc(b, func(x, y ipPacket) int { return x.ts.Compare(y.ts) })
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
