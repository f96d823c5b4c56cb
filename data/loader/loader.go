// Package loader feeds train and test sets to a model: batches of float32
// features of shape [batch, 1, signal_length] scaled to [0, 1] and int64
// labels, shuffled per epoch, decoded ahead of time in goroutines.
//
// It reads the sets `deeppacket split` writes, in either format, and the
// reference's own Spark output (a folder of part-*.parquet files with a list
// of doubles and a long label), recognising each file by its schema.
//
// Batch is plain Go memory laid out as the model's input tensor, so turning
// it into a tensor is one copy; the package does not depend on torch.
//
// Imports: data/dataset; no torch (batches are float32 slices).
package loader

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/deeppacket/deeppacket/data/dataset"
)

// Options configure a Loader. Zero fields take the defaults in brackets.
type Options struct {
	BatchSize    int // rows per batch [16, the reference's]
	SignalLength int // features are zero-padded to it; a longer one is an error [1500]
	// NumClasses is the model's number of classes: a label outside
	// [0, NumClasses) is an error naming the file and row. 0 checks nothing.
	NumClasses int
	// Shuffle mixes the rows each epoch; the order depends only on Seed
	// and the epoch number.
	Shuffle bool
	Seed    uint64
	// DropLast leaves out a last batch smaller than BatchSize.
	DropLast bool
	// ShuffleWindow is how many rows are mixed at once [65536]: row groups
	// are taken in a random order and the rows of each window of them
	// shuffled, which bounds memory whatever the size of the set. A set no
	// larger than the window is shuffled uniformly.
	ShuffleWindow int
	ReadAhead     int // batches prepared ahead of the consumer [64]
	Workers       int // row groups decoded at once [2]
	// Indices, when set, chooses each epoch's rows by their index in the
	// set (0 to Rows()-1, in file and row order), given the set's size: a
	// distributed rank's DistributedSampler list. The epoch yields exactly
	// those rows, in that order (Shuffle and ShuffleWindow do not apply),
	// and holds only them: every row group is read, the other rows dropped.
	Indices func(epoch int, rows int64) ([]int64, error)
}

func (o *Options) setDefaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 16
	}
	if o.SignalLength <= 0 {
		o.SignalLength = 1500
	}
	if o.ShuffleWindow <= 0 {
		o.ShuffleWindow = 1 << 16
	}
	if o.ReadAhead <= 0 {
		o.ReadAhead = 64
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
}

// Batch is one batch, valid until the next call to Next or Close.
type Batch struct {
	// Features holds Size*SignalLength values, row after row: the memory of
	// a [Size, 1, SignalLength] tensor.
	Features []float32
	Labels   []int64
	// Shape is {Size, 1, SignalLength}.
	Shape [3]int64
	Size  int
}

// scale maps a byte to its feature value as the reference computes it (a
// float64 division by 255, which PyTorch then casts to float32).
var scale = func() (t [256]float32) {
	for b := range t {
		t[b] = float32(dataset.ByteScale[b])
	}
	return t
}()

// unit is one row group, the piece the loader reads and shuffles.
type unit struct {
	file, rowGroup int
	rows           int64
}

// Loader reads one set. Call Epoch for each pass over it and Close at the end.
type Loader struct {
	opts  Options
	files []*dataset.SetFile
	units []unit
	rows  int64
	lim   dataset.Limits

	// free holds the batches not in use; made counts those allocated, at
	// most ReadAhead+2 (the queue, the one being filled, the consumer's).
	free    chan *Batch
	made    int
	rowPool chan *dataset.Rows
	current *Epoch
	// epochRows is the current epoch's row count when Indices chooses them.
	epochRows int64
}

// Open opens a set: a Parquet file, or a folder of them (a set `deeppacket
// split` wrote, or the reference's train.parquet folder of part files).
func Open(path string, opts Options) (*Loader, error) {
	opts.setDefaults()
	paths, err := dataset.SetFiles(path)
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("read %s: no .parquet files", path)
	}
	l := &Loader{
		opts:    opts,
		lim:     dataset.Limits{SignalLength: opts.SignalLength, NumClasses: opts.NumClasses},
		free:    make(chan *Batch, opts.ReadAhead+2),
		rowPool: make(chan *dataset.Rows, 4*opts.Workers),
	}
	for i, p := range paths {
		f, err := dataset.OpenSetFile(p)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.files = append(l.files, f)
		for rg := range f.NumRowGroups() {
			if n := f.RowGroupRows(rg); n > 0 {
				l.units = append(l.units, unit{file: i, rowGroup: rg, rows: n})
				l.rows += n
			}
		}
	}
	return l, nil
}

