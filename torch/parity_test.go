package torch_test

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

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/torch"
)

// The parity tests compute every case twice: here through the binding and in
// PyTorch (testdata/parity.py, one subprocess for all cases), from the same
// inputs, and compare within 1e-6.

const parityTol = 1e-6

// smallCNN is the small CNN of the fixtures (cnn_small.json).
var smallCNN = []int64{32, 4, 3, 32, 5, 1, 17, 1500}

// parityInputs builds every case's inputs deterministically.
func parityInputs() map[string]*torch.Tensor {
	rng := rand.New(rand.NewPCG(1, 2))
	randn := func(shape ...int64) *torch.Tensor {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(rng.NormFloat64())
		}
		return torch.FromSlice(nil, data, shape, torch.CPU)
	}
	in := map[string]*torch.Tensor{}
	set := func(key string, t *torch.Tensor) { in[key] = t }
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
	set("losses/target", torch.FromSlice(nil, []int64{0, 4, 2, 1, 3, 3, 0, 2}, []int64{8}, torch.CPU))
	set("losses/pred", randn(4, 6))
	set("losses/goal", randn(4, 6))
	set("cnn/hparams", torch.FromSlice(nil, smallCNN, []int64{8}, torch.CPU))
	set("cnn/seed", torch.FromSlice(nil, []int64{9876}, []int64{1}, torch.CPU))
	x := make([]float32, 16*1500)
	for i := range x {
		x[i] = float32(rng.IntN(256)) / 255
	}
	set("cnn/x", torch.FromSlice(nil, x, []int64{16, 1, 1500}, torch.CPU))
	y := make([]int64, 16)
	for i := range y {
		y[i] = int64(rng.IntN(17))
	}
	set("cnn/y", torch.FromSlice(nil, y, []int64{16}, torch.CPU))
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
	in, out map[string]*torch.Tensor
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
		if got := strings.TrimSpace(string(out)); err != nil || release.FindString(got) != release.FindString(torch.Version()) {
			parity.err = fmt.Errorf("%s has PyTorch %q, the shim libtorch %s: set DEEPPACKET_PYTHON (or make PYTHON=...) to the Python of the same PyTorch (%v)", python, got, torch.Version(), err)
			return
		}
		// Not t.TempDir: the first test's folder would go when it ends.
		if parity.dir, parity.err = os.MkdirTemp("", "torch-parity-"); parity.err != nil {
			return
		}
		parity.in = parityInputs()
		if parity.err = torch.SaveTensors(filepath.Join(parity.dir, "in.pt"), parity.in); parity.err != nil {
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
			strconv.Itoa(torch.NumThreads()), device.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			parity.err = fmt.Errorf("parity.py: %v\n%s", err, out)
			return
		}
		parity.out, parity.err = ckpt.ReadTensors(filepath.Join(parity.dir, "out.pt"))
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
func saveGoScript(path string, in map[string]*torch.Tensor) error {
	m, err := torch.NewScriptModule("GoLinear")
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
func assertClose(t *testing.T, want map[string]*torch.Tensor, key string, got *torch.Tensor, tol float64) {
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
func leaf(t *testing.T, s *torch.Scope, in map[string]*torch.Tensor, key string) *torch.Tensor {
	t.Helper()
	x := in[key].Clone()
	if err := x.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	return s.Keep(x)
}

// backwardWith runs (y * g).sum().backward() with the case's g.
func backwardWith(t *testing.T, in map[string]*torch.Tensor, c string, y *torch.Tensor) {
	t.Helper()
	if err := y.Mul(in[c+"/g"]).Sum(false).Backward(); err != nil {
		t.Fatalf("%s backward: %v", c, err)
	}
}

func TestParityOps(t *testing.T) {
	p := pytorch(t)
	in, want := p.in, p.out
	s := torch.NewScope()
	defer s.Close()
	type gradOf struct {
		key    string
		tensor *torch.Tensor
	}
	tests := []struct {
		name    string
		forward func(leaves map[string]*torch.Tensor) *torch.Tensor
		leaves  []string
	}{
		{"conv1d", func(l map[string]*torch.Tensor) *torch.Tensor {
			return l["x"].Conv1d(l["w"], l["b"], torch.Conv1dOptions{Stride: 2, Padding: 1, Dilation: 2})
		}, []string{"x", "w", "b"}},
		{"conv1d_groups", func(l map[string]*torch.Tensor) *torch.Tensor {
			return l["x"].Conv1d(l["w"], l["b"], torch.Conv1dOptions{Groups: 3})
		}, []string{"x", "w", "b"}},
		{"max_pool1d", func(l map[string]*torch.Tensor) *torch.Tensor {
			return l["x"].MaxPool1d(torch.MaxPool1dOptions{Kernel: 3, Stride: 2, Padding: 1})
		}, []string{"x"}},
		{"relu", func(l map[string]*torch.Tensor) *torch.Tensor { return l["x"].ReLU() }, []string{"x"}},
		{"sigmoid", func(l map[string]*torch.Tensor) *torch.Tensor { return l["x"].Sigmoid() }, []string{"x"}},
		{"log_softmax", func(l map[string]*torch.Tensor) *torch.Tensor { return l["x"].LogSoftmax(1) }, []string{"x"}},
		{"softmax", func(l map[string]*torch.Tensor) *torch.Tensor { return l["x"].Softmax(1) }, []string{"x"}},
		{"linear", func(l map[string]*torch.Tensor) *torch.Tensor { return l["x"].Linear(l["w"], l["b"]) }, []string{"x", "w", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaves := map[string]*torch.Tensor{}
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
	s := torch.NewScope()
	defer s.Close()
	store := torch.NewStore()
	defer store.Close()
	bn, err := torch.NewBatchNorm1d(store.Root(), 4)
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
	store.Train(false)
	assertClose(t, p.out, "batch_norm/y_eval", bn.Forward(p.in["batch_norm/x"]), parityTol)
}

func TestParityDropout(t *testing.T) {
	p := pytorch(t)
	if err := torch.ManualSeed(7); err != nil {
		t.Fatal(err)
	}
	x := p.in["dropout/x"]
	assertClose(t, p.out, "dropout/train", x.Dropout(0.3, true), parityTol)
	assertClose(t, p.out, "dropout/eval", x.Dropout(0.3, false), parityTol)
}

func TestParityShapesAndReductions(t *testing.T) {
	p := pytorch(t)
	s := torch.NewScope()
	defer s.Close()
	x := leaf(t, s, p.in, "shapes/x")
	a := p.in["shapes/a"]
	padded := x.Pad([]int64{2, 1}, 0.5)
	assertClose(t, p.out, "shapes/padded", padded, parityTol)
	y := padded.Transpose(1, 2).Reshape(2, -1).View(2, 3, 7).MulScalar(2).Flatten(1, -1).Mean(false, 1)
	assertClose(t, p.out, "shapes/y", y, parityTol)
	z := torch.Cat([]*torch.Tensor{x, x.MulScalar(3)}, 0).Mean(false, 0).Add(torch.Stack([]*torch.Tensor{a, a}, 0).Sum(false, 0)).Mean(false)
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
	s := torch.NewScope()
	defer s.Close()
	logits := leaf(t, s, p.in, "losses/logits")
	ce := logits.CrossEntropy(p.in["losses/target"])
	assertClose(t, p.out, "losses/ce", ce, parityTol)
	if err := ce.Backward(); err != nil {
		t.Fatal(err)
	}
	assertClose(t, p.out, "losses/gce", logits.Grad(), parityTol)
	pred := leaf(t, s, p.in, "losses/pred")
	mse := pred.MSELoss(p.in["losses/goal"], torch.ReductionMean)
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
	opt := torch.NewSGD([]*torch.Tensor{w}, torch.SGDConfig{LR: 0.1, Momentum: 0.9, Dampening: 0.1, WeightDecay: 0.01})
	defer opt.Close()
	s := torch.NewScope()
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
	ours, err := torch.LoadScriptModule(filepath.Join(p.dir, "go_script.pt"), testDevice(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	assertClose(t, p.out, "script/y", ours.Forward(x), parityTol)
	// One that Python scripted, run here.
	theirs, err := torch.LoadScriptModule(filepath.Join(p.dir, "py_script.pt"), testDevice(t))
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	assertClose(t, p.out, "script/py_y", theirs.Forward(x), parityTol)
}

// testDevice is where the tests compute: DEEPPACKET_TEST_DEVICE (cpu by
// default; scripts/gpu-check.sh sets cuda), refused with ParseDevice's
// reason when libtorch cannot use it.
func testDevice(t testing.TB) torch.Device {
	t.Helper()
	name := os.Getenv("DEEPPACKET_TEST_DEVICE")
	if name == "" {
		return torch.CPU
	}
	d, err := torch.ParseDevice(name)
	if err != nil {
		t.Fatalf("DEEPPACKET_TEST_DEVICE: %v", err)
	}
	return d
}
