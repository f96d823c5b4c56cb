package train

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/data/dataset"
	"github.com/deeppacket/deeppacket/data/loader"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// writeSet writes a compact set of n rows whose bytes depend on the label
// (so that a model can learn them) at dir/name.parquet.
func writeSet(t *testing.T, dir, name string, n, classes int, seed uint64) string {
	t.Helper()
	path := filepath.Join(dir, name+".parquet")
	rng := rand.New(rand.NewPCG(seed, 7))
	samples := make([]dataset.Sample, n)
	for i := range samples {
		label := i % classes
		f := make([]byte, 40+rng.IntN(200))
		for j := range f {
			f[j] = byte(rng.IntN(256))
		}
		for j := 0; j < len(f); j += 9 {
			f[j] = byte(label * 13)
		}
		samples[i] = dataset.Sample{Feature: f, Label: int64(label), Source: "synthetic.pcap", Index: int64(i), Flow: int64(i / 4)}
	}
	if err := dataset.WriteSet(path, dataset.Compact, 1500, dataset.SetWriterOptions{}, samples); err != nil {
		t.Fatal(err)
	}
	return path
}

// epochRows returns the features and labels of the rows of cfg's training
// set in the order the trainer's loader gives them in epoch 0.
func epochRows(tb testing.TB, cfg Config, shuffle bool) ([]float32, []int64) {
	tb.Helper()
	l, err := loader.Open(cfg.Data.Train, loaderOptions(cfg, shuffle))
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	var xs []float32
	var ys []int64
	e := l.Epoch(0)
	for {
		b, err := e.Next()
		if err == io.EOF {
			return xs, ys
		}
		if err != nil {
			tb.Fatal(err)
		}
		xs = append(xs, b.Features...)
		ys = append(ys, b.Labels[:b.Size]...)
	}
}

// smallConfig is a fast CNN run on the set at train.
func smallConfig(train string, epochs int) Config {
	cfg := DefaultConfig()
	cfg.Data.Train = train
	cfg.Model.C1OutputDim, cfg.Model.C2OutputDim = 32, 32
	cfg.Epochs = epochs
	cfg.Threads = 2
	cfg.Checkpoint.TorchScript = false
	return cfg
}

// TestParityWithPyTorch trains the reference CNN with small hyperparameters
// for 100 steps and PyTorch does the same on the batches the loader gave,
// from the same seed: the losses agree within 1e-4.
func TestParityWithPyTorch(t *testing.T) {
	python := testenv.Python(t)
	dir := t.TempDir()
	cfg := smallConfig(writeSet(t, dir, "train", 1600, 17, 1), 1)
	if _, err := Train(context.Background(), cfg, Options{RunDir: filepath.Join(dir, "run")}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "run", MetricsCSV))
	if err != nil {
		t.Fatal(err)
	}
	steps, goLosses, err := readMetricsCSV(f)
	f.Close()
	if err != nil || len(goLosses) != 100 || steps[99] != 100 {
		t.Fatalf("metrics.csv: %d steps (%v), want 100", len(goLosses), err)
	}

	// The batches of epoch 0, as the trainer's loader gave them.
	xs, ys := epochRows(t, cfg, true)
	m := cfg.Model
	in := map[string]*torch.Tensor{
		"x":       torch.FromSlice(nil, xs, []int64{100, 16, 1, 1500}, torch.CPU),
		"y":       torch.FromSlice(nil, ys, []int64{100, 16}, torch.CPU),
		"hparams": torch.FromSlice(nil, []int64{m.C1OutputDim, m.C1KernelSize, m.C1Stride, m.C2OutputDim, m.C2KernelSize, m.C2Stride, m.OutputDim, m.SignalLength}, []int64{8}, torch.CPU),
		"seed":    torch.FromSlice(nil, []int64{int64(cfg.Seed)}, []int64{1}, torch.CPU),
		"threads": torch.FromSlice(nil, []int64{int64(cfg.Threads)}, []int64{1}, torch.CPU),
	}
	for _, v := range in {
		defer v.Free()
	}
	inPath, outPath := filepath.Join(dir, "in.pt"), filepath.Join(dir, "out.pt")
	if err := torch.SaveTensors(inPath, in); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(python, "testdata/parity_train.py", inPath, outPath).CombinedOutput(); err != nil {
		t.Fatalf("parity_train.py: %v\n%s", err, out)
	}
	res, err := ckpt.ReadTensors(outPath)
	if err != nil {
		t.Fatal(err)
	}
	pyLosses, err := res["losses"].Float64s()
	for _, v := range res {
		v.Free()
	}
	if err != nil || len(pyLosses) != 100 {
		t.Fatalf("PyTorch gave %d losses (%v)", len(pyLosses), err)
	}
	worst := 0.0
	for i := range goLosses {
		d := math.Abs(goLosses[i] - pyLosses[i])
		if d > 1e-4 || math.IsNaN(d) {
			t.Fatalf("step %d: loss %.8f, PyTorch %.8f (|diff| %g > 1e-4)", i+1, goLosses[i], pyLosses[i], d)
		}
		worst = max(worst, d)
	}
	if !(goLosses[99] < goLosses[0]) {
		t.Errorf("loss did not fall: %.4f → %.4f", goLosses[0], goLosses[99])
	}
	t.Logf("100 steps: loss %.4f → %.4f, largest difference from PyTorch %.2g", goLosses[0], goLosses[99], worst)
}

