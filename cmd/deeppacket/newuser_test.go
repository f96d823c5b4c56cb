package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/data/capture"
	"github.com/deeppacket/deeppacket/data/dataset"
	"github.com/deeppacket/deeppacket/internal/testenv"
)

// countPackets reads a capture's records with the capture reader alone.
func countPackets(t *testing.T, path string) int64 {
	t.Helper()
	r, err := capture.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var rec capture.Record
	var n int64
	for {
		err := r.Next(&rec)
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		n++
	}
}

// TestNewUserRun is the whole CLI as a new user runs it, on the ISCX
// captures and on a folder of their own unnamed captures: preprocess, split,
// evaluate (first, by mistake, on the preprocess folder), predict. Every
// packet is accounted for in the summaries: preprocess reads every packet of
// every capture and keeps or omits each, split places every kept row, and
// predict reads and classifies the same packets.
func TestNewUserRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole CLI")
	}
	iscx := testenv.Shared(t, "pcaps/iscx")
	ndpi := testenv.Shared(t, "pcaps/real/ndpi")
	in := t.TempDir()
	var want int64
	captures, _ := filepath.Glob(filepath.Join(iscx, "*.pcap"))
	for _, c := range captures {
		want += countPackets(t, c)
		if err := os.Symlink(c, filepath.Join(in, filepath.Base(c))); err != nil {
			t.Fatal(err)
		}
	}
	// The user's own captures, under names no label map knows.
	mine := filepath.Join(in, "mine")
	os.MkdirAll(mine, 0o755)
	var mineRead int64
	for i, name := range []string{"whatsapp.pcap", "signal.pcap", "stun_signal.pcapng"} {
		data, err := os.ReadFile(filepath.Join(ndpi, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p := filepath.Join(mine, "capture"+strconv.Itoa(i)+filepath.Ext(name))
		os.WriteFile(p, data, 0o644)
		n := countPackets(t, p)
		want += n
		mineRead += n
	}
	os.WriteFile(filepath.Join(mine, "README.txt"), []byte("my captures\n"), 0o644)

	dir := t.TempDir()
	pre, sets := filepath.Join(dir, "pre"), filepath.Join(dir, "sets")
	summary, err := runCLI(t, "preprocess", "--labels", filepath.Join(iscx, "labels.tsv"), "-o", pre, in)
	if err != nil {
		t.Fatalf("preprocess: %v\n%s", err, summary)
	}
	total := regexp.MustCompile(`total: (\d+) captures\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`).FindStringSubmatch(summary)
	if total == nil {
		t.Fatalf("no totals line:\n%s", summary)
	}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	read, kept := n(total[2]), n(total[3])
	if n(total[1]) != int64(len(captures)+3) || read != want || kept+n(total[4])+n(total[5])+n(total[6]) != read {
		t.Errorf("preprocess: %s; want %d captures, %d packets read, each kept or omitted", total[0], len(captures)+3, want)
	}
	if !strings.Contains(summary, "3 captures ("+strconv.FormatInt(mineRead, 10)+" packets") || !strings.Contains(summary, "README.txt (not a capture)") {
		t.Errorf("preprocess: the user's unnamed captures and their notes are not reported:\n%s", summary)
	}
	var rows int64
	files, _ := filepath.Glob(filepath.Join(pre, "*.parquet"))
	for _, f := range files {
		r, err := dataset.ReadAllPackets(f)
		if err != nil {
			t.Fatal(err)
		}
		rows += int64(len(r))
	}
	if rows != kept {
		t.Errorf("preprocess wrote %d rows, its summary says %d kept", rows, kept)
	}

	out, err := runCLI(t, "split", "--split-by", "flow", "-o", sets, pre)
	if err != nil {
		t.Fatalf("split: %v\n%s", err, out)
	}
	for _, task := range []string{"application", "traffic"} {
		m := regexp.MustCompile(task + `: (\d+) input rows = (\d+) train \+ (\d+) test \+ (\d+) left out by undersampling \+ (\d+) without`).FindStringSubmatch(out)
		if m == nil || n(m[1]) != kept || n(m[2])+n(m[3])+n(m[4])+n(m[5]) != kept {
			t.Errorf("split %s: %v; want every one of the %d rows placed", task, m, kept)
		}
	}

	model := testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt")
	if _, err := runCLI(t, "evaluate", "--model", model, pre); err == nil || !strings.Contains(err.Error(), "run split") {
		t.Errorf("evaluate on the preprocess folder: error %v, want one saying to split first", err)
	}
	if out, err := runCLI(t, "evaluate", "--model", model, filepath.Join(sets, "traffic_classification", "test.parquet")); err != nil || !strings.Contains(out, "macro avg") {
		t.Errorf("evaluate: %v\n%s", err, out)
	}
	pred := filepath.Join(dir, "pred.csv")
	if out, err := runCLI(t, "predict", "--model", model, "-o", pred, in); err != nil {
		t.Fatalf("predict: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(pred)
	if got := int64(strings.Count(string(data), "\npacket,")); got != kept {
		t.Errorf("predict wrote %d packet rows, preprocess kept %d", got, kept)
	}
}
