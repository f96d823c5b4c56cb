package features_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/internal/testenv"
)

// TestReferenceScriptGivesGoldenBytes: scripts/bench_preprocess_reference.py,
// the reference's preprocessing that the benchmarks time, gives the golden
// files' verdicts and bytes for every packet, with scapy 2.5 (Debian's, the
// version the reference ran) and with the newest scapy (.venv's), whose DNS
// dissection and first-fragment handling differ and are brought back to
// 2.5's by the script.
func TestReferenceScriptGivesGoldenBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs scapy over 100,000 packets twice")
	}
	golden := testenv.Shared(t, "golden")
	pcaps := testenv.Shared(t, "pcaps")
	script := filepath.Join(testenv.RepoRoot(t), "scripts", "bench_preprocess_reference.py")
	pythons := map[string]string{"scapy 2.5 (Debian)": "/usr/bin/python3", "newest scapy (.venv)": testenv.Python(t)}
	for name, python := range pythons {
		out, err := exec.Command(python, "-c", "import scapy; print(scapy.__version__)").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %s cannot import scapy: %v\n%s", name, python, err, out)
		}
		t.Run(name+" "+strings.TrimSpace(string(out)), func(t *testing.T) {
			for _, set := range []string{"iscx", "real"} {
				files, err := filepath.Glob(filepath.Join(golden, set, "*.golden"))
				if err != nil || len(files) == 0 {
					t.Fatalf("no golden files in %s: %v", set, err)
				}
				args := []string{script, "--golden", t.TempDir()}
				for _, g := range files {
					c, err := captureFor(filepath.Join(pcaps, set), g)
					if err != nil {
						t.Fatal(err)
					}
					args = append(args, c)
				}
				if out, err := exec.Command(python, args...).CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", script, err, out)
				}
				for _, g := range files {
					want, err := os.ReadFile(g)
					if err != nil {
						t.Fatal(err)
					}
					got, err := os.ReadFile(filepath.Join(args[2], filepath.Base(g)))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%s/%s: the script's output differs from the golden file (%s)", set, filepath.Base(g), firstDifference(args[2], g))
					}
				}
			}
		})
	}
}

// firstDifference names the first packet whose record differs.
func firstDifference(dir, golden string) string {
	want, err := readGolden(golden)
	if err != nil {
		return err.Error()
	}
	got, err := readGolden(filepath.Join(dir, filepath.Base(golden)))
	if err != nil {
		return err.Error()
	}
	for i := range min(len(got), len(want)) {
		if got[i].verdict != want[i].verdict || !bytes.Equal(got[i].feature, want[i].feature) {
			return fmt.Sprintf("packet %d", want[i].index)
		}
	}
	return fmt.Sprintf("%d records, want %d", len(got), len(want))
}
