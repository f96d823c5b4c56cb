package dataset

import (
	"errors"
	"io"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding"
)

// Column streams the values of one column chunk page by page: the one
// Parquet page reader of the project, behind the training and test sets'
// RowGroupReader and split's scans of preprocessed captures.
//
// It reads the pages' decoded buffers (parquet.Page's Data, definition and
// repetition levels, dictionary) directly. parquet-go's own readers hand
// out values one at a time as parquet.Value (ValueReader) or decode whole
// rows into Go structs by reflection (GenericReader); at a packet's 1,500
// values, and millions of rows, either costs more than all the rest of a
// split or an epoch. What the library lacks is typed bulk access to a page
// with its levels, which is all this adds: pages are still read, decoded
// and decompressed by parquet-go.
//
// A flat column (Int64s, OptionalInt64s, ByteArrays) is read n values at a
// time, runs of a page without nulls or dictionary copied at once. A list
// column is read a page at a time (NextPage, then Levels and Doubles).
type Column struct {
	pages  parquet.Pages
	page   parquet.Page
	n, i   int    // values in the page, the next one
	k      int    // the next non-null value
	cur    int    // where the current value is in ints or offs
	defs   []byte // definition levels; nil for a required column
	reps   []byte // repetition levels; nil for a flat column
	maxDef byte
	dict   []int32 // a dictionary-encoded page's indexes
	ints   []int64
	wide   []int64 // an INT32 page's values, widened
	bytes  []byte
	offs   []uint32
	floats []float64
}

// NewColumn streams chunk, a column whose present values have definition
// level maxDef (the leaf's MaxDefinitionLevel).
func NewColumn(chunk parquet.ColumnChunk, maxDef int) *Column {
	return &Column{pages: chunk.Pages(), maxDef: byte(maxDef)}
}

// ErrNull is a null in a column read as having none.
var ErrNull = errors.New("null value")

// Close releases the current page and the chunk's pages.
func (c *Column) Close() {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	c.pages.Close()
}

// NextPage moves to the next page; io.EOF after the last.
func (c *Column) NextPage() error {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	p, err := c.pages.ReadPage()
	if err != nil {
		return err
	}
	c.page, c.n, c.i, c.k = p, int(p.NumValues()), 0, 0
	c.defs, c.reps = p.DefinitionLevels(), p.RepetitionLevels()
	if c.maxDef == 0 {
		c.defs = nil
	}
	data := p.Data()
	c.dict = nil
	if d := p.Dictionary(); d != nil {
		c.dict = data.Int32()
		data = d.Page().Data()
	}
	switch data.Kind() {
	case encoding.ByteArray:
		c.bytes, c.offs = data.ByteArray()
	case encoding.Int32:
		c.wide = c.wide[:0]
		for _, v := range data.Int32() {
			c.wide = append(c.wide, int64(v))
		}
		c.ints = c.wide
	case encoding.Double:
		c.floats = data.Double()
	default:
		c.ints = data.Int64()
	}
	return nil
}

// Levels are the current page's repetition and definition levels, one per
// value slot (nil when the column has none of that kind).
func (c *Column) Levels() (reps, defs []byte) { return c.reps, c.defs }

// Doubles are the current page's non-null DOUBLE values, or its dictionary's
// with the indexes of each value when the page is dictionary-encoded.
func (c *Column) Doubles() (values []float64, indexes []int32) { return c.floats, c.dict }

// run returns how many of the next n values the current page holds (at
// least one, loading the next page when this one is done) and whether they
// can be copied as a run: no nulls, no dictionary.
func (c *Column) run(n int) (int, bool, error) {
	for c.i == c.n {
		if err := c.NextPage(); err == io.EOF {
			return 0, false, errors.New("column ends early")
		} else if err != nil {
			return 0, false, err
		}
	}
	return min(n, c.n-c.i), c.defs == nil && c.dict == nil, nil
}

// skip moves past m values of a run.
func (c *Column) skip(m int) { c.i, c.k = c.i+m, c.k+m }

// next moves to the next value of the current page and reports whether it
// is not null; cur is then where the value is.
func (c *Column) next() bool {
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

func (c *Column) byteArray(at int) []byte { return c.bytes[c.offs[at]:c.offs[at+1]] }

// scan reads the next n values: each run of m that can be copied (see run)
// is handed to copyRun, whose values are at k to k+m-1 of ints or offs, and
// any other value to one, after next.
func (c *Column) scan(n int, copyRun func(k, m int), one func(notNull bool) error) error {
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

// Int64s appends the next n values of an integer column without nulls to
// dst; on ErrNull, dst holds the values before the null.
func (c *Column) Int64s(dst []int64, n int) ([]int64, error) {
	err := c.scan(n, func(k, m int) {
		dst = append(dst, c.ints[k:k+m]...)
	}, func(notNull bool) error {
		if !notNull {
			return ErrNull
		}
		dst = append(dst, c.ints[c.cur])
		return nil
	})
	return dst, err
}

// OptionalInt64s appends the next n values of an integer column to vals,
// and whether each is not null to has (a null's value is 0).
func (c *Column) OptionalInt64s(vals []int64, has []bool, n int) ([]int64, []bool, error) {
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

// ByteArrays appends the next n values of a byte-array column without nulls
// to data, and where each ends to ends; on ErrNull, they hold the values
// before the null.
func (c *Column) ByteArrays(data []byte, ends []int, n int) ([]byte, []int, error) {
	err := c.scan(n, func(k, m int) {
		base := len(data) - int(c.offs[k])
		data = append(data, c.bytes[c.offs[k]:c.offs[k+m]]...)
		for _, end := range c.offs[k+1 : k+m+1] {
			ends = append(ends, base+int(end))
		}
	}, func(notNull bool) error {
		if !notNull {
			return ErrNull
		}
		data = append(data, c.byteArray(c.cur)...)
		ends = append(ends, len(data))
		return nil
	})
	return data, ends, err
}

// EachByteArray calls fn with each of the next n values of a byte-array
// column without nulls; the slice is valid only during the call.
func (c *Column) EachByteArray(n int, fn func([]byte)) error {
	return c.scan(n, func(k, m int) {
		for i := k; i < k+m; i++ {
			fn(c.byteArray(i))
		}
	}, func(notNull bool) error {
		if !notNull {
			return ErrNull
		}
		fn(c.byteArray(c.cur))
		return nil
	})
}
