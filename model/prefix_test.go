package model_test

import (
	"context"
	"maps"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/data/dataset"
	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
	"github.com/deeppacket/deeppacket/train"
)

// TestPrefixForwardIsExact: on every packet of the ISCX captures,
// batched as predict batches them (in capture order, so a batch mixes
// lengths) and as sorted by length, Probabilities (the forward that skips
// zero padding) gives the full forward's class, and probabilities within
// 1e-5, for the published ResNet, the small CNN fixture, the reference's
// application CNN, the SAE and a ResNet of 6 blocks, whose identity is
// padded with channels (fresh weights).
func TestPrefixForwardIsExact(t *testing.T) {
	captures, err := filepath.Glob(filepath.Join(testenv.Shared(t, "pcaps/iscx"), "*.pcap"))
	if err != nil || len(captures) == 0 {
		t.Fatalf("no ISCX captures (%v)", err)
	}
	var packets [][]byte
	tr := features.New(features.Options{Layout: features.LayoutReference})
	for _, c := range captures {
		if _, err := features.Each(context.Background(), c, tr, nil, func(p *features.Packet) error {
			if p.Verdict == features.Kept {
				packets = append(packets, slices.Clone(p.Feature))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	sorted := slices.Clone(packets)
	slices.SortStableFunc(sorted, func(a, b []byte) int { return len(a) - len(b) })

	fresh := func(kind model.Kind, task labels.Task, set model.HParams) func(t *testing.T) model.Model {
		return func(t *testing.T) model.Model {
			h, err := model.DefaultHParams(kind, task)
			if err != nil {
				t.Fatal(err)
			}
			maps.Copy(h, set)
			if err := torch.ManualSeed(5); err != nil {
				t.Fatal(err)
			}
			m, err := model.New(model.Spec{Kind: kind, HParams: h, Task: task, Preprocessing: features.Options{Layout: features.LayoutReference}})
			if err != nil {
				t.Fatal(err)
			}
			m.Store().Train(false)
			return m
		}
	}
	load := func(name string) func(t *testing.T) model.Model {
		return func(t *testing.T) model.Model {
			m, err := ckpt.Load(testenv.Shared(t, "fixtures/"+name))
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	tests := []struct {
		name  string
		model func(t *testing.T) model.Model
		n     int // packets compared (the big CNN is slow at full length)
	}{
		{"published traffic ResNet", load("reference_traffic_resnet.ckpt"), len(packets)},
		{"small CNN fixture", load("cnn_small.ckpt"), len(packets)},
		{"reference application CNN", fresh(model.KindCNN, labels.Application, nil), 1024},
		{"SAE", fresh(model.KindSAE, labels.Traffic, nil), len(packets)},
		// Block 4 doubles the channels: the identity's channel padding.
		{"ResNet of 6 blocks", fresh(model.KindResNet, labels.Traffic, model.HParams{"c1_n_block": int64(6)}), len(packets)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.model(t)
			defer m.Close()
			c := model.AsClassifier(m, 1)
			defer c.Close()
			for _, order := range []struct {
				name    string
				packets [][]byte
			}{{"capture order", packets[:tc.n]}, {"by length", sorted[len(sorted)-tc.n:]}} {
				worst, flips := 0.0, 0
				for start := 0; start < len(order.packets); start += 64 {
					b := model.NewBatch(1500)
					for _, p := range order.packets[start:min(start+64, len(order.packets))] {
						b.Add(p)
					}
					got, err := model.Probabilities(c, b)
					if err != nil {
						t.Fatal(err)
					}
					want := fullProbabilities(t, m, order.packets[start:min(start+64, len(order.packets))])
					f, w := compareRows(got, want, m.OutputDim())
					flips, worst = flips+f, max(worst, w)
				}
				t.Logf("%s: %d packets, largest probability difference %.2g", order.name, len(order.packets), worst)
				if flips > 0 || worst > 1e-5 {
					t.Errorf("%s: %d packets change class, largest probability difference %g (want 0 and ≤ 1e-5)", order.name, flips, worst)
				}
			}
		})
	}
}

// fullProbabilities is the softmax of m's own Forward over the whole
// signal.
func fullProbabilities(t *testing.T, m model.Model, packets [][]byte) []float32 {
	t.Helper()
	var out []float32
	err := torch.NoGrad(func() error {
		s := torch.NewScope()
		defer s.Close()
		data := make([]float32, len(packets)*1500)
		for i, p := range packets {
			for j, c := range p[:min(len(p), 1500)] {
				data[i*1500+j] = float32(c) / 255
			}
		}
		x := torch.FromSlice(s, data, []int64{int64(len(packets)), 1, 1500}, m.Store().Device())
		var err error
		out, err = m.Forward(x).Softmax(1).Float32s()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestClassifierWorkers: groups run on several threads give each packet the
// probabilities one thread gives, bit for bit, in the batch's order.
func TestClassifierWorkers(t *testing.T) {
	m, err := ckpt.Load(testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tr := features.New(m.Preprocessing())
	b := model.NewBatch(1500)
	for _, name := range []string{"email.pcap", "skype_chat.pcap", "vpn_netflix.pcap"} {
		if _, err := features.Each(context.Background(), testenv.Shared(t, "pcaps/iscx/"+name), tr, nil, func(p *features.Packet) error {
			if p.Verdict == features.Kept {
				b.Add(p.Feature)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var want []float32
	for _, workers := range []int{1, 3} {
		c := model.AsClassifier(m, workers)
		got, err := model.Probabilities(c, b)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = got
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%d workers give other probabilities than one (%d packets)", workers, b.Len())
		}
	}
}

// TestClassifyLikePyTorch: on every kept packet of the ISCX captures,
// predict's classifier (the padding-skipping forward, by length groups)
// gives PyTorch's class, and logits within 1e-4 of PyTorch's, for the
// published ResNet, the CNN fixture and a CNN that deeppacket trained
// (train.Train, saved as Lightning saves). PyTorch runs the reference's
// modules (scripts/reference_models.py) over the whole signal, with the
// version and the thread count of the Go side.
func TestClassifyLikePyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PyTorch over 10,907 packets")
	}
	python := testenv.Python(t)
	captures, err := filepath.Glob(filepath.Join(testenv.Shared(t, "pcaps/iscx"), "*.pcap"))
	if err != nil || len(captures) == 0 {
		t.Fatalf("no ISCX captures (%v)", err)
	}
	b := model.NewBatch(1500)
	var data []float32 // the same rows, for PyTorch
	tr := features.New(features.Options{Layout: features.LayoutReference})
	for _, c := range captures {
		if _, err := features.Each(context.Background(), c, tr, nil, func(p *features.Packet) error {
			if p.Verdict == features.Kept {
				b.Add(p.Feature)
				row := make([]float32, 1500)
				for i, v := range p.Feature[:min(len(p.Feature), 1500)] {
					row[i] = float32(v) / 255
				}
				data = append(data, row...)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "in.pt")
	x := torch.FromSlice(nil, data, []int64{int64(b.Len()), 1, 1500}, torch.CPU)
	err = torch.SaveTensors(in, map[string]*torch.Tensor{"x": x})
	x.Free()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, checkpoint string }{
		{"published traffic ResNet", testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt")},
		{"CNN fixture", testenv.Shared(t, "fixtures/cnn_small.ckpt")},
		{"CNN trained by deeppacket", trainedCNN(t, dir)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.pt")
			cmd := exec.Command(python, "testdata/classify_parity.py", tc.checkpoint, in, out, strconv.Itoa(torch.NumThreads()))
			if o, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("classify_parity.py: %v\n%s", err, o)
			}
			res, err := ckpt.ReadTensors(out)
			if err != nil {
				t.Fatal(err)
			}
			want, err := res["logits"].Float32s()
			res["logits"].Free()
			if err != nil {
				t.Fatal(err)
			}
			m, err := ckpt.Load(tc.checkpoint)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			c := model.AsClassifier(m, 2)
			defer c.Close()
			got, err := model.Logits(c, b)
			if err != nil {
				t.Fatal(err)
			}
			flips, worst := compareRows(got, want, m.OutputDim())
			t.Logf("%d packets: %d change class, largest logit difference %.2g", b.Len(), flips, worst)
			if flips > 0 || worst > 1e-4 {
				t.Errorf("%d of %d packets change class, largest logit difference %g (want 0 and ≤ 1e-4)", flips, b.Len(), worst)
			}
		})
	}
}

// trainedCNN trains a small CNN for one epoch with deeppacket's trainer on
// a synthetic set and returns its last checkpoint.
func trainedCNN(t *testing.T, dir string) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	var samples []dataset.Sample
	for i := range 256 {
		feature := make([]byte, 40+rng.IntN(600))
		for j := range feature {
			feature[j] = byte(rng.IntN(256))
		}
		samples = append(samples, dataset.Sample{Feature: feature, Label: int64(i % 17), Source: "synthetic", Index: int64(i), Flow: int64(i)})
	}
	set := filepath.Join(dir, "train.parquet")
	if err := dataset.WriteSet(set, dataset.Compact, 1500, dataset.SetWriterOptions{}, samples); err != nil {
		t.Fatal(err)
	}
	cfg := train.DefaultConfig()
	cfg.Data.Train, cfg.Task, cfg.Epochs, cfg.BatchSize = set, "application", 1, 16
	cfg.Model.C1OutputDim, cfg.Model.C2OutputDim = 16, 16
	cfg.Checkpoint.TorchScript = false
	res, err := train.Train(context.Background(), cfg, train.Options{RunDir: filepath.Join(dir, "run")})
	if err != nil {
		t.Fatal(err)
	}
	return res.Last
}

// compareRows compares two row-major [rows, k] outputs: how many rows have
// another top class, and the largest difference of any value.
func compareRows(got, want []float32, k int) (flips int, worst float64) {
	for i := 0; i+k <= len(got); i += k {
		g, w := got[i:i+k], want[i:i+k]
		if model.TopClasses(nil, g, 1)[0] != model.TopClasses(nil, w, 1)[0] {
			flips++
		}
		for j := range g {
			worst = max(worst, math.Abs(float64(g[j]-w[j])))
		}
	}
	return flips, worst
}
