package split

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/deeppacket/deeppacket/data/dataset"
	"github.com/deeppacket/deeppacket/internal/progress"
)

// outputs of one task.
const (
	trainSet = iota
	testSet
	numSets
)

var setNames = [numSets]string{"train", "test"}

// minGroups is the fewest runs groups makes of an input that has the rows
// for them: the runs are the write pass's units of work, and a few large ones
// would leave cores idle while the last one is written.
const minGroups = 16

// groups cuts the files, in order, into runs of about opts.PartRows input
// rows, or of a minGroups-th of the input when that is less: the write pass
// makes one part of each output per run. The runs depend only on the input,
// so the output is the same with any -j; a capture per part would make
// thousands of tiny files from small captures.
func (s *splitter) groups() [][]int {
	size := min(int64(s.opts.PartRows), (s.rows+minGroups-1)/minGroups)
	var groups [][]int
	var cur []int
	var rows int64
	for i, n := range s.fileRows {
		cur = append(cur, i)
		if rows += n; rows >= size {
			groups, cur, rows = append(groups, cur), nil, 0
		}
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// heldRow is a row whose side waits for a cut to be placed.
type heldRow struct {
	key uint64
	dataset.Sample
}

// batches are the rows of a chunk sorted into the outputs.
type batches [numTasks][numSets][]dataset.Sample

// tally counts the rows written to each output by label.
type tally [numTasks][numSets]map[int64]int64

func newTally() *tally {
	var t tally
	for task := range numTasks {
		for k := range numSets {
			t[task][k] = map[int64]int64{}
		}
	}
	return &t
}

// add sorts a row of task t into the outputs.
func (b *batches) add(counts *tally, t int, cl *class, key uint64, row dataset.Sample) {
	if k, keep := cl.side(key); keep {
		counts[t][k][row.Label]++
		b[t][k] = append(b[t][k], row)
	}
}

// assign sorts the rows of a chunk into the outputs they go to, and those
// whose side waits for a cut into held, with a copy of their feature.
func (s *splitter) assign(c *chunk, path string, out *batches, counts *tally, held *[numTasks][]heldRow) error {
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
			row := dataset.Sample{
				Feature: c.feature(r), Label: label, Source: c.source[r],
				Index: c.index[r], TimestampNS: c.ts[r], Flow: c.flow[r],
			}
			if cl.waits(key) {
				row.Feature = slices.Clone(row.Feature)
				held[t] = append(held[t], heldRow{key, row})
				continue
			}
			out.add(counts, t, cl, key, row)
		}
	}
	return nil
}

// parts are the part writers of every output for one part id.
type parts [numTasks][numSets]*dataset.PartWriter

func (s *splitter) openParts(sets *outputs, id int) *parts {
	var p parts
	for t := range numTasks {
		for k := range numSets {
			p[t][k] = sets[t][k].Part(id)
		}
	}
	return &p
}

