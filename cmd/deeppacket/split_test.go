package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/data/dataset"
	"github.com/deeppacket/deeppacket/data/loader"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/labels"
)

// TestPreprocessSplitLoad runs the pipeline on the ISCX captures: preprocess
// with the dataset's labels.tsv, split in both formats and by flow, then
// load the sets as training does.
func TestPreprocessSplitLoad(t *testing.T) {
	iscx := testenv.Shared(t, "pcaps/iscx")
	pre := filepath.Join(t.TempDir(), "preprocessed")
	if out, err := runCLI(t, "preprocess", "--labels", filepath.Join(iscx, "labels.tsv"), "-o", pre, iscx); err != nil {
		t.Fatalf("preprocess: %v\n%s", err, out)
	}
	// What preprocess kept, per task and label.
	packets := map[string]dataset.Packet{}
	var inputs [2]map[int64]int64
	inputs[0], inputs[1] = map[int64]int64{}, map[int64]int64{}
	files, _ := filepath.Glob(filepath.Join(pre, "*.parquet"))
	for _, f := range files {
		rows, err := dataset.ReadAllPackets(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range rows {
			packets[fmt.Sprintf("%s#%d", p.Source, p.Index)] = p
			if p.AppLabel != nil {
				inputs[0][*p.AppLabel]++
			}
			if p.TrafficLabel != nil {
				inputs[1][*p.TrafficLabel]++
			}
		}
	}
	if len(inputs[0]) < 10 || len(inputs[1]) < 8 {
		t.Fatalf("preprocess found %d application and %d traffic classes", len(inputs[0]), len(inputs[1]))
	}

	compact := filepath.Join(t.TempDir(), "compact")
	out, err := runCLI(t, "split", "-j", "2", "-o", compact, pre)
	if err != nil {
		t.Fatalf("split: %v\n%s", err, out)
	}
	for _, want := range []string{"application_classification/train.parquet", "traffic_classification/test.parquet", "AIM Chat", "VPN: Voip"} {
		if !strings.Contains(out, want) {
			t.Errorf("split output lacks %q:\n%s", want, out)
		}
	}
	// Every input row is accounted for, per task: train + test + left out
	// by undersampling + without a label for the task.
	for task, labelled := range map[string]map[int64]int64{"application": inputs[0], "traffic": inputs[1]} {
		var n, in, train, test, under, none int64
		for _, c := range labelled {
			n += c
		}
		line := regexp.MustCompile(task + `: (\d+) input rows = (\d+) train \+ (\d+) test \+ (\d+) left out by undersampling \+ (\d+) without an? ` + task + ` label`).FindStringSubmatch(out)
		if line == nil {
			t.Errorf("split output lacks the %s accounting line:\n%s", task, out)
			continue
		}
		for i, dst := range []*int64{&in, &train, &test, &under, &none} {
			*dst, _ = strconv.ParseInt(line[i+1], 10, 64)
		}
		if in != int64(len(packets)) || train+test+under+none != in || in-none != n {
			t.Errorf("%s: %s; want %d input rows, %d of them labelled", task, line[0], len(packets), n)
		}
	}
	reference := filepath.Join(t.TempDir(), "reference")
	if out, err := runCLI(t, "split", "--format", "reference", "-j", "1", "-o", reference, pre); err != nil {
		t.Fatalf("split --format reference: %v\n%s", err, out)
	}

	tasks := []struct {
		dir     string
		classes int
		label   func(dataset.Packet) *int64
	}{
		{"application_classification", labels.AppOutputDim, func(p dataset.Packet) *int64 { return p.AppLabel }},
		{"traffic_classification", labels.TrafficOutputDim, func(p dataset.Packet) *int64 { return p.TrafficLabel }},
	}
	for ti, task := range tasks {
		minTrain := int64(math.MaxInt64)
		for _, n := range inputs[ti] {
			minTrain = min(minTrain, n-int64(math.Round(0.2*float64(n))))
		}
		seen := map[string]string{}
		for _, set := range []string{"train", "test"} {
			rows := readSamples(t, filepath.Join(compact, task.dir, set+".parquet"))
			counts := map[int64]int64{}
			for _, r := range rows {
				key := fmt.Sprintf("%s#%d", r.Source, r.Index)
				p, ok := packets[key]
				if !ok || !bytes.Equal(p.Feature, r.Feature) || task.label(p) == nil || *task.label(p) != r.Label {
					t.Fatalf("%s/%s: row %s does not match the preprocessed packet", task.dir, set, key)
				}
				if other, dup := seen[key]; dup {
					t.Fatalf("%s: %s is in %s and %s", task.dir, key, other, set)
				}
				seen[key] = set
				counts[r.Label]++
			}
			for label, n := range inputs[ti] {
				want := int64(math.Round(0.2 * float64(n)))
				if set == "train" {
					want = minTrain
				}
				if counts[label] != want {
					t.Errorf("%s/%s label %d: %d rows, want %d", task.dir, set, label, counts[label], want)
				}
			}

			// The loader gives the same rows from both formats, scaled and
			// padded, in file order when not shuffling.
			batches := func(dir string) ([]float32, []int64) {
				l, err := loader.Open(dir, loader.Options{BatchSize: 16, SignalLength: 1500, NumClasses: task.classes})
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				e := l.Epoch(0)
				defer e.Close()
				var feats []float32
				var labs []int64
				for {
					b, err := e.Next()
					if err == io.EOF {
						return feats, labs
					}
					if err != nil {
						t.Fatal(err)
					}
					feats = append(feats, b.Features...)
					labs = append(labs, b.Labels...)
				}
			}
			cf, cl := batches(filepath.Join(compact, task.dir, set+".parquet"))
			rf, rl := batches(filepath.Join(reference, task.dir, set+".parquet"))
			if len(cl) != len(rows) || len(rl) != len(rows) {
				t.Fatalf("%s/%s: loaded %d and %d rows, want %d", task.dir, set, len(cl), len(rl), len(rows))
			}
			for i, r := range rows {
				if cl[i] != r.Label || rl[i] != r.Label {
					t.Fatalf("%s/%s row %d: labels %d %d, want %d", task.dir, set, i, cl[i], rl[i], r.Label)
				}
				for k := range 1500 {
					var b byte
					if k < len(r.Feature) {
						b = r.Feature[k]
					}
					want := float32(float64(b) / 255)
					if cf[i*1500+k] != want || rf[i*1500+k] != want {
						t.Fatalf("%s/%s row %d value %d: %v and %v, want %v", task.dir, set, i, k, cf[i*1500+k], rf[i*1500+k], want)
					}
				}
			}
		}
	}

	// By flow, no flow has packets on both sides.
	byFlow := filepath.Join(t.TempDir(), "flow")
	if out, err := runCLI(t, "split", "--split-by", "flow", "--test-under-sampling", "-o", byFlow, pre); err != nil {
		t.Fatalf("split --split-by flow: %v\n%s", err, out)
	}
	for _, task := range tasks {
		side := map[string]string{}
		for _, set := range []string{"train", "test"} {
			for _, r := range readSamples(t, filepath.Join(byFlow, task.dir, set+".parquet")) {
				flow := fmt.Sprintf("%s/%d", r.Source, r.Flow)
				if s, ok := side[flow]; ok && s != set {
					t.Fatalf("%s: flow %s is in train and test", task.dir, flow)
				}
				side[flow] = set
			}
		}
	}
}

func readSamples(t *testing.T, dir string) []dataset.Sample {
	t.Helper()
	all, err := dataset.ReadAllSamples(dir)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestSplitFlagsAreConfigKeys(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"split", "x"}, "-o TARGET is required"},
		{[]string{"split", "--split-by", "session", "-o", "t", "x"}, `split by "session": want packet or flow`},
		{[]string{"split", "--set", "format=arrow", "-o", "t", "x"}, `format "arrow": want compact or reference`},
		{[]string{"split", "--set", "tset_size=0.1", "-o", "t", "x"}, `did you mean "test_size"?`},
		{[]string{"split", "--test-size", "1.5", "-o", "t", "x"}, "test size 1.5"},
	}
	for _, tc := range tests {
		_, err := runCLI(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.wantErr)
		}
	}
}
