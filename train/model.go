package train

import (
	"fmt"

	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// Spec is the model cfg describes: its kind, the reference's
// hyperparameters for that kind, the task and the preprocessing layout.
func Spec(cfg Config) (model.Spec, error) {
	kind, err := model.ParseKind(cfg.Model.Kind)
	if err != nil {
		return model.Spec{}, err
	}
	task, err := labels.ParseTask(cfg.Task)
	if err != nil {
		return model.Spec{}, err
	}
	layout, err := features.ParseLayout(cfg.Layout)
	if err != nil {
		return model.Spec{}, err
	}
	m := cfg.Model
	h := model.HParams{"output_dim": m.OutputDim, "signal_length": m.SignalLength}
	switch kind {
	case model.KindCNN:
		h["c1_output_dim"], h["c1_kernel_size"], h["c1_stride"] = m.C1OutputDim, m.C1KernelSize, m.C1Stride
		h["c2_output_dim"], h["c2_kernel_size"], h["c2_stride"] = m.C2OutputDim, m.C2KernelSize, m.C2Stride
		h["data_path"] = cfg.Data.Train
	case model.KindResNet:
		h["c1_output_dim"], h["c1_kernel_size"], h["c1_stride"] = m.C1OutputDim, m.C1KernelSize, m.C1Stride
		h["c1_groups"], h["c1_n_block"] = m.C1Groups, m.C1NBlock
		h["data_path"] = cfg.Data.Train
	case model.KindSAE:
		dims := make([]any, len(m.HiddenDims))
		for i, d := range m.HiddenDims {
			dims[i] = d
		}
		h["hidden_dims"] = dims
	}
	if task.OutputDim != int(m.OutputDim) {
		// A head of another size (a user's own label set): names by id.
		task = labels.TaskForOutputDim(int(m.OutputDim))
	}
	spec := model.Spec{Kind: kind, HParams: h, Task: task, Preprocessing: features.Options{Layout: layout, MaskPorts: cfg.MaskPorts}}
	if m.Dropout >= 0 {
		spec.Dropout = &m.Dropout
	}
	return spec, nil
}

// ClassNames are the names of a model's output classes, by id.
func ClassNames(task labels.Task, outputDim int) []string {
	names := make([]string, outputDim)
	for i := range names {
		names[i] = task.ClassName(i)
	}
	return names
}

// toDevice moves a model built on the CPU to device.
func toDevice(m model.Model, device torch.Device) error {
	if device == m.Store().Device() {
		return nil
	}
	if err := m.Store().To(device); err != nil {
		return fmt.Errorf("move the model to %s: %w", device, err)
	}
	return nil
}
