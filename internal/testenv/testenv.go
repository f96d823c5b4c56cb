// Package testenv finds what tests need outside the repository: the shared
// data folder (../shared) and a Python with PyTorch and scapy (the project's
// .venv, which scripts/install-deps.sh makes). Under
// CI=true a missing piece fails the test; elsewhere the test is skipped with
// a message saying what is missing. It also measures what benchmarks report
// (CPUSeconds).
//
// Imports none of our packages.
package testenv

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// missing skips the test, or fails it in CI.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// RepoRoot is the folder holding go.mod, found upwards from the test's folder.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's folder")
		}
		dir = parent
	}
}

// Shared returns the path of rel inside ../shared, skipping (or in CI
// failing) the test when it is absent.
func Shared(t testing.TB, rel string) string {
	t.Helper()
	path := filepath.Join(RepoRoot(t), "..", "shared", rel)
	if _, err := os.Stat(path); err != nil {
		missing(t, "shared data %s is missing (tests read ../shared beside the repository): %v", rel, err)
	}
	return path
}

var (
	pythonOnce sync.Once
	pythonPath string
	pythonErr  string
)

// Python returns a Python interpreter that imports torch and scapy: the one
// in DEEPPACKET_PYTHON (make test sets it), else the repository's .venv
// (scripts/install-deps.sh installs PyTorch 2.x, Lightning and scapy
// there), else Debian's /usr/bin/python3 (python3-torch 1.13).
func Python(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	pythonOnce.Do(func() {
		pythonPath = os.Getenv("DEEPPACKET_PYTHON")
		if pythonPath == "" {
			pythonPath = filepath.Join(root, ".venv", "bin", "python")
			if _, err := os.Stat(pythonPath); err != nil {
				pythonPath = "/usr/bin/python3"
			}
		}
		out, err := exec.Command(pythonPath, "-c", "import torch, scapy").CombinedOutput()
		if err != nil {
			pythonErr = string(out) + err.Error()
		}
	})
	if pythonErr != "" {
		missing(t, "%s cannot import torch and scapy (run scripts/install-deps.sh): %s", pythonPath, pythonErr)
	}
	return pythonPath
}

// PythonWith returns Python(t) after checking that it imports modules too
// (onnx, onnxruntime, …), skipping (or in CI failing) the test otherwise.
func PythonWith(t testing.TB, modules ...string) string {
	t.Helper()
	python := Python(t)
	for _, m := range modules {
		if out, err := exec.Command(python, "-c", "import "+m).CombinedOutput(); err != nil {
			missing(t, "%s cannot import %s (run scripts/install-deps.sh): %s%v", python, m, out, err)
		}
	}
	return python
}

// ReadFloat32s reads a file of little-endian float32 values (the fixtures'
// .f32 files).
func ReadFloat32s(t testing.TB, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// SkipExamplesWithoutShared is for a package's TestMain, before m.Run: Go
// examples cannot skip themselves, so when a file of ../shared that the
// examples matching pattern read is absent (rel, from the package's folder
// at ../../shared/...), they are left out with a message, as a test would
// be skipped; under CI=true they run and fail.
func SkipExamplesWithoutShared(pattern string, rel ...string) {
	if os.Getenv("CI") == "true" {
		return
	}
	for _, r := range rel {
		if _, err := os.Stat(r); err != nil {
			flag.Parse()
			skip := pattern
			if prev := flag.Lookup("test.skip").Value.String(); prev != "" {
				skip = prev + "|" + pattern
			}
			flag.Set("test.skip", skip)
			fmt.Fprintf(os.Stderr, "skipping examples %s: shared data %s is missing (../shared beside the repository)\n", pattern, r)
			return
		}
	}
}

// CPUSeconds is the user and system time of this process so far (all its
// threads), which benchmarks report apart: on a shared machine it measures
// the work, not the neighbours.
func CPUSeconds(t testing.TB) (user, system float64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds()
}
