package ckpt

import (
	"fmt"
	"strings"

	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// TorchScript files, both ways: a model written as a module that runs with
// no Deep Packet code (ExportTorchScript), and a module loaded as a
// model.Classifier (LoadScriptClassifier), an explicit opt-in because
// TorchScript is code.

// ExportTorchScript writes m as a TorchScript module (atomically): every
// parameter and buffer under its model.TorchScriptName, and a forward written in
// TorchScript (torch.conv1d, torch.batch_norm, torch.max_pool1d,
// torch.linear, …), so that Python's torch.jit.load and C++'s
// torch::jit::load run it with no Deep Packet code. forward is inference:
// dropout off and batch norm on the running statistics, whatever m's mode.
// Input [batch, 1, signal_length] float32, output logits [batch,
// output_dim].
func ExportTorchScript(m model.Model, path string) error {
	sm, err := torch.NewScriptModule("DeepPacket" + strings.ToUpper(string(m.Kind()[:1])) + string(m.Kind()[1:]))
	if err != nil {
		return err
	}
	defer sm.Close()
	seen := map[string]string{}
	var made []*torch.Tensor
	defer func() {
		for _, t := range made {
			t.Free()
		}
	}()
	for _, v := range m.Store().Vars() {
		name := model.TorchScriptName(v.Name)
		if other, dup := seen[name]; dup {
			return fmt.Errorf("export %s: %s and %s both become %s", path, other, v.Name, name)
		}
		seen[name] = v.Name
		t := v.Tensor.CPUCopy()
		made = append(made, t)
		if err := sm.Register(name, t, v.Buffer); err != nil {
			return fmt.Errorf("export %s: %s: %w", path, v.Name, err)
		}
	}
	src, err := model.TorchScriptSource(m)
	if err != nil {
		return fmt.Errorf("export %s: %w", path, err)
	}
	if err := sm.Define(src); err != nil {
		return fmt.Errorf("export %s: compile forward: %w\n%s", path, err, src)
	}
	return sm.Save(path)
}

// ScriptClassifier is a TorchScript module taking [batch, 1, signal_length]
// bytes/255 and giving logits, as `deeppacket export --format torchscript`
// and `train` (model.pt) write it. TorchScript is code: load one only from a
// source you trust.
type ScriptClassifier struct {
	module *torch.ScriptModule
	device torch.Device
	task   labels.Task
	prep   features.Options
	out    int
}

// LoadScriptClassifier loads the TorchScript module at path onto device,
// in eval mode. Its inputs are taken to be signalLength bytes in the
// reference layout; task names its classes ("" tells them from its output
// size, which one forward pass of zeros measures).
func LoadScriptClassifier(path string, device torch.Device, task string, signalLength int) (*ScriptClassifier, error) {
	m, err := torch.LoadScriptModule(path, device)
	if err != nil {
		return nil, err
	}
	c := &ScriptClassifier{module: m, device: device, prep: features.Options{Layout: features.LayoutReference, SignalLength: signalLength}}
	err = torch.NoGrad(func() error {
		s := torch.NewScope()
		defer s.Close()
		shape := m.Forward(torch.Zeros(s, []int64{1, 1, int64(signalLength)}, torch.Float32, device)).Shape()
		if len(shape) != 2 || shape[0] != 1 {
			return fmt.Errorf("its output for one packet has shape %v, want [1, classes]", shape)
		}
		c.out = int(shape[1])
		return nil
	})
	if err == nil {
		c.task = labels.TaskForOutputDim(c.out)
		if task != "" {
			if c.task, err = labels.ParseTask(task); err == nil && c.out < c.task.Classes {
				err = fmt.Errorf("--task %s has %d classes, the model %d outputs", task, c.task.Classes, c.out)
			}
		}
	}
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return c, nil
}

func (c *ScriptClassifier) Forward(x *torch.Tensor) *torch.Tensor { return c.module.Forward(x) }
func (c *ScriptClassifier) Device() torch.Device                  { return c.device }
func (c *ScriptClassifier) Task() labels.Task                     { return c.task }
func (c *ScriptClassifier) Preprocessing() features.Options       { return c.prep }
func (c *ScriptClassifier) OutputDim() int                        { return c.out }
func (c *ScriptClassifier) Training() bool                        { return false }

// Close frees the module.
func (c *ScriptClassifier) Close() { c.module.Close() }
