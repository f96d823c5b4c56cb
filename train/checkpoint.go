package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// runKey is the checkpoint entry holding what resuming needs beyond
// Lightning's own entries: the configuration, the class names, the seed
// and how the generators are re-seeded, early-stopping and best-model
// state, and the per-epoch metrics so far.
const runKey = "deeppacket_run"

// rngRule says how a run's random state follows from its seed (see the
// package doc): libtorch's generator state is not saved, it is re-made.
const rngRule = "torch.manual_seed(seed) before the model is built; epoch e > 0 starts with torch.manual_seed(EpochSeed(seed, e)); the loader's order is a function of (seed, e)"

// save writes the run's state after epoch into path, in Lightning's layout
// (ckpt.SaveCheckpoint) with the training state as extra entries.
func (t *trainer) save(path string, epoch int) error {
	extra := &torch.Dict{}
	var owned []any
	defer func() {
		for _, v := range owned {
			torch.FreeTree(v)
		}
	}()
	st := t.opt.StateDict()
	owned = append(owned, st)
	extra.Set("optimizer_states", []any{st})
	extra.Set("lr_schedulers", []any{})
	es := &torch.Dict{}
	best := torch.FromSlice(nil, []float64{t.es.bestValue}, []int64{}, torch.CPU)
	owned = append(owned, best)
	es.Set("wait_count", int64(t.es.wait))
	es.Set("stopped_epoch", int64(t.es.stoppedEpoch))
	es.Set("best_score", best)
	es.Set("patience", int64(t.es.Patience))
	callbacks := &torch.Dict{}
	callbacks.Set(fmt.Sprintf("EarlyStopping{'monitor': '%s', 'mode': '%s'}", t.es.Monitor, t.es.Mode), es)
	extra.Set("callbacks", callbacks)

	doc, err := t.cfg.YAML()
	if err != nil {
		return err
	}
	history, err := json.Marshal(t.history)
	if err != nil {
		return err
	}
	names := make([]any, len(t.opts.ClassNames))
	for i, n := range t.opts.ClassNames {
		names[i] = n
	}
	run := &torch.Dict{}
	run.Set("format", int64(1))
	run.Set("config", string(doc))
	run.Set("class_names", names)
	run.Set("seed", int64(t.cfg.Seed))
	run.Set("rng", rngRule)
	run.Set("next_epoch", int64(epoch+1))
	run.Set("early_stopping", trackerDict(t.es))
	run.Set("best", trackerDict(t.best))
	run.Set("history", string(history))
	extra.Set(runKey, run)
	return ckpt.SaveCheckpoint(path, t.model, ckpt.Meta{Epoch: int64(epoch), GlobalStep: t.globalStep, Extra: extra})
}

func trackerDict(e *earlyStopping) *torch.Dict {
	d := &torch.Dict{}
	d.Set("monitor", e.Monitor)
	d.Set("best", e.bestValue)
	d.Set("wait", int64(e.wait))
	d.Set("stopped", e.stopped)
	d.Set("stopped_epoch", int64(e.stoppedEpoch))
	d.Set("reason", e.reason)
	return d
}

func (e *earlyStopping) restore(d *torch.Dict) error {
	if m, _ := d.Get("monitor"); m != e.Monitor {
		return fmt.Errorf("the checkpoint monitored %v, the config monitors %s", m, e.Monitor)
	}
	best, ok1 := getFloat(d, "best")
	wait, ok2 := getInt(d, "wait")
	stoppedEpoch, ok3 := getInt(d, "stopped_epoch")
	stopped, ok4 := get[bool](d, "stopped")
	reason, ok5 := get[string](d, "reason")
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return errors.New("incomplete early-stopping state")
	}
	e.bestValue, e.wait, e.stoppedEpoch, e.stopped, e.reason = best, int(wait), int(stoppedEpoch), stopped, reason
	return nil
}

func get[T any](d *torch.Dict, key string) (T, bool) {
	v, _ := d.Get(key)
	x, ok := v.(T)
	return x, ok
}

func getInt(d *torch.Dict, key string) (int64, bool) { return get[int64](d, key) }

func getFloat(d *torch.Dict, key string) (float64, bool) {
	v, _ := d.Get(key)
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	}
	return math.NaN(), false
}

// resume restores a run from one of its checkpoints: weights, optimiser
// state, epoch and step counters, early stopping, best model and metrics
// history. The model's configuration must be the checkpoint's.
func (t *trainer) resume(path string) error {
	ck, err := ckpt.ReadCheckpoint(path)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	defer ck.Close()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("resume from %s: %s", path, fmt.Sprintf(format, args...))
	}
	if ck.Extra == nil {
		return fail("not a checkpoint of deeppacket train (no %s entry)", runKey)
	}
	rv, _ := ck.Extra.Get(runKey)
	run, ok := rv.(*torch.Dict)
	if !ok {
		return fail("not a checkpoint of deeppacket train (no %s entry)", runKey)
	}
	spec, err := Spec(t.cfg)
	if err != nil {
		return err
	}
	if ck.Spec.Kind != spec.Kind {
		return fail("it holds a %s, the config builds a %s", ck.Spec.Kind, spec.Kind)
	}
	for _, v := range t.model.Store().Vars() {
		if got, ok := ck.StateDict[v.Name]; !ok || !slices.Equal(got.Shape(), v.Tensor.Shape()) {
			return fail("its model differs from the config's at %s (did the model settings change?)", v.Name)
		}
	}
	if err := t.model.Store().LoadStateDict(ck.StateDict); err != nil {
		return fail("%v", err)
	}
	osv, _ := ck.Extra.Get("optimizer_states")
	states, ok := osv.([]any)
	if !ok || len(states) != 1 {
		return fail("no optimizer state")
	}
	if err := t.opt.LoadStateDict(states[0]); err != nil {
		return fail("%v", err)
	}
	t.opt.SetLR(t.cfg.Optimizer.LR)
	next, ok := getInt(run, "next_epoch")
	if !ok {
		return fail("no next_epoch")
	}
	if seed, _ := getInt(run, "seed"); uint64(seed) != t.cfg.Seed {
		return fail("its seed is %d, the config's %d: the resumed run would not continue it", seed, t.cfg.Seed)
	}
	for _, tr := range []struct {
		key string
		e   *earlyStopping
	}{{"early_stopping", t.es}, {"best", t.best}} {
		d, ok := get[*torch.Dict](run, tr.key)
		if !ok {
			return fail("no %s state", tr.key)
		}
		if err := tr.e.restore(d); err != nil {
			return fail("%s: %v", tr.key, err)
		}
	}
	hist, _ := get[string](run, "history")
	if err := json.Unmarshal([]byte(hist), &t.history); err != nil {
		return fail("metrics history: %v", err)
	}
	t.nextEpoch, t.globalStep = int(next), ck.GlobalStep
	if !t.cfg.EarlyStopping.Enabled {
		t.es.stopped = false
	}
	return nil
}

// initFrom loads the weights of the model file at path into m: strictly,
// every tensor and shape (config init_from).
func initFrom(m model.Model, path string) error {
	c, err := ckpt.ReadCheckpoint(path)
	if err != nil {
		return fmt.Errorf("config init_from: %w", err)
	}
	defer c.Close()
	if c.Spec.Kind != m.Kind() {
		return fmt.Errorf("config init_from %s: a %s model, the config's is a %s", path, c.Spec.Kind, m.Kind())
	}
	if err := m.Store().LoadStateDict(c.StateDict); err != nil {
		return fmt.Errorf("config init_from %s: %w", path, err)
	}
	return nil
}
