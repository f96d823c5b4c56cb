// Package train is Deep Packet's training harness: the reference's PyTorch
// Lightning setup (Adam, cross-entropy, a shuffle every epoch, early stopping
// on the epoch-mean training loss, seeds for everything) driven by a Config,
// with metrics, checkpoints in Lightning's layout, resume, and evaluation
// reports.
//
// # Determinism
//
// torch.manual_seed(seed) runs before the model is built, so the initial
// weights are PyTorch's for that seed, and epoch 0 continues that generator
// (as a Lightning run does). Every later epoch e starts with
// torch.manual_seed(EpochSeed(seed, e)), and the loader's order depends only
// on (seed, e): an epoch's dropout masks and batches are a function of the
// seed and its number, which is what lets --resume continue a run from a
// checkpoint and end with the weights of an uninterrupted one.
//
// Imports: model, ckpt, labels, torch, data/dataset, data/features,
// data/loader, internal/*; never cmd.
package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/data/loader"
	"github.com/deeppacket/deeppacket/internal/atomicfile"
	"github.com/deeppacket/deeppacket/internal/progress"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// Options are a run's settings that are not part of the experiment.
type Options struct {
	RunDir string // where checkpoints, metrics and plots go
	Resume string // a checkpoint to continue from; "" starts afresh
	// ClassNames name the output classes in checkpoints and reports; nil
	// uses the task's names.
	ClassNames []string
	// OnEpochEnd, when set, sees each finished epoch after its checkpoints
	// are written (the CLI uses none; a caller can stop a run by cancelling
	// its context here).
	OnEpochEnd func(EpochMetrics)
}

// EpochMetrics is one epoch's line of metrics.jsonl.
type EpochMetrics struct {
	Epoch         int      `json:"epoch"`
	GlobalStep    int64    `json:"global_step"`
	TrainLoss     float64  `json:"train_loss"`
	ValLoss       *float64 `json:"val_loss,omitempty"`
	ValAcc        *float64 `json:"val_acc,omitempty"`
	LR            float64  `json:"lr"`
	Samples       int64    `json:"samples"`
	Seconds       float64  `json:"seconds"`
	SamplesPerSec float64  `json:"samples_per_s"`
	Best          bool     `json:"best"`
}

// value is the monitored quantity name's value this epoch.
func (m EpochMetrics) value(name string) (float64, bool) {
	switch name {
	case "train_loss":
		return m.TrainLoss, true
	case "val_loss":
		if m.ValLoss != nil {
			return *m.ValLoss, true
		}
	case "val_acc":
		if m.ValAcc != nil {
			return *m.ValAcc, true
		}
	}
	return 0, false
}

// Result is what a finished run leaves.
type Result struct {
	Epochs      []EpochMetrics
	GlobalStep  int64
	Stopped     bool   // early stopping ended the run
	Last, Best  string // checkpoint paths ("" when not kept)
	TorchScript string
	Test        *Report // the best model on data.test, when given
}

// Run file names inside RunDir.
const (
	ConfigFile     = "config.yaml"
	MetricsCSV     = "metrics.csv"
	MetricsJSONL   = "metrics.jsonl"
	LossCurvePNG   = "loss.png"
	CheckpointDir  = "checkpoints"
	LastCheckpoint = "last.ckpt"
	BestCheckpoint = "best.ckpt"
	TorchScriptPT  = "model.pt"
	TestReportDir  = "test"
)

