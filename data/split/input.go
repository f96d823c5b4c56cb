package split

import (
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"

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
	cols  []*dataset.Column // of the current row group, as want
	left  int64             // rows left in the current row group
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
		s.cols[i].Close()
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
			s.cols = append(s.cols, dataset.NewColumn(g.ColumnChunks()[leaf.ColumnIndex], leaf.MaxDefinitionLevel))
		}
	}
	n := int(min(s.left, chunkRows))
	c.first, c.n = s.first, n
	s.left -= int64(n)
	s.first += int64(n)
	for i, name := range s.want {
		if err := c.read(name, s.cols[i]); err != nil {
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

// read reads the chunk's values of one column.
func (c *chunk) read(name string, col *dataset.Column) error {
	var err error
	var got int // the rows read before a null
	switch name {
	case colApp, colTraffic:
		t := app
		if name == colTraffic {
			t = traffic
		}
		if c.label[t], c.has[t], err = col.OptionalInt64s(c.label[t][:0], c.has[t][:0], c.n); err != nil {
			return err
		}
		for r, label := range c.label[t] {
			if label < 0 {
				return fmt.Errorf("row %d: %s %d is negative", c.first+int64(r), name, label)
			}
		}
		return nil
	case colFeature:
		c.featData, c.featOff, err = col.ByteArrays(c.featData[:0], append(c.featOff[:0], 0), c.n)
		got = len(c.featOff) - 1
	case colSource:
		got, err = c.readSources(col)
	case colIndex:
		c.index, err = col.Int64s(c.index[:0], c.n)
		got = len(c.index)
	case colTimestamp:
		c.ts, err = col.Int64s(c.ts[:0], c.n)
		got = len(c.ts)
	case colFlow:
		c.flow, err = col.Int64s(c.flow[:0], c.n)
		got = len(c.flow)
	}
	if err == dataset.ErrNull {
		return fmt.Errorf("row %d: %s is null", c.first+int64(got), name)
	}
	return err
}

// readSources reads the chunk's sources and their hashes. A capture's rows
// share one source: it is hashed and converted only when it changes.
func (c *chunk) readSources(col *dataset.Column) (int, error) {
	c.source, c.srcHash = c.source[:0], c.srcHash[:0]
	err := col.EachByteArray(c.n, func(b []byte) {
		if string(b) != c.lastSrc {
			c.lastSrc = string(b)
			h := fnv.New64a()
			h.Write(b)
			c.lastHash = h.Sum64()
		}
		c.source = append(c.source, c.lastSrc)
		c.srcHash = append(c.srcHash, c.lastHash)
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
