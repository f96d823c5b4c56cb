// Package live classifies traffic as it passes: frames from a capture
// source (a network interface, or a file replayed at its recorded pace) go
// through the preprocessing of `deeppacket preprocess` (features.Transformer,
// the model's layout), are classified in batches by the model exactly as
// `deeppacket predict` does (model.Batch and Probabilities), and their
// flows get predict's verdict (model.FlowScore) after their first k packets
// and again when they end. Memory is bounded: the queue between capture and
// model and the flow table have fixed sizes, and what does not fit is
// dropped or evicted, and counted.
//
// Imports: data/capture, data/features and model (gopacket's pcap for
// interfaces, Prometheus' client for metrics); never train or ckpt, which
// the command uses to load the model it passes in.
package live

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/model"
)

// Config is what the engine needs besides its source.
type Config struct {
	Model     model.Classifier
	BatchSize int // packets per forward pass
	// MaxDelay bounds the time from a packet's arrival to its
	// classification: a partial batch is run when its first packet has
	// waited this long.
	MaxDelay time.Duration
	// VerdictAfter is k: a flow's first verdict comes with its k-th
	// classified packet.
	VerdictAfter  int
	IdleTimeout   time.Duration
	ActiveTimeout time.Duration
	MaxFlows      int
	QueueLen      int  // packets waiting for the model
	Packets       bool // a row per classified packet too
	Output        *Output
	// StatsInterval is how often the counters are logged (0: never).
	StatsInterval time.Duration
	Metrics       *Metrics // may be nil
}

// Counters are the engine's running totals. Received packets are
// classified, skipped by the preprocessing, or dropped because the queue
// was full: Received = Classified + Skipped + Dropped once the engine has
// stopped.
type Counters struct {
	Received      atomic.Int64
	KernelDropped atomic.Int64 // by the kernel, before Received
	Dropped       atomic.Int64 // by us: the queue was full
	Classified    atomic.Int64
	Skipped       [numSkipReasons]atomic.Int64
	FlowsActive   atomic.Int64
	FlowsEvicted  atomic.Int64
	FlowsEnded    atomic.Int64 // by timeout, eviction or shutdown
	Verdicts      atomic.Int64
}

// Why a packet was skipped: the preprocessing's verdicts, and frames of a
// link type it does not read.
const (
	skipLinkType   = 0
	numSkipReasons = features.NumVerdicts
)

// SkipReason names the skipped counter i.
func SkipReason(i int) string {
	if i == skipLinkType {
		return "link type"
	}
	return features.Verdict(i).String()
}

// SkippedTotal sums the skipped counters.
func (c *Counters) SkippedTotal() int64 {
	var n int64
	for i := range c.Skipped {
		n += c.Skipped[i].Load()
	}
	return n
}

// LogAttrs are the counters as log attributes.
func (c *Counters) LogAttrs() []any {
	return []any{
		"received", c.Received.Load(), "kernel_dropped", c.KernelDropped.Load(), "dropped", c.Dropped.Load(),
		"classified", c.Classified.Load(), "skipped", c.SkippedTotal(),
		"flows_active", c.FlowsActive.Load(), "flows_evicted", c.FlowsEvicted.Load(),
		"flows_ended", c.FlowsEnded.Load(), "verdicts", c.Verdicts.Load(),
	}
}

// item is one kept packet on its way to the model.
type item struct {
	feature []byte
	flow    int64
	tuple   features.FiveTuple
	ts      time.Time // capture time
	arrival time.Time // wall clock, when read
}

// Engine runs one source through the model.
type Engine struct {
	cfg      Config
	src      Source
	Counters Counters

	tr    *features.Transformer
	queue chan *item
	free  chan *item

	batch   *model.Batch
	pending []*item
	top     []int
	flows   *flowTable
}

