package torch

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/deeppacket/deeppacket/internal/testenv"
)

// The parity tests compute every case twice: here through the binding and in
// PyTorch (testdata/parity.py, one subprocess for all cases), from the same
// inputs, and compare within 1e-6.

const parityTol = 1e-6

// smallCNN is the small CNN of the fixtures (cnn_small.json).
var smallCNN = []int64{32, 4, 3, 32, 5, 1, 17, 1500}

// parityInputs builds every case's inputs deterministically.
func parityInputs() map[string]*Tensor {
	rng := rand.New(rand.NewPCG(1, 2))
	randn := func(shape ...int64) *Tensor {
		data := make([]float32, numel(shape))
		for i := range data {
			data[i] = float32(rng.NormFloat64())
		}
		return FromSlice(nil, data, shape, CPU)
	}
	in := map[string]*Tensor{}
	set := func(key string, t *Tensor) { in[key] = t }
	set("conv1d/x", randn(4, 3, 50))
	set("conv1d/w", randn(6, 3, 5))
	set("conv1d/b", randn(6))
	set("conv1d/g", randn(4, 6, 22))
	set("conv1d_groups/x", randn(4, 3, 20))
	set("conv1d_groups/w", randn(6, 1, 4))
	set("conv1d_groups/b", randn(6))
	set("conv1d_groups/g", randn(4, 6, 17))
	set("max_pool1d/x", randn(2, 3, 11))
	set("max_pool1d/g", randn(2, 3, 6))
	for _, c := range []string{"relu", "sigmoid", "log_softmax", "softmax"} {
		set(c+"/x", randn(5, 7))
		set(c+"/g", randn(5, 7))
	}
	set("linear/x", randn(5, 8))
	set("linear/w", randn(3, 8))
	set("linear/b", randn(3))
	set("linear/g", randn(5, 3))
	set("batch_norm/x", randn(6, 4, 9))
	set("batch_norm/g", randn(6, 4, 9))
	set("dropout/x", randn(50, 40))
	set("shapes/x", randn(2, 3, 4))
	set("shapes/a", randn(2, 3, 4))
	set("losses/logits", randn(8, 5))
	set("losses/target", FromSlice(nil, []int64{0, 4, 2, 1, 3, 3, 0, 2}, []int64{8}, CPU))
	set("losses/pred", randn(4, 6))
	set("losses/goal", randn(4, 6))
	set("cnn/hparams", FromSlice(nil, smallCNN, []int64{8}, CPU))
	set("cnn/seed", FromSlice(nil, []int64{9876}, []int64{1}, CPU))
	x := make([]float32, 16*1500)
	for i := range x {
		x[i] = float32(rng.IntN(256)) / 255
	}
	set("cnn/x", FromSlice(nil, x, []int64{16, 1, 1500}, CPU))
	y := make([]int64, 16)
	for i := range y {
		y[i] = int64(rng.IntN(17))
	}
	set("cnn/y", FromSlice(nil, y, []int64{16}, CPU))
	set("sgd/w", randn(3, 4))
	set("sgd/g", randn(3, 4))
	set("script/x", randn(4, 5))
	set("script/w", randn(3, 5))
	set("script/b", randn(3))
	return in
}

func TestMain(m *testing.M) {
	code := m.Run()
	if parity.dir != "" {
		os.RemoveAll(parity.dir)
	}
	os.Exit(code)
}

type parityRun struct {
	in, out map[string]*Tensor
	dir     string
	err     error
}

var (
	parityOnce sync.Once
	parity     parityRun
)

// pytorch runs testdata/parity.py once and returns its inputs and outputs.
func pytorch(t *testing.T) *parityRun {
	t.Helper()
	python := testenv.Python(t)
	parityOnce.Do(func() {
		// Parity is with the PyTorch of the libtorch the shim was built on:
		// kernels and optimiser formulas change between versions.
		// Debian's says 1.13.0a0, PyPI's 2.15.0+cu132: compare the release.
		out, err := exec.Command(python, "-c", "import torch; print(torch.__version__)").CombinedOutput()
		release := regexp.MustCompile(`^\d+\.\d+\.\d+`)
		if got := strings.TrimSpace(string(out)); err != nil || release.FindString(got) != release.FindString(Version()) {
			parity.err = fmt.Errorf("%s has PyTorch %q, the shim libtorch %s: set DEEPPACKET_PYTHON (or make PYTHON=...) to the Python of the same PyTorch (%v)", python, got, Version(), err)
			return
		}
		// Not t.TempDir: the first test's folder would go when it ends.
		if parity.dir, parity.err = os.MkdirTemp("", "torch-parity-"); parity.err != nil {
			return
		}
		parity.in = parityInputs()
		if parity.err = SaveTensors(filepath.Join(parity.dir, "in.pt"), parity.in); parity.err != nil {
			return
		}
		if parity.err = saveGoScript(filepath.Join(parity.dir, "go_script.pt"), parity.in); parity.err != nil {
			return
		}
		// Both sides run libtorch's kernels with the same number of threads:
		// a reduction split over N threads sums in another order than over 1,
		// and float32 results then differ in their last bits.
		// On a GPU (DEEPPACKET_TEST_DEVICE=cuda, scripts/gpu-check.sh) both
		// sides compute there.
		device := testDevice(t)
		cmd := exec.Command(python, "testdata/parity.py", filepath.Join(parity.dir, "in.pt"), filepath.Join(parity.dir, "out.pt"),
			strconv.Itoa(NumThreads()), device.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			parity.err = fmt.Errorf("parity.py: %v\n%s", err, out)
			return
		}
		parity.out, parity.err = LoadTensors(filepath.Join(parity.dir, "out.pt"))
		for k, v := range parity.in {
			if parity.err == nil && device.CUDA {
				parity.in[k] = v.To(device)
				parity.err = parity.in[k].Err()
			}
		}
	})
	if parity.err != nil {
		t.Fatal(parity.err)
	}
	return &parity
}