func (p *parts) write(b *batches) error {
	for t := range numTasks {
		for k := range numSets {
			if err := p[t][k].Write(b[t][k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// close closes every part, returning err or else the first error closing.
func (p *parts) close(err error) error {
	for t := range numTasks {
		for k := range numSets {
			if cerr := p[t][k].Close(); err == nil {
				err = cerr
			}
		}
	}
	return err
}

// write is the last pass. The rows waiting for the pending cuts go, once
// the cuts are placed, into one more part of each output.
func (s *splitter) write(ctx context.Context, target string, pend *pending) (*Report, error) {
	sets, err := s.createOutputs(target)
	if err != nil {
		return nil, err
	}
	counts, heldRows, err := s.writeRows(ctx, sets, pend)
	if err == nil {
		err = sets.commit()
	}
	if err != nil {
		sets.abort()
		return nil, err
	}
	return s.report(sets, counts, heldRows), nil
}

// outputs are the sets being written, by task and set.
type outputs [numTasks][numSets]*dataset.SetWriter

// createOutputs starts every set under target.
func (s *splitter) createOutputs(target string) (*outputs, error) {
	var sets outputs
	for t := range numTasks {
		for k := range numSets {
			path := target + "/" + TaskDirs[t] + "/" + setNames[k] + ".parquet"
			w, err := dataset.CreateSet(path, s.opts.Format, s.opts.SignalLength, s.opts.Writer)
			if err != nil {
				sets.abort()
				return nil, err
			}
			sets[t][k] = w
		}
	}
	return &sets, nil
}

// commit moves every set into place.
func (o *outputs) commit() error {
	for t := range numTasks {
		for k := range numSets {
			if err := o[t][k].Commit(); err != nil {
				return err
			}
		}
	}
	return nil
}

// abort discards every set not yet committed.
func (o *outputs) abort() {
	for t := range o {
		for _, w := range o[t] {
			if w != nil {
				w.Abort()
			}
		}
	}
}

// writeRows reads the inputs in parallel, one part per group of files, and
// writes each row to its set, holding those of the pending cuts for a last
// part; it returns each worker's tally and the rows held.
func (s *splitter) writeRows(ctx context.Context, sets *outputs, pend *pending) ([]*tally, int64, error) {
	counts := make([]*tally, s.opts.Jobs)
	for w := range counts {
		counts[w] = newTally()
	}
	held := make([][numTasks][]heldRow, s.opts.Jobs)
	bar := progress.New(s.rows, "split: writing", false)
	groups := s.groups()
	err := s.parallel(ctx, len(groups), func(w, g int) error {
		p := s.openParts(sets, g)
		var out batches
		c := &chunk{}
		var err error
		for _, i := range groups[g] {
			if err = s.scanFile(s.files[i], allColumns, c, func(c *chunk) error {
				if err := s.assign(c, s.files[i], &out, counts[w], &held[w]); err != nil {
					return err
				}
				bar.Add(int64(c.n))
				return p.write(&out)
			}); err != nil {
				break
			}
		}
		return p.close(err)
	})
	bar.Finish()
	var heldRows int64
	if err == nil && pend != nil {
		heldRows, err = s.writeHeld(pend, held, s.openParts(sets, len(groups)), counts[0])
	}
	return counts, heldRows, err
}

// report lists each set with its rows per class, every class of the task
// included (0 when none of its rows landed in the set).
func (s *splitter) report(sets *outputs, counts []*tally, heldRows int64) *Report {
	report := &Report{InputRows: s.rows, HeldRows: heldRows}
	for t := range numTasks {
		for k := range numSets {
			sr := SetReport{Task: TaskDirs[t], Set: setNames[k], Path: sets[t][k].Path()}
			total := map[int64]int64{}
			for _, c := range counts {
				for label, n := range c[t][k] {
					total[label] += n
				}
			}
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
	return report
}

// writeHeld places the pending cuts from the keys of the held rows, then
// writes the rows, in key order (then by capture and index, as flows share
// keys) so that the part is the same with any -j. It returns how many rows
// it held.
func (s *splitter) writeHeld(pend *pending, held [][numTasks][]heldRow, p *parts, counts *tally) (int64, error) {
	var n int64
	var all [numTasks][]heldRow
	keys := bucketKeys{}
	for _, h := range held {
		for t, rows := range h {
			all[t] = append(all[t], rows...)
			n += int64(len(rows))
			for _, r := range rows {
				keys.add(t, r.Label, r.key, 1)
			}
		}
	}
	s.settle(pend, keys)
	var out batches
	for t, rows := range all {
		slices.SortFunc(rows, func(a, b heldRow) int {
			return cmp.Or(cmp.Compare(a.key, b.key), strings.Compare(a.Source, b.Source), cmp.Compare(a.Index, b.Index))
		})
		for _, r := range rows {
			out.add(counts, t, s.classes[t][r.Label], r.key, r.Sample)
		}
	}
	return n, p.close(p.write(&out))
}