// EpochSeed is the torch seed epoch e > 0 starts with.
func EpochSeed(seed uint64, epoch int) uint64 {
	return splitmix64(seed ^ splitmix64(uint64(epoch)))
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// ErrNaNLoss is returned when a step's loss is not finite.
var ErrNaNLoss = errors.New("loss is not finite")

// Train runs the experiment cfg. Cancelling ctx stops it between steps; the
// checkpoints of the epochs already finished stay usable.
func Train(ctx context.Context, cfg Config, opts Options) (*Result, error) {
	if err := checkInputs(cfg, opts); err != nil {
		return nil, err
	}
	g, err := joinGroup(cfg, &opts)
	if err != nil {
		return nil, err
	}
	defer g.close()
	t, err := newTrainer(cfg, opts, g)
	if t != nil {
		defer t.close()
	}
	if err != nil {
		return nil, err
	}
	slog.Info("train", "run", opts.RunDir, "task", cfg.Task, "model", cfg.Model.Kind,
		"parameters", t.model.Store().NumParameters(), "device", t.device.String(),
		"threads", torch.NumThreads(), "train_rows", t.train.Rows(), "start_epoch", t.nextEpoch)
	if t.nextEpoch == 0 && cfg.Model.Kind == "sae" && cfg.Pretrain.Epochs > 0 {
		if err := t.pretrain(ctx); err != nil {
			return nil, err
		}
	}
	if err := t.fit(ctx); err != nil {
		return nil, err
	}
	if err := g.checkInSync(t); err != nil {
		return nil, err
	}
	return t.finish(ctx)
}

// checkInputs refuses a run before any work: a bad config, no run folder,
// or a set that is not there (the test set is read only at the end, and a
// wrong path must stop the run now, not after training).
func checkInputs(cfg Config, opts Options) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if opts.RunDir == "" {
		return errors.New("train: no run folder")
	}
	if _, err := os.Stat(cfg.Data.Train); err != nil {
		return fmt.Errorf("training set (data.train): %w", err)
	}
	if cfg.Data.Test != "" {
		if _, err := os.Stat(cfg.Data.Test); err != nil {
			return fmt.Errorf("test set (data.test): %w", err)
		}
	}
	return nil
}

// newTrainer sets up the run: its folder and config.yaml, the data, the
// model (seeded, initialised from init_from or resumed), the optimiser and
// the metrics file. The caller closes the trainer, also on error.
func newTrainer(cfg Config, opts Options, g *group) (*trainer, error) {
	spec, err := Spec(cfg)
	if err != nil {
		return nil, err
	}
	if opts.ClassNames == nil {
		opts.ClassNames = ClassNames(spec.Task, int(cfg.Model.OutputDim))
	}
	device, err := torch.ParseDevice(cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("config device: %w", err)
	}
	if cfg.Threads > 0 {
		torch.SetNumThreads(cfg.Threads)
	}
	if err := writeRunConfig(cfg, opts.RunDir); err != nil {
		return nil, err
	}
	t := &trainer{cfg: cfg, opts: opts, device: device, group: g}
	if err := t.openData(); err != nil {
		return t, err
	}
	if err := t.newModel(spec); err != nil {
		return t, err
	}
	t.opt = newOptimizer(cfg.Optimizer, t.model.Store().Parameters())
	t.es = newEarlyStopping(cfg.EarlyStopping)
	t.best = newEarlyStopping(EarlyStoppingConfig{Monitor: cfg.monitor(), Mode: modeOf(cfg.monitor()), Patience: math.MaxInt})
	if opts.Resume != "" {
		if err := t.resume(opts.Resume); err != nil {
			return t, err
		}
	}
	if err := g.start(t); err != nil {
		return t, err
	}
	t.metrics, err = openMetrics(opts.RunDir, t.globalStep, t.nextEpoch)
	return t, err
}

// writeRunConfig makes the run folder and writes the resolved config.
func writeRunConfig(cfg Config, runDir string) error {
	if err := os.MkdirAll(filepath.Join(runDir, CheckpointDir), 0o755); err != nil {
		return err
	}
	doc, err := cfg.YAML()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(runDir, ConfigFile), doc)
}

// newModel builds spec's model from the config's seed, takes init_from's
// weights when a new run names them, and moves it to the run's device.
func (t *trainer) newModel(spec model.Spec) error {
	if err := torch.ManualSeed(t.cfg.Seed); err != nil {
		return err
	}
	var err error
	if t.model, err = model.New(spec); err != nil {
		return err
	}
	if t.cfg.InitFrom != "" && t.opts.Resume == "" {
		if err := initFrom(t.model, t.cfg.InitFrom); err != nil {
			return err
		}
	}
	return toDevice(t.model, t.device)
}

