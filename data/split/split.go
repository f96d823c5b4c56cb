// Package split makes the training and test sets of both tasks from
// preprocessed captures, as the reference's create_train_test_set.py does:
// per task, the rows that have a label for it, split stratified by label with
// test_size going to the test set, then the training set undersampled to its
// smallest class.
//
// Unlike the reference's Spark job it needs neither the data in memory nor a
// random generator's state: every row (or every flow, with ByFlow) gets a
// key, a seeded hash of where it came from, and each class is cut in key
// order: the test set is the class's lowest keys, the training set the keys
// after them. A counting pass histograms the keys of each class, a resolving
// pass reads the exact keys around each cut, and a last pass writes the rows.
// The result depends on the input and the seed only, not on the number of
// goroutines, and the test and training counts are the exact numbers (with
// ByFlow, to the nearest flow).
package split

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"

	"github.com/deeppacket/deeppacket/data/dataset"
	"github.com/deeppacket/deeppacket/internal/progress"
)

// Unit is what the split keeps together on one side.
type Unit int

const (
	// ByPacket splits packets independently, as the reference does.
	ByPacket Unit = iota
	// ByFlow puts every packet of a flow on the same side, so that a model
	// is never tested on packets of a connection it was trained on.
	ByFlow
)

func (u Unit) String() string {
	if u == ByFlow {
		return "flow"
	}
	return "packet"
}

// ParseUnit reads "packet" or "flow".
func ParseUnit(name string) (Unit, error) {
	switch name {
	case "packet":
		return ByPacket, nil
	case "flow":
		return ByFlow, nil
	}
	return 0, fmt.Errorf("split by %q: want packet or flow", name)
}

// The two tasks, in the reference's order.
const (
	app = iota
	traffic
	numTasks
)

// TaskDirs are the folders of the tasks' sets under the target, and
// TaskNames the names ClassName receives.
var (
	TaskDirs  = [numTasks]string{"application_classification", "traffic_classification"}
	TaskNames = [numTasks]string{"application", "traffic"}
)

// Options configure Run. DefaultOptions gives the reference's settings.
type Options struct {
	TestSize          float64 // fraction of each class that goes to the test set
	SplitBy           Unit
	Format            dataset.Format
	Seed              uint64
	UnderSampling     bool // undersample the training set to its smallest class
	TestUnderSampling bool // undersample the test set to its smallest class
	SignalLength      int  // a longer feature is an error; the reference format pads to it
	Jobs              int  // files read at once
	// PartRows is how many input rows (whole captures, in name order) make
	// one part file of each output.
	PartRows int
	// ClassName names a label of a task ("application" or "traffic") in the
	// printed distributions; nil prints the numbers only.
	ClassName func(task string, label int64) string
	Writer    dataset.SetWriterOptions
}

// DefaultOptions are the reference's: test size 0.2, seed 9876, training set
// undersampled, packets split independently, 1500-byte signals.
func DefaultOptions() Options {
	return Options{TestSize: 0.2, Seed: 9876, UnderSampling: true, SignalLength: 1500, Jobs: 1, PartRows: 1 << 20}
}

// Report is what Run wrote.
type Report struct {
	InputRows int64
	Sets      []SetReport
}

// SetReport is the label distribution of one output.
type SetReport struct {
	Task, Set, Path string // Task is a TaskDirs entry, Set "train" or "test"
	Classes         []ClassCount
}

// ClassCount is the number of rows of one label.
type ClassCount struct {
	Label int64
	Name  string
	Rows  int64
}

// Rows is the total of the set.
func (s *SetReport) Rows() int64 {
	var n int64
	for _, c := range s.Classes {
		n += c.Rows
	}
	return n
}

// Count is the number of rows of label in the set.
func (s *SetReport) Count(label int64) int64 {
	for _, c := range s.Classes {
		if c.Label == label {
			return c.Rows
		}
	}
	return 0
}

