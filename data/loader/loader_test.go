package loader

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/deeppacket/deeppacket/data/dataset"
)

// samples makes n rows whose first two feature bytes encode their row
// number, with lengths from 2 to maxLen and labels cycling through classes.
func samples(n, maxLen, classes int) []dataset.Sample {
	out := make([]dataset.Sample, n)
	for i := range out {
		f := make([]byte, 2+i%(maxLen-1))
		for j := range f {
			f[j] = byte(i + j*31)
		}
		f[0], f[1] = byte(i), byte(i>>8)
		out[i] = dataset.Sample{Feature: f, Label: int64(i % classes), Source: "s", Index: int64(i)}
	}
	return out
}

// writeSet writes rows as a set folder; rowsPerPart > 0 splits it into
// part files.
func writeSet(t testing.TB, dir string, format dataset.Format, signalLength, rowsPerPart, rowsPerGroup int, rows []dataset.Sample) {
	t.Helper()
	opts := dataset.SetWriterOptions{RowsPerPart: rowsPerPart, RowsPerRowGroup: rowsPerGroup}
	if err := dataset.WriteSet(dir, format, signalLength, opts, rows); err != nil {
		t.Fatal(err)
	}
}

// collect runs one epoch and returns, per delivered row, its row number
// (decoded from the first two feature values) after checking every value.
func collect(t *testing.T, l *Loader, epoch int, want []dataset.Sample, signalLength int) []int {
	t.Helper()
	e := l.Epoch(epoch)
	defer e.Close()
	var order []int
	for {
		b, err := e.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if b.Shape != [3]int64{int64(b.Size), 1, int64(signalLength)} || len(b.Features) != b.Size*signalLength || len(b.Labels) != b.Size {
			t.Fatalf("batch of %d: shape %v, %d features, %d labels", b.Size, b.Shape, len(b.Features), len(b.Labels))
		}
		for r := range b.Size {
			row := b.Features[r*signalLength : (r+1)*signalLength]
			i := int(byteOf(t, row[0])) | int(byteOf(t, row[1]))<<8
			if i >= len(want) {
				t.Fatalf("row %d does not exist", i)
			}
			w := want[i]
			for k, x := range row {
				var b byte
				if k < len(w.Feature) {
					b = w.Feature[k]
				}
				if x != float32(float64(b)/255) {
					t.Fatalf("row %d value %d: %v, want %v/255", i, k, x, b)
				}
			}
			if b.Labels[r] != w.Label {
				t.Fatalf("row %d: label %d, want %d", i, b.Labels[r], w.Label)
			}
			order = append(order, i)
		}
	}
	return order
}

func byteOf(t *testing.T, x float32) byte {
	b := byte(x*255 + 0.5)
	if float32(float64(b)/255) != x {
		t.Fatalf("value %v is not a byte/255", x)
	}
	return b
}

func isPermutation(order []int, n int) bool {
	s := slices.Clone(order)
	slices.Sort(s)
	for i, v := range s {
		if v != i {
			return false
		}
	}
	return len(s) == n
}

func TestLoadsBothFormats(t *testing.T) {
	const n, signal = 2500, 300
	rows := samples(n, 280, 7)
	for _, format := range []dataset.Format{dataset.Compact, dataset.Reference} {
		t.Run(format.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "train.parquet")
			writeSet(t, dir, format, signal, 900, 200, rows)
			l, err := Open(dir, Options{BatchSize: 16, SignalLength: signal, NumClasses: 7, Shuffle: true, Seed: 3, ShuffleWindow: 1000})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if l.Rows() != n || l.Batches() != (n+15)/16 {
				t.Fatalf("rows %d batches %d", l.Rows(), l.Batches())
			}
			e0 := collect(t, l, 0, rows, signal)
			if !isPermutation(e0, n) {
				t.Fatalf("epoch 0 is not a permutation of the %d rows", n)
			}
			if slices.IsSorted(e0) {
				t.Error("epoch 0 is not shuffled")
			}
			if e1 := collect(t, l, 1, rows, signal); slices.Equal(e0, e1) || !isPermutation(e1, n) {
				t.Error("epoch 1 has the order of epoch 0")
			}
			if again := collect(t, l, 0, rows, signal); !slices.Equal(e0, again) {
				t.Error("epoch 0 twice gives two orders")
			}
		})
	}
}

func TestUnshuffledKeepsFileOrderAndDropLast(t *testing.T) {
	const n = 1000
	rows := samples(n, 50, 3)
	dir := filepath.Join(t.TempDir(), "test.parquet")
	writeSet(t, dir, dataset.Compact, 64, 300, 70, rows)
	for _, dropLast := range []bool{false, true} {
		l, err := Open(dir, Options{BatchSize: 48, SignalLength: 64, DropLast: dropLast, Workers: 3})
		if err != nil {
			t.Fatal(err)
		}
		order := collect(t, l, 5, rows, 64)
		want := n
		if dropLast {
			want = n / 48 * 48
		}
		if len(order) != want || !slices.IsSorted(order) {
			t.Errorf("drop last %v: %d rows, sorted %v", dropLast, len(order), slices.IsSorted(order))
		}
		l.Close()
	}
}