// saveGoScript writes a TorchScript linear+relu module built from the
// script case's parameters.
func saveGoScript(path string, in map[string]*Tensor) error {
	m, err := NewScriptModule("GoLinear")
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Register("weight", in["script/w"], false); err != nil {
		return err
	}
	if err := m.Register("bias", in["script/b"], false); err != nil {
		return err
	}
	if err := m.Define("def forward(self, x):\n    return torch.relu(torch.linear(x, self.weight, self.bias))\n"); err != nil {
		return err
	}
	return m.Save(path)
}

// assertClose compares got with PyTorch's tensor named key.
func assertClose(t *testing.T, want map[string]*Tensor, key string, got *Tensor, tol float64) {
	t.Helper()
	ref, ok := want[key]
	if !ok {
		t.Fatalf("PyTorch gave no %s", key)
	}
	if err := got.Err(); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	if g, w := got.Shape(), ref.Shape(); !slices.Equal(g, w) {
		t.Fatalf("%s: shape %v, PyTorch %v", key, g, w)
	}
	gv, err := got.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	wv, err := ref.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	worst, at := 0.0, 0
	for i := range gv {
		if d := math.Abs(gv[i] - wv[i]); d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	if worst > tol || math.IsNaN(worst) {
		t.Errorf("%s: element %d is %g, PyTorch %g (|diff| %g > %g)", key, at, gv[at], wv[at], worst, tol)
	}
}

// leaf returns a copy of input key that requires grad.
func leaf(t *testing.T, s *Scope, in map[string]*Tensor, key string) *Tensor {
	t.Helper()
	x := in[key].Clone()
	if err := x.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	return s.Keep(x)
}

// backwardWith runs (y * g).sum().backward() with the case's g.
func backwardWith(t *testing.T, in map[string]*Tensor, c string, y *Tensor) {
	t.Helper()
	if err := y.Mul(in[c+"/g"]).Sum(false).Backward(); err != nil {
		t.Fatalf("%s backward: %v", c, err)
	}
}

func TestParityOps(t *testing.T) {
	p := pytorch(t)
	in, want := p.in, p.out
	s := NewScope()
	defer s.Close()
	type gradOf struct {
		key    string
		tensor *Tensor
	}
	tests := []struct {
		name    string
		forward func(leaves map[string]*Tensor) *Tensor
		leaves  []string
	}{
		{"conv1d", func(l map[string]*Tensor) *Tensor {
			return l["x"].Conv1d(l["w"], l["b"], Conv1dOptions{Stride: 2, Padding: 1, Dilation: 2})
		}, []string{"x", "w", "b"}},
		{"conv1d_groups", func(l map[string]*Tensor) *Tensor {
			return l["x"].Conv1d(l["w"], l["b"], Conv1dOptions{Groups: 3})
		}, []string{"x", "w", "b"}},
		{"max_pool1d", func(l map[string]*Tensor) *Tensor {
			return l["x"].MaxPool1d(MaxPool1dOptions{Kernel: 3, Stride: 2, Padding: 1})
		}, []string{"x"}},
		{"relu", func(l map[string]*Tensor) *Tensor { return l["x"].ReLU() }, []string{"x"}},
		{"sigmoid", func(l map[string]*Tensor) *Tensor { return l["x"].Sigmoid() }, []string{"x"}},
		{"log_softmax", func(l map[string]*Tensor) *Tensor { return l["x"].LogSoftmax(1) }, []string{"x"}},
		{"softmax", func(l map[string]*Tensor) *Tensor { return l["x"].Softmax(1) }, []string{"x"}},
		{"linear", func(l map[string]*Tensor) *Tensor { return l["x"].Linear(l["w"], l["b"]) }, []string{"x", "w", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaves := map[string]*Tensor{}
			for _, name := range tc.leaves {
				leaves[name] = leaf(t, s, in, tc.name+"/"+name)
			}
			y := tc.forward(leaves)
			assertClose(t, want, tc.name+"/y", y, parityTol)
			backwardWith(t, in, tc.name, y)
			for _, name := range tc.leaves {
				assertClose(t, want, tc.name+"/g"+name, leaves[name].Grad(), parityTol)
			}
		})
	}
}

func TestParityBatchNorm(t *testing.T) {
	p := pytorch(t)
	s := NewScope()
	defer s.Close()
	store := NewStore()
	defer store.Close()
	bn, err := NewBatchNorm1d(store.Root(), 4)
	if err != nil {
		t.Fatal(err)
	}
	x := leaf(t, s, p.in, "batch_norm/x")
	y := bn.Forward(x)
	assertClose(t, p.out, "batch_norm/y", y, parityTol)
	backwardWith(t, p.in, "batch_norm", y)
	assertClose(t, p.out, "batch_norm/gx", x.Grad(), parityTol)
	assertClose(t, p.out, "batch_norm/gw", bn.Weight.Grad(), parityTol)
	assertClose(t, p.out, "batch_norm/gb", bn.Bias.Grad(), parityTol)
	for _, name := range []string{"running_mean", "running_var", "num_batches_tracked"} {
		v, _ := store.Lookup(name)
		assertClose(t, p.out, "batch_norm/"+name, v.Tensor, parityTol)
	}
	store.Eval()
	assertClose(t, p.out, "batch_norm/y_eval", bn.Forward(p.in["batch_norm/x"]), parityTol)
}

func TestParityDropout(t *testing.T) {
	p := pytorch(t)
	if err := ManualSeed(7); err != nil {
		t.Fatal(err)
	}
	x := p.in["dropout/x"]
	assertClose(t, p.out, "dropout/train", x.Dropout(0.3, true), parityTol)
	assertClose(t, p.out, "dropout/eval", x.Dropout(0.3, false), parityTol)
}

func TestParityShapesAndReductions(t *testing.T) {
	p := pytorch(t)
	s := NewScope()
	defer s.Close()
	x := leaf(t, s, p.in, "shapes/x")
	a := p.in["shapes/a"]
	padded := x.Pad([]int64{2, 1}, 0.5)
	assertClose(t, p.out, "shapes/padded", padded, parityTol)
	y := padded.Transpose(1, 2).Reshape(2, -1).View(2, 3, 7).MulScalar(2).Flatten(1, -1).Mean(false, 1)
	assertClose(t, p.out, "shapes/y", y, parityTol)
	z := Cat([]*Tensor{x, x.MulScalar(3)}, 0).Mean(false, 0).Add(Stack([]*Tensor{a, a}, 0).Sum(false, 0)).Mean(false)
	assertClose(t, p.out, "shapes/z", z, parityTol)
	if err := y.Sum(false).Add(z).Backward(); err != nil {
		t.Fatal(err)
	}
	assertClose(t, p.out, "shapes/gx", x.Grad(), parityTol)
	assertClose(t, p.out, "shapes/argmax", x.Argmax(2, false), 0)
	inPlace := p.in["shapes/x"].Clone()
	defer inPlace.Free()
	assertClose(t, p.out, "shapes/add_", inPlace.Add_(a, 0.5), parityTol)
}

func TestParityLosses(t *testing.T) {
	p := pytorch(t)
	s := NewScope()
	defer s.Close()
	logits := leaf(t, s, p.in, "losses/logits")
	ce := logits.CrossEntropy(p.in["losses/target"])
	assertClose(t, p.out, "losses/ce", ce, parityTol)
	if err := ce.Backward(); err != nil {
		t.Fatal(err)
	}
	assertClose(t, p.out, "losses/gce", logits.Grad(), parityTol)
	pred := leaf(t, s, p.in, "losses/pred")
	mse := pred.MSELoss(p.in["losses/goal"], ReductionMean)
	assertClose(t, p.out, "losses/mse", mse, parityTol)
	if err := mse.Backward(); err != nil {
		t.Fatal(err)
	}
	assertClose(t, p.out, "losses/gmse", pred.Grad(), parityTol)
}

func TestParitySGD(t *testing.T) {
	p := pytorch(t)
	w := p.in["sgd/w"].Clone()
	defer w.Free()
	if err := w.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	opt := NewSGD([]*Tensor{w}, SGDConfig{LR: 0.1, Momentum: 0.9, Dampening: 0.1, WeightDecay: 0.01})
	defer opt.Close()
	s := NewScope()
	defer s.Close()
	for range 3 {
		if err := opt.ZeroGrad(); err != nil {
			t.Fatal(err)
		}
		if err := w.Mul(w).Mul(p.in["sgd/g"]).Sum(false).Backward(); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
	}
	assertClose(t, p.out, "sgd/w", w, parityTol)
}

func TestParityTorchScript(t *testing.T) {
	p := pytorch(t)
	x := p.in["script/x"]
	// Ours, run by Python's torch.jit.load, against ours run here.
	ours, err := LoadScriptModule(filepath.Join(p.dir, "go_script.pt"), testDevice(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	assertClose(t, p.out, "script/y", ours.Forward(x), parityTol)
	// One that Python scripted, run here.
	theirs, err := LoadScriptModule(filepath.Join(p.dir, "py_script.pt"), testDevice(t))
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	assertClose(t, p.out, "script/py_y", theirs.Forward(x), parityTol)
}
