package synth

import (
	"container/heap"
	"io"
	"time"
)

// flow yields the packets of one conversation in time order, a batch at a
// time, and io.EOF after its last.
type flow interface {
	next() ([]ipPacket, error)
}

// message is one application message of a conversation.
type message struct {
	toServer bool
	gap      time.Duration // pause since the previous message
	data     []byte
}

// script yields a conversation's messages; ok is false after the last.
type script func() (m message, ok bool)

// tcpFlow is a TCP connection carrying a codec's bytes for a script.
type tcpFlow struct {
	conn  *tcpConn
	codec codec
	// budget is the kept packets the flow aims at; the codec's opening
	// takes its share and newScript is given the rest.
	budget        int
	newScript     func(budget int) script
	script        script
	closeByClient bool
	state         int // 0 before the handshake, 1 open, 2 closed
}

func (f *tcpFlow) next() ([]ipPacket, error) {
	switch f.state {
	case 0:
		f.conn.open()
		chunks, err := f.codec.open()
		if err != nil {
			return nil, err
		}
		opening := 0
		for _, c := range chunks {
			f.conn.send(c.toServer, f.conn.small(), c.data)
			opening += segments(len(c.data))
		}
		f.script = f.newScript(max(1, f.budget-opening))
		f.state = 1
	case 1:
		m, ok := f.script()
		if !ok {
			f.conn.close(f.closeByClient, time.Duration(f.conn.rng.between(5, 500))*time.Millisecond)
			f.codec.close()
			f.state = 2
			break
		}
		chunks, err := f.codec.send(m.toServer, m.data)
		if err != nil {
			return nil, err
		}
		for i, c := range chunks {
			gap := m.gap
			if i > 0 {
				gap = f.conn.small()
			}
			f.conn.send(c.toServer, gap, c.data)
		}
	default:
		return nil, io.EOF
	}
	return f.conn.take(), nil
}

// flowStarter makes the next flow of a capture and the time it starts, or
// reports that there are no more.
type flowStarter func() (at time.Time, f flow, ok bool, err error)

// fixedFlows starts the given flows at the given times, in order.
func fixedFlows(at []time.Time, fs []flow) flowStarter {
	i := 0
	return func() (time.Time, flow, bool, error) {
		if i == len(fs) {
			return time.Time{}, nil, false, nil
		}
		i++
		return at[i-1], fs[i-1], true, nil
	}
}

// mux merges flows into one time-ordered flow. It starts each flow only
// when the merged output reaches that flow's start time, so memory holds the
// flows that overlap in time, never the whole capture.
type mux struct {
	start   flowStarter
	nextAt  time.Time
	nextF   flow
	more    bool
	running flowHeap
}

func newMux(start flowStarter) (*mux, error) {
	m := &mux{start: start}
	return m, m.peek()
}

func (m *mux) peek() error {
	at, f, ok, err := m.start()
	m.nextAt, m.nextF, m.more = at, f, ok
	return err
}

// next returns the earliest pending packet of all flows.
func (m *mux) next() ([]ipPacket, error) {
	for m.more && (m.running.Len() == 0 || !m.running[0].head().ts.Before(m.nextAt)) {
		r := &runningFlow{f: m.nextF}
		if err := r.fill(); err != nil && err != io.EOF {
			return nil, err
		} else if err == nil {
			heap.Push(&m.running, r)
		}
		if err := m.peek(); err != nil {
			return nil, err
		}
	}
	if m.running.Len() == 0 {
		return nil, io.EOF
	}
	r := m.running[0]
	p := r.head()
	r.i++
	if r.i == len(r.batch) {
		if err := r.fill(); err == io.EOF {
			heap.Pop(&m.running)
			return []ipPacket{p}, nil
		} else if err != nil {
			return nil, err
		}
	}
	heap.Fix(&m.running, 0)
	return []ipPacket{p}, nil
}

type runningFlow struct {
	f     flow
	batch []ipPacket
	i     int
}

func (r *runningFlow) head() ipPacket { return r.batch[r.i] }

// fill fetches the flow's next non-empty batch.
func (r *runningFlow) fill() error {
	for {
		b, err := r.f.next()
		if err != nil {
			return err
		}
		if len(b) > 0 {
			r.batch, r.i = b, 0
			return nil
		}
	}
}

type flowHeap []*runningFlow

func (h flowHeap) Len() int           { return len(h) }
func (h flowHeap) Less(i, j int) bool { return h[i].head().ts.Before(h[j].head().ts) }
func (h flowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *flowHeap) Push(x any)        { *h = append(*h, x.(*runningFlow)) }
func (h *flowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
