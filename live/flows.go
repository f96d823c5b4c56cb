package live

import (
	"time"

	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/model"
)

// Reasons for a flow verdict.
const (
	ReasonFirstK   = "first-k"        // the flow's k-th classified packet
	ReasonIdle     = "idle-timeout"   // no packet for the idle timeout
	ReasonActive   = "active-timeout" // open longer than the active timeout
	ReasonEvicted  = "evicted"        // the table was full: least recently active flow
	ReasonEnd      = "end"            // the replayed file ended
	ReasonShutdown = "shutdown"       // SIGINT or SIGTERM
)

// flow is one entry of the table: a direction-independent 5-tuple and the
// score of its classified packets (predict's flow rule).
type flow struct {
	id          int64
	tuple       features.FiveTuple
	first, last time.Time // source clock
	score       model.FlowScore
	prev, next  *flow // activity order, least recent first
}

// flowTable holds at most max flows, in order of their last packet.
type flowTable struct {
	max    int
	byID   map[int64]*flow
	oldest *flow
	newest *flow
}

func newFlowTable(max int) *flowTable {
	return &flowTable{max: max, byID: make(map[int64]*flow, min(max, 1<<16))}
}

func (t *flowTable) len() int { return len(t.byID) }

func (t *flowTable) unlink(f *flow) {
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		t.oldest = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		t.newest = f.prev
	}
	f.prev, f.next = nil, nil
}

func (t *flowTable) pushNewest(f *flow) {
	f.prev = t.newest
	if t.newest != nil {
		t.newest.next = f
	} else {
		t.oldest = f
	}
	t.newest = f
}

// touch returns the flow of a packet at time now, creating it when new; a
// full table first gives up its least recently active flow, returned as
// evicted.
func (t *flowTable) touch(id int64, tuple features.FiveTuple, now time.Time) (f, evicted *flow) {
	if f = t.byID[id]; f != nil {
		t.unlink(f)
	} else {
		if len(t.byID) >= t.max {
			evicted = t.oldest
			t.remove(evicted)
		}
		f = &flow{id: id, tuple: tuple, first: now}
		t.byID[id] = f
	}
	if now.After(f.last) {
		f.last = now
	}
	t.pushNewest(f)
	return f, evicted
}

func (t *flowTable) remove(f *flow) {
	t.unlink(f)
	delete(t.byID, f.id)
}

// expire removes and passes to end every flow idle for idle or open for
// longer than active at time now, least recently active first.
func (t *flowTable) expire(now time.Time, idle, active time.Duration, end func(*flow, string)) {
	for f := t.oldest; f != nil; {
		next := f.next
		switch {
		case now.Sub(f.last) >= idle:
			t.remove(f)
			end(f, ReasonIdle)
		case now.Sub(f.first) >= active:
			t.remove(f)
			end(f, ReasonActive)
		}
		f = next
	}
}

// drain removes and passes to end every flow, least recently active first.
func (t *flowTable) drain(reason string, end func(*flow, string)) {
	for t.oldest != nil {
		f := t.oldest
		t.remove(f)
		end(f, reason)
	}
}
