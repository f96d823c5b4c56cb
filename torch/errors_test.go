package torch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every failure inside libtorch must come back as an error naming what is
// wrong, and the process must go on.
func TestErrorsComeBackAsGoErrors(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.pt")
	if err := os.WriteFile(corrupt, []byte("PK\x03\x04 this is not a zip archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := NewScope()
	defer s.Close()
	x := Zeros(s, []int64{2, 3, 10}, Float32, CPU)
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"conv1d channel mismatch", func() error {
			return x.Conv1d(Zeros(s, []int64{4, 5, 3}, Float32, CPU), nil, Conv1dOptions{}).Err()
		}, "expected input[2, 3, 10] to have 5 channels"},
		{"error passes through later ops", func() error {
			return x.Conv1d(Zeros(s, []int64{4, 5, 3}, Float32, CPU), nil, Conv1dOptions{}).ReLU().Mean(false).Err()
		}, "to have 5 channels"},
		{"linear shape mismatch", func() error {
			return x.Linear(Zeros(s, []int64{4, 7}, Float32, CPU), nil).Err()
		}, "cannot be multiplied"},
		{"wrong dtype for cross entropy target", func() error {
			return Zeros(s, []int64{2, 3}, Float32, CPU).CrossEntropy(Zeros(s, []int64{2}, Float32, CPU)).Err()
		}, "Long"},
		{"view of a non-contiguous tensor", func() error {
			return x.Transpose(1, 2).View(-1).Err()
		}, "view size is not compatible"},
		{"corrupt TorchScript", func() error {
			_, err := LoadScriptModule(corrupt, CPU)
			return err
		}, "corrupt.pt"},
		{"bad TorchScript source", func() error {
			m, err := NewScriptModule("Bad")
			if err != nil {
				return err
			}
			defer m.Close()
			return m.Define("def forward(self, x):\n    return x +\n")
		}, "define TorchScript"},
		{"wrong element count", func() error {
			return FromSlice(s, []float32{1, 2, 3}, []int64{2, 2}, CPU).Err()
		}, "3 values for shape [2 2]"},
		{"item of many elements", func() error {
			_, err := x.Item()
			return err
		}, "a Tensor with 60 elements cannot be converted to Scalar"},
		{"unknown device", func() error {
			_, err := ParseDevice("tpu")
			return err
		}, `device "tpu"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
	// libtorch's own failures are marked as such.
	if err := x.Linear(Zeros(s, []int64{4, 7}, Float32, CPU), nil).Err(); !errors.Is(err, ErrTorch) {
		t.Errorf("errors.Is(%v, ErrTorch) is false", err)
	}
}

func TestScopeFreesAndKeeps(t *testing.T) {
	s := NewScope()
	a := FromSlice(s, []float32{1, 2, 3}, []int64{3}, CPU)
	unscoped := FromSlice(nil, []float32{10, 20, 30}, []int64{3}, CPU)
	defer unscoped.Free()
	sum := unscoped.Add(a) // joins a's scope: unscoped has none
	kept := s.Keep(sum.MulScalar(2))
	defer kept.Free()
	if got := s.Len(); got != 2 {
		t.Fatalf("scope owns %d tensors, want 2 (a and sum)", got)
	}
	s.Close()
	if a.Err() == nil || sum.Err() == nil {
		t.Error("tensors of a closed scope are still usable")
	}
	got, err := kept.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{22, 44, 66}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("kept tensor %v, want %v", got, want)
	}
}

// TestTidyAndChain: a chain's intermediates are freed when the next module
// has used them, only its result joins the input's scope, and backward still
// gets the gradient through all of them.
func TestTidyAndChain(t *testing.T) {
	s := NewScope()
	defer s.Close()
	x := FromSlice(s, []float32{-1, 2, -3, 4}, []int64{4}, CPU)
	if err := x.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	var seen []*Tensor // each module's input
	step := func(f func(*Tensor) *Tensor) Module {
		return Func(func(t *Tensor) *Tensor { seen = append(seen, t); return f(t) })
	}
	double := func(t *Tensor) *Tensor { return t.MulScalar(2) }
	y := Chain(x, step(double), step((*Tensor).ReLU), step(func(t *Tensor) *Tensor { return t.Add(t) }))
	loss := y.Sum(false)
	if got := s.Len(); got != 3 {
		t.Errorf("x's scope owns %d tensors, want 3 (x, the chain's result, the loss)", got)
	}
	for i, in := range seen[1:] {
		if in.Err() == nil {
			t.Errorf("the input of module %d is still alive after the chain", i+1)
		}
	}
	if seen[0].Err() != nil || x.Err() != nil {
		t.Error("the chain freed its input")
	}
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	grad, err := x.Grad().Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{0, 4, 0, 4}; !slices.Equal(grad, want) {
		t.Errorf("x.grad = %v, want %v", grad, want)
	}
	// A Tidy that returns its input gives back x itself.
	if same := Tidy(x, func(t *Tensor) *Tensor { return t }); same != x {
		t.Error("Tidy(x, identity) is not x")
	}
}

// Layers hold their parameters' *Tensor values; moving the store must keep
// those values valid.
func TestStoreToKeepsTensorValues(t *testing.T) {
	store := NewStore()
	defer store.Close()
	lin, err := NewLinear(store.Root().Sub("fc"), 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	before, err := lin.Weight.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.To(CPU); err != nil {
		t.Fatal(err)
	}
	after, err := lin.Weight.Float32s()
	if err != nil {
		t.Fatalf("layer's weight after To: %v", err)
	}
	if !slices.Equal(before, after) || !lin.Weight.RequiresGrad() {
		t.Errorf("weight after To: %v (requires grad %v), before %v", after, lin.Weight.RequiresGrad(), before)
	}
}

// Without its shim library the package says why on first use and nothing
// aborts. A process loads the library once, so a child process runs the
// check.
func TestMissingShim(t *testing.T) {
	if os.Getenv("DPT_MISSING_SHIM_CHILD") == "1" {
		err := Load()
		s := NewScope()
		defer s.Close()
		fmt.Printf("load: %v\ntensor: %v\n", err, Zeros(s, []int64{2}, Float32, CPU).Err())
		return
	}
	if err := Load(); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "libdptorch.so")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMissingShim$")
	cmd.Env = append(os.Environ(), "DPT_MISSING_SHIM_CHILD=1", "DEEPPACKET_SHIM="+missing)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := "libtorch: load " + missing + ": " + missing + ": cannot open shared object file"
	for _, line := range []string{"load: " + want, "tensor: " + want} {
		if !strings.Contains(string(out), line) {
			t.Errorf("child output lacks %q:\n%s", line, out)
		}
	}
}