// TestResume interrupts a run after its first epoch, once by stopping it
// (what Ctrl-C does) and once by killing its process with SIGKILL, resumes
// each from last.ckpt in a fresh trainer, and checks that both end with the
// weights, optimiser state and metrics of a run never interrupted.
func TestResume(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("the killed child runs in TestKilledChild")
	}
	dir := t.TempDir()
	cfg, whole := resumeSetup(t, dir, func(*Config) {})
	last := func(run string) string { return filepath.Join(run, CheckpointDir, LastCheckpoint) }

	t.Run("stopped", func(t *testing.T) {
		run := filepath.Join(dir, "stopped")
		stopAfterFirstEpoch(t, cfg, run)
		resumeAndCompare(t, cfg, run, whole, 0)
	})

	t.Run("killed", func(t *testing.T) {
		run := filepath.Join(dir, "killed")
		doc, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		child := exec.Command(os.Args[0], "-test.run=^TestKilledChild$")
		child.Env = append(os.Environ(), childEnv+"="+string(doc), childRunEnv+"="+run)
		var out strings.Builder
		child.Stdout, child.Stderr = &out, &out
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		ended := make(chan error, 1)
		go func() { ended <- child.Wait() }()
		// Kill it as soon as its first checkpoint exists: early in its
		// second epoch.
		for {
			if _, err := os.Stat(last(run)); err == nil {
				break
			}
			select {
			case err := <-ended:
				t.Fatalf("the child ended before its first checkpoint: %v\n%s", err, out.String())
			case <-time.After(5 * time.Millisecond):
			}
		}
		child.Process.Kill()
		<-ended
		ck, err := ckpt.ReadCheckpoint(last(run))
		if err != nil {
			t.Fatalf("the killed run's checkpoint: %v", err)
		}
		epoch := ck.Epoch
		ck.Close()
		if epoch >= 2 {
			t.Skip("the child finished before it was killed")
		}
		resumeAndCompare(t, cfg, run, whole, int(epoch))
	})
}

// TestResumeSGD: a run with SGD (momentum) stopped after its first epoch
// and resumed from last.ckpt ends with the weights, momentum buffers and
// metrics of the uninterrupted run, as an Adam run does (TestResume).
func TestResumeSGD(t *testing.T) {
	dir := t.TempDir()
	cfg, whole := resumeSetup(t, dir, func(c *Config) {
		c.Optimizer.Name, c.Optimizer.LR, c.Optimizer.Momentum = "sgd", 0.01, 0.9
	})
	run := filepath.Join(dir, "stopped")
	stopAfterFirstEpoch(t, cfg, run)
	resumeAndCompare(t, cfg, run, whole, 0)
}

