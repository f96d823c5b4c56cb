package ckpt

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// TestExportInPyTorch writes both exports of the two fixture models and of
// an SAE, and checks them in Debian's PyTorch (testdata/check_export.py):
// the Lightning checkpoint loads strictly into modules written to the spec
// and gives our logits within 1e-5, the TorchScript module gives them within
// 1e-6 with no Deep Packet code, and a seeded model equals PyTorch's.
func TestExportInPyTorch(t *testing.T) {
	python := testenv.Python(t)
	dir := t.TempDir()
	type manifestCase struct {
		Name       string     `json:"name"`
		Base       string     `json:"base"`
		Kind       model.Kind `json:"kind"`
		Epoch      int64      `json:"epoch"`
		GlobalStep int64      `json:"global_step"`
		Seed       uint64     `json:"seed"`
	}
	var manifest []manifestCase
	add := func(name string, m model.Model, x []float32, shape []int64, seed uint64) {
		t.Helper()
		base := filepath.Join(dir, name)
		logits := logitsOf(t, m, x, shape)
		if err := ExportTorchScript(m, base+".pt"); err != nil {
			t.Fatal(err)
		}
		meta := Meta{Epoch: int64(len(manifest) + 1), GlobalStep: int64(100 + len(manifest))}
		if err := SaveCheckpoint(base+".ckpt", m, meta); err != nil {
			t.Fatal(err)
		}
		xt := torch.FromSlice(nil, x, shape, torch.CPU)
		lt := torch.FromSlice(nil, logits, []int64{shape[0], int64(m.OutputDim())}, torch.CPU)
		defer xt.Free()
		defer lt.Free()
		if err := torch.SaveTensors(base+".io.pt", map[string]*torch.Tensor{"x": xt, "logits": lt}); err != nil {
			t.Fatal(err)
		}
		// The same spec built after a seed, for PyTorch to rebuild.
		if err := torch.ManualSeed(seed); err != nil {
			t.Fatal(err)
		}
		fresh, err := model.New(model.Spec{Kind: m.Kind(), HParams: m.HParams()})
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		if err := torch.SaveTensors(base+".init.pt", fresh.Store().StateDict()); err != nil {
			t.Fatal(err)
		}
		manifest = append(manifest, manifestCase{name, base, m.Kind(), meta.Epoch, meta.GlobalStep, seed})

		// Our own TorchScript loader runs it too.
		sm, err := torch.LoadScriptModule(base+".pt", torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		defer sm.Close()
		s := torch.NewScope()
		defer s.Close()
		got, err := sm.Forward(torch.FromSlice(s, x, shape, torch.CPU)).Float32s()
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(got, logits); d > 1e-6 {
			t.Errorf("%s: TorchScript in Go differs by %g", name, d)
		}
	}
	for i, name := range []string{"cnn_small", "reference_traffic_resnet"} {
		f := loadFixture(t, name)
		m, err := Load(f.ckpt)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		add(name, m, f.inputs[:16*1500], []int64{16, 1, 1500}, uint64(4321+i))
	}
	hp, err := model.DefaultHParams(model.KindSAE, labels.Traffic)
	if err != nil {
		t.Fatal(err)
	}
	sae, err := model.New(model.Spec{Kind: model.KindSAE, HParams: hp})
	if err != nil {
		t.Fatal(err)
	}
	defer sae.Close()
	sae.Store().Train(false)
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, 8*1500)
	for i := range x {
		x[i] = float32(rng.IntN(256)) / 255
	}
	add("sae", sae, x, []int64{8, 1, 1500}, 99)

	mf := filepath.Join(dir, "manifest.json")
	b, _ := json.Marshal(manifest)
	if err := os.WriteFile(mf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "testdata/check_export.py", mf).CombinedOutput()
	t.Logf("check_export.py:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
}
