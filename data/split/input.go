package split

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding"

	"github.com/deeppacket/deeppacket/data/dataset"
)

// column names of the preprocessed packets (dataset.Packet).
const (
	colFeature   = "feature"
	colApp       = "app_label"
	colTraffic   = "traffic_label"
	colSource    = "source"
	colIndex     = "index"
	colTimestamp = "timestamp_ns"
	colFlow      = "flow"
)

// allColumns are what the write pass reads (see splitter.keyColumns for the
// other passes).
var allColumns = []string{colFeature, colApp, colTraffic, colSource, colIndex, colTimestamp, colFlow}

// chunkRows is how many rows a scan decodes at a time, bounding its memory
// whatever the size of the input's row groups.
const chunkRows = 4096

// inputFiles lists the preprocessed captures in dir, in name order.
func inputFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".parquet") && !strings.HasPrefix(e.Name(), ".") {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read %s: no .parquet files", dir)
	}
	slices.Sort(files)
	return files, nil
}

// chunk is up to chunkRows consecutive rows of one input file, column by
// column. Only the columns the scan asked for are filled.
type chunk struct {
	first int64 // row number in the file of row 0
	n     int
	label [numTasks][]int64
	has   [numTasks][]bool
	// key is the row's place in the seeded random order (see keyOf).
	key             []uint64
	source          []string
	srcHash         []uint64
	index, ts, flow []int64
	featData        []byte
	featOff         []int
	// lastSrc and lastHash cache the source of the previous row.
	lastSrc  string
	lastHash uint64
}

func (c *chunk) feature(i int) []byte { return c.featData[c.featOff[i]:c.featOff[i+1]] }

// scanner reads one input file chunk by chunk.
type scanner struct {
	path  string
	file  *os.File
	pq    *parquet.File
	want  []string
	leafs []parquet.LeafColumn // of want
	rg    int
	first int64
	cols  []column // of the current row group, as want
	left  int64    // rows left in the current row group
}

func openScanner(path string, want []string) (*scanner, error) {
	f, pq, err := dataset.OpenParquet(path, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, err
	}
	s := &scanner{path: path, file: f, pq: pq, want: want}
	for _, name := range want {
		leaf, ok := pq.Schema().Lookup(name)
		wantKind := parquet.Int64
		if name == colFeature || name == colSource {
			wantKind = parquet.ByteArray
		}
		switch {
		case !ok:
			err = fmt.Errorf("no %q column", name)
		case leaf.MaxRepetitionLevel != 0:
			err = fmt.Errorf("column %q is repeated", name)
		case leaf.Node.Type().Kind() != wantKind:
			err = fmt.Errorf("column %q is %v, want %v", name, leaf.Node.Type(), wantKind)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("read %s: %w: not a preprocessed capture", path, err)
		}
		s.leafs = append(s.leafs, leaf)
	}
	return s, nil
}

func (s *scanner) Close() error {
	s.closeColumns()
	return s.file.Close()
}

func (s *scanner) closeColumns() {
	for i := range s.cols {
		s.cols[i].close()
	}
	s.cols = s.cols[:0]
}

// next fills c with the next rows; io.EOF after the last.
func (s *scanner) next(c *chunk, seed uint64, unit Unit) error {
	for s.left == 0 {
		s.closeColumns()
		groups := s.pq.RowGroups()
		if s.rg == len(groups) {
			return io.EOF
		}
		g := groups[s.rg]
		s.rg++
		s.left = g.NumRows()
		for _, leaf := range s.leafs {
			s.cols = append(s.cols, column{pages: g.ColumnChunks()[leaf.ColumnIndex].Pages(), maxDef: byte(leaf.MaxDefinitionLevel)})
		}
	}
	n := int(min(s.left, chunkRows))
	c.first, c.n = s.first, n
	s.left -= int64(n)
	s.first += int64(n)
	for i, name := range s.want {
		if err := c.read(name, &s.cols[i]); err != nil {
			return fmt.Errorf("read %s: column %q near row %d: %w", s.path, name, c.first, err)
		}
	}
	c.key = slices.Grow(c.key[:0], n)[:n]
	for i := range n {
		id := c.index[i]
		if unit == ByFlow {
			id = c.flow[i]
		}
		c.key[i] = keyOf(seed, c.srcHash[i], id)
	}
	return nil
}