// fit runs the epochs from nextEpoch until the last or early stopping.
// Epoch e > 0 starts from torch's generator seeded with EpochSeed, so a
// resumed run draws what the uninterrupted one did.
func (t *trainer) fit(ctx context.Context) error {
	for epoch := t.nextEpoch; epoch < t.cfg.Epochs && !t.es.stopped; epoch++ {
		if epoch > 0 {
			if err := torch.ManualSeed(EpochSeed(t.cfg.Seed, epoch)); err != nil {
				return err
			}
		}
		m, err := t.epoch(ctx, epoch)
		if err != nil {
			return err
		}
		if err := t.endEpoch(m); err != nil {
			return err
		}
		if t.opts.OnEpochEnd != nil {
			t.opts.OnEpochEnd(m)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

type trainer struct {
	cfg        Config
	opts       Options
	device     torch.Device
	group      *group // nil when training alone
	train, val *loader.Loader
	model      model.Model
	opt        torch.Optimizer
	es, best   *earlyStopping
	metrics    *metricsWriter
	history    []EpochMetrics
	nextEpoch  int
	globalStep int64
}

func (t *trainer) close() {
	if t.metrics != nil {
		t.metrics.close()
	}
	if t.opt != nil {
		t.opt.Close()
	}
	if t.model != nil {
		t.model.Close()
	}
	for _, l := range []*loader.Loader{t.train, t.val} {
		if l != nil {
			l.Close()
		}
	}
}

// openData opens the training set, holding out the validation rows first
// when validation_fraction asks for them.
func (t *trainer) openData() error {
	trainPath, valPath := t.cfg.Data.Train, ""
	if t.cfg.ValidationFrac > 0 {
		var err error
		if trainPath, valPath, err = holdOut(t.cfg, filepath.Join(t.opts.RunDir, "data")); err != nil {
			return err
		}
	}
	var err error
	o := t.loaderOptions(true)
	o.DropLast = t.cfg.Loader.DropLast
	t.group.shard(&o, t.cfg.Seed)
	if t.train, err = loader.Open(trainPath, o); err != nil {
		return err
	}
	if t.train.Rows() == 0 {
		return fmt.Errorf("training set %s: no rows", trainPath)
	}
	if valPath != "" {
		if t.val, err = loader.Open(valPath, t.loaderOptions(false)); err != nil {
			return err
		}
	}
	return nil
}

func (t *trainer) loaderOptions(shuffle bool) loader.Options {
	return loaderOptions(t.cfg, shuffle)
}

func loaderOptions(cfg Config, shuffle bool) loader.Options {
	return loader.Options{
		BatchSize:     cfg.BatchSize,
		SignalLength:  int(cfg.Model.SignalLength),
		NumClasses:    int(cfg.Model.OutputDim),
		Shuffle:       shuffle,
		Seed:          cfg.Seed,
		ShuffleWindow: cfg.Loader.ShuffleWindow,
		ReadAhead:     cfg.Loader.ReadAhead,
		Workers:       cfg.Loader.Workers,
	}
}

// epoch trains one pass over the training set.
func (t *trainer) epoch(ctx context.Context, epoch int) (EpochMetrics, error) {
	store := t.model.Store()
	defer store.Train(store.Train(true))
	batches := t.train.Epoch(epoch)
	defer batches.Close()
	bar := progress.New(int64(t.train.Batches()), fmt.Sprintf("epoch %d/%d", epoch+1, t.cfg.Epochs), false)
	defer bar.Finish()
	scope := torch.NewScope()
	defer scope.Close()
	start := time.Now()
	var lossSum float64
	var samples int64
	for {
		if err := ctx.Err(); err != nil {
			return EpochMetrics{}, err
		}
		b, err := batches.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return EpochMetrics{}, fmt.Errorf("epoch %d: %w", epoch, err)
		}
		loss, err := t.step(scope, b)
		scope.Close()
		if err != nil {
			return EpochMetrics{}, fmt.Errorf("epoch %d, step %d: %w%s", epoch, t.globalStep, err, t.lastGood())
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return EpochMetrics{}, fmt.Errorf("epoch %d, step %d: %w (%g); lower optimizer.lr or check the data%s",
				epoch, t.globalStep, ErrNaNLoss, loss, t.lastGood())
		}
		t.globalStep++
		lossSum += loss * float64(b.Size)
		samples += int64(b.Size)
		rate := float64(samples) / time.Since(start).Seconds()
		if err := t.metrics.step(t.globalStep, epoch, loss, t.cfg.Optimizer.LR, rate); err != nil {
			return EpochMetrics{}, err
		}
		bar.Describe(fmt.Sprintf("epoch %d/%d loss %.4f %.0f samples/s", epoch+1, t.cfg.Epochs, lossSum/float64(samples), rate))
		bar.Add(1)
	}
	secs := time.Since(start).Seconds()
	count := float64(samples)
	if err := t.group.sum(&lossSum, &count); err != nil {
		return EpochMetrics{}, fmt.Errorf("epoch %d: %w", epoch, err)
	}
	samples = int64(count)
	m := EpochMetrics{
		Epoch: epoch, GlobalStep: t.globalStep, TrainLoss: lossSum / float64(samples),
		LR: t.cfg.Optimizer.LR, Samples: samples, Seconds: secs, SamplesPerSec: float64(samples) / secs,
	}
	if t.val != nil {
		r, err := predict(ctx, t.val, t.model.Forward, store, t.device)
		if err != nil {
			return EpochMetrics{}, fmt.Errorf("epoch %d validation: %w", epoch, err)
		}
		loss, acc := r.loss, r.accuracy()
		if err := t.group.mean(&loss, &acc); err != nil {
			return EpochMetrics{}, fmt.Errorf("epoch %d validation: %w", epoch, err)
		}
		m.ValLoss, m.ValAcc = &loss, &acc
	}
	return m, nil
}

// step is one optimiser step on batch b; it returns the batch's loss.
func (t *trainer) step(scope *torch.Scope, b *loader.Batch) (float64, error) {
	x := torch.FromSlice(scope, b.Features, b.Shape[:], t.device)
	y := torch.FromSlice(scope, b.Labels[:b.Size], []int64{int64(b.Size)}, t.device)
	if err := t.opt.ZeroGrad(); err != nil {
		return 0, err
	}
	loss, err := t.group.forward(func() *torch.Tensor { return t.model.Forward(x).CrossEntropy(y) })
	if err != nil {
		return 0, err
	}
	if err := t.group.backward(loss); err != nil {
		return 0, err
	}
	if err := t.opt.Step(); err != nil {
		return 0, err
	}
	return loss.Item()
}

// lastGood names the checkpoint a failed run can be resumed from.
func (t *trainer) lastGood() string {
	if len(t.history) == 0 || !t.cfg.Checkpoint.SaveLast {
		return ""
	}
	return fmt.Sprintf(" (the checkpoint %s of epoch %d is intact)", t.checkpointPath(LastCheckpoint), t.history[len(t.history)-1].Epoch)
}

func (t *trainer) checkpointPath(name string) string {
	return filepath.Join(t.opts.RunDir, CheckpointDir, name)
}

// endEpoch updates early stopping and writes the epoch's metrics and
// checkpoints, metrics first so that a checkpoint never runs ahead of them.
func (t *trainer) endEpoch(m EpochMetrics) error {
	v, ok := m.value(t.best.Monitor)
	if !ok {
		return fmt.Errorf("epoch %d: no %s to monitor", m.Epoch, t.best.Monitor)
	}
	m.Best = t.best.update(v, m.Epoch)
	if t.cfg.EarlyStopping.Enabled {
		es, ok := m.value(t.es.Monitor)
		if !ok {
			return fmt.Errorf("epoch %d: no %s for early stopping", m.Epoch, t.es.Monitor)
		}
		t.es.update(es, m.Epoch)
	}
	t.history = append(t.history, m)
	t.nextEpoch = m.Epoch + 1
	if err := t.metrics.epoch(t.history); err != nil {
		return err
	}
	if t.cfg.Checkpoint.SaveBest && m.Best {
		if err := t.save(t.checkpointPath(BestCheckpoint), m.Epoch); err != nil {
			return err
		}
	}
	if t.cfg.Checkpoint.SaveLast {
		if err := t.save(t.checkpointPath(LastCheckpoint), m.Epoch); err != nil {
			return err
		}
	}
	attrs := []any{"epoch", m.Epoch, "step", m.GlobalStep, "train_loss", m.TrainLoss,
		"samples_per_s", math.Round(m.SamplesPerSec), "seconds", math.Round(m.Seconds*10) / 10}
	if m.ValLoss != nil {
		attrs = append(attrs, "val_loss", *m.ValLoss, "val_acc", *m.ValAcc)
	}
	attrs = append(attrs, "best", m.Best, "es_wait", t.es.wait)
	slog.Info("epoch", attrs...)
	if t.es.stopped {
		slog.Info("early stopping", "monitor", t.es.Monitor, "best", t.es.bestValue, "patience", t.es.Patience, "epoch", m.Epoch, "reason", t.es.reason)
	}
	return nil
}

// finish writes what a run leaves at its end.
func (t *trainer) finish(ctx context.Context) (*Result, error) {
	res := &Result{Epochs: t.history, GlobalStep: t.globalStep, Stopped: t.es.stopped}
	if t.cfg.Checkpoint.SaveLast {
		res.Last = t.checkpointPath(LastCheckpoint)
	}
	if err := t.metrics.finish(); err != nil {
		return nil, err
	}
	if err := lossCurve(filepath.Join(t.opts.RunDir, LossCurvePNG), t.history, t.metrics.curve); err != nil {
		return nil, err
	}
	// The best weights: from best.ckpt when kept, else the last ones (which
	// the model holds, and which best.ckpt holds too when the last epoch
	// was the best: reading it back, Adam's state and all, cost a rank of
	// bench-ddp 8% of its CPU time).
	if t.cfg.Checkpoint.SaveBest {
		res.Best = t.checkpointPath(BestCheckpoint)
		if len(t.history) > 0 && !t.history[len(t.history)-1].Best {
			ck, err := ckpt.ReadCheckpoint(res.Best)
			if err != nil {
				return nil, err
			}
			err = t.model.Store().LoadStateDict(ck.StateDict)
			ck.Close()
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", res.Best, err)
			}
		}
	}
	if t.cfg.Checkpoint.TorchScript {
		res.TorchScript = filepath.Join(t.opts.RunDir, TorchScriptPT)
		if err := ckpt.ExportTorchScript(t.model, res.TorchScript); err != nil {
			return nil, err
		}
	}
	if t.cfg.Data.Test != "" {
		l, err := loader.Open(t.cfg.Data.Test, loaderOptions(t.cfg, false))
		if err != nil {
			return nil, fmt.Errorf("test set: %w", err)
		}
		defer l.Close()
		r, err := predict(ctx, l, t.model.Forward, t.model.Store(), t.device)
		if err != nil {
			return nil, fmt.Errorf("test set %s: %w", t.cfg.Data.Test, err)
		}
		flows, err := readFlows(t.cfg.Data.Test)
		if err != nil {
			return nil, err
		}
		res.Test = newReport(r, flows, t.opts.ClassNames)
		res.Test.Model, res.Test.Data = res.Best, t.cfg.Data.Test
		if err := res.Test.WriteFiles(filepath.Join(t.opts.RunDir, TestReportDir)); err != nil {
			return nil, err
		}
		slog.Info("test", "data", t.cfg.Data.Test, "accuracy", res.Test.Accuracy, "macro_f1", res.Test.Macro.F1, "weighted_f1", res.Test.Weighted.F1)
	}
	return res, nil
}
