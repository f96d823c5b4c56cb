package torch

import (
	"runtime"
	"strings"
	"testing"
)

// On a machine without a GPU, auto is the CPU and an explicit CUDA device is
// refused at once, saying why (no CUDA in libtorch, or no GPU seen).
func TestParseDeviceWithoutGPU(t *testing.T) {
	if err := Load(); err != nil {
		t.Fatal(err)
	}
	if CUDADeviceCount() > 0 {
		t.Skipf("this machine has %d GPU(s): scripts/gpu-check.sh covers it", CUDADeviceCount())
	}
	if d, err := ParseDevice("auto"); err != nil || d != CPU {
		t.Errorf("auto: %v, %v; want the CPU", d, err)
	}
	want := "built without CUDA"
	switch {
	case CUDAVersion() != "":
		want = "has CUDA " + CUDAVersion() + " but sees no GPU"
	case CUDALibrary():
		want = "has CUDA, but this machine has no NVIDIA driver"
	}
	for _, name := range []string{"cuda", "cuda:1"} {
		if _, err := ParseDevice(name); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), Version()) {
			t.Errorf("%s: error %v, want one naming libtorch %s and saying %q", name, err, Version(), want)
		}
	}
}

// SetNumThreads holds on every OS thread, not only the one that called it
// (OpenMP keeps the count per thread; Go moves calls between threads): a
// goroutine locked to another OS thread sees the count set, one that no
// default can give (more than the machine's cores).
func TestNumThreadsOnEveryOSThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev := NumThreads()
	defer SetNumThreads(prev)
	want := runtime.NumCPU() + 1
	SetNumThreads(want)
	got := make(chan int)
	go func() {
		runtime.LockOSThread() // another OS thread: this one is locked above
		defer runtime.UnlockOSThread()
		got <- NumThreads()
	}()
	if n := <-got; n != want {
		t.Errorf("another OS thread runs with %d threads, want the %d set", n, want)
	}
}

// InferenceMode turns autograd off inside f, as NoGrad does, and gives the
// thread back its grad mode after, as it found it (on), error or not.
func TestInferenceMode(t *testing.T) {
	s := NewScope()
	defer s.Close()
	w := Randn(s, []int64{3}, Float32, CPU)
	if err := w.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	var inside *Tensor
	err := InferenceMode(func() error {
		inside = w.Mul(w).Narrow(0, 0, 2) // a view, which inference mode does not track
		return inside.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside.RequiresGrad() {
		t.Error("a result made in inference mode requires grad")
	}
	if !w.Mul(w).RequiresGrad() {
		t.Error("after InferenceMode, autograd is still off")
	}
}
