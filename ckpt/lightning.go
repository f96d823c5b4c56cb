package ckpt

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// Checkpoints are PyTorch Lightning's layout, which the reference publishes
// (.ckpt, and its .model files, which are the same): a torch.save'd dict
// with state_dict, hyper_parameters, hparams_name, epoch, global_step,
// pytorch-lightning_version, and training state (optimizer_states, loops,
// callbacks, lr_schedulers). Ours add one entry, "deeppacket", recording
// what the reference's files leave implicit: the model kind, the task and
// the preprocessing the model was trained on.

// LightningVersion is the pytorch-lightning_version our checkpoints carry:
// the reference's (its published checkpoints were written by 1.7.7).
const LightningVersion = "1.7.7"

// metaKey is our entry in a checkpoint.
const metaKey = "deeppacket"

// Checkpoint is what a checkpoint file holds. Its tensors are unscoped and
// on the CPU; Close frees them.
type Checkpoint struct {
	Path             string
	Epoch            int64
	GlobalStep       int64
	LightningVersion string
	// Spec is the model the state_dict belongs to: from our "deeppacket"
	// entry, else told from the state_dict's keys, with the task from
	// output_dim and the reference layout.
	Spec model.Spec
	// Names lists the state_dict's keys in file order.
	Names     []string
	StateDict map[string]*torch.Tensor
	// Extra holds every other top-level entry as read (optimizer_states,
	// loops, callbacks, …), for resuming; see torch.Optimizer.StateDict.
	Extra *torch.Dict
}

// ReadCheckpoint reads a Lightning checkpoint safely: only tensors and
// plain data are built (ErrUnsafe for any other Python global). A
// safetensors file (see SaveSafetensors) is read as a checkpoint too.
func ReadCheckpoint(path string) (*Checkpoint, error) {
	if isSafetensors(path) {
		return readSafetensors(path)
	}
	a, err := openArchive(path)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	tree, err := a.unpickle()
	if err != nil {
		return nil, err
	}
	c, err := checkpointFrom(path, tree)
	if err != nil {
		torch.FreeTree(tree)
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return c, nil
}

func checkpointFrom(path string, tree any) (*Checkpoint, error) {
	top, ok := tree.(*torch.Dict)
	if !ok {
		return nil, fmt.Errorf("the pickle holds a %T, not a checkpoint dict", tree)
	}
	c := &Checkpoint{Path: path, StateDict: map[string]*torch.Tensor{}, Extra: &torch.Dict{}}
	var hp model.HParams
	var meta *torch.Dict
	for i, k := range top.Keys {
		v := top.Values[i]
		switch k {
		case "state_dict":
			sd, ok := v.(*torch.Dict)
			if !ok {
				return nil, fmt.Errorf("state_dict is a %T, not a dict", v)
			}
			for j, name := range sd.Keys {
				s, ok1 := name.(string)
				t, ok2 := sd.Values[j].(*torch.Tensor)
				if !ok1 || !ok2 {
					return nil, fmt.Errorf("state_dict entry %v is a %T, not a tensor", name, sd.Values[j])
				}
				c.Names = append(c.Names, s)
				c.StateDict[s] = t
			}
		case "hyper_parameters":
			d, ok := v.(*torch.Dict)
			if !ok {
				return nil, fmt.Errorf("hyper_parameters is a %T, not a dict", v)
			}
			hp = model.HParams{}
			for j, name := range d.Keys {
				if s, ok := name.(string); ok {
					hp[s] = d.Values[j]
				}
			}
		case "epoch":
			c.Epoch, _ = v.(int64)
		case "global_step":
			c.GlobalStep, _ = v.(int64)
		case "pytorch-lightning_version":
			c.LightningVersion, _ = v.(string)
		case metaKey:
			meta, _ = v.(*torch.Dict)
		default:
			c.Extra.Set(k, v)
		}
	}
	if len(c.Names) == 0 {
		return nil, errors.New("no state_dict: not a model checkpoint")
	}
	if hp == nil {
		return nil, errors.New("no hyper_parameters: cannot tell the model's sizes")
	}
	spec, err := specFrom(c.Names, hp, meta)
	if err != nil {
		return nil, err
	}
	c.Spec = spec
	return c, nil
}

// specFrom is the model a state_dict's names and hyperparameters describe,
// with our entry's kind, task and preprocessing when there is one (meta
// nil: none), else the kind told from the names, the task from output_dim
// and the reference layout.
func specFrom(names []string, hp model.HParams, meta *torch.Dict) (model.Spec, error) {
	kind, err := model.KindOf(names)
	if err != nil {
		return model.Spec{}, err
	}
	spec := model.Spec{Kind: kind, HParams: hp, Preprocessing: features.Options{Layout: features.LayoutReference}}
	if meta != nil {
		if err := readMeta(&spec, meta); err != nil {
			return model.Spec{}, fmt.Errorf("entry %s: %w", metaKey, err)
		}
	}
	if spec.Task.Name == "" {
		out, err := hp.Int("output_dim")
		if err != nil {
			return model.Spec{}, err
		}
		spec.Task = labels.TaskForOutputDim(int(out))
	}
	return spec, nil
}

// readMeta reads our entry: kind, task, layout, mask_ports.
func readMeta(s *model.Spec, d *torch.Dict) error {
	str := func(key string) string {
		v, _ := d.Get(key)
		out, _ := v.(string)
		return out
	}
	if k := str("kind"); k != "" {
		kind, err := model.ParseKind(k)
		if err != nil {
			return err
		}
		s.Kind = kind
	}
	if t := str("task"); t != "" {
		task, err := labels.ParseTask(t)
		if err != nil {
			return err
		}
		s.Task = task
	}
	layout, err := features.ParseLayout(str("layout"))
	if err != nil {
		return err
	}
	s.Preprocessing.Layout = layout
	if v, ok := d.Get("mask_ports"); ok {
		s.Preprocessing.MaskPorts, _ = v.(bool)
	}
	return nil
}

// specMeta is our entry for s.
func specMeta(s model.Spec) *torch.Dict {
	d := &torch.Dict{}
	d.Set("kind", string(s.Kind))
	d.Set("task", s.Task.Name)
	d.Set("layout", s.Preprocessing.Layout.String())
	d.Set("mask_ports", s.Preprocessing.MaskPorts)
	d.Set("format_version", int64(1))
	return d
}

// Close frees the checkpoint's tensors.
func (c *Checkpoint) Close() {
	for _, t := range c.StateDict {
		t.Free()
	}
	torch.FreeTree(c.Extra)
}

// Model builds the checkpoint's model and loads its state_dict strictly:
// every key, every shape (a mismatch names the tensor and both shapes). The
// model is in eval mode on the CPU.
func (c *Checkpoint) Model() (model.Model, error) {
	if err := c.checkFinite(); err != nil {
		return nil, err
	}
	m, err := model.New(c.Spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Path, err)
	}
	if err := m.Store().LoadStateDict(c.StateDict); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", c.Path, err)
	}
	m.Store().Train(false)
	return m, nil
}

