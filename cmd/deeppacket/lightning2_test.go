package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
	"github.com/deeppacket/deeppacket/train"
)

// TestLightning2Interop: the files a run writes load in PyTorch 2.x with
// torch.load(weights_only=True); Lightning 2.x loads last.ckpt into a
// module equivalent to the reference's and resumes training from it;
// the safetensors package reads our export. Back here, the checkpoint
// Lightning 2.x wrote and the safetensors Python wrote load in inspect,
// evaluate, predict and as train's init_from, with Python's logits.
func TestLightning2Interop(t *testing.T) {
	if testing.Short() {
		t.Skip("trains twice")
	}
	python := testenv.Python(t)
	if out, err := exec.Command(python, "-c", "import pytorch_lightning, safetensors").CombinedOutput(); err != nil {
		t.Fatalf("%s lacks pytorch_lightning or safetensors (scripts/install-deps.sh installs them in .venv): %v\n%s", python, err, out)
	}
	dir := t.TempDir()
	app := iscxSets(t, dir)
	run, out := filepath.Join(dir, "run"), filepath.Join(dir, "py")
	trainSmall(t, app, run, "epochs=2", "early_stopping.enabled=false")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	best := filepath.Join(run, train.CheckpointDir, train.BestCheckpoint)
	if o, err := runCLI(t, "export", best, "--format", "safetensors", "-o", filepath.Join(out, "go.safetensors")); err != nil {
		t.Fatalf("export: %v\n%s", err, o)
	}
	script := filepath.Join("testdata", "lightning2.py")
	o, err := exec.Command(python, script, run, out).CombinedOutput()
	t.Logf("lightning2.py:\n%s", o)
	if err != nil {
		t.Fatalf("lightning2.py: %v", err)
	}

	x, logits := testenv.ReadFloat32s(t, filepath.Join(out, "x.f32")), testenv.ReadFloat32s(t, filepath.Join(out, "logits.f32"))
	pl2 := filepath.Join(out, "pl2.ckpt")
	for _, model := range []string{pl2, filepath.Join(out, "py.safetensors")} {
		m, err := ckpt.Load(model)
		if err != nil {
			t.Fatalf("load %s: %v", model, err)
		}
		got := forward(t, m, x)
		m.Close()
		// The same kernels on the same thread count as Python's.
		if d := maxDiff(got, logits); d > 1e-6 {
			t.Errorf("%s: max |logit - Lightning 2's| = %g, want ≤ 1e-6", filepath.Base(model), d)
		}
	}
	if o, err := runCLI(t, "inspect", pl2); err != nil || !strings.Contains(o, "cnn") {
		t.Errorf("inspect %s: %v\n%s", pl2, err, o)
	}
	if o, err := runCLI(t, "evaluate", "--model", pl2, filepath.Join(app, "test.parquet")); err != nil || !strings.Contains(o, "macro avg") {
		t.Errorf("evaluate: %v\n%s", err, o)
	}
	capture := testenv.Shared(t, "pcaps/iscx/netflix.pcap")
	predictions := filepath.Join(dir, "predictions.csv")
	if o, err := runCLI(t, "predict", "--model", pl2, "-o", predictions, capture); err != nil {
		t.Errorf("predict: %v\n%s", err, o)
	} else if b, _ := os.ReadFile(predictions); strings.Count(string(b), "\n") < 2 {
		t.Errorf("predict wrote no rows:\n%s", b)
	}
	// init_from: with a learning rate of 1e-30 Adam's steps (at most about
	// lr each) vanish in float32 rounding, so the run ends with the weights
	// it started from, Lightning 2's.
	run2 := filepath.Join(dir, "run2")
	trainSmall(t, app, run2, "init_from="+pl2, "optimizer.lr=1e-30", "epochs=1")
	want, err := ckpt.ReadCheckpoint(pl2)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	got, err := ckpt.ReadCheckpoint(filepath.Join(run2, train.CheckpointDir, train.LastCheckpoint))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	for name, w := range want.StateDict {
		if eq, err := w.Equal(got.StateDict[name]); err != nil || !eq {
			t.Errorf("init_from: %s differs from Lightning 2's checkpoint (%v)", name, err)
		}
	}
}

// forward runs m in eval mode on x, packets of 1500 values.
func forward(t *testing.T, m model.Model, x []float32) []float32 {
	t.Helper()
	var out []float32
	err := torch.NoGrad(func() error {
		s := torch.NewScope()
		defer s.Close()
		var err error
		out, err = m.Forward(torch.FromSlice(s, x, []int64{int64(len(x) / 1500), 1, 1500}, torch.CPU)).Float32s()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}
