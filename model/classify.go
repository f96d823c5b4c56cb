package model

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/torch"
)

// Batch gathers feature vectors into the model's input layout: each vector
// zero-padded (or cut) to signal_length and scaled by 1/255, as the
// reference's loader does. Reuse one Batch across calls to keep its buffer.
type Batch struct {
	signal int
	data   []float32
	n      int
	lens   []int // each row's length before its zero padding
	// order and chunk are Probabilities's buffers: rows by length, and one
	// group's rows cut to its longest.
	order []int
	chunk []float32
}

// NewBatch makes an empty batch for vectors of signal bytes.
func NewBatch(signal int) *Batch { return &Batch{signal: signal} }

// Add appends one vector (the transform's bytes, before padding and
// scaling).
func (b *Batch) Add(feature []byte) {
	if need := (b.n + 1) * b.signal; cap(b.data) < need {
		grown := make([]float32, need, max(need, 2*cap(b.data)))
		copy(grown, b.data)
		b.data = grown
	}
	b.data = b.data[:(b.n+1)*b.signal]
	row := b.data[b.n*b.signal:]
	k := min(len(feature), b.signal)
	for i, c := range feature[:k] {
		row[i] = float32(c) / 255
	}
	clear(row[k:])
	b.n++
	b.lens = append(b.lens, k)
}

// Len is the number of vectors in the batch.
func (b *Batch) Len() int { return b.n }

// Truncate keeps the first n vectors.
func (b *Batch) Truncate(n int) { b.n, b.data, b.lens = n, b.data[:n*b.signal], b.lens[:n] }

// Reset empties the batch, keeping its buffer.
func (b *Batch) Reset() { b.n, b.data, b.lens = 0, b.data[:0], b.lens[:0] }

// Classifier is what classifying packets needs of a model: a checkpoint's
// Model (AsClassifier) or a TorchScript module its user chose to run
// (ckpt.LoadScriptClassifier).
type Classifier interface {
	Forward(x *torch.Tensor) *torch.Tensor
	Device() torch.Device
	Task() labels.Task
	Preprocessing() features.Options
	OutputDim() int
	// Training reports whether dropout and batch norm are in training mode.
	Training() bool
	// Close frees what the classifier holds of its own.
	Close()
}

// AsClassifier is m as a Classifier. Probabilities runs it with the exact
// forward that skips each batch's zero padding (see prefix.go), whose
// tables it takes from m's weights when first used: make a new classifier
// after changing them. Its Close frees those tables, not m. With workers
// above 1, Probabilities runs that many of a batch's groups at once, each
// on a thread of its own: on a CPU, set libtorch's own threads to 1
// (torch.SetNumThreads), as small convolutions split over threads spend
// more in waking them than they gain.
func AsClassifier(m Model, workers int) Classifier {
	return &modelClassifier{Model: m, workers: max(workers, 1)}
}

type modelClassifier struct {
	Model
	workers   int
	jobs      chan groupJob // to the worker threads, started with the tables
	prefix    *prefixForward
	prefixErr error
	once      sync.Once
}

func (m *modelClassifier) Device() torch.Device { return m.Store().Device() }
func (m *modelClassifier) Training() bool       { return m.Store().Training() }

// groupJob is one group of a batch for a worker: run it with the worker's
// buffer, then report to done.
type groupJob struct {
	run  func(chunk *[]float32) error
	done func(error)
}

// Close stops the worker threads and frees the prefix forward's tables; the
// model stays open.
func (m *modelClassifier) Close() {
	if m.jobs != nil {
		close(m.jobs)
		m.jobs = nil
	}
	if m.prefix != nil {
		m.prefix.Close()
		m.prefix = nil
	}
}

// prefixGroup is how many rows of a batch the padding-skipping forward
// takes at a time: rows of similar lengths, so that each group's forward
// stops near the end of its own packets. A group's length is rounded up to
// a multiple of prefixStep: libtorch (oneDNN) compiles and caches a
// convolution for each input shape, and on the ISCX captures lengths to the
// nearest 1 or 16 cost more in compiling (and 150 MB more of cache) than
// the positions they save; 64 was faster than 32 and 128 (BENCHMARKS.md).
const (
	prefixGroup = 64
	prefixStep  = 64
)