// checkFinite refuses a state_dict with a NaN or infinite value: a model
// trained into divergence classifies nothing, silently.
func (c *Checkpoint) checkFinite() error {
	for _, name := range c.Names {
		t := c.StateDict[name]
		if dt := t.DType(); dt != torch.Float32 && dt != torch.Float64 {
			continue
		}
		values, err := t.Float64s()
		if err != nil {
			return fmt.Errorf("%s: %s: %w", c.Path, name, err)
		}
		for i, v := range values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("%s: tensor %s holds %v (element %d): the model diverged, or the file is damaged", c.Path, name, v, i)
			}
		}
	}
	return nil
}

// ReadModel reads a checkpoint and builds its model (ReadCheckpoint, then
// Model), for callers that need what the checkpoint records besides the
// model too. The caller closes both.
func ReadModel(path string) (*Checkpoint, model.Model, error) {
	c, err := ReadCheckpoint(path)
	if err != nil {
		return nil, nil, err
	}
	m, err := c.Model()
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, m, nil
}

// Load reads the model of a checkpoint: ReadCheckpoint, then Model, in eval
// mode on the CPU (Store().To moves it).
func Load(path string) (model.Model, error) {
	c, err := ReadCheckpoint(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Model()
}

// Meta is what a checkpoint records besides the model.
type Meta struct {
	Epoch, GlobalStep int64
	// Extra entries, written as they are (torch.SavePickle's Go types):
	// "optimizer_states": []any{opt.StateDict()} lets a run resume; a
	// Checkpoint's Extra passes a read checkpoint's training state on.
	Extra *torch.Dict
}

// SaveCheckpoint writes m in Lightning's layout, atomically: state_dict
// (in the model's order), hyper_parameters, hparams_name, epoch,
// global_step, pytorch-lightning_version, our "deeppacket" entry and
// meta.Extra. Python's torch.load reads it and the reference's
// LightningModule.load_from_checkpoint loads it.
func SaveCheckpoint(path string, m model.Model, meta Meta) error {
	state := &torch.Dict{}
	var made []*torch.Tensor
	defer func() {
		for _, t := range made {
			t.Free()
		}
	}()
	for _, v := range m.Store().Vars() {
		// Detached CPU copies: torch.load then gives plain tensors on the
		// CPU, as Lightning's own checkpoints hold.
		t := v.Tensor.CPUCopy()
		made = append(made, t)
		if err := t.Err(); err != nil {
			return fmt.Errorf("save %s: %s: %w", path, v.Name, err)
		}
		state.Set(v.Name, t)
	}
	hp := &torch.Dict{}
	h := m.HParams()
	if m.Kind() != model.KindSAE {
		// The reference's constructors take data_path; load_from_checkpoint
		// passes hyper_parameters as keyword arguments.
		if _, ok := h["data_path"]; !ok {
			h["data_path"] = ""
		}
	}
	names := slices.Sorted(maps.Keys(h))
	order := append(slices.Clone(model.CNNHParams), model.ResNetHParams...)
	order = append(order, "data_path")
	slices.SortStableFunc(names, func(a, b string) int {
		return orderIndex(order, a) - orderIndex(order, b)
	})
	for _, k := range names {
		hp.Set(k, h[k])
	}
	top := &torch.Dict{}
	top.Set("epoch", meta.Epoch)
	top.Set("global_step", meta.GlobalStep)
	top.Set("pytorch-lightning_version", LightningVersion)
	top.Set("state_dict", state)
	if meta.Extra != nil {
		for i, k := range meta.Extra.Keys {
			top.Set(k, meta.Extra.Values[i])
		}
	}
	top.Set("hparams_name", "kwargs")
	top.Set("hyper_parameters", hp)
	spec := model.Spec{Kind: m.Kind(), Task: m.Task(), Preprocessing: m.Preprocessing()}
	top.Set(metaKey, specMeta(spec))
	if err := torch.SavePickle(path, top); err != nil {
		return err
	}
	return nil
}

func orderIndex(order []string, name string) int {
	if i := slices.Index(order, name); i >= 0 {
		return i
	}
	return len(order)
}
