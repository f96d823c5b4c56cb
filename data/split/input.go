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

// keyColumns are what the counting passes read; the write pass reads all.
var (
	keyColumns = []string{colApp, colTraffic, colSource, colIndex, colFlow}
	allColumns = []string{colFeature, colApp, colTraffic, colSource, colIndex, colTimestamp, colFlow}
)

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
	path    string
	file    *os.File
	pq      *parquet.File
	cols    map[string]int // leaf column index by name
	values  []parquet.Value
	rg      int
	first   int64
	readers map[string]parquet.ColumnChunkValueReader
	left    int64 // rows left in the current row group
}

func openScanner(path string, want []string) (*scanner, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	pq, err := parquet.OpenFile(f, info.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: not a Parquet file: %w", path, err)
	}
	s := &scanner{path: path, file: f, pq: pq, cols: map[string]int{}, values: make([]parquet.Value, chunkRows)}
	for _, name := range want {
		leaf, ok := pq.Schema().Lookup(name)
		if !ok {
			f.Close()
			return nil, fmt.Errorf("read %s: no %q column: not a preprocessed capture", path, name)
		}
		if leaf.MaxRepetitionLevel != 0 {
			f.Close()
			return nil, fmt.Errorf("read %s: column %q is repeated: not a preprocessed capture", path, name)
		}
		s.cols[name] = leaf.ColumnIndex
	}
	return s, nil
}

func (s *scanner) Close() error {
	s.closeReaders()
	return s.file.Close()
}

func (s *scanner) closeReaders() {
	for _, r := range s.readers {
		r.Close()
	}
	s.readers = nil
}

// next fills c with the next rows; io.EOF after the last.
func (s *scanner) next(c *chunk, seed uint64, unit Unit) error {
	for s.left == 0 {
		s.closeReaders()
		groups := s.pq.RowGroups()
		if s.rg == len(groups) {
			return io.EOF
		}
		g := groups[s.rg]
		s.rg++
		s.left = g.NumRows()
		s.readers = map[string]parquet.ColumnChunkValueReader{}
		for name, col := range s.cols {
			s.readers[name] = parquet.NewColumnChunkValueReader(g.ColumnChunks()[col])
		}
	}
	n := int(min(s.left, chunkRows))
	c.first, c.n = s.first, n
	s.left -= int64(n)
	s.first += int64(n)
	for name := range s.readers {
		if err := s.readColumn(name, c); err != nil {
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

// readColumn reads the chunk's n values of one column.
func (s *scanner) readColumn(name string, c *chunk) error {
	r := s.readers[name]
	switch name {
	case colApp:
		c.label[app], c.has[app] = c.label[app][:0], c.has[app][:0]
	case colTraffic:
		c.label[traffic], c.has[traffic] = c.label[traffic][:0], c.has[traffic][:0]
	case colSource:
		c.source, c.srcHash = c.source[:0], c.srcHash[:0]
	case colIndex:
		c.index = c.index[:0]
	case colTimestamp:
		c.ts = c.ts[:0]
	case colFlow:
		c.flow = c.flow[:0]
	case colFeature:
		c.featData, c.featOff = c.featData[:0], append(c.featOff[:0], 0)
	}
	for got := 0; got < c.n; {
		n, err := r.ReadValues(s.values[:c.n-got])
		for _, v := range s.values[:n] {
			if err := c.add(name, v, c.first+int64(got)); err != nil {
				return err
			}
			got++
		}
		if err == io.EOF && got < c.n {
			return errors.New("column ends early")
		}
		if err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

func (c *chunk) add(name string, v parquet.Value, row int64) error {
	if v.IsNull() && name != colApp && name != colTraffic {
		return fmt.Errorf("row %d: %s is null", row, name)
	}
	switch name {
	case colApp, colTraffic:
		t := app
		if name == colTraffic {
			t = traffic
		}
		label := v.Int64()
		if !v.IsNull() && label < 0 {
			return fmt.Errorf("row %d: %s %d is negative", row, name, label)
		}
		c.label[t] = append(c.label[t], label)
		c.has[t] = append(c.has[t], !v.IsNull())
	case colSource:
		// A capture's rows share one source: hash and convert it only when
		// it changes.
		b := v.ByteArray()
		if string(b) != c.lastSrc {
			c.lastSrc = string(b)
			h := fnv.New64a()
			h.Write(b)
			c.lastHash = h.Sum64()
		}
		c.srcHash = append(c.srcHash, c.lastHash)
		c.source = append(c.source, c.lastSrc)
	case colIndex:
		c.index = append(c.index, v.Int64())
	case colTimestamp:
		c.ts = append(c.ts, v.Int64())
	case colFlow:
		c.flow = append(c.flow, v.Int64())
	case colFeature:
		c.featData = append(c.featData, v.ByteArray()...)
		c.featOff = append(c.featOff, len(c.featData))
	}
	return nil
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
