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
// was built with it and a GPU is present, else the CPU). A CUDA device that
// libtorch cannot use is an error saying why: a libtorch built without
// CUDA, no GPU, or no GPU of that number.
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
		return cudaDevice(name, 0)
	case strings.HasPrefix(name, "cuda:"):
		n, err := strconv.Atoi(strings.TrimPrefix(name, "cuda:"))
		if err != nil || n < 0 {
			return Device{}, fmt.Errorf("device %q: want cpu, cuda, cuda:N or auto", name)
		}
		return cudaDevice(name, n)
	}
	return Device{}, fmt.Errorf("device %q: want cpu, cuda, cuda:N or auto", name)
}

// cudaDevice is GPU n, if libtorch can use it.
func cudaDevice(name string, n int) (Device, error) {
	if err := Load(); err != nil {
		return Device{}, err
	}
	switch count := CUDADeviceCount(); {
	case CUDAVersion() == "" && CUDALibrary():
		return Device{}, fmt.Errorf("device %q: libtorch %s has CUDA, but this machine has no NVIDIA driver (/proc/driver/nvidia/version), so no GPU to use (use --device cpu or auto)", name, Version())
	case CUDAVersion() == "":
		return Device{}, fmt.Errorf("device %q: libtorch %s was built without CUDA (use --device cpu or auto, or build against a CUDA libtorch)", name, Version())
	case !CUDAAvailable() || count == 0:
		return Device{}, fmt.Errorf("device %q: libtorch %s has CUDA %s but sees no GPU (no NVIDIA driver or device; use --device cpu or auto)", name, Version(), CUDAVersion())
	case n >= count:
		return Device{}, fmt.Errorf("device %q: libtorch sees %d GPU(s), cuda:0 to cuda:%d", name, count, count-1)
	}
	return Device{CUDA: true, Index: n}, nil
}

// Version is the version of the libtorch the shim was built against, as
// "2.15.0" (PyTorch's torch.__version__ without its local part).
func Version() string {
	if Load() != nil {
		return ""
	}
	return goString(C.dpt_torch_version())
}

// CUDAVersion is the CUDA runtime version libtorch was built with, as
// "13.2", or "" for a libtorch without CUDA.
func CUDAVersion() string {
	if Load() != nil {
		return ""
	}
	v := int(C.dpt_cuda_runtime_version())
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
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

// CUDALibrary reports whether libtorch has CUDA (libtorch_cuda beside
// libtorch_cpu), loaded or not: the shim loads it only where an NVIDIA
// driver is installed, so CUDAVersion is "" without one.
func CUDALibrary() bool { return Load() == nil && C.dpt_cuda_library() != 0 }

// CUDADeviceCount is the number of GPUs libtorch sees.
func CUDADeviceCount() int { return int(C.dpt_cuda_device_count()) }

// ManualSeed is torch.manual_seed: seeds the CPU and every CUDA generator.
func ManualSeed(seed uint64) error { return check(C.dpt_manual_seed(C.uint64_t(seed))) }

// SetNumThreads is torch.set_num_threads (intra-op parallelism), for calls
// on every OS thread: OpenMP keeps the count per thread, so the shim gives
// each thread that makes a call this count first.
func SetNumThreads(n int) { C.dpt_set_num_threads(C.int(n)) }

// NumThreads is torch.get_num_threads.
func NumThreads() int { return int(C.dpt_get_num_threads()) }

// InferenceMode runs f under libtorch's inference mode (torch.inference_mode):
// autograd off and no view or version tracking; tensors made inside cannot
// be used by autograd afterwards. The goroutine is pinned to its thread.
func InferenceMode(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var g C.dpt_inference
	if err := check(C.dpt_inference_mode_enter(&g)); err != nil {
		return err
	}
	defer C.dpt_inference_mode_exit(g)
	return f()
}

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
