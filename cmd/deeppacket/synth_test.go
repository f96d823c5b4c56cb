package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/synth"
)

// TestSynthCommand writes the set twice with one seed and once with
// another: every capture is there, the same seed gives the same bytes (so
// the binary runs with the crypto setting determinism needs), and bad
// arguments are refused.
func TestSynthCommand(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	seeds := []string{"5", "5", "6"}
	for i, dir := range dirs {
		out, err := runCLI(t, "synth", "--seed", seeds[i], "--scale", "0.2", "-o", dir)
		if err != nil {
			t.Fatalf("synth: %v\n%s", err, out)
		}
		if !strings.Contains(out, "vpn_bittorrent.pcap") || !strings.Contains(out, "total") {
			t.Errorf("summary lacks captures or total:\n%s", out)
		}
	}
	differ := 0
	for _, c := range synth.Captures() {
		read := func(dir string) []byte {
			b, err := os.ReadFile(filepath.Join(dir, c.Name))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		a, b, other := read(dirs[0]), read(dirs[1]), read(dirs[2])
		if !bytes.Equal(a, b) {
			t.Errorf("%s: seed 5 gave different bytes twice", c.Name)
		}
		if !bytes.Equal(a, other) {
			differ++
		}
	}
	if differ != len(synth.Captures()) {
		t.Errorf("seeds 5 and 6 differ in %d of %d captures", differ, len(synth.Captures()))
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"synth"}, "-o DIR is required"},
		{[]string{"synth", "-o", t.TempDir(), "--scale", "0"}, "scale 0"},
		{[]string{"synth", "-o", t.TempDir(), "--set", "sede=3"}, `did you mean "seed"`},
	} {
		if _, err := runCLI(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