// Print writes the distributions, one table per set, as the reference prints
// them after its split.
func (r *Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, s := range r.Sets {
		fmt.Fprintf(tw, "%s\n", s.Path)
		fmt.Fprintf(tw, "label\tname\tcount\t\n")
		for _, c := range s.Classes {
			fmt.Fprintf(tw, "%d\t%s\t%d\t\n", c.Label, c.Name, c.Rows)
		}
		fmt.Fprintf(tw, "\ttotal\t%d\t\n", s.Rows())
	}
	return tw.Flush()
}

// bucketBits is the resolution of the key histograms: 2^14 buckets, so that
// resolving a cut reads back about a 16,000th of a class.
const bucketBits = 14

func bucketOf(key uint64) int { return int(key >> (63 - bucketBits)) }

// keyEnd is above every key (keys have 63 bits).
const keyEnd = uint64(1) << 63

// class is what the passes learn about one label of one task.
type class struct {
	rows int64
	hist []uint32
	// The cuts: a row with key < test is in the test set, kept there if
	// key < testKeep; any other row is in the training set, kept if
	// key < train.
	test, testKeep, train uint64
	testRows              int64 // rows with key < test
	need                  []int // buckets whose keys resolve reads
}

type classes [numTasks]map[int64]*class

func newClasses() classes {
	var c classes
	for t := range c {
		c[t] = map[int64]*class{}
	}
	return c
}

func (cs classes) get(t int, label int64) *class {
	c := cs[t][label]
	if c == nil {
		c = &class{hist: make([]uint32, 1<<bucketBits)}
		cs[t][label] = c
	}
	return c
}

