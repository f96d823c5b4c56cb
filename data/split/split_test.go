package split

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/deeppacket/deeppacket/data/dataset"
)

// capture describes one generated preprocessed capture.
type capture struct {
	name          string
	rows          int
	app, traffic  func(i int) *int64 // labels of row i
	flowLen       int                // packets per flow
	featureLength func(i int) int
}

func label(v int64) *int64 { return &v }

// writeCaptures writes the captures with the preprocess step's writer: one
// Parquet file of dataset.Packet rows each.
func writeCaptures(t testing.TB, dir string, caps []capture) {
	t.Helper()
	for _, c := range caps {
		w, err := dataset.CreatePackets(filepath.Join(dir, c.name+".parquet"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range c.rows {
			n := 60
			if c.featureLength != nil {
				n = c.featureLength(i)
			}
			feat := make([]byte, n)
			for j := range feat {
				feat[j] = byte(i*7 + j + len(c.name))
			}
			err := w.Write(dataset.Packet{
				Feature: feat, AppLabel: c.app(i), TrafficLabel: c.traffic(i),
				Source: c.name + ".pcap", Index: int64(i), TimestampNS: int64(i) * 1000,
				Flow: int64(i / max(c.flowLen, 1)),
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// testCaptures has classes of very different sizes, rows without one label
// or the other, and a capture mixing two application classes.
func testCaptures() []capture {
	return []capture{
		{name: "a", rows: 5003, flowLen: 9, app: func(int) *int64 { return label(0) }, traffic: func(int) *int64 { return label(3) }},
		{name: "b", rows: 1211, flowLen: 4, app: func(int) *int64 { return label(1) }, traffic: func(i int) *int64 {
			if i%3 == 0 {
				return nil
			}
			return label(3)
		}},
		{name: "c", rows: 3500, flowLen: 13, app: func(i int) *int64 { return label(int64(2 + i%2)) }, traffic: func(int) *int64 { return label(5) }},
		{name: "d", rows: 777, flowLen: 1, app: func(int) *int64 { return nil }, traffic: func(int) *int64 { return label(7) }},
	}
}

// inputCounts counts the input rows per task and label.
func inputCounts(caps []capture) [numTasks]map[int64]int64 {
	var n [numTasks]map[int64]int64
	for t := range n {
		n[t] = map[int64]int64{}
	}
	for _, c := range caps {
		for i := range c.rows {
			if l := c.app(i); l != nil {
				n[app][*l]++
			}
			if l := c.traffic(i); l != nil {
				n[traffic][*l]++
			}
		}
	}
	return n
}

func runSplit(t *testing.T, input string, opts Options) (string, *Report) {
	t.Helper()
	target := t.TempDir()
	report, err := Run(context.Background(), input, target, opts)
	if err != nil {
		t.Fatal(err)
	}
	return target, report
}

// readCompact reads every sample of a compact set folder, in order.
func readCompact(t *testing.T, dir string) []dataset.Sample {
	t.Helper()
	all, err := dataset.ReadAllSamples(dir)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestProportions(t *testing.T) {
	input := t.TempDir()
	caps := testCaptures()
	writeCaptures(t, input, caps)
	want := inputCounts(caps)
	tests := []struct {
		name                string
		under, testUnder    bool
		testSize            float64
		wantTrain, wantTest rowsFunc
	}{
		{"reference", true, false, 0.2, smallest(trainRows(0.2)), testRows(0.2)},
		{"no undersampling", false, false, 0.2, trainRows(0.2), testRows(0.2)},
		{"test undersampling too", true, true, 0.3, smallest(trainRows(0.3)), smallest(testRows(0.3))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.UnderSampling, opts.TestUnderSampling, opts.TestSize = tc.under, tc.testUnder, tc.testSize
			target, report := runSplit(t, input, opts)
			if report.InputRows != 5003+1211+3500+777 {
				t.Errorf("input rows %d", report.InputRows)
			}
			for _, s := range report.Sets {
				task := app
				if s.Task == TaskDirs[traffic] {
					task = traffic
				}
				// The files hold what the report says.
				rows := readCompact(t, filepath.Join(target, s.Task, s.Set+".parquet"))
				got := map[int64]int64{}
				for _, r := range rows {
					got[r.Label]++
				}
				for label, n := range want[task] {
					exact := tc.wantTest(task, n, want[task])
					if s.Set == "train" {
						exact = tc.wantTrain(task, n, want[task])
					}
					if got[label] != s.Count(label) {
						t.Errorf("%s/%s label %d: %d rows in the files, report says %d", s.Task, s.Set, label, got[label], s.Count(label))
					}
					if d := got[label] - exact; d < -1 || d > 1 {
						t.Errorf("%s/%s label %d: %d rows, want %d±1", s.Task, s.Set, label, got[label], exact)
					}
				}
			}
		})
	}
}

// rowsFunc is the rows a set should hold of a class of n input rows, all
// being the input rows of every class of task t.
type rowsFunc func(t int, n int64, all map[int64]int64) int64

func testRows(size float64) rowsFunc {
	return func(_ int, n int64, _ map[int64]int64) int64 { return int64(math.Round(size * float64(n))) }
}

func trainRows(size float64) rowsFunc {
	return func(t int, n int64, all map[int64]int64) int64 { return n - testRows(size)(t, n, all) }
}

// smallest is rows undersampled: every class gets the fewest that rows
// gives any class.
func smallest(rows rowsFunc) rowsFunc {
	return func(t int, _ int64, all map[int64]int64) int64 {
		m := int64(math.MaxInt64)
		for _, n := range all {
			m = min(m, rows(t, n, all))
		}
		return m
	}
}

// setDigest lists the rows of every output, in order, by provenance.
func setDigest(t *testing.T, target string) string {
	var b strings.Builder
	for _, task := range TaskDirs {
		for _, set := range setNames {
			fmt.Fprintf(&b, "%s/%s:", task, set)
			for _, r := range readCompact(t, filepath.Join(target, task, set+".parquet")) {
				fmt.Fprintf(&b, " %s#%d=%d", r.Source, r.Index, r.Label)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func TestDeterministicAcrossRunsAndJobs(t *testing.T) {
	input := t.TempDir()
	writeCaptures(t, input, testCaptures())
	var first string
	for _, jobs := range []int{1, 3, 1, 4} {
		opts := DefaultOptions()
		opts.Jobs = jobs
		opts.PartRows = 1500 // several parts, written concurrently
		target, _ := runSplit(t, input, opts)
		if parts, _ := dataset.SetFiles(filepath.Join(target, TaskDirs[traffic], "test.parquet")); len(parts) < 3 {
			t.Fatalf("%d parts, want one per capture", len(parts))
		}
		d := setDigest(t, target)
		if first == "" {
			first = d
			continue
		}
		if d != first {
			t.Fatalf("-j %d gives different sets than -j 1", jobs)
		}
	}
	// Another seed gives another split (of the same sizes).
	opts := DefaultOptions()
	opts.Seed = 1
	target, _ := runSplit(t, input, opts)
	if setDigest(t, target) == first {
		t.Error("seed 1 gives the same split as seed 9876")
	}
}

// sortedDigest is setDigest with the rows of each output sorted: the rows
// held back for a cut land in a last part rather than in input order.
func sortedDigest(t *testing.T, target string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(setDigest(t, target)), "\n") {
		name, rows, _ := strings.Cut(line, ":")
		fields := strings.Fields(rows)
		slices.Sort(fields)
		fmt.Fprintf(&b, "%s: %d rows: %s\n", name, len(fields), strings.Join(fields, " "))
	}
	return b.String()
}

// TestHeldRowsPlaceTheSameCuts checks the cuts placed from the rows the
// write pass holds back against those a pass over the key columns places
// beforehand (forced by a zero hold budget), on classes large enough that
// many rows share each histogram bucket, with both split units.
func TestHeldRowsPlaceTheSameCuts(t *testing.T) {
	input := t.TempDir()
	short := func(int) int { return 8 }
	writeCaptures(t, input, []capture{
		{name: "big", rows: 60000, flowLen: 5, featureLength: short,
			app: func(i int) *int64 { return label(int64(i % 2)) }, traffic: func(int) *int64 { return label(0) }},
		{name: "mid", rows: 35000, flowLen: 3, featureLength: short,
			app: func(int) *int64 { return label(2) }, traffic: func(i int) *int64 { return label(int64(1 + i%2)) }},
	})
	for _, unit := range []Unit{ByPacket, ByFlow} {
		t.Run(unit.String(), func(t *testing.T) {
			opts := DefaultOptions()
			opts.SplitBy, opts.TestUnderSampling, opts.Jobs = unit, true, 2
			held, report := runSplit(t, input, opts)
			if report.HeldRows == 0 {
				t.Fatal("no rows held: the test does not exercise placing cuts from held rows")
			}
			budget := holdBytes
			holdBytes = 0
			defer func() { holdBytes = budget }()
			byPass, passReport := runSplit(t, input, opts)
			if passReport.HeldRows != 0 {
				t.Fatalf("%d rows held with no budget", passReport.HeldRows)
			}
			if a, b := sortedDigest(t, held), sortedDigest(t, byPass); a != b {
				t.Error("held rows and a separate pass give different sets")
			}
			if unit == ByFlow {
				return
			}
			// Packets are cut exactly: undersampled to the smallest class,
			// of a test set that is 0.2 of each class.
			smallest := map[string]int64{TaskDirs[app]: 30000, TaskDirs[traffic]: 17500}
			for _, s := range report.Sets {
				n := smallest[s.Task]
				want := int64(math.Round(0.2 * float64(n)))
				if s.Set == "train" {
					want = n - want
				}
				for _, c := range s.Classes {
					if c.Rows != want {
						t.Errorf("%s/%s label %d: %d rows, want %d", s.Task, s.Set, c.Label, c.Rows, want)
					}
				}
			}
		})
	}
}

func TestFlowSplitKeepsFlowsOnOneSide(t *testing.T) {
	input := t.TempDir()
	caps := testCaptures()
	writeCaptures(t, input, caps)
	flowLen := map[string]int{}
	for _, c := range caps {
		flowLen[c.name+".pcap"] = c.flowLen
	}
	opts := DefaultOptions()
	opts.SplitBy = ByFlow
	target, report := runSplit(t, input, opts)
	want := inputCounts(caps)
	for _, task := range TaskDirs {
		side := map[string]string{}
		for _, set := range setNames {
			for _, r := range readCompact(t, filepath.Join(target, task, set+".parquet")) {
				flow := fmt.Sprintf("%s/%d/%d", r.Source, r.Flow, r.Label)
				if s, ok := side[flow]; ok && s != set {
					t.Fatalf("%s: flow %s is in both train and test", task, flow)
				}
				side[flow] = set
			}
		}
	}
	// The test set is still about test_size of each class: off by less than
	// one flow.
	for _, s := range report.Sets {
		if s.Set != "test" {
			continue
		}
		task := app
		if s.Task == TaskDirs[traffic] {
			task = traffic
		}
		for label, n := range want[task] {
			exact := math.Round(0.2 * float64(n))
			if d := math.Abs(float64(s.Count(label)) - exact); d > 13 {
				t.Errorf("%s label %d: %d test rows, want %v within a flow", s.Task, label, s.Count(label), exact)
			}
		}
	}
}

func TestReferenceFormatHoldsTheSameRows(t *testing.T) {
	input := t.TempDir()
	writeCaptures(t, input, []capture{{
		name: "x", rows: 300, flowLen: 3,
		app:           func(i int) *int64 { return label(int64(i % 3)) },
		traffic:       func(i int) *int64 { return label(int64(i % 2)) },
		featureLength: func(i int) int { return 1 + i%40 },
	}})
	opts := DefaultOptions()
	opts.SignalLength = 64
	compact, _ := runSplit(t, input, opts)
	opts.Format = dataset.Reference
	ref, _ := runSplit(t, input, opts)
	for _, task := range TaskDirs {
		for _, set := range setNames {
			want := readCompact(t, filepath.Join(compact, task, set+".parquet"))
			dir := filepath.Join(ref, task, set+".parquet")
			files, err := dataset.SetFiles(dir)
			if err != nil {
				t.Fatal(err)
			}
			var got dataset.Rows
			var rd dataset.RowGroupReader
			for _, path := range files {
				f, err := dataset.OpenSetFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if f.Format != dataset.Reference {
					t.Fatalf("%s: format %v", path, f.Format)
				}
				for rg := range f.NumRowGroups() {
					if err := rd.Read(f, rg, dataset.Limits{SignalLength: 64}, &got); err != nil {
						t.Fatal(err)
					}
				}
				f.Close()
			}
			if got.Len() != len(want) || len(want) == 0 {
				t.Fatalf("%s: %d rows, the compact set has %d", dir, got.Len(), len(want))
			}
			for i, w := range want {
				// The reader drops trailing zeros, which the reference pads with.
				if !bytes.Equal(got.Feature(i), bytes.TrimRight(w.Feature, "\x00")) || got.Labels[i] != w.Label {
					t.Fatalf("%s row %d: %v label %d, want %v label %d", dir, i, got.Feature(i), got.Labels[i], w.Feature, w.Label)
				}
			}
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string
	}{
		{"not parquet", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "bad.parquet"), []byte("PAR1 this is text"), 0o644)
		}, "bad.parquet: not a Parquet file"},
		{"missing column", func(t *testing.T, dir string) {
			type noFlow struct {
				Feature  []byte `parquet:"feature"`
				AppLabel *int64 `parquet:"app_label,optional"`
			}
			if err := parquet.WriteFile(filepath.Join(dir, "old.parquet"), []noFlow{{Feature: []byte{1}}}); err != nil {
				t.Fatal(err)
			}
		}, `old.parquet: no "traffic_label" column`},
		{"feature too long", func(t *testing.T, dir string) {
			writeCaptures(t, dir, []capture{{name: "long", rows: 20, app: func(int) *int64 { return label(1) },
				traffic: func(int) *int64 { return label(1) }, featureLength: func(i int) int { return 1490 + i }}})
		}, "long.parquet: row 11: feature of 1501 bytes is longer than the signal length 1500"},
		{"null index", func(t *testing.T, dir string) {
			type nullable struct {
				Feature      []byte `parquet:"feature"`
				AppLabel     *int64 `parquet:"app_label,optional"`
				TrafficLabel *int64 `parquet:"traffic_label,optional"`
				Source       string `parquet:"source"`
				Index        *int64 `parquet:"index,optional"`
				TimestampNS  int64  `parquet:"timestamp_ns"`
				Flow         int64  `parquet:"flow"`
			}
			rows := make([]nullable, 5)
			for i := range rows {
				rows[i] = nullable{Feature: []byte{1}, AppLabel: label(0), Source: "s", Index: label(int64(i))}
			}
			rows[3].Index = nil
			if err := parquet.WriteFile(filepath.Join(dir, "nulls.parquet"), rows); err != nil {
				t.Fatal(err)
			}
		}, "nulls.parquet: column \"index\" near row 0: row 3: index is null"},
		{"empty folder", func(*testing.T, string) {}, "no .parquet files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			input := t.TempDir()
			tc.setup(t, input)
			target := t.TempDir()
			_, err := Run(context.Background(), input, target, DefaultOptions())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			// Nothing half-written is left behind.
			entries, _ := os.ReadDir(filepath.Join(target, TaskDirs[app]))
			if len(entries) != 0 {
				t.Errorf("left %d entries in %s", len(entries), TaskDirs[app])
			}
		})
	}
}

// A split replaces its target whole, in one rename: nothing of a previous
// split survives beside the new sets (so train and test always come from
// one run), what an interrupted run left is removed, and nothing temporary
// stays behind.
func TestCommitReplacesTheTargetWhole(t *testing.T) {
	input := t.TempDir()
	writeCaptures(t, input, testCaptures())
	target := filepath.Join(t.TempDir(), "sets")
	stale := filepath.Join(filepath.Dir(target), ".sets.tmp-12345")
	if err := os.MkdirAll(filepath.Join(stale, TaskDirs[app]), 0o755); err != nil {
		t.Fatal(err)
	}
	var digests []string
	for i, seed := range []uint64{1, 2} {
		if i == 1 {
			// A file of the first run that the second does not write.
			if err := os.WriteFile(filepath.Join(target, TaskDirs[app], "train.parquet", "part-99999-000.parquet"), []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		opts := DefaultOptions()
		opts.Seed = seed
		report, err := Run(context.Background(), input, target, opts)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := report.Sets[0].Path, filepath.Join(target, TaskDirs[app], "train.parquet"); got != want {
			t.Errorf("report path %s, want %s", got, want)
		}
		digests = append(digests, setDigest(t, target))
	}
	if digests[0] == digests[1] {
		t.Fatal("the second split (another seed) did not replace the first")
	}
	if _, err := os.Stat(filepath.Join(target, TaskDirs[app], "train.parquet", "part-99999-000.parquet")); err == nil {
		t.Error("a file of the previous split survived")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(target), ".sets.tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary folders left: %v", left)
	}
}