// column streams the values of one flat column page by page, reading the
// pages' decoded buffers directly: going through parquet.Value for each
// value costs more than all the rest of the split. A page without nulls or
// a dictionary, the common case, is copied a run of values at a time.
type column struct {
	pages  parquet.Pages
	page   parquet.Page
	n, i   int    // values in the page, the next one
	k      int    // the next non-null value
	cur    int    // where the current value is in ints or offs
	defs   []byte // definition levels; nil for a required column
	maxDef byte
	dict   []int32 // a dictionary-encoded page's indexes
	ints   []int64
	bytes  []byte
	offs   []uint32
}

// errNull is a null in a column that may have none.
var errNull = errors.New("null value")

func (c *column) close() {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	c.pages.Close()
}

// run returns how many of the next n values the current page holds (at
// least one, loading the next page when this one is done) and whether they
// can be copied as a run: no nulls, no dictionary.
func (c *column) run(n int) (int, bool, error) {
	for c.i == c.n {
		if err := c.load(); err != nil {
			return 0, false, err
		}
	}
	return min(n, c.n-c.i), c.defs == nil && c.dict == nil, nil
}

// skip moves past m values of a run.
func (c *column) skip(m int) { c.i, c.k = c.i+m, c.k+m }

// next moves to the next value of the current page and reports whether it
// is not null; cur is then where the value is.
func (c *column) next() bool {
	i := c.i
	c.i++
	if c.defs != nil && c.defs[i] < c.maxDef {
		return false
	}
	c.cur = c.k
	c.k++
	if c.dict != nil {
		c.cur = int(c.dict[c.cur])
	}
	return true
}

func (c *column) load() error {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	p, err := c.pages.ReadPage()
	if err == io.EOF {
		return errors.New("column ends early")
	}
	if err != nil {
		return err
	}
	c.page, c.n, c.i, c.k = p, int(p.NumValues()), 0, 0
	c.defs = p.DefinitionLevels()
	if c.maxDef == 0 {
		c.defs = nil
	}
	data := p.Data()
	c.dict = nil
	if d := p.Dictionary(); d != nil {
		c.dict = data.Int32()
		data = d.Page().Data()
	}
	if data.Kind() == encoding.ByteArray {
		c.bytes, c.offs = data.ByteArray()
	} else {
		c.ints = data.Int64()
	}
	return nil
}

func (c *column) byteArray(at int) []byte { return c.bytes[c.offs[at]:c.offs[at+1]] }

// scan reads the next n values: each run of m that can be copied (see run)
// is handed to copyRun, whose values are at k to k+m-1 of ints or offs, and
// any other value to one, after next.
func (c *column) scan(n int, copyRun func(k, m int), one func(notNull bool) error) error {
	for n > 0 {
		m, isRun, err := c.run(n)
		if err != nil {
			return err
		}
		n -= m
		if isRun {
			copyRun(c.k, m)
			c.skip(m)
			continue
		}
		for range m {
			if err := one(c.next()); err != nil {
				return err
			}
		}
	}
	return nil
}

// int64s appends the next n values of a column without nulls to dst; on
// errNull, dst holds the values before the null.
func (c *column) int64s(dst []int64, n int) ([]int64, error) {
	err := c.scan(n, func(k, m int) {
		dst = append(dst, c.ints[k:k+m]...)
	}, func(notNull bool) error {
		if !notNull {
			return errNull
		}
		dst = append(dst, c.ints[c.cur])
		return nil
	})
	return dst, err
}