// New makes an engine over src.
func New(src Source, cfg Config) (*Engine, error) {
	switch {
	case cfg.BatchSize <= 0:
		return nil, fmt.Errorf("live: batch size %d: want a positive number", cfg.BatchSize)
	case cfg.VerdictAfter <= 0:
		return nil, fmt.Errorf("live: verdict after %d packets: want a positive number", cfg.VerdictAfter)
	case cfg.MaxFlows <= 0:
		return nil, fmt.Errorf("live: max flows %d: want a positive number", cfg.MaxFlows)
	case cfg.QueueLen <= 0:
		return nil, fmt.Errorf("live: queue %d: want a positive number", cfg.QueueLen)
	case cfg.MaxDelay <= 0 || cfg.IdleTimeout <= 0 || cfg.ActiveTimeout <= 0:
		return nil, fmt.Errorf("live: max delay, idle and active timeouts must be positive")
	}
	e := &Engine{cfg: cfg, src: src}
	e.tr = features.New(cfg.Model.Preprocessing())
	e.queue = make(chan *item, cfg.QueueLen)
	e.free = make(chan *item, cfg.QueueLen)
	for range cfg.QueueLen {
		e.free <- &item{}
	}
	e.batch = model.NewBatch(e.tr.Options().SignalLength)
	e.flows = newFlowTable(cfg.MaxFlows)
	if cfg.Metrics != nil {
		cfg.Metrics.watch(&e.Counters)
	}
	return e, nil
}

// Run captures until ctx is cancelled or the source ends, then classifies
// what is queued and gives every open flow its final verdict ("shutdown"
// or "end"). A cancelled ctx is a normal end: Run returns nil.
func (e *Engine) Run(ctx context.Context) error {
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	readErr := make(chan error, 1)
	go func() {
		readErr <- e.read(readCtx)
		close(e.queue)
	}()
	err := e.classifyLoop()
	if err != nil {
		// The model failed: stop the reader, which may wait for room.
		stopReading()
		for range e.queue {
		}
	}
	rerr := <-readErr
	e.updateKernelDrops()
	reason := ReasonEnd
	if ctx.Err() != nil {
		reason = ReasonShutdown
	}
	if err == nil {
		e.flows.drain(reason, e.endFlow)
		e.Counters.FlowsActive.Store(0)
		err = e.cfg.Output.Flush()
	}
	if err != nil {
		return err
	}
	return rerr
}

func (e *Engine) updateKernelDrops() {
	if n, err := e.src.KernelDrops(); err == nil {
		e.Counters.KernelDropped.Store(n)
	}
}

