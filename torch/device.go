package torch

// #include "dptorch.h"
import "C"

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
)

// Device is where tensors live: the CPU or one CUDA GPU.
type Device struct {
	CUDA  bool
	Index int // CUDA device ordinal
}

// CPU is the host.
var CPU = Device{}

// ParseDevice reads "cpu", "cuda", "cuda:N" or "auto" (CUDA when libtorch
// was built with it and a GPU is present, else the CPU).
func ParseDevice(name string) (Device, error) {
	switch name = strings.TrimSpace(strings.ToLower(name)); {
	case name == "cpu":
		return CPU, nil
	case name == "auto" || name == "":
		if CUDAAvailable() {
			return Device{CUDA: true}, nil
		}
		return CPU, nil
	case name == "cuda":
		return Device{CUDA: true}, nil
	case strings.HasPrefix(name, "cuda:"):
		n, err := strconv.Atoi(strings.TrimPrefix(name, "cuda:"))
		if err != nil || n < 0 {
			return Device{}, fmt.Errorf("device %q: want cpu, cuda, cuda:N or auto", name)
		}
		return Device{CUDA: true, Index: n}, nil
	}
	return Device{}, fmt.Errorf("device %q: want cpu, cuda, cuda:N or auto", name)
}

// String is PyTorch's name for the device.
func (d Device) String() string {
	if d.CUDA {
		return fmt.Sprintf("cuda:%d", d.Index)
	}
	return "cpu"
}

// CUDAAvailable reports whether libtorch has CUDA and sees a GPU.
func CUDAAvailable() bool { return C.dpt_cuda_is_available() != 0 }

// CUDADeviceCount is the number of GPUs libtorch sees.
func CUDADeviceCount() int { return int(C.dpt_cuda_device_count()) }

// ManualSeed is torch.manual_seed: seeds the CPU and every CUDA generator.
func ManualSeed(seed uint64) error { return check(C.dpt_manual_seed(C.uint64_t(seed))) }

// SetNumThreads is torch.set_num_threads (intra-op parallelism).
func SetNumThreads(n int) { C.dpt_set_num_threads(C.int(n)) }

// NumThreads is torch.get_num_threads.
func NumThreads() int { return int(C.dpt_get_num_threads()) }

// NoGrad runs f with autograd off, as `with torch.no_grad():`. libtorch's
// grad mode belongs to the OS thread, so the goroutine is pinned to its
// thread for the duration.
func NoGrad(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	was := C.dpt_is_grad_enabled()
	C.dpt_set_grad_enabled(0)
	defer C.dpt_set_grad_enabled(was)
	return f()
}
