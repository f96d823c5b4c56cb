package dataset

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// TestArrowReadsOurSets reads the sets our writer makes with Apache Arrow's
// Parquet implementation, a port of the C++ one under pyarrow, which the
// reference's Python reads its sets with (pandas, Hugging Face datasets):
// the columns must come out with the types the reference's code expects
// (feature a list of doubles, label int64) and the values we wrote. No
// Python Parquet reader is packaged for Debian 12, so this stands in for
// reading them in the reference's own code.
func TestArrowReadsOurSets(t *testing.T) {
	const signalLength = 40
	samples := make([]Sample, 300)
	for i := range samples {
		feature := make([]byte, 1+i%signalLength)
		for j := range feature {
			feature[j] = byte(i*3 + j)
		}
		samples[i] = Sample{Feature: feature, Label: int64(i % 11), Source: fmt.Sprintf("c%d.pcap", i/100), Index: int64(i), TimestampNS: int64(i) * 10, Flow: int64(i / 4)}
	}
	tests := []struct {
		format Format
		schema string
		check  func(t *testing.T, tbl arrow.Table, row int, s Sample)
	}{
		{Reference, "feature: list<element: float64>, label: int64",
			func(t *testing.T, tbl arrow.Table, row int, s Sample) {
				list := column[*array.List](t, tbl, 0, row)
				values := list.ListValues().(*array.Float64)
				from, to := list.ValueOffsets(row)
				if to-from != signalLength {
					t.Fatalf("row %d: %d values, want %d", row, to-from, signalLength)
				}
				for j := range signalLength {
					want := 0.0
					if j < len(s.Feature) {
						want = float64(s.Feature[j]) / 255
					}
					if values.IsNull(int(from) + j) {
						t.Fatalf("row %d value %d is null", row, j)
					}
					if got := values.Value(int(from) + j); got != want {
						t.Fatalf("row %d value %d: %v, want %v", row, j, got, want)
					}
				}
			}},
		{Compact, "feature: binary, label: int64, source: utf8, index: int64, timestamp_ns: int64, flow: int64",
			func(t *testing.T, tbl arrow.Table, row int, s Sample) {
				if got := column[*array.Binary](t, tbl, 0, row).Value(row); !bytes.Equal(got, s.Feature) {
					t.Fatalf("row %d feature %v, want %v", row, got, s.Feature)
				}
				if got := column[*array.String](t, tbl, 2, row).Value(row); got != s.Source {
					t.Fatalf("row %d source %q, want %q", row, got, s.Source)
				}
				if got := column[*array.Int64](t, tbl, 5, row).Value(row); got != s.Flow {
					t.Fatalf("row %d flow %d, want %d", row, got, s.Flow)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.format.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "train.parquet")
			if err := WriteSet(dir, tc.format, signalLength, SetWriterOptions{RowsPerRowGroup: 64}, samples); err != nil {
				t.Fatal(err)
			}
			files, err := SetFiles(dir)
			if err != nil || len(files) != 1 {
				t.Fatalf("%v %v", files, err)
			}
			tbl := readArrow(t, files[0])
			defer tbl.Release()
			if got := arrowSchema(tbl.Schema()); got != tc.schema {
				t.Errorf("schema %s\nwant   %s", got, tc.schema)
			}
			if tbl.NumRows() != int64(len(samples)) {
				t.Fatalf("%d rows, want %d", tbl.NumRows(), len(samples))
			}
			for row, s := range samples {
				if got := column[*array.Int64](t, tbl, 1, row).Value(row); got != s.Label {
					t.Fatalf("row %d label %d, want %d", row, got, s.Label)
				}
				tc.check(t, tbl, row, s)
			}
		})
	}
}

func readArrow(t *testing.T, path string) arrow.Table {
	t.Helper()
	rdr, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// arrowSchema is "name: type, ..." of the schema's fields, types as Arrow
// prints them (a list's element type carries its nullability).
func arrowSchema(s *arrow.Schema) string {
	var b bytes.Buffer
	for i, f := range s.Fields() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %s", f.Name, f.Type)
	}
	return b.String()
}

// column returns the chunk of column col that holds row, rebased so that
// the caller indexes it by row; the test's sets are one chunk per column.
func column[A arrow.Array](t *testing.T, tbl arrow.Table, col, row int) A {
	t.Helper()
	chunks := tbl.Column(col).Data().Chunks()
	if len(chunks) != 1 {
		t.Fatalf("column %d in %d chunks", col, len(chunks))
	}
	a, ok := chunks[0].(A)
	if !ok {
		t.Fatalf("column %d is %T", col, chunks[0])
	}
	return a
}
