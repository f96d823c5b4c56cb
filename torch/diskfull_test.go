package torch

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A full disk while saving is a Go error for every save path (TorchScript
// and pickles), and the temporary file is removed: no abort, nothing left.
// The disk is a 64 kB tmpfs, so the test needs root (it skips otherwise).
func TestSaveToFullDisk(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	big := Zeros(nil, []int64{256, 1024}, Float32, CPU) // 1 MB
	defer big.Free()
	m, err := NewScriptModule("Big")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Register("w", big, false); err != nil {
		t.Fatal(err)
	}
	if err := m.Define("def forward(self, x):\n    return x + self.w\n"); err != nil {
		t.Fatal(err)
	}
	for name, save := range map[string]func(string) error{
		"torchscript": m.Save,
		"pickle":      func(p string) error { return SavePickle(p, &Dict{Keys: []any{"w"}, Values: []any{big}}) },
	} {
		path := filepath.Join(dir, name+".pt")
		err := save(path)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "no space left on device") {
			t.Errorf("%s: error %v, want one saying the disk is full", name, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("%s: left %v on the full disk", name, entries[0].Name())
		}
	}
}
