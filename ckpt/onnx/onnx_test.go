package onnx_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/ckpt/onnx"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// batches are the batch sizes onnxruntime runs every export at, in one
// session: the fixtures' 64 rows, 7 and 1, so that a batch dimension fixed
// at export time fails.
var batches = []int{64, 7, 1}

// TestExportInOnnxruntime exports the two published-format fixture models
// (../shared/fixtures) and an SAE, checks each with
// onnx.checker.check_model(full_check=True), runs it in onnxruntime from
// PyPI at every batch size in batches, and compares the logits with our
// libtorch forward and, for the fixtures, with the reference PyTorch
// code's.
func TestExportInOnnxruntime(t *testing.T) {
	python := testenv.PythonWith(t, "onnx", "onnxruntime")
	for _, tc := range []struct {
		name    string
		fixture bool
	}{
		{"cnn_small", true},
		{"reference_traffic_resnet", true},
		{"sae", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var (
				m          model.Model
				x, pyTorch []float32
			)
			if tc.fixture {
				m, x, pyTorch = loadFixture(t, tc.name)
			} else {
				m, x = seededSAE(t)
			}
			defer m.Close()
			ours := forward(t, m, x)

			path := filepath.Join(dir, tc.name+".onnx")
			if err := onnx.Export(m, path); err != nil {
				t.Fatal(err)
			}
			in := filepath.Join(dir, "inputs.f32")
			writeFloat32s(t, in, x)
			args := []string{"testdata/run_onnx.py", path, in, dir}
			for _, b := range batches {
				args = append(args, fmt.Sprint(b))
			}
			out, err := exec.Command(python, args...).CombinedOutput()
			t.Logf("run_onnx.py:\n%s", out)
			if err != nil {
				t.Fatal(err)
			}

			classes := m.OutputDim()
			scale := 1.0
			for _, l := range ours {
				scale = max(scale, math.Abs(float64(l)))
			}
			for _, b := range batches {
				got := testenv.ReadFloat32s(t, filepath.Join(dir, fmt.Sprintf("logits_%d.f32", b)))
				if len(got) != b*classes {
					t.Fatalf("batch %d: %d logits, want %d", b, len(got), b*classes)
				}
				// onnxruntime's convolutions and GEMMs (MLAS) sum in
				// another order than libtorch's and than the reference's
				// PyTorch on its CPU. The CNN and the SAE agree within
				// 5e-8; the published ResNet's logits reach 33, where a
				// float32 ulp is 3.8e-6, and it lands at 1.1e-5 (3 ulps)
				// after its 9 convolutions and 7 batch norms. So the bound
				// is 1e-5 absolute or 1e-6 of the largest logit (8 ulps),
				// whichever is larger, as in ckpt's TestFixtureParity.
				tol := max(1e-5, 1e-6*scale)
				if d := maxAbsDiff(got, ours[:b*classes]); d > tol {
					t.Errorf("batch %d: max |onnxruntime - libtorch| = %g, want ≤ %g", b, d, tol)
				} else {
					t.Logf("batch %d: max |onnxruntime - libtorch| = %g", b, d)
				}
				if pyTorch == nil {
					continue
				}
				if d := maxAbsDiff(got, pyTorch[:b*classes]); d > tol {
					t.Errorf("batch %d: max |onnxruntime - reference PyTorch| = %g, want ≤ %g", b, d, tol)
				} else {
					t.Logf("batch %d: max |onnxruntime - reference PyTorch| = %g", b, d)
				}
			}
		})
	}
}

// loadFixture reads ../shared/fixtures/name: its model, its 64 packets and
// the reference PyTorch code's logits for them.
func loadFixture(t *testing.T, name string) (model.Model, []float32, []float32) {
	t.Helper()
	base := strings.TrimSuffix(testenv.Shared(t, "fixtures/"+name+".ckpt"), ".ckpt")
	var meta struct {
		InputsShape []int64 `json:"inputs_shape"`
	}
	b, err := os.ReadFile(base + ".json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	m, err := ckpt.Load(base + ".ckpt")
	if err != nil {
		t.Fatal(err)
	}
	x := testenv.ReadFloat32s(t, base+".inputs.f32")
	if want := []int64{int64(batches[0]), 1, int64(m.Preprocessing().SignalLength)}; fmt.Sprint(meta.InputsShape) != fmt.Sprint(want) {
		m.Close()
		t.Fatalf("%s inputs have shape %v, want %v", name, meta.InputsShape, want)
	}
	return m, x, testenv.ReadFloat32s(t, base+".logits.f32")
}

// seededSAE is an SAE with the default hyperparameters for the traffic
// task after a fixed seed, and 64 random byte vectors.
func seededSAE(t *testing.T) (model.Model, []float32) {
	t.Helper()
	hp, err := model.DefaultHParams(model.KindSAE, labels.Traffic)
	if err != nil {
		t.Fatal(err)
	}
	if err := torch.ManualSeed(7); err != nil {
		t.Fatal(err)
	}
	m, err := model.New(model.Spec{Kind: model.KindSAE, HParams: hp})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	x := make([]float32, batches[0]*m.Preprocessing().SignalLength)
	for i := range x {
		x[i] = float32(rng.IntN(256)) / 255
	}
	return m, x
}

// forward is m's logits for x [n, 1, signal_length] in eval mode, without
// autograd.
func forward(t *testing.T, m model.Model, x []float32) []float32 {
	t.Helper()
	m.Store().Train(false)
	signal := int64(m.Preprocessing().SignalLength)
	var out []float32
	err := torch.NoGrad(func() error {
		s := torch.NewScope()
		defer s.Close()
		var err error
		out, err = m.Forward(torch.FromSlice(s, x, []int64{int64(len(x)) / signal, 1, signal}, m.Store().Device())).Float32s()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeFloat32s(t *testing.T, path string, v []float32) {
	t.Helper()
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}