// TestReadsSparkLayout reads a folder laid out as the reference's Spark job
// leaves it: part files with Spark's names, snappy, and a _SUCCESS marker.
func TestReadsSparkLayout(t *testing.T) {
	rows := samples(800, 1500, 17)
	tmp := filepath.Join(t.TempDir(), "ours.parquet")
	writeSet(t, tmp, dataset.Reference, 1500, 250, 100, rows[:700])
	spark := filepath.Join(t.TempDir(), "train.parquet")
	os.Mkdir(spark, 0o755)
	parts, _ := dataset.SetFiles(tmp)
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	for i, p := range parts {
		name := fmt.Sprintf("part-%05d-2b5f0a1e-93c3-4b2d-8f0e-5a0c1d3e4f5a-c000.snappy.parquet", i)
		if err := os.Rename(p, filepath.Join(spark, name)); err != nil {
			t.Fatal(err)
		}
	}
	// A part as Spark writes it: nullable, dictionary-encoded doubles.
	writeDictionaryPart(t, filepath.Join(spark, "part-00003-2b5f0a1e-93c3-4b2d-8f0e-5a0c1d3e4f5a-c000.snappy.parquet"), rows[700:], 1500)
	os.WriteFile(filepath.Join(spark, "_SUCCESS"), nil, 0o644)
	os.WriteFile(filepath.Join(spark, ".part-00000.crc"), []byte("crc"), 0o644)

	// The schema is Spark's for array<double> and bigint.
	f, err := os.Open(filepath.Join(spark, "part-00000-2b5f0a1e-93c3-4b2d-8f0e-5a0c1d3e4f5a-c000.snappy.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := f.Stat()
	pf, err := parquet.OpenFile(f, info.Size())
	if err != nil {
		t.Fatal(err)
	}
	// The schema, as the file's metadata spells it, is what Spark writes for
	// array<double> and bigint, but for required list elements and the
	// label's explicit signed-integer annotation (see dataset.ReferenceRow);
	// the part written below has Spark's nullable elements.
	var got []string
	for _, e := range pf.Metadata().Schema {
		s := e.Name
		if r, ok := e.RepetitionType.Get(); ok {
			s += fmt.Sprint(" ", r)
		}
		if typ, ok := e.Type.Get(); ok {
			s += fmt.Sprint(" ", typ)
		}
		if lt := e.LogicalType.String(); lt != "" {
			s += " " + lt
		}
		got = append(got, s)
	}
	want := []string{"spark_schema", "feature OPTIONAL LIST", "list REPEATED", "element REQUIRED DOUBLE", "label OPTIONAL INT64 INT(64,true)"}
	if !slices.Equal(got, want) {
		t.Errorf("schema %q, want %q", got, want)
	}
	if c := pf.Metadata().RowGroups[0].Columns[0].MetaData.Codec; c.String() != "SNAPPY" {
		t.Errorf("codec %v, want SNAPPY", c)
	}
	f.Close()

	l, err := Open(spark, Options{BatchSize: 16, SignalLength: 1500, NumClasses: 17})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if order := collect(t, l, 0, rows, 1500); len(order) != 800 || !slices.IsSorted(order) {
		t.Errorf("%d rows in order %v", len(order), slices.IsSorted(order))
	}
}

// writeDictionaryPart writes rows in Spark's schema with the feature values
// dictionary-encoded, as parquet-mr writes them.
func writeDictionaryPart(t *testing.T, path string, rows []dataset.Sample, signalLength int) {
	t.Helper()
	schema := parquet.NewSchema("spark_schema", parquet.Group{
		"feature": parquet.Optional(parquet.List(parquet.Optional(parquet.Encoded(parquet.Leaf(parquet.DoubleType), &parquet.RLEDictionary)))),
		"label":   parquet.Optional(parquet.Leaf(parquet.Int64Type)),
	})
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := parquet.NewWriter(f, schema, parquet.Compression(&parquet.Snappy))
	for _, s := range rows {
		var row parquet.Row
		for i := range signalLength {
			x, rep := 0.0, 1
			if i < len(s.Feature) {
				x = float64(s.Feature[i]) / 255
			}
			if i == 0 {
				rep = 0
			}
			row = append(row, parquet.DoubleValue(x).Level(rep, 3, 0))
		}
		row = append(row, parquet.Int64Value(s.Label).Level(0, 1, 1))
		if _, err := w.WriteRows([]parquet.Row{row}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	info, _ := f.Stat()
	pf, err := parquet.OpenFile(f, info.Size())
	if err != nil {
		t.Fatal(err)
	}
	if enc := pf.Metadata().RowGroups[0].Columns[0].MetaData.Encoding; !slices.Contains(enc, format.RLEDictionary) {
		t.Fatalf("feature encodings %v: not dictionary-encoded", enc)
	}
}

func TestErrorsNameFileAndRow(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, "long.parquet")
	rows := samples(100, 20, 5)
	rows[57].Feature = make([]byte, 40)
	writeSet(t, long, dataset.Compact, 40, 0, 30, rows)
	labels := filepath.Join(dir, "labels.parquet")
	rows = samples(100, 20, 5)
	rows[83].Label = 12
	writeSet(t, labels, dataset.Reference, 20, 0, 30, rows)
	text := filepath.Join(dir, "text.parquet")
	os.WriteFile(text, []byte("feature,label\n1,2\n"), 0o644)
	noLabel := filepath.Join(dir, "nolabel.parquet")
	type featureOnly struct {
		Feature []byte `parquet:"feature"`
	}
	if err := parquet.WriteFile(noLabel, []featureOnly{{Feature: []byte{1}}}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, path string
		opts       Options
		wantErr    string
	}{
		{"not parquet", text, Options{}, "text.parquet: not a Parquet file"},
		{"missing column", noLabel, Options{}, `nolabel.parquet: no "label" column`},
		{"feature too long", long, Options{SignalLength: 39}, "part-00000-000.parquet: row 57: feature of 40 bytes is longer than the signal length 39"},
		{"label outside classes", labels, Options{SignalLength: 20, NumClasses: 5}, "part-00000-000.parquet: row 83: label 12 is outside the model's 5 classes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Open(tc.path, tc.opts)
			if err == nil {
				defer l.Close()
				e := l.Epoch(0)
				for err == nil {
					_, err = e.Next()
				}
				e.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %v does not name %s", err, tc.path)
			}
		})
	}
}

func TestCloseStopsTheGoroutines(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "train.parquet")
	writeSet(t, dir, dataset.Compact, 100, 0, 50, samples(3000, 100, 2))
	before := runtime.NumGoroutine()
	l, err := Open(dir, Options{BatchSize: 4, SignalLength: 100, Shuffle: true, ReadAhead: 2, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	e := l.Epoch(0)
	if _, err := e.Next(); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if _, err := e.Next(); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("Next after Close: %v, want an error", err)
	}
	e = l.Epoch(1) // left running: Loader.Close stops it
	e.Next()
	l.Close()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before Open", n, before)
	}
}

// BenchmarkLoader measures batches of 16 rows of 1500 values from a compact
// set, shuffled, as training reads them. The reference CNN consumes a few
// hundred samples a second on a CPU.
func BenchmarkLoader(b *testing.B) {
	for _, format := range []dataset.Format{dataset.Compact, dataset.Reference} {
		b.Run(format.String(), func(b *testing.B) {
			const n = 20000
			dir := filepath.Join(b.TempDir(), "train.parquet")
			writeSet(b, dir, format, 1500, 0, 0, samples(n, 1500, 17))
			l, err := Open(dir, Options{BatchSize: 16, SignalLength: 1500, NumClasses: 17, Shuffle: true, Seed: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.ReportAllocs()
			b.ResetTimer()
			epoch, e := 0, l.Epoch(0)
			for range b.N {
				_, err := e.Next()
				if err == io.EOF {
					epoch++
					e = l.Epoch(epoch)
					_, err = e.Next()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			e.Close()
			b.ReportMetric(float64(b.N*16)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// TestIndices: with Indices, an epoch yields exactly the rows named, in the
// order named (repeats included), across row groups and files, and
// Batches counts them.
func TestIndices(t *testing.T) {
	dir := t.TempDir()
	var samples []dataset.Sample
	for i := range 300 {
		samples = append(samples, dataset.Sample{Feature: []byte{byte(i), byte(i >> 8), 7}, Label: int64(i), Source: "s", Index: int64(i), Flow: int64(i)})
	}
	set := filepath.Join(dir, "set.parquet")
	if err := dataset.WriteSet(set, dataset.Compact, 1500, dataset.SetWriterOptions{RowsPerRowGroup: 64, RowsPerPart: 200}, samples); err != nil {
		t.Fatal(err)
	}
	lists := map[int][]int64{0: {5, 299, 2, 2, 130, 0, 64}, 1: {63, 64}}
	l, err := Open(set, Options{BatchSize: 3, Indices: func(epoch int, rows int64) ([]int64, error) {
		if rows != 300 {
			t.Errorf("Indices got %d rows, want 300", rows)
		}
		return lists[epoch], nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for epoch, want := range lists {
		got := collect(t, l, epoch, samples, 1500) // every value and label checked
		if n := l.Batches(); n != (len(want)+2)/3 {
			t.Errorf("epoch %d: Batches() = %d, want %d", epoch, n, (len(want)+2)/3)
		}
		if !slices.EqualFunc(got, want, func(g int, w int64) bool { return int64(g) == w }) {
			t.Errorf("epoch %d: rows %v, want %v", epoch, got, want)
		}
	}
}
