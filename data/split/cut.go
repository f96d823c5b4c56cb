package split

import (
	"context"
	"math"
	"slices"

	"github.com/deeppacket/deeppacket/internal/progress"
)

// bucketBits is the resolution of the key histograms: 2^14 buckets, so that
// placing a cut takes the keys of about a 16,000th of a class.
const bucketBits = 14

func bucketOf(key uint64) int { return int(key >> (63 - bucketBits)) }

// bucketStart is the lowest key of bucket b (keyEnd for b = 2^bucketBits).
func bucketStart(b int) uint64 { return uint64(b) << (63 - bucketBits) }

// keyEnd is above every key (keys have 63 bits).
const keyEnd = uint64(1) << 63

// holdBytes bounds the feature bytes the write pass may hold back while it
// waits to place cuts (see pending); a variable so that tests can force the
// pass that places them beforehand.
var holdBytes int64 = 64 << 20

// class is what the passes learn about one label of one task.
type class struct {
	rows int64
	hist []uint32
	// The cuts: a row with key < test is in the test set, kept there if
	// key < testKeep; any other row is in the training set, kept if
	// key < train.
	test, testKeep, train uint64
	testRows              int64 // rows with key < test
	need                  []int // buckets of cuts not yet placed
}

// side is the set a row of the class goes to, and whether it is kept there.
func (c *class) side(key uint64) (set int, keep bool) {
	if key < c.test {
		return testSet, key < c.testKeep
	}
	return trainSet, key < c.train
}

// waits reports whether a row's side depends on a cut not yet placed.
func (c *class) waits(key uint64) bool {
	return len(c.need) > 0 && slices.Contains(c.need, bucketOf(key))
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
		return s.scanFile(s.files[i], s.keyColumns(), &chunk{}, func(c *chunk) error {
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
// undersampling cuts, whose ranks depend on where the test cuts fell. It
// returns the cuts left to the write pass, nil if none.
func (s *splitter) cut(ctx context.Context) (*pending, error) {
	tests := s.testTargets()
	if s.opts.SplitBy == ByPacket {
		// Packets have distinct keys, so each test cut falls exactly on its
		// rank, and the undersampling ranks are known at once.
		for _, tg := range tests {
			s.classes[tg.task][tg.label].testRows = tg.rank
		}
		return s.place(ctx, append(tests, s.underTargets()...), true)
	}
	// A flow's packets share a key: where a test cut falls, and so the
	// undersampling ranks, are known only once it is placed.
	if _, err := s.place(ctx, tests, false); err != nil {
		return nil, err
	}
	return s.place(ctx, s.underTargets(), true)
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

// pending are targets whose ranks fall inside a histogram bucket: the keys
// of that bucket's rows place them. Until then each such cut sits at the
// start of its bucket, which already sends every row outside the bucket to
// the right side.
type pending struct {
	targets []target
	need    map[bucketID][]int // targets by the bucket their rank falls in
	rows    int64              // rows in those buckets
}

// place places targets. A rank on a bucket boundary needs nothing more. The
// others are returned, left to the write pass, when mayDefer and the rows of
// their buckets fit in holdBytes; else a pass over the key columns places
// them now.
func (s *splitter) place(ctx context.Context, targets []target, mayDefer bool) (*pending, error) {
	p := &pending{targets: targets, need: map[bucketID][]int{}}
	for i, tg := range targets {
		c := s.classes[tg.task][tg.label]
		b, boundary := findBucket(c.hist, tg.rank)
		if b < 0 {
			tg.set(c, bucketStart(boundary), tg.rank)
			continue
		}
		tg.set(c, bucketStart(b), tg.rank)
		id := bucketID{tg.task, tg.label, b}
		if len(p.need[id]) == 0 {
			c.need = append(c.need, b)
			p.rows += int64(c.hist[b])
		}
		p.need[id] = append(p.need[id], i)
	}
	switch {
	case len(p.need) == 0:
		return nil, nil
	case mayDefer && p.rows*int64(s.opts.SignalLength) <= holdBytes:
		return p, nil
	}
	return nil, s.placeByPass(ctx, p)
}

// placeByPass reads the keys in the pending buckets from the key columns
// and places the cuts.
func (s *splitter) placeByPass(ctx context.Context, p *pending) error {
	local := make([]bucketKeys, s.opts.Jobs)
	for w := range local {
		local[w] = bucketKeys{}
	}
	bar := progress.New(-1, "split: placing cuts", false)
	err := s.parallel(ctx, len(s.files), func(w, i int) error {
		return s.scanFile(s.files[i], s.keyColumns(), &chunk{}, func(c *chunk) error {
			for t := range numTasks {
				for r := range c.n {
					if c.has[t][r] && s.classes[t][c.label[t][r]].waits(c.key[r]) {
						local[w].add(t, c.label[t][r], c.key[r], 1)
					}
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
	keys := local[0]
	for _, l := range local[1:] {
		for id, counts := range l {
			for k, n := range counts {
				keys.add(id.task, id.label, k, n)
			}
		}
	}
	s.settle(p, keys)
	return nil
}

// bucketKeys are the keys of the rows in some buckets, with how many rows
// have each.
type bucketKeys map[bucketID]map[uint64]uint32

// add counts n rows of a class with key.
func (b bucketKeys) add(task int, label int64, key uint64, n uint32) {
	id := bucketID{task, label, bucketOf(key)}
	if b[id] == nil {
		b[id] = map[uint64]uint32{}
	}
	b[id][key] += n
}

// settle places the pending cuts from the rows of their buckets (the count
// of each key), at the key boundary nearest to each rank: exact when keys are
// distinct, as packets' are; with flows, at the nearest flow.
func (s *splitter) settle(p *pending, keys bucketKeys) {
	for id, idx := range p.need {
		counts := keys[id]
		sorted := make([]uint64, 0, len(counts))
		for k := range counts {
			sorted = append(sorted, k)
		}
		slices.Sort(sorted)
		c := s.classes[id.task][id.label]
		var before int64
		for _, n := range c.hist[:id.bucket] {
			before += int64(n)
		}
		for _, i := range idx {
			key, rows := nearestCut(sorted, counts, before, bucketStart(id.bucket+1), p.targets[i].rank)
			p.targets[i].set(c, key, rows)
		}
		c.need = c.need[:0]
	}
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
