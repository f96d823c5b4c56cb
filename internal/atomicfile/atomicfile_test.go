package atomicfile

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		commit bool
		want   string
	}{
		{"commit replaces", true, "new"},
		{"abort keeps the old file", false, "old"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("new"); err != nil {
				t.Fatal(err)
			}
			if tc.commit {
				if err := f.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			f.Abort()
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("content %q, want %q", got, tc.want)
			}
			left, _ := filepath.Glob(filepath.Join(dir, ".*tmp-*"))
			if len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

// TestWriteback writes past several writeback points: the hint must leave
// the content intact.
func TestWriteback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 3*writebackBytes+12345)
	for i := range want {
		want[i] = byte(i * 7 / 3)
	}
	for b := want; len(b) > 0; {
		n := min(len(b), 1<<20+17)
		if _, err := f.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	if f.flushed < 3*writebackBytes {
		t.Errorf("writeback started for %d bytes, want at least %d", f.flushed, 3*writebackBytes)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("content differs from what was written")
	}
}

// Outputs get the permissions the umask gives new files and folders, as
// other tools' outputs do: readable by the group under umask 022, not 0600
// or 0700 as temporary names are made.
func TestPermissionsFollowUmask(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "f"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	sub, err := MkdirTemp(dir, "set-*")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{filepath.Join(dir, "f"): 0o666 &^ Umask(), sub: 0o777 &^ Umask()} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o (umask %03o)", path, got, want, Umask())
		}
	}
	if Umask() != 0o022 {
		t.Logf("umask is %03o", Umask())
	}
}

// A temporary file that a killed run left (its process gone) is removed by
// the next writer of the same output; one of a running process is not.
func TestStaleTemporaryFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.csv")
	// A process that has exited: its id is free (until reused).
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	dead := filepath.Join(dir, fmt.Sprintf(".out.csv.tmp-%d-123", cmd.Process.Pid))
	alive := filepath.Join(dir, fmt.Sprintf(".out.csv.tmp-%d-456", os.Getppid()))
	for _, p := range []string{dead, alive} {
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteFile(out, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); err == nil {
		t.Error("the dead run's temporary file is still there")
	}
	if _, err := os.Stat(alive); err != nil {
		t.Error("a running process's temporary file was removed")
	}
}