// read moves frames from the source through the preprocessing into the
// queue. A full queue drops the packet, unless the source is lossless.
func (e *Engine) read(ctx context.Context) error {
	lossless := e.src.Lossless()
	c := &e.Counters
	for n := 0; ; n++ {
		if n%256 == 0 && ctx.Err() != nil {
			return nil
		}
		data, ci, err := e.src.Read(ctx)
		if errors.Is(err, ErrNoPacket) {
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		if err == io.EOF || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		arrival := time.Now()
		c.Received.Add(1)
		res, err := e.tr.Transform(data, e.src.LinkType())
		if err != nil {
			c.Skipped[skipLinkType].Add(1)
			continue
		}
		if res.Verdict != features.Kept {
			c.Skipped[res.Verdict].Add(1)
			continue
		}
		var it *item
		if lossless {
			select {
			case it = <-e.free:
			case <-ctx.Done():
				c.Dropped.Add(1)
				return nil
			}
		} else {
			select {
			case it = <-e.free:
			default:
				c.Dropped.Add(1)
				continue
			}
		}
		it.feature = append(it.feature[:0], res.Feature...)
		it.flow, it.tuple, it.ts, it.arrival = res.Flow, res.Tuple, ci.Timestamp, arrival
		e.queue <- it
	}
}

// tick is how often flow timeouts are checked.
const tick = 250 * time.Millisecond

// classifyLoop takes packets from the queue into batches, runs a batch
// when it is full or its first packet has waited MaxDelay, and ends the
// flows that time out.
func (e *Engine) classifyLoop() error {
	delay := time.NewTimer(time.Hour)
	delay.Stop()
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var stats <-chan time.Time
	if e.cfg.StatsInterval > 0 {
		t := time.NewTicker(e.cfg.StatsInterval)
		defer t.Stop()
		stats = t.C
	}
	for {
		select {
		case it, ok := <-e.queue:
			if !ok {
				delay.Stop()
				return e.classify()
			}
			e.batch.Add(it.feature)
			e.pending = append(e.pending, it)
			if len(e.pending) == 1 {
				delay.Reset(e.cfg.MaxDelay - time.Since(it.arrival))
			}
			if len(e.pending) >= e.cfg.BatchSize {
				delay.Stop()
				if err := e.classify(); err != nil {
					return err
				}
			}
		case <-delay.C:
			if err := e.classify(); err != nil {
				return err
			}
		case <-ticker.C:
			e.flows.expire(e.src.Now(), e.cfg.IdleTimeout, e.cfg.ActiveTimeout, e.endFlow)
			e.Counters.FlowsActive.Store(int64(e.flows.len()))
			if err := e.cfg.Output.Flush(); err != nil {
				return err
			}
		case <-stats:
			e.updateKernelDrops()
			slog.Info("live", e.Counters.LogAttrs()...)
		}
	}
}

// classify runs the pending batch, writes packet rows and counts each
// packet in its flow's vote, giving the flow its first verdict at its k-th
// packet.
func (e *Engine) classify() error {
	if len(e.pending) == 0 {
		return nil
	}
	probs, err := model.Probabilities(e.cfg.Model, e.batch)
	if err != nil {
		return fmt.Errorf("live: %w", err)
	}
	k := e.cfg.Model.OutputDim()
	task := e.cfg.Model.Task()
	for i, it := range e.pending {
		row := probs[i*k : (i+1)*k]
		e.top = model.TopClasses(e.top[:0], row, 1)
		best := e.top[0]
		if e.cfg.Packets {
			if err := e.cfg.Output.write(PacketRow{"packet", timeString(it.ts), flowString(it.flow), best, task.ClassName(best), float64(row[best])}); err != nil {
				return err
			}
		}
		if it.flow != 0 {
			f, evicted := e.flows.touch(it.flow, it.tuple, it.ts)
			if evicted != nil {
				e.Counters.FlowsEvicted.Add(1)
				e.endFlow(evicted, ReasonEvicted)
			}
			f.score.Add(best, row)
			if f.score.Packets() == int64(e.cfg.VerdictAfter) {
				latency := time.Since(it.arrival)
				if err := e.verdict(f, ReasonFirstK, &latency); err != nil {
					return err
				}
			}
		}
		e.Counters.Classified.Add(1)
		e.free <- it
	}
	e.Counters.FlowsActive.Store(int64(e.flows.len()))
	e.batch.Reset()
	e.pending = e.pending[:0]
	return e.cfg.Output.Flush()
}

// endFlow gives a flow leaving the table its final verdict.
func (e *Engine) endFlow(f *flow, reason string) {
	e.Counters.FlowsEnded.Add(1)
	if err := e.verdict(f, reason, nil); err != nil {
		slog.Error("live: write a verdict", "err", err)
	}
}

func (e *Engine) verdict(f *flow, reason string, latency *time.Duration) error {
	e.Counters.Verdicts.Add(1)
	best, prob := f.score.Verdict()
	row := FlowRow{
		Row: "flow", Time: timeString(e.src.Now()), Flow: flowString(f.id), Tuple: f.tuple.String(),
		LabelID: best, Label: e.cfg.Model.Task().ClassName(best), Probability: prob, Packets: f.score.Packets(), Reason: reason,
	}
	if latency != nil {
		ms := float64(*latency) / float64(time.Millisecond)
		row.LatencyMS = &ms
		if e.cfg.Metrics != nil {
			e.cfg.Metrics.latency.Observe(latency.Seconds())
		}
	}
	return e.cfg.Output.write(row)
}