// resumeSetup is the small three-epoch run the resume tests interrupt (with
// edit applied to its config) and the folder of its uninterrupted run.
func resumeSetup(t *testing.T, dir string, edit func(*Config)) (Config, string) {
	t.Helper()
	cfg := smallConfig(writeSet(t, dir, "train", 480, 5, 2), 3)
	cfg.Model.OutputDim = 5
	cfg.Model.C1OutputDim, cfg.Model.C2OutputDim = 8, 8
	cfg.ValidationFrac = 0.2
	cfg.Checkpoint.Monitor = "val_loss"
	edit(&cfg)
	whole := filepath.Join(dir, "whole")
	if _, err := Train(context.Background(), cfg, Options{RunDir: whole}); err != nil {
		t.Fatal(err)
	}
	return cfg, whole
}

// stopAfterFirstEpoch runs cfg in run and stops it after its first epoch,
// as Ctrl-C does.
func stopAfterFirstEpoch(t *testing.T, cfg Config, run string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Train(ctx, cfg, Options{RunDir: run, OnEpochEnd: func(m EpochMetrics) {
		if m.Epoch == 0 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped run: %v, want context.Canceled", err)
	}
}

// The killed child's configuration (JSON) and run folder.
const childEnv, childRunEnv = "DEEPPACKET_TRAIN_CHILD", "DEEPPACKET_TRAIN_CHILD_RUN"

// TestKilledChild is a training run in a child process, configured by its
// environment: the one TestResume kills, and the ranks of
// TestDistributedRun.
func TestKilledChild(t *testing.T) {
	doc := os.Getenv(childEnv)
	if doc == "" {
		t.Skip("run by TestResume")
	}
	var cfg Config
	if err := json.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := Train(context.Background(), cfg, Options{RunDir: os.Getenv(childRunEnv)}); err != nil {
		t.Fatal(err)
	}
}

// resumeAndCompare resumes the run in folder run, interrupted after epoch,
// and compares its end with the uninterrupted run in folder whole.
func resumeAndCompare(t *testing.T, cfg Config, run, whole string, epoch int) {
	t.Helper()
	last := filepath.Join(run, CheckpointDir, LastCheckpoint)
	ck, err := ckpt.ReadCheckpoint(last)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Epoch != int64(epoch) || ck.GlobalStep != int64(24*(epoch+1)) {
		t.Errorf("checkpoint after epoch %d: epoch %d step %d", epoch, ck.Epoch, ck.GlobalStep)
	}
	ck.Close()
	res, err := Train(context.Background(), cfg, Options{RunDir: run, Resume: last})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Epochs) != 3 || res.GlobalStep != 72 {
		t.Fatalf("resumed run: %d epochs, %d steps; want 3 and 72", len(res.Epochs), res.GlobalStep)
	}
	for _, name := range []string{LastCheckpoint, BestCheckpoint} {
		a, err := ckpt.ReadCheckpoint(filepath.Join(whole, CheckpointDir, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := ckpt.ReadCheckpoint(filepath.Join(run, CheckpointDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if a.Epoch != b.Epoch || a.GlobalStep != b.GlobalStep {
			t.Errorf("%s: epoch/step %d/%d, uninterrupted %d/%d", name, b.Epoch, b.GlobalStep, a.Epoch, a.GlobalStep)
		}
		for _, key := range a.Names {
			if eq, err := a.StateDict[key].Equal(b.StateDict[key]); err != nil || !eq {
				t.Errorf("%s: %s differs from the uninterrupted run's (%v)", name, key, err)
			}
		}
		keys := []string{"exp_avg", "exp_avg_sq"}
		if cfg.Optimizer.Name == "sgd" {
			keys = []string{"momentum_buffer"}
		}
		as, bs := optimizerState(t, a, keys), optimizerState(t, b, keys)
		if len(as) != len(bs) {
			t.Fatalf("%s: %d optimizer state tensors, uninterrupted %d", name, len(bs), len(as))
		}
		for i := range as {
			if eq, err := as[i].Equal(bs[i]); err != nil || !eq {
				t.Errorf("%s: %s optimizer state %d differs from the uninterrupted run's", name, cfg.Optimizer.Name, i)
			}
		}
		a.Close()
		b.Close()
	}
	for _, name := range []string{MetricsJSONL, MetricsCSV} {
		a, _ := os.ReadFile(filepath.Join(whole, name))
		b, _ := os.ReadFile(filepath.Join(run, name))
		// Seconds and rates differ; steps, epochs and losses must not.
		if got, want := lossColumns(string(b)), lossColumns(string(a)); !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("%s differs from the uninterrupted run's:\n%s\nwant\n%s", name, b, a)
		}
	}
}

// lossColumns keeps, per line, what a rerun must reproduce exactly.
func lossColumns(doc string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(doc), "\n") {
		if strings.HasPrefix(line, "{") {
			i := strings.Index(line, `"lr"`)
			out = append(out, line[:i])
			continue
		}
		f := strings.Split(line, ",")
		out = append(out, strings.Join(f[:3], ","))
	}
	return out
}

// optimizerState is the optimiser state in a checkpoint's
// optimizer_states: each parameter's tensors under keys, in order.
func optimizerState(t *testing.T, ck *ckpt.Checkpoint, keys []string) []*torch.Tensor {
	t.Helper()
	v, _ := ck.Extra.Get("optimizer_states")
	list, ok := v.([]any)
	if !ok || len(list) != 1 {
		t.Fatalf("optimizer_states: %T", v)
	}
	st, _ := list[0].(*torch.Dict).Get("state")
	var out []*torch.Tensor
	for _, s := range st.(*torch.Dict).Values {
		for _, k := range keys {
			m, _ := s.(*torch.Dict).Get(k)
			out = append(out, m.(*torch.Tensor))
		}
	}
	if len(out) == 0 {
		t.Fatalf("no optimizer state %v in the checkpoint", keys)
	}
	return out
}

// TestBadInput: a label outside output_dim, a missing set and a loss that
// becomes NaN give clear errors, and checkpoints already written stay
// usable.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	set := writeSet(t, dir, "train", 64, 20, 3)
	cfg := smallConfig(set, 1)
	cfg.Model.C1OutputDim, cfg.Model.C2OutputDim = 4, 4
	_, err := Train(context.Background(), cfg, Options{RunDir: filepath.Join(dir, "labels")})
	if err == nil || !strings.Contains(err.Error(), "label") || !strings.Contains(err.Error(), set) {
		t.Errorf("labels 17..19 with output_dim 17: %v, want an error naming the label and the file", err)
	}

	cfg.Data.Train = filepath.Join(dir, "missing.parquet")
	if _, err := Train(context.Background(), cfg, Options{RunDir: filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), "missing.parquet") {
		t.Errorf("missing set: %v", err)
	}

	cfg = smallConfig(writeSet(t, dir, "ok", 64, 5, 4), 1)
	cfg.Model.OutputDim = 5
	cfg.Model.C1OutputDim, cfg.Model.C2OutputDim = 4, 4
	run := filepath.Join(dir, "nan")
	if _, err := Train(context.Background(), cfg, Options{RunDir: run}); err != nil {
		t.Fatal(err)
	}
	last := filepath.Join(run, CheckpointDir, LastCheckpoint)
	cfg.Epochs = 3
	cfg.Optimizer.LR = 1e38
	_, err = Train(context.Background(), cfg, Options{RunDir: run, Resume: last})
	if !errors.Is(err, ErrNaNLoss) || !strings.Contains(err.Error(), "epoch 1") || !strings.Contains(err.Error(), last) {
		t.Fatalf("lr 1e38: %v, want a non-finite loss in epoch 1 naming the intact checkpoint", err)
	}
	m, err := ckpt.Load(last)
	if err != nil {
		t.Fatalf("the checkpoint written before the NaN: %v", err)
	}
	m.Close()
}

func TestEarlyStopping(t *testing.T) {
	tests := []struct {
		name     string
		cfg      EarlyStoppingConfig
		values   []float64
		stopAt   int // epoch of the stop, -1 for none
		improved []bool
	}{
		{"lightning defaults", EarlyStoppingConfig{Monitor: "train_loss", Mode: "min", Patience: 3},
			[]float64{3, 2, 2, 2.5, 2}, 4, []bool{true, true, false, false, false}},
		{"keeps going while improving", EarlyStoppingConfig{Monitor: "train_loss", Mode: "min", Patience: 1},
			[]float64{3, 2, 1}, -1, []bool{true, true, true}},
		{"min_delta", EarlyStoppingConfig{Monitor: "train_loss", Mode: "min", Patience: 2, MinDelta: 0.5},
			[]float64{3, 2.7, 2.6, 1}, 2, []bool{true, false, false}},
		{"max", EarlyStoppingConfig{Monitor: "val_acc", Mode: "max", Patience: 1},
			[]float64{0.5, 0.6, 0.6}, 2, []bool{true, true, false}},
		{"nan stops", EarlyStoppingConfig{Monitor: "train_loss", Mode: "min", Patience: 3},
			[]float64{3, math.NaN()}, 1, []bool{true, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEarlyStopping(tc.cfg)
			stop := -1
			for i, v := range tc.values {
				if got := e.update(v, i); got != tc.improved[i] {
					t.Errorf("epoch %d: improved %v, want %v", i, got, tc.improved[i])
				}
				if e.stopped {
					stop = i
					break
				}
			}
			if stop != tc.stopAt {
				t.Errorf("stopped at epoch %d, want %d", stop, tc.stopAt)
			}
		})
	}
}

// TestScores checks the report against numbers worked out by hand (as
// sklearn's classification_report gives them).
func TestScores(t *testing.T) {
	labels := []int64{0, 0, 0, 1, 1, 2}
	preds := []int64{0, 0, 1, 1, 2, 2}
	r := score(labels, preds, []string{"a", "b", "c"})
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-12 }
	if !near(r.Accuracy, 4.0/6) {
		t.Errorf("accuracy %v", r.Accuracy)
	}
	want := []Scores{{1, 2.0 / 3, 0.8, 3}, {0.5, 0.5, 0.5, 2}, {0.5, 1, 2.0 / 3, 1}}
	for i, c := range r.Classes {
		w := want[i]
		if !near(c.Precision, w.Precision) || !near(c.Recall, w.Recall) || !near(c.F1, w.F1) || c.Support != w.Support {
			t.Errorf("class %s: %+v, want %+v", c.Name, c.Scores, w)
		}
	}
	if !near(r.Macro.F1, (0.8+0.5+2.0/3)/3) || !near(r.Weighted.F1, (3*0.8+2*0.5+2.0/3)/6) {
		t.Errorf("macro F1 %v, weighted %v", r.Macro.F1, r.Weighted.F1)
	}
	if !slices.Equal(r.Confusion[0], []int64{2, 1, 0}) || !slices.Equal(r.Confusion[1], []int64{0, 1, 1}) {
		t.Errorf("confusion %v", r.Confusion)
	}
	fl, fp := flowVotes([]string{"x", "x", "x", "y", "y", "z"}, labels, preds)
	if !slices.Equal(fl, []int64{0, 1, 2}) || !slices.Equal(fp, []int64{0, 1, 2}) {
		t.Errorf("flow votes %v %v (ties go to the lower class)", fl, fp)
	}
}

// TestEvaluateReferenceCheckpoint scores the reference's published traffic
// ResNet checkpoint on a set: its class names come from the task its
// output size implies, and the reports are written.
func TestEvaluateReferenceCheckpoint(t *testing.T) {
	ckpt := testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt")
	dir := t.TempDir()
	set := writeSet(t, dir, "test", 48, 12, 5)
	r, err := Evaluate(context.Background(), ckpt, set, EvalOptions{Device: torch.CPU, BatchSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	if r.Count != 48 || r.Flows == nil || r.Flows.Count != 12 {
		t.Fatalf("%d rows, flows %+v; want 48 rows in 12 flows", r.Count, r.Flows)
	}
	names := ClassNames(labels.Traffic, 12)
	for _, c := range r.Classes {
		if c.Name != names[c.ID] {
			t.Errorf("class %d named %q, want %q", c.ID, c.Name, names[c.ID])
		}
	}
	if err := r.WriteFiles(filepath.Join(dir, "report")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ReportJSON, ReportCSV, ConfusionCSV, ConfusionPNG, FlowReportCSV, FlowConfusionPNG} {
		if info, err := os.Stat(filepath.Join(dir, "report", name)); err != nil || info.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestModelKinds trains each architecture for an epoch (the SAE after its
// layer-wise pretraining) and exports it to TorchScript, which gives the
// model's own logits.
func TestModelKinds(t *testing.T) {
	dir := t.TempDir()
	set := writeSet(t, dir, "train", 48, 5, 6)
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"resnet", func(c *Config) {
			c.Model.Kind, c.Model.C1OutputDim, c.Model.C1KernelSize, c.Model.C1Stride, c.Model.C1NBlock = "resnet", 4, 5, 3, 2
		}},
		{"sae", func(c *Config) {
			c.Model.Kind, c.Model.HiddenDims, c.Pretrain.Epochs = "sae", []int64{16, 8}, 1
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig(set, 1)
			cfg.Model.OutputDim = 5
			cfg.Checkpoint.TorchScript = true
			tc.edit(&cfg)
			run := filepath.Join(dir, tc.name)
			res, err := Train(context.Background(), cfg, Options{RunDir: run})
			if err != nil {
				t.Fatal(err)
			}
			if res.GlobalStep != 3 {
				t.Errorf("%d steps, want 3", res.GlobalStep)
			}
			fromCkpt, err := Evaluate(context.Background(), res.Best, set, EvalOptions{Device: torch.CPU})
			if err != nil {
				t.Fatal(err)
			}
			fromScript, err := Evaluate(context.Background(), res.TorchScript, set, EvalOptions{Device: torch.CPU, AllowTorchScript: true})
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(fromCkpt.Loss-fromScript.Loss) > 1e-5 || fromCkpt.Accuracy != fromScript.Accuracy {
				t.Errorf("checkpoint loss %v accuracy %v, TorchScript %v %v", fromCkpt.Loss, fromCkpt.Accuracy, fromScript.Loss, fromScript.Accuracy)
			}
		})
	}
}

// TestPredictKeepsMode: evaluation switches the model to inference mode and
// gives back the mode it found, whichever it was.
func TestPredictKeepsMode(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig(writeSet(t, dir, "set", 64, 5, 3), 1)
	cfg.Model.OutputDim = 5
	l, err := loader.Open(cfg.Data.Train, loaderOptions(cfg, false))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	spec, err := Spec(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, mode := range []bool{true, false} {
		m.Store().Train(mode)
		sawTraining := true
		forward := func(x *torch.Tensor) *torch.Tensor {
			sawTraining = m.Store().Training()
			return m.Forward(x)
		}
		if _, err := predict(context.Background(), l, forward, m.Store(), torch.CPU); err != nil {
			t.Fatal(err)
		}
		if sawTraining {
			t.Errorf("mode %v: forward ran in training mode", mode)
		}
		if got := m.Store().Training(); got != mode {
			t.Errorf("after predict the model is in training mode %v, want %v as before", got, mode)
		}
	}
}

// readMetricsCSV returns the loss column of a metrics.csv.
func readMetricsCSV(r io.Reader) (steps []int64, losses []float64, err error) {
	sc := bufio.NewScanner(r)
	for line := 0; sc.Scan(); line++ {
		if line == 0 {
			continue
		}
		f := strings.Split(sc.Text(), ",")
		if len(f) < 3 {
			return nil, nil, fmt.Errorf("line %d: not a metrics row", line+1)
		}
		s, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", line+1, err)
		}
		l, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", line+1, err)
		}
		steps, losses = append(steps, s), append(losses, l)
	}
	return steps, losses, sc.Err()
}

// TestDistributedRun: two ranks (child processes given RANK, WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT, as torchrun gives them) train a small model
// together over libtorch's c10d: both finish, end with the same weights
// (the trainer checks it, bit for bit, and rank 0 logs it), each logs its
// rank and the world size, and only rank 0 writes the run folder, whose
// checkpoint then resumes in a world of one. The CNN as it is; the ResNet
// with unused parameters (DDP's find_unused_parameters), batch norm, and
// early stopping on the validation loss averaged over the ranks.
func TestDistributedRun(t *testing.T) {
	for _, kind := range []string{"cnn", "resnet"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			cfg := smallConfig(writeSet(t, dir, "train", 480, 5, 2), 2)
			cfg.Model.Kind = kind
			cfg.Model.OutputDim = 5
			cfg.Model.C1OutputDim, cfg.Model.C2OutputDim = 8, 8
			if kind == "resnet" {
				cfg.Model.C1KernelSize, cfg.Model.C1Stride, cfg.Model.C1NBlock = 5, 2, 2
				cfg.ValidationFrac = 0.25
				cfg.EarlyStopping = EarlyStoppingConfig{Enabled: true, Monitor: "val_loss", Patience: 0, Mode: "min"}
			}
			cfg.Checkpoint.TorchScript = false
			cfg.Distributed.TimeoutS = 60
			distributedRun(t, dir, cfg)
		})
	}
}

func distributedRun(t *testing.T, dir string, cfg Config) {
	doc, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	run := filepath.Join(dir, "run")
	var children [2]*exec.Cmd
	var outs [2]strings.Builder
	for r := range children {
		children[r] = exec.Command(os.Args[0], "-test.run=^TestKilledChild$", "-test.v")
		children[r].Env = append(os.Environ(), childEnv+"="+string(doc), childRunEnv+"="+run,
			"RANK="+strconv.Itoa(r), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+port)
		children[r].Stdout, children[r].Stderr = &outs[r], &outs[r]
		if err := children[r].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for r, c := range children {
		if err := c.Wait(); err != nil {
			t.Fatalf("rank %d: %v\n%s", r, err, outs[r].String())
		}
	}
	if !strings.Contains(outs[0].String(), "every rank ends with rank 0's weights") {
		t.Errorf("rank 0 did not log that the ranks agree:\n%s", outs[0].String())
	}
	for r := range outs {
		if !strings.Contains(outs[r].String(), "rank="+strconv.Itoa(r)) || !strings.Contains(outs[r].String(), "world_size=2") {
			t.Errorf("rank %d did not log its rank and the world size:\n%s", r, outs[r].String())
		}
	}
	if strings.Contains(outs[1].String(), "level=INFO") {
		t.Errorf("rank 1 logged below warning level:\n%s", outs[1].String())
	}
	ck, err := ckpt.ReadCheckpoint(filepath.Join(run, CheckpointDir, LastCheckpoint))
	if err != nil {
		t.Fatalf("rank 0's last checkpoint: %v", err)
	}
	if ck.Epoch != 1 {
		t.Errorf("last checkpoint at epoch %d, want 1", ck.Epoch)
	}
	ck.Close()
	// The group's checkpoint resumes in another world size: one process.
	cfg.Epochs = 3
	cfg.EarlyStopping.Enabled = false
	res, err := Train(context.Background(), cfg, Options{RunDir: run, Resume: filepath.Join(run, CheckpointDir, LastCheckpoint)})
	if err != nil {
		t.Fatalf("resume the 2-rank run alone: %v", err)
	}
	if n := len(res.Epochs); n != 3 || res.Epochs[n-1].Epoch != 2 {
		t.Errorf("resumed alone: %d epochs, want 3 ending at epoch 2", n)
	}
}
