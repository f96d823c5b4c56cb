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
// after them. A counting pass histograms the keys of each class; a second
// pass writes the rows, holding back in memory the few whose key falls in the
// histogram bucket of a cut, until the keys of the whole bucket place the cut
// exactly. (When those rows would not fit in memory, a pass over the key
// columns places the cuts before writing.) The result depends on the input
// and the seed only, not on the number of goroutines, and the test and
// training counts are the exact numbers (with ByFlow, to the nearest flow).
//
// Imports: data/dataset, internal/progress; no torch or model code.
package split

import (
	"context"
	"fmt"
	"github.com/deeppacket/deeppacket/internal/atomicfile"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"

	"github.com/deeppacket/deeppacket/data/dataset"
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
	// HeldRows are the rows the write pass held in memory until the keys
	// of their histogram buckets placed the cuts there (see the package
	// documentation).
	HeldRows int64
	Sets     []SetReport
	// Tasks accounts for every input row, per task (TaskDirs order).
	Tasks [numTasks]TaskAccount
}

// TaskAccount is what became of the input rows for one task: every row is
// in the training set, the test set, left out by undersampling, or has no
// label for the task.
type TaskAccount struct {
	Task                             string // a TaskNames entry
	Input, Train, Test, Undersampled int64
	Unlabelled                       int64
	EmptyClasses                     []string // classes with input rows but none in a set, as "name (set)"
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
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, a := range r.Tasks {
		if a.Task == "" {
			continue
		}
		if _, err := fmt.Fprintf(w, "%s: %d input rows = %d train + %d test + %d left out by undersampling + %d without a%s %s label\n",
			a.Task, a.Input, a.Train, a.Test, a.Undersampled, a.Unlabelled, article(a.Task), a.Task); err != nil {
			return err
		}
	}
	return nil
}

func article(word string) string {
	if strings.ContainsRune("aeiou", rune(word[0])) {
		return "n"
	}
	return ""
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
	pending, err := s.cut(ctx)
	if err != nil {
		return nil, err
	}
	// Every set is written into one temporary folder beside the target,
	// which replaces the target in one rename: train and test always come
	// from the same run, even when a run is killed while committing.
	tmp, err := tempTarget(target)
	if err != nil {
		return nil, err
	}
	report, err := s.write(ctx, tmp, pending)
	if err == nil {
		err = replaceDir(tmp, target)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	for i := range report.Sets {
		report.Sets[i].Path = filepath.Join(target, strings.TrimPrefix(report.Sets[i].Path, tmp))
	}
	s.account(report)
	return report, nil
}

// tempTarget makes the temporary folder a split writes into, after removing
// those that killed runs left.
func tempTarget(target string) (string, error) {
	parent, pattern := filepath.Dir(target), "."+filepath.Base(target)+".tmp-"
	if err := os.MkdirAll(parent, 0o777&^atomicfile.Umask()); err != nil {
		return "", fmt.Errorf("create %s: %w", target, err)
	}
	stale, _ := filepath.Glob(filepath.Join(parent, pattern+"*"))
	for _, dir := range stale {
		slog.Info("removing what an interrupted split left", "path", dir)
		os.RemoveAll(dir)
	}
	tmp, err := atomicfile.MkdirTemp(parent, pattern+"*")
	if err != nil {
		return "", fmt.Errorf("create %s: %w", target, err)
	}
	return tmp, nil
}

// replaceDir renames dir to target, moving a previous target aside first
// and removing it after, so that target is always one whole split.
func replaceDir(dir, target string) error {
	old := ""
	if _, err := os.Stat(target); err == nil {
		old = dir + ".old"
		if err := os.Rename(target, old); err != nil {
			return fmt.Errorf("replace %s: %w", target, err)
		}
	}
	if err := os.Rename(dir, target); err != nil {
		if old != "" {
			os.Rename(old, target)
		}
		return fmt.Errorf("write %s: %w", target, err)
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("remove the previous %s: %w", target, err)
		}
	}
	return nil
}

// account fills report.Tasks from the counting pass and the sets written.
func (s *splitter) account(r *Report) {
	for t := range numTasks {
		a := TaskAccount{Task: TaskNames[t], Input: s.rows}
		var labelled int64
		for _, c := range s.classes[t] {
			labelled += c.rows
		}
		for _, set := range r.Sets {
			if set.Task != TaskDirs[t] {
				continue
			}
			if set.Set == "train" {
				a.Train = set.Rows()
			} else {
				a.Test = set.Rows()
			}
			for _, label := range s.classes.labels(t) {
				if set.Count(label) == 0 {
					name := strconv.FormatInt(label, 10)
					if s.opts.ClassName != nil {
						name = s.opts.ClassName(TaskNames[t], label)
					}
					a.EmptyClasses = append(a.EmptyClasses, fmt.Sprintf("%s (%s)", name, set.Set))
				}
			}
		}
		a.Unlabelled = s.rows - labelled
		a.Undersampled = labelled - a.Train - a.Test
		r.Tasks[t] = a
	}
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

// keyColumns are the columns the passes before writing read.
func (s *splitter) keyColumns() []string {
	if s.opts.SplitBy == ByFlow {
		return []string{colApp, colTraffic, colSource, colIndex, colFlow}
	}
	return []string{colApp, colTraffic, colSource, colIndex}
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