func (cs classes) labels(t int) []int64 {
	labels := make([]int64, 0, len(cs[t]))
	for l := range cs[t] {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	return labels
}

// Run splits the preprocessed captures in input (a folder of Parquet files
// of dataset.Packet rows) into target/<task>/{train,test}.parquet.
func Run(ctx context.Context, input, target string, opts Options) (*Report, error) {
	if !(opts.TestSize >= 0 && opts.TestSize <= 1) {
		return nil, fmt.Errorf("test size %v: want a fraction between 0 and 1", opts.TestSize)
	}
	if opts.SignalLength <= 0 {
		return nil, fmt.Errorf("signal length %d: want a positive number", opts.SignalLength)
	}
	opts.Jobs = max(opts.Jobs, 1)
	files, err := inputFiles(input)
	if err != nil {
		return nil, err
	}
	s := &splitter{opts: opts, files: files}
	if err := s.count(ctx); err != nil {
		return nil, err
	}
	if err := s.cut(ctx); err != nil {
		return nil, err
	}
	return s.write(ctx, target)
}

type splitter struct {
	opts     Options
	files    []string
	rows     int64
	fileRows []int64
	classes  classes
}

// parallel runs fn on items 0 to n-1, opts.Jobs at a time, each call with
// its worker number; it stops at the first error.
func (s *splitter) parallel(ctx context.Context, n int, fn func(worker, item int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, s.opts.Jobs)
	for w := range s.opts.Jobs {
		wg.Go(func() {
			for {
				if ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(w, i); err != nil {
					errs[w] = err
					next.Store(int64(n)) // stop the others early
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && err != context.Canceled {
			return err
		}
	}
	return ctx.Err()
}

// scanFile calls fn for each chunk of a file.
func (s *splitter) scanFile(path string, cols []string, c *chunk, fn func(*chunk) error) error {
	sc, err := openScanner(path, cols)
	if err != nil {
		return err
	}
	defer sc.Close()
	for {
		err := sc.next(c, s.opts.Seed, s.opts.SplitBy)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
	}
}

// count is the first pass: rows per class and the histogram of their keys.
func (s *splitter) count(ctx context.Context) error {
	local := make([]classes, s.opts.Jobs)
	rows := make([]int64, s.opts.Jobs)
	bar := progress.New(-1, "split: counting", false)
	s.fileRows = make([]int64, len(s.files))
	err := s.parallel(ctx, len(s.files), func(w, i int) error {
		if local[w][0] == nil {
			local[w] = newClasses()
		}
		return s.scanFile(s.files[i], keyColumns, &chunk{}, func(c *chunk) error {
			for t := range numTasks {
				var cl *class // of the previous row: runs of one label are the rule
				label := int64(-1)
				for r := range c.n {
					if !c.has[t][r] {
						continue
					}
					if c.label[t][r] != label || cl == nil {
						label = c.label[t][r]
						cl = local[w].get(t, label)
					}
					cl.rows++
					cl.hist[bucketOf(c.key[r])]++
				}
			}
			rows[w] += int64(c.n)
			s.fileRows[i] += int64(c.n)
			bar.Add(int64(c.n))
			return nil
		})
	})
	bar.Finish()
	if err != nil {
		return err
	}
	s.classes = newClasses()
	for w, l := range local {
		s.rows += rows[w]
		for t := range numTasks {
			for label, lc := range l[t] {
				c := s.classes.get(t, label)
				c.rows += lc.rows
				for b, n := range lc.hist {
					c.hist[b] += n
				}
			}
		}
	}
	return nil
}

// target is a wanted cut: the first rank rows of a class in key order.
type target struct {
	task  int
	label int64
	rank  int64
	set   func(c *class, key uint64, rows int64)
}

// cut places the cuts of every class: the test cuts, then the
// undersampling cuts, whose ranks depend on where the test cuts fell.
func (s *splitter) cut(ctx context.Context) error {
	tests := s.testTargets()
	if s.opts.SplitBy == ByPacket {
		// Packets have distinct keys, so each test cut falls exactly on its
		// rank, and one pass can place the undersampling cuts as well.
		for _, tg := range tests {
			s.classes[tg.task][tg.label].testRows = tg.rank
		}
		return s.resolve(ctx, append(tests, s.underTargets()...))
	}
	if err := s.resolve(ctx, tests); err != nil {
		return err
	}
	return s.resolve(ctx, s.underTargets())
}

// testTargets asks for test_size of every class.
func (s *splitter) testTargets() []target {
	var targets []target
	for t := range numTasks {
		for label, c := range s.classes[t] {
			c.testKeep, c.train = keyEnd, keyEnd
			rank := int64(math.Round(s.opts.TestSize * float64(c.rows)))
			targets = append(targets, target{t, label, rank, func(c *class, key uint64, rows int64) {
				c.test, c.testRows = key, rows
			}})
		}
	}
	return targets
}

// underTargets asks for the smallest class's rows after each test cut (for
// the training set) and before it (for the test set, if undersampled).
func (s *splitter) underTargets() []target {
	var targets []target
	for t := range numTasks {
		minTrain, minTest := int64(math.MaxInt64), int64(math.MaxInt64)
		for _, c := range s.classes[t] {
			minTrain = min(minTrain, c.rows-c.testRows)
			minTest = min(minTest, c.testRows)
		}
		for label, c := range s.classes[t] {
			if s.opts.UnderSampling {
				targets = append(targets, target{t, label, c.testRows + minTrain, func(c *class, key uint64, _ int64) {
					c.train = key
				}})
			}
			if s.opts.TestUnderSampling {
				targets = append(targets, target{t, label, minTest, func(c *class, key uint64, _ int64) {
					c.testKeep = key
				}})
			}
		}
	}
	return targets
}

// bucketID names one histogram bucket of one class.
type bucketID struct {
	task   int
	label  int64
	bucket int
}

// resolve sets each target's cut. A rank that falls on a bucket boundary
// needs nothing more; otherwise one pass reads the keys in the bucket it
// falls in, and the cut goes to the key boundary nearest to the rank (exact
// when keys are distinct, as packets' are; with flows, at the nearest flow).
func (s *splitter) resolve(ctx context.Context, targets []target) error {
	need := map[bucketID][]int{} // targets by the bucket their rank falls in
	for i, tg := range targets {
		c := s.classes[tg.task][tg.label]
		b, before := findBucket(c.hist, tg.rank)
		if b < 0 {
			tg.set(c, uint64(before)<<(63-bucketBits), tg.rank)
			continue
		}
		id := bucketID{tg.task, tg.label, b}
		if len(need[id]) == 0 {
			c.need = append(c.need, b)
		}
		need[id] = append(need[id], i)
	}
	if len(need) == 0 {
		return nil
	}
	defer func() {
		for t := range numTasks {
			for _, c := range s.classes[t] {
				c.need = c.need[:0]
			}
		}
	}()
	local := make([]map[bucketID]map[uint64]uint32, s.opts.Jobs)
	bar := progress.New(-1, "split: resolving", false)
	err := s.parallel(ctx, len(s.files), func(w, i int) error {
		if local[w] == nil {
			local[w] = map[bucketID]map[uint64]uint32{}
		}
		return s.scanFile(s.files[i], keyColumns, &chunk{}, func(c *chunk) error {
			for t := range numTasks {
				for r := range c.n {
					if !c.has[t][r] {
						continue
					}
					b := bucketOf(c.key[r])
					if !slices.Contains(s.classes[t][c.label[t][r]].need, b) {
						continue
					}
					id := bucketID{t, c.label[t][r], b}
					keys := local[w][id]
					if keys == nil {
						keys = map[uint64]uint32{}
						local[w][id] = keys
					}
					keys[c.key[r]]++
				}
			}
			bar.Add(int64(c.n))
			return nil
		})
	})
	bar.Finish()
	if err != nil {
		return err
	}
	for id, idx := range need {
		counts := map[uint64]uint32{}
		for _, l := range local {
			for k, n := range l[id] {
				counts[k] += n
			}
		}
		keys := make([]uint64, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		c := s.classes[id.task][id.label]
		var before int64
		for _, n := range c.hist[:id.bucket] {
			before += int64(n)
		}
		for _, i := range idx {
			key, rows := nearestCut(keys, counts, before, uint64(id.bucket+1)<<(63-bucketBits), targets[i].rank)
			targets[i].set(c, key, rows)
		}
	}
	return nil
}

// findBucket returns the bucket the rank-th row of hist falls inside, or -1
// and the bucket that starts exactly at rank (len(hist) for all of them).
func findBucket(hist []uint32, rank int64) (bucket int, boundary int) {
	var cum int64
	for b, n := range hist {
		if cum == rank {
			return -1, b
		}
		if cum+int64(n) > rank {
			return b, 0
		}
		cum += int64(n)
	}
	return -1, len(hist)
}

// nearestCut picks, among the boundaries between the sorted keys of one
// bucket (before rows precede the bucket, end is the bucket's end), the one
// whose row count is nearest to rank, the lower one on a tie. It returns the
// cut key and the rows below it.
func nearestCut(keys []uint64, counts map[uint64]uint32, before int64, end uint64, rank int64) (uint64, int64) {
	bestKey, bestRows := uint64(0), int64(-1)
	consider := func(key uint64, rows int64) {
		if bestRows < 0 || abs(rows-rank) < abs(bestRows-rank) {
			bestKey, bestRows = key, rows
		}
	}
	pos := before
	for _, k := range keys {
		consider(k, pos)
		pos += int64(counts[k])
	}
	consider(end, pos)
	return bestKey, bestRows
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// outputs of one task.
const (
	trainSet = iota
	testSet
	numSets
)

var setNames = [numSets]string{"train", "test"}

// groups cuts the files, in order, into runs of at least opts.PartRows
// input rows: the write pass makes one part of each output per run. The runs
// depend only on the input, so the output is the same with any -j; a
// capture per part would make thousands of tiny files from small captures.
func (s *splitter) groups() [][]int {
	var groups [][]int
	var cur []int
	var rows int64
	for i, n := range s.fileRows {
		cur = append(cur, i)
		if rows += n; rows >= int64(s.opts.PartRows) {
			groups, cur, rows = append(groups, cur), nil, 0
		}
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// assign sorts the rows of a chunk into the outputs they go to, counting
// them by label.
func (s *splitter) assign(c *chunk, path string, out *[numTasks][numSets][]dataset.Sample, counts *[numTasks][numSets]map[int64]int64) error {
	for r := range c.n {
		if n := c.featOff[r+1] - c.featOff[r]; n > s.opts.SignalLength {
			return fmt.Errorf("read %s: row %d: feature of %d bytes is longer than the signal length %d",
				path, c.first+int64(r), n, s.opts.SignalLength)
		}
	}
	for t := range numTasks {
		out[t][trainSet], out[t][testSet] = out[t][trainSet][:0], out[t][testSet][:0]
		for r := range c.n {
			if !c.has[t][r] {
				continue
			}
			label, key := c.label[t][r], c.key[r]
			cl := s.classes[t][label]
			k := trainSet
			if key < cl.test {
				if key >= cl.testKeep {
					continue
				}
				k = testSet
			} else if key >= cl.train {
				continue
			}
			counts[t][k][label]++
			out[t][k] = append(out[t][k], dataset.Sample{
				Feature: c.feature(r), Label: label, Source: c.source[r],
				Index: c.index[r], TimestampNS: c.ts[r], Flow: c.flow[r],
			})
		}
	}
	return nil
}

// write is the last pass.
func (s *splitter) write(ctx context.Context, target string) (*Report, error) {
	var sets [numTasks][numSets]*dataset.SetWriter
	abort := func() {
		for t := range sets {
			for _, w := range sets[t] {
				if w != nil {
					w.Abort()
				}
			}
		}
	}
	for t := range numTasks {
		for k := range numSets {
			path := target + "/" + TaskDirs[t] + "/" + setNames[k] + ".parquet"
			w, err := dataset.CreateSet(path, s.opts.Format, s.opts.SignalLength, s.opts.Writer)
			if err != nil {
				abort()
				return nil, err
			}
			sets[t][k] = w
		}
	}
	counts := make([][numTasks][numSets]map[int64]int64, s.opts.Jobs)
	bar := progress.New(s.rows, "split: writing", false)
	groups := s.groups()
	err := s.parallel(ctx, len(groups), func(w, g int) error {
		if counts[w][0][0] == nil {
			for t := range numTasks {
				for k := range numSets {
					counts[w][t][k] = map[int64]int64{}
				}
			}
		}
		var parts [numTasks][numSets]*dataset.PartWriter
		var batch [numTasks][numSets][]dataset.Sample
		for t := range numTasks {
			for k := range numSets {
				parts[t][k] = sets[t][k].Part(g)
			}
		}
		c := &chunk{}
		var err error
		for _, i := range groups[g] {
			if err = s.scanFile(s.files[i], allColumns, c, func(c *chunk) error {
				if err := s.assign(c, s.files[i], &batch, &counts[w]); err != nil {
					return err
				}
				for t := range numTasks {
					for k := range numSets {
						if err := parts[t][k].Write(batch[t][k]); err != nil {
							return err
						}
					}
				}
				bar.Add(int64(c.n))
				return nil
			}); err != nil {
				break
			}
		}
		for t := range numTasks {
			for k := range numSets {
				if cerr := parts[t][k].Close(); err == nil {
					err = cerr
				}
			}
		}
		return err
	})
	bar.Finish()
	if err != nil {
		abort()
		return nil, err
	}
	report := &Report{InputRows: s.rows}
	for t := range numTasks {
		for k := range numSets {
			if err := sets[t][k].Commit(); err != nil {
				abort()
				return nil, err
			}
			sr := SetReport{Task: TaskDirs[t], Set: setNames[k], Path: sets[t][k].Path()}
			total := map[int64]int64{}
			for _, c := range counts {
				for label, n := range c[t][k] {
					total[label] += n
				}
			}
			// Every class of the task is listed, with 0 when none of its rows
			// landed in this set.
			for _, label := range s.classes.labels(t) {
				name := ""
				if s.opts.ClassName != nil {
					name = s.opts.ClassName(TaskNames[t], label)
				}
				sr.Classes = append(sr.Classes, ClassCount{Label: label, Name: name, Rows: total[label]})
			}
			report.Sets = append(report.Sets, sr)
		}
	}
	return report, nil
}