// Probabilities runs c on the batch in eval mode without autograd, on c's
// device, and returns the softmax of its logits: Len()×OutputDim values,
// row-major. Every intermediate tensor is freed before it returns. A model
// (AsClassifier) runs the rows in groups of similar lengths with the
// forward that skips their zero padding (prefix.go); other classifiers run
// the batch as it is.
func Probabilities(c Classifier, b *Batch) ([]float32, error) { return classify(c, b, true) }

// Logits is Probabilities before the softmax: the model's outputs.
func Logits(c Classifier, b *Batch) ([]float32, error) { return classify(c, b, false) }

func classify(c Classifier, b *Batch, softmax bool) ([]float32, error) {
	if b.n == 0 {
		return nil, nil
	}
	if c.Training() {
		return nil, fmt.Errorf("classify: the model is in training mode (call Store().Train(false))")
	}
	if mc, ok := c.(*modelClassifier); ok {
		out, err := mc.outputs(b, softmax)
		if err != nil {
			return nil, fmt.Errorf("classify a batch of %d: %w", b.n, err)
		}
		return out, nil
	}
	var out []float32
	err := torch.NoGrad(func() error {
		s := torch.NewScope()
		defer s.Close()
		x := torch.FromSlice(s, b.data, []int64{int64(b.n), 1, int64(b.signal)}, c.Device())
		y := c.Forward(x)
		if softmax {
			y = y.Softmax(1)
		}
		var err error
		out, err = y.Float32s()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("classify a batch of %d: %w", b.n, err)
	}
	return out, nil
}

// outputs runs b's rows by length, prefixGroup at a time, each group cut to
// its longest row (rounded up to prefixStep), on m.workers threads, and puts
// each row's logits (or their softmax) in its place.
func (m *modelClassifier) outputs(b *Batch, softmax bool) ([]float32, error) {
	if err := m.prepare(); err != nil {
		return nil, err
	}
	b.order = b.order[:0]
	for i := range b.n {
		b.order = append(b.order, i)
	}
	slices.SortStableFunc(b.order, func(i, j int) int { return b.lens[i] - b.lens[j] })
	out := make([]float32, b.n*m.OutputDim())
	groups := (b.n + prefixGroup - 1) / prefixGroup
	// Each group runs in libtorch's inference mode (no autograd, no
	// tracking of views and versions: 2-3% of the ISCX run), and yields to
	// the scheduler first: a goroutine that runs 10 ms without passing
	// through it is preempted by the runtime's monitor, which, the
	// goroutine being in a libtorch call, takes its P and then polls every
	// 20 µs for a millisecond (7,000 wake-ups a second on two workers, each
	// a thread switch on a busy core). A group takes a few milliseconds.
	run := func(chunk *[]float32, g int) error {
		runtime.Gosched()
		return torch.InferenceMode(func() error { return m.group(b, out, chunk, g, softmax) })
	}
	if m.workers == 1 || groups == 1 {
		for g := range groups {
			if err := run(&b.chunk, g); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next atomic.Int64 // the next group to take, counting down
	)
	// One job per worker, which takes groups until none is left: longest
	// first (the last, rows being sorted by length), so that the workers
	// end the batch on short groups, together. Handing a job over wakes a
	// thread, which one job per group did 16 times a batch.
	next.Store(int64(groups))
	jobs := min(m.workers, groups)
	wg.Add(jobs)
	for range jobs {
		m.jobs <- groupJob{run: func(chunk *[]float32) error {
			for g := next.Add(-1); g >= 0; g = next.Add(-1) {
				if err := run(chunk, int(g)); err != nil {
					return err
				}
			}
			return nil
		}, done: func(err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			wg.Done()
		}}
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// worker runs jobs for the classifier's life, with a buffer of its own.
func (m *modelClassifier) worker(jobs <-chan groupJob) {
	var chunk []float32
	for j := range jobs {
		j.done(j.run(&chunk))
	}
}

// group runs group g of b's rows (by length, prefixGroup of them), cut to
// its longest row rounded up to prefixStep, and puts each row's logits (or
// their softmax) in its place in out; chunk is the caller's buffer.
func (m *modelClassifier) group(b *Batch, out []float32, chunk *[]float32, g int, softmax bool) error {
	group := b.order[g*prefixGroup : min((g+1)*prefixGroup, b.n)]
	n := min((max(b.lens[group[len(group)-1]], 1)+prefixStep-1)/prefixStep*prefixStep, b.signal)
	*chunk = (*chunk)[:0]
	for _, r := range group {
		*chunk = append(*chunk, b.data[r*b.signal:r*b.signal+n]...)
	}
	probs, err := m.groupOutputs(*chunk, len(group), n, softmax)
	if err != nil {
		return err
	}
	k := m.OutputDim()
	for i, r := range group {
		copy(out[r*k:(r+1)*k], probs[i*k:(i+1)*k])
	}
	return nil
}

// prepare builds the prefix forward's tables and starts the workers, once.
func (m *modelClassifier) prepare() error {
	m.once.Do(func() {
		if m.prefix, m.prefixErr = newPrefixForward(m.Model); m.prefixErr == nil && m.workers > 1 {
			m.jobs = make(chan groupJob)
			for range m.workers {
				go m.worker(m.jobs)
			}
		}
	})
	return m.prefixErr
}

// groupOutputs is the logits (or their softmax) of rows rows of n values
// each (the rest of each row being zero padding).
func (m *modelClassifier) groupOutputs(data []float32, rows, n int, softmax bool) ([]float32, error) {
	s := torch.NewScope()
	defer s.Close()
	x := torch.FromSlice(s, data, []int64{int64(rows), 1, int64(n)}, m.Device())
	y, err := m.prefix.Forward(x)
	if err != nil {
		return nil, err
	}
	if softmax {
		y = y.Softmax(1)
	}
	return y.Float32s()
}

// FlowVote is the one flow rule of predict and evaluate: a flow's class is
// the class most of its packets are classified as, ties going to the lower
// class id. The zero value is empty; Add counts a packet.
type FlowVote struct{ counts map[int64]int64 }

// Add counts one packet classified as class.
func (v *FlowVote) Add(class int64) {
	if v.counts == nil {
		v.counts = map[int64]int64{}
	}
	v.counts[class]++
}

// Winner is the flow's class and how many of its packets have it; -1 when
// no packet was counted.
func (v *FlowVote) Winner() (class, packets int64) {
	class = -1
	for c, n := range v.counts {
		if n > packets || n == packets && c < class {
			class, packets = c, n
		}
	}
	return class, packets
}

// TopClasses appends to dst the k classes of highest probability in row,
// most probable first (ties to the lower id): a packet's class is
// TopClasses(dst, row, 1)[0].
func TopClasses(dst []int, row []float32, k int) []int {
	for c := range row {
		dst = append(dst, c)
	}
	sort.SliceStable(dst, func(i, j int) bool { return row[dst[i]] > row[dst[j]] })
	return dst[:k]
}

// FlowScore is a flow's verdict as predict and live give it: its class by
// the flow rule (FlowVote over its packets' classes) and the mean
// probability of that class over its packets. The zero value is empty.
type FlowScore struct {
	votes   FlowVote
	sum     []float64 // summed probabilities per class
	packets int64
}

// Add counts one packet: its class and its probabilities (a row of
// Probabilities).
func (f *FlowScore) Add(class int, row []float32) {
	if f.sum == nil {
		f.sum = make([]float64, len(row))
	}
	f.votes.Add(int64(class))
	for c, p := range row {
		f.sum[c] += float64(p)
	}
	f.packets++
}

// Packets is the number of packets counted.
func (f *FlowScore) Packets() int64 { return f.packets }

// Verdict is the flow's class and that class's mean probability over its
// packets; (-1, 0) when no packet was counted.
func (f *FlowScore) Verdict() (class int, probability float64) {
	c, _ := f.votes.Winner()
	if c < 0 {
		return -1, 0
	}
	return int(c), f.sum[c] / float64(f.packets)
}