// Rows is the number of rows in the set.
func (l *Loader) Rows() int64 { return l.rows }

// Batches is the number of batches an epoch yields (with Indices, the
// current epoch's).
func (l *Loader) Batches() int {
	rows := l.rows
	if l.opts.Indices != nil {
		rows = l.epochRows
	}
	n := int(rows) / l.opts.BatchSize
	if !l.opts.DropLast && int(rows)%l.opts.BatchSize != 0 {
		n++
	}
	return n
}

// Close stops a running epoch and closes the files.
func (l *Loader) Close() error {
	if l.current != nil {
		l.current.Close()
	}
	var err error
	for _, f := range l.files {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	l.files = nil
	return err
}

// Epoch starts pass number epoch over the set (numbers give the shuffle
// order: the same seed and number, the same batches). A previous epoch
// still running is closed first.
func (l *Loader) Epoch(epoch int) *Epoch {
	if l.current != nil {
		l.current.Close()
	}
	e := &Epoch{
		l:     l,
		rng:   rand.New(rand.NewPCG(l.opts.Seed, uint64(epoch))),
		ready: make(chan result, l.opts.ReadAhead),
		done:  make(chan struct{}),
	}
	l.current = e
	if l.opts.Indices != nil {
		list, err := l.opts.Indices(epoch, l.rows)
		l.epochRows = int64(len(list))
		e.wg.Add(1)
		go e.indexed(list, err)
		return e
	}
	order := make([]unit, len(l.units))
	copy(order, l.units)
	if l.opts.Shuffle {
		shuffle(e.rng, len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	jobs := make(chan *job, l.opts.Workers)
	ordered := make(chan *job, 2*l.opts.Workers)
	e.wg.Add(2 + l.opts.Workers)
	go e.dispatch(order, jobs, ordered)
	for range l.opts.Workers {
		go e.decode(jobs)
	}
	go e.assemble(ordered)
	return e
}

// shuffle is Fisher-Yates with an unbiased bounded draw spelled out here, so
// that an order depends on the PCG stream alone and not on how a Go release
// implements rand.Shuffle.
func shuffle(r *rand.Rand, n int, swap func(i, j int)) {
	for i := n - 1; i > 0; i-- {
		swap(i, int(bounded(r, uint64(i+1))))
	}
}

// bounded draws uniformly from [0, n) (Lemire's multiply and reject).
func bounded(r *rand.Rand, n uint64) uint64 {
	for {
		hi, lo := mul64(r.Uint64(), n)
		if lo >= n || lo >= -n%n {
			return hi
		}
	}
}

func mul64(a, b uint64) (hi, lo uint64) {
	const mask32 = 1<<32 - 1
	a0, a1 := a&mask32, a>>32
	b0, b1 := b&mask32, b>>32
	w0 := a0 * b0
	t := a1*b0 + w0>>32
	w1, w2 := t&mask32, t>>32
	w1 += a0 * b1
	return a1*b1 + w2 + w1>>32, a * b
}

// Epoch is one pass over the set.
type Epoch struct {
	l     *Loader
	rng   *rand.Rand
	ready chan result
	done  chan struct{}
	wg    sync.WaitGroup
	last  *Batch // the batch the consumer holds
	err   error
	once  sync.Once
}

type result struct {
	batch *Batch
	err   error
}

// job is one unit being decoded; done is closed when rows or err is set.
type job struct {
	unit unit
	rows *dataset.Rows
	err  error
	done chan struct{}
}

// Next returns the next batch, or io.EOF after the last. The batch is reused
// after the next call to Next or Close.
func (e *Epoch) Next() (*Batch, error) {
	if e.last != nil {
		e.l.free <- e.last
		e.last = nil
	}
	if e.err != nil {
		return nil, e.err
	}
	r, ok := <-e.ready
	switch {
	case !ok:
		e.err = io.EOF
	case r.err != nil:
		e.err = r.err
	default:
		e.last = r.batch
		return r.batch, nil
	}
	return nil, e.err
}

// Close stops the epoch's goroutines; Next then returns an error.
func (e *Epoch) Close() error {
	e.once.Do(func() {
		close(e.done)
		e.wg.Wait()
		for r := range e.ready {
			if r.batch != nil {
				e.l.free <- r.batch
			}
		}
		if e.last != nil {
			e.l.free <- e.last
			e.last = nil
		}
		if e.err == nil {
			e.err = errClosed
		}
		if e.l.current == e {
			e.l.current = nil
		}
	})
	return nil
}

var errClosed = errors.New("loader: epoch closed")

// dispatch hands the units out in order, to the workers and, in the same
// order, to the assembler.
func (e *Epoch) dispatch(order []unit, jobs, ordered chan<- *job) {
	defer e.wg.Done()
	defer close(jobs)
	defer close(ordered)
	for _, u := range order {
		j := &job{unit: u, done: make(chan struct{})}
		select {
		case ordered <- j:
		case <-e.done:
			return
		}
		select {
		case jobs <- j:
		case <-e.done:
			return
		}
	}
}

func (e *Epoch) decode(jobs <-chan *job) {
	defer e.wg.Done()
	var rd dataset.RowGroupReader
	for j := range jobs {
		j.rows = e.l.getRows()
		j.err = rd.Read(e.l.files[j.unit.file], j.unit.rowGroup, e.l.lim, j.rows)
		close(j.done)
	}
}

func (l *Loader) getRows() *dataset.Rows {
	select {
	case r := <-l.rowPool:
		r.Reset()
		return r
	default:
		r := &dataset.Rows{}
		r.Reset()
		return r
	}
}

func (l *Loader) putRows(r *dataset.Rows) {
	select {
	case l.rowPool <- r:
	default:
	}
}

// indexed reads every row group in order, keeps the rows list names, and
// packs them into batches in list's order (an index may come twice: a
// DistributedSampler pads its lists by repeating indices).
func (e *Epoch) indexed(list []int64, err error) {
	defer e.wg.Done()
	defer close(e.ready)
	a := &assembler{e: e, opts: e.l.opts, windowRows: len(list)}
	a.opts.Shuffle = false
	if err == nil {
		err = e.gather(a, list)
	}
	if err != nil {
		a.send(result{err: err})
		return
	}
	if a.emit() {
		a.finish()
	}
}

// gather puts list's rows in a's window, as one unit in list's order.
func (e *Epoch) gather(a *assembler, list []int64) error {
	type want struct{ row, pos int64 }
	wants := make([]want, len(list))
	for pos, row := range list {
		if row < 0 || row >= e.l.rows {
			return fmt.Errorf("loader: index %d outside the set's %d rows", row, e.l.rows)
		}
		wants[pos] = want{row, int64(pos)}
	}
	slices.SortFunc(wants, func(x, y want) int { return cmp.Compare(x.row, y.row) })
	feats := make([][]byte, len(list))
	labels := make([]int64, len(list))
	var rd dataset.RowGroupReader
	var rows dataset.Rows
	var base int64
	k := 0
	for _, u := range e.l.units {
		select {
		case <-e.done:
			return errClosed
		default:
		}
		if k < len(wants) && wants[k].row < base+u.rows {
			rows.Reset()
			if err := rd.Read(e.l.files[u.file], u.rowGroup, e.l.lim, &rows); err != nil {
				return err
			}
			for ; k < len(wants) && wants[k].row < base+u.rows; k++ {
				r := int(wants[k].row - base)
				feats[wants[k].pos] = slices.Clone(rows.Feature(r))
				labels[wants[k].pos] = rows.Labels[r]
			}
		}
		base += u.rows
	}
	chosen := &dataset.Rows{}
	chosen.Reset()
	for i, f := range feats {
		chosen.Data = append(chosen.Data, f...)
		chosen.Offsets = append(chosen.Offsets, len(chosen.Data))
		chosen.Labels = append(chosen.Labels, labels[i])
	}
	a.add(chosen)
	return nil
}

// rowRef is one row of a window: which of its units, which row there.
type rowRef struct{ unit, row int32 }

// assemble gathers units into windows, shuffles each window's rows and packs
// them into batches.
func (e *Epoch) assemble(ordered <-chan *job) {
	defer e.wg.Done()
	defer close(e.ready)
	a := &assembler{e: e, opts: e.l.opts, windowRows: e.l.opts.ShuffleWindow}
	if !a.opts.Shuffle {
		a.windowRows = 1 // nothing to mix: pass each row group on at once
	}
	for j := range ordered {
		select {
		case <-j.done:
		case <-e.done:
			return
		}
		if j.err != nil {
			a.send(result{err: j.err})
			return
		}
		a.add(j.rows)
		if len(a.refs) >= a.windowRows && !a.emit() {
			return
		}
	}
	if a.emit() {
		a.finish()
	}
}

// assembler is assemble's state: the window of decoded units, references
// to their rows, and the batch being filled.
type assembler struct {
	e          *Epoch
	opts       Options
	windowRows int
	window     []*dataset.Rows
	refs       []rowRef
	batch      *Batch
	fill       int
}

// send hands r to the consumer; false when the epoch is closed.
func (a *assembler) send(r result) bool {
	select {
	case a.e.ready <- r:
		return true
	case <-a.e.done:
		return false
	}
}

// add puts a unit's rows in the window.
func (a *assembler) add(rows *dataset.Rows) {
	for i := range rows.Len() {
		a.refs = append(a.refs, rowRef{int32(len(a.window)), int32(i)})
	}
	a.window = append(a.window, rows)
}

// emit shuffles the window's rows (when shuffling) and packs them into
// batches, then empties the window; false when stopped.
func (a *assembler) emit() bool {
	if a.opts.Shuffle {
		shuffle(a.e.rng, len(a.refs), func(i, j int) { a.refs[i], a.refs[j] = a.refs[j], a.refs[i] })
	}
	for _, ref := range a.refs {
		if !a.pack(ref) {
			return false
		}
	}
	for _, r := range a.window {
		a.e.l.putRows(r)
	}
	a.window, a.refs = a.window[:0], a.refs[:0]
	return true
}

// pack copies one row into the batch (scaled, zero-padded to the signal
// length) and sends the batch once full; false when stopped.
func (a *assembler) pack(ref rowRef) bool {
	if a.batch == nil {
		if a.batch = a.e.l.getBatch(a.e.done); a.batch == nil {
			return false
		}
		a.fill = 0
	}
	n := a.opts.SignalLength
	rows := a.window[ref.unit]
	row := a.batch.Features[a.fill*n : (a.fill+1)*n]
	feature := rows.Feature(int(ref.row))
	for i, b := range feature {
		row[i] = scale[b]
	}
	clear(row[len(feature):])
	a.batch.Labels[a.fill] = rows.Labels[ref.row]
	a.fill++
	if a.fill < a.opts.BatchSize {
		return true
	}
	a.batch.setSize(a.fill, n)
	ok := a.send(result{batch: a.batch})
	a.batch = nil
	return ok
}

// finish sends the last, partial batch unless drop_last, or frees it.
func (a *assembler) finish() {
	if a.batch == nil {
		return
	}
	if a.fill > 0 && !a.opts.DropLast {
		a.batch.setSize(a.fill, a.opts.SignalLength)
		a.send(result{batch: a.batch})
		return
	}
	a.e.l.free <- a.batch
}

// getBatch takes a free batch, making one while fewer than the bound exist.
func (l *Loader) getBatch(done <-chan struct{}) *Batch {
	select {
	case b := <-l.free:
		return b.full()
	default:
	}
	if l.made < cap(l.free) {
		l.made++
		return &Batch{
			Features: make([]float32, l.opts.BatchSize*l.opts.SignalLength),
			Labels:   make([]int64, l.opts.BatchSize),
		}
	}
	select {
	case b := <-l.free:
		return b.full()
	case <-done:
		return nil
	}
}

// full undoes setSize of a short last batch.
func (b *Batch) full() *Batch {
	b.Features, b.Labels = b.Features[:cap(b.Features)], b.Labels[:cap(b.Labels)]
	return b
}

func (b *Batch) setSize(n, signalLength int) {
	b.Features = b.Features[:n*signalLength]
	b.Labels = b.Labels[:n]
	b.Size = n
	b.Shape = [3]int64{int64(n), 1, int64(signalLength)}
}
