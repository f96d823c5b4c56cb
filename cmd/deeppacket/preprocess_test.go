package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deeppacket/deeppacket/data/dataset"
	"github.com/deeppacket/deeppacket/internal/testenv"
)

// runCLI runs the deeppacket command line with args and returns its output.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--quiet", "--log-level", "error"}, args...))
	err := root.Execute()
	return out.String(), err
}

// TestPreprocessCommand runs the command over a folder holding two labelled
// captures, a damaged one, an unlabelled one and a text file, then again to
// resume, then with --force.
func TestPreprocessCommand(t *testing.T) {
	iscx := testenv.Shared(t, "pcaps/iscx")
	in := filepath.Join(t.TempDir(), "in")
	os.MkdirAll(filepath.Join(in, "sub"), 0o755)
	copyFile := func(name, dst string, keep int) {
		data, err := os.ReadFile(filepath.Join(iscx, name))
		if err != nil {
			t.Fatal(err)
		}
		if keep > 0 {
			data = data[:keep]
		}
		os.WriteFile(filepath.Join(in, dst), data, 0o644)
	}
	copyFile("aim_chat.pcap", "aim_chat.pcap", 0)
	copyFile("vpn_sftp.pcap", "sub/vpn_sftp.pcap", 0)
	copyFile("gmail.pcap", "gmail.pcap", 40000) // cut mid-record
	copyFile("email.pcap", "unknown.pcap", 0)
	copyFile("labels.tsv", "labels.tsv", 0)
	out := filepath.Join(t.TempDir(), "out")
	args := []string{"preprocess", "--labels", filepath.Join(iscx, "labels.tsv"), "-j", "2", "-o", out, in}

	summary, err := runCLI(t, args...)
	if err == nil || !strings.Contains(err.Error(), "1 of 4 captures damaged or failed") {
		t.Fatalf("error %v, want the damaged capture counted\n%s", err, summary)
	}
	for _, want := range []string{"gmail.pcap: read", "byte offset", "damaged", "total: 4 captures",
		"1 captures (", "have no label: their rows have null labels", "--labels FILE",
		"skipped, not captures: " + filepath.Join(in, "labels.tsv") + " (not a capture)"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	// The table lists captures only, within 100 columns.
	for _, line := range strings.Split(summary, "\n") {
		if n := len([]rune(line)); n > 100 && !strings.Contains(line, ": ") {
			t.Errorf("summary line of %d columns: %q", n, line)
		}
		if strings.HasPrefix(strings.TrimSpace(line), "labels.tsv") {
			t.Errorf("a file that is not a capture is a row of the table: %q", line)
		}
	}
	for _, name := range []string{"aim_chat.pcap.parquet", "vpn_sftp.pcap.parquet", "gmail.pcap.parquet", "unknown.pcap.parquet"} {
		rows, err := dataset.ReadAllPackets(filepath.Join(out, name))
		if err != nil || len(rows) == 0 {
			t.Fatalf("%s: %d rows, %v", name, len(rows), err)
		}
		if name == "vpn_sftp.pcap.parquet" && (rows[0].AppLabel != nil || rows[0].TrafficLabel == nil || *rows[0].TrafficLabel != 6) {
			t.Errorf("%s: labels %v %v, want none and 6", name, rows[0].AppLabel, rows[0].TrafficLabel)
		}
	}
	if rows, _ := dataset.ReadAllPackets(filepath.Join(out, "unknown.pcap.parquet")); len(rows) == 0 || rows[0].AppLabel != nil || rows[0].TrafficLabel != nil {
		t.Errorf("the unlabelled capture: %d rows, want them with null labels", len(rows))
	}
	info, _ := os.Stat(filepath.Join(out, "aim_chat.pcap.parquet"))

	time.Sleep(10 * time.Millisecond)
	summary, _ = runCLI(t, args...)
	if !strings.Contains(summary, "3 up to date") || !strings.Contains(summary, "1 damaged") {
		t.Errorf("rerun: want the three complete outputs skipped and the damaged one redone:\n%s", summary)
	}
	summary, _ = runCLI(t, append(args[:len(args)-1:len(args)-1], "--force", in)...)
	if !strings.Contains(summary, "3 done") {
		t.Errorf("--force: want both redone:\n%s", summary)
	}
	if again, _ := os.Stat(filepath.Join(out, "aim_chat.pcap.parquet")); !again.ModTime().After(info.ModTime()) {
		t.Error("--force did not rewrite the output")
	}
	if _, err := runCLI(t, "preprocess", "--layout", "papr", "-o", out, in); err == nil || !strings.Contains(err.Error(), "papr") {
		t.Errorf("a bad layout: error %v", err)
	}
}

// TestPreprocessFollowsLinksAndRefusesCollisions: symbolic links to
// captures and folders are followed (a loop ends, a dangling link is listed
// as skipped), and two captures that would share an output are refused
// before any work.
func TestPreprocessFollowsLinksAndRefusesCollisions(t *testing.T) {
	iscx := testenv.Shared(t, "pcaps/iscx")
	data, err := os.ReadFile(filepath.Join(iscx, "aim_chat.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "in")
	os.MkdirAll(filepath.Join(in, "real"), 0o755)
	os.WriteFile(filepath.Join(in, "real", "aim_chat.pcap"), data, 0o644)
	for link, target := range map[string]string{
		"linked":            filepath.Join(in, "real"),                  // a folder again
		"loop":              in,                                         // a loop
		"dangling.pcap":     filepath.Join(in, "gone.pcap"),             // nothing
		"aim_chat_b.pcapng": filepath.Join(in, "real", "aim_chat.pcap"), // a capture
	} {
		if err := os.Symlink(target, filepath.Join(in, link)); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	summary, err := runCLI(t, "preprocess", "-o", out, in)
	if err != nil {
		t.Fatalf("preprocess: %v\n%s", err, summary)
	}
	for _, name := range []string{"aim_chat.pcap.parquet", "aim_chat_b.pcapng.parquet"} {
		if rows, err := dataset.ReadAllPackets(filepath.Join(out, name)); err != nil || len(rows) == 0 {
			t.Errorf("%s: %d rows, %v", name, len(rows), err)
		}
	}
	if !strings.Contains(summary, "total: 2 captures") || !strings.Contains(summary, filepath.Join(in, "dangling.pcap")+" (unreadable)") {
		t.Errorf("summary: want 2 captures and the dangling link skipped:\n%s", summary)
	}

	// a/x.pcap and b/x.pcap get their paths in their output names; a
	// capture literally named like one of those would overwrite it.
	col := filepath.Join(t.TempDir(), "col")
	for _, p := range []string{"a/x.pcap", "b/x.pcap"} {
		os.MkdirAll(filepath.Dir(filepath.Join(col, p)), 0o755)
		os.WriteFile(filepath.Join(col, p), data, 0o644)
	}
	flat := strings.Trim(strings.ReplaceAll(filepath.ToSlash(filepath.Join(col, "a", "x.pcap")), "/", "__"), "_.")
	os.WriteFile(filepath.Join(col, flat), data, 0o644)
	out2 := filepath.Join(t.TempDir(), "out")
	if _, err := runCLI(t, "preprocess", "-o", out2, col); err == nil || !strings.Contains(err.Error(), "would both be written to") {
		t.Errorf("colliding outputs: error %v", err)
	}
	if _, err := os.Stat(out2); err == nil {
		t.Error("the colliding run wrote outputs")
	}
}

// TestPreprocessShards: three workers (--shard 0/3, 1/3, 2/3) preprocess the
// ISCX captures into one folder; it holds the same files, byte for byte, as
// one process makes (so split reads the same sets from it). Each capture is
// done by exactly one worker, and a bad --shard is refused.
func TestPreprocessShards(t *testing.T) {
	iscx := testenv.Shared(t, "pcaps/iscx")
	dir := t.TempDir()
	one, sharded := filepath.Join(dir, "one"), filepath.Join(dir, "sharded")
	labelsFile := filepath.Join(iscx, "labels.tsv")
	if out, err := runCLI(t, "preprocess", "--labels", labelsFile, "-o", one, iscx); err != nil {
		t.Fatalf("preprocess: %v\n%s", err, out)
	}
	done := map[string]int{}
	for i := range 3 {
		out, err := runCLI(t, "preprocess", "--labels", labelsFile, "--shard", fmt.Sprintf("%d/3", i), "-o", sharded, iscx)
		if err != nil {
			t.Fatalf("preprocess --shard %d/3: %v\n%s", i, err, out)
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasSuffix(f[0], ".pcap") && f[len(f)-1] == "done" {
				done[f[0]]++
			}
		}
	}
	want, err := filepath.Glob(filepath.Join(iscx, "*.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != len(want) {
		t.Errorf("the workers did %d captures between them, want each of the %d once", len(done), len(want))
	}
	for c, n := range done {
		if n != 1 {
			t.Errorf("%s done by %d workers", c, n)
		}
	}
	names := func(d string) []string {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	if a, b := names(one), names(sharded); !slices.Equal(a, b) {
		t.Fatalf("one process wrote %v, the shards %v", a, b)
	}
	for _, name := range names(one) {
		a, errA := os.ReadFile(filepath.Join(one, name))
		b, errB := os.ReadFile(filepath.Join(sharded, name))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between one process and the shards (%v, %v)", name, errA, errB)
		}
	}
	for _, bad := range []string{"3/3", "-1/2", "1", "a/b", "0/0"} {
		if _, err := runCLI(t, "preprocess", "--shard", bad, "-o", filepath.Join(dir, "bad"), iscx); err == nil || !strings.Contains(err.Error(), "--shard") {
			t.Errorf("--shard %s: %v, want an error naming --shard", bad, err)
		}
	}
}
