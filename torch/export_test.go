package torch

import (
	"os"
	"testing"
)

// For the external tests (package torch_test), which train the reference's
// models from package model on the binding.

// PyTorchParity returns the parity inputs and PyTorch's results for them.
func PyTorchParity(t *testing.T) (in, out map[string]*Tensor) {
	p := pytorch(t)
	return p.in, p.out
}

// AssertClose compares got with PyTorch's tensor named key within tol.
func AssertClose(t *testing.T, want map[string]*Tensor, key string, got *Tensor, tol float64) {
	t.Helper()
	assertClose(t, want, key, got, tol)
}

// SmallCNN are the hyperparameters of the parity inputs' CNN case.
var SmallCNN = smallCNN

// ParityTol is the parity tests' tolerance.
const ParityTol = parityTol

// testDevice is where the tests compute: DEEPPACKET_TEST_DEVICE (cpu by
// default; scripts/gpu-check.sh sets cuda), refused with ParseDevice's
// reason when libtorch cannot use it.
func testDevice(t testing.TB) Device {
	t.Helper()
	name := os.Getenv("DEEPPACKET_TEST_DEVICE")
	if name == "" {
		return CPU
	}
	d, err := ParseDevice(name)
	if err != nil {
		t.Fatalf("DEEPPACKET_TEST_DEVICE: %v", err)
	}
	return d
}

// DeviceForTests is testDevice for the external tests.
func DeviceForTests(t testing.TB) Device { return testDevice(t) }