// optionalInt64s appends the next n values of a column to vals, and whether
// each is not null to has (a null's value is 0).
func (c *column) optionalInt64s(vals []int64, has []bool, n int) ([]int64, []bool, error) {
	err := c.scan(n, func(k, m int) {
		vals = append(vals, c.ints[k:k+m]...)
		for range m {
			has = append(has, true)
		}
	}, func(notNull bool) error {
		v := int64(0)
		if notNull {
			v = c.ints[c.cur]
		}
		vals, has = append(vals, v), append(has, notNull)
		return nil
	})
	return vals, has, err
}

// byteArrays appends the next n values of a column without nulls to data,
// and where each ends to ends.
func (c *column) byteArrays(data []byte, ends []int, n int) ([]byte, []int, error) {
	err := c.scan(n, func(k, m int) {
		base := len(data) - int(c.offs[k])
		data = append(data, c.bytes[c.offs[k]:c.offs[k+m]]...)
		for _, end := range c.offs[k+1 : k+m+1] {
			ends = append(ends, base+int(end))
		}
	}, func(notNull bool) error {
		if !notNull {
			return errNull
		}
		data = append(data, c.byteArray(c.cur)...)
		ends = append(ends, len(data))
		return nil
	})
	return data, ends, err
}

// read reads the chunk's values of one column.
func (c *chunk) read(name string, col *column) error {
	var err error
	var got int // the rows read before a null
	switch name {
	case colApp, colTraffic:
		t := app
		if name == colTraffic {
			t = traffic
		}
		if c.label[t], c.has[t], err = col.optionalInt64s(c.label[t][:0], c.has[t][:0], c.n); err != nil {
			return err
		}
		for r, label := range c.label[t] {
			if label < 0 {
				return fmt.Errorf("row %d: %s %d is negative", c.first+int64(r), name, label)
			}
		}
		return nil
	case colFeature:
		c.featData, c.featOff, err = col.byteArrays(c.featData[:0], append(c.featOff[:0], 0), c.n)
		got = len(c.featOff) - 1
	case colSource:
		got, err = c.readSources(col)
	case colIndex:
		c.index, err = col.int64s(c.index[:0], c.n)
		got = len(c.index)
	case colTimestamp:
		c.ts, err = col.int64s(c.ts[:0], c.n)
		got = len(c.ts)
	case colFlow:
		c.flow, err = col.int64s(c.flow[:0], c.n)
		got = len(c.flow)
	}
	if err == errNull {
		return fmt.Errorf("row %d: %s is null", c.first+int64(got), name)
	}
	return err
}

// readSources reads the chunk's sources and their hashes. A capture's rows
// share one source: it is hashed and converted only when it changes.
func (c *chunk) readSources(col *column) (int, error) {
	c.source, c.srcHash = c.source[:0], c.srcHash[:0]
	add := func(b []byte) {
		if string(b) != c.lastSrc {
			c.lastSrc = string(b)
			h := fnv.New64a()
			h.Write(b)
			c.lastHash = h.Sum64()
		}
		c.source = append(c.source, c.lastSrc)
		c.srcHash = append(c.srcHash, c.lastHash)
	}
	err := col.scan(c.n, func(k, m int) {
		for i := k; i < k+m; i++ {
			add(col.byteArray(i))
		}
	}, func(notNull bool) error {
		if !notNull {
			return errNull
		}
		add(col.byteArray(col.cur))
		return nil
	})
	return len(c.source), err
}

// keyOf places a unit (a packet: source and index; a flow: source and flow)
// in the random order of seed: a 63-bit hash, the same on every machine.
// Every packet of a flow gets the same key, so cuts in key order keep flows
// whole.
func keyOf(seed, source uint64, id int64) uint64 {
	return mix(mix(seed^source)+uint64(id)*0x9e3779b97f4a7c15) >> 1
}

// mix is the SplitMix64 finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
