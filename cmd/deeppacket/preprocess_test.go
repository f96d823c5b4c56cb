package main

import (
	"bytes"
	"os"
	"path/filepath"
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
	if err == nil || !strings.Contains(err.Error(), "1 of 5 captures damaged or failed") {
		t.Fatalf("error %v, want the damaged capture counted\n%s", err, summary)
	}
	for _, want := range []string{"gmail.pcap: read", "byte offset", "damaged", "no label", "not a capture", "total (5 captures)"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	for _, name := range []string{"aim_chat.pcap.parquet", "vpn_sftp.pcap.parquet", "gmail.pcap.parquet"} {
		rows, err := dataset.ReadAllPackets(filepath.Join(out, name))
		if err != nil || len(rows) == 0 {
			t.Fatalf("%s: %d rows, %v", name, len(rows), err)
		}
		if name == "vpn_sftp.pcap.parquet" && (rows[0].AppLabel != nil || rows[0].TrafficLabel == nil || *rows[0].TrafficLabel != 6) {
			t.Errorf("%s: labels %v %v, want none and 6", name, rows[0].AppLabel, rows[0].TrafficLabel)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "unknown.pcap.parquet")); err == nil {
		t.Error("an unlabelled capture was written")
	}
	info, _ := os.Stat(filepath.Join(out, "aim_chat.pcap.parquet"))

	time.Sleep(10 * time.Millisecond)
	summary, _ = runCLI(t, args...)
	if !strings.Contains(summary, "2 up to date") || !strings.Contains(summary, "1 damaged") {
		t.Errorf("rerun: want the two complete outputs skipped and the damaged one redone:\n%s", summary)
	}
	summary, _ = runCLI(t, append(args[:len(args)-1:len(args)-1], "--force", in)...)
	if !strings.Contains(summary, "2 done") {
		t.Errorf("--force: want both redone:\n%s", summary)
	}
	if again, _ := os.Stat(filepath.Join(out, "aim_chat.pcap.parquet")); !again.ModTime().After(info.ModTime()) {
		t.Error("--force did not rewrite the output")
	}
	if _, err := runCLI(t, "preprocess", "--layout", "papr", "-o", out, in); err == nil || !strings.Contains(err.Error(), "papr") {
		t.Errorf("a bad layout: error %v", err)
	}
}
