package deeppacket

import (
	"fmt"

	"github.com/deeppacket/deeppacket/deeppacket/labels"
)

// Task is a classification task: which label a model predicts, how many
// outputs its head has and the names of its classes.
type Task struct {
	Name string // "application" or "traffic"; "" for an unknown task
	// OutputDim is the reference models' head size (17 and 12: its older
	// label sets were larger, and its checkpoints keep those heads).
	OutputDim int
	// Classes is the number of label ids in use (15 and 11).
	Classes   int
	className func(int) string
}

// The reference's two tasks.
var (
	Application = Task{Name: "application", OutputDim: labels.AppOutputDim, Classes: labels.NumApps, className: labels.AppName}
	Traffic     = Task{Name: "traffic", OutputDim: labels.TrafficOutputDim, Classes: labels.NumTraffic, className: labels.TrafficName}
)

// ParseTask reads "application" (or "app") and "traffic".
func ParseTask(s string) (Task, error) {
	switch s {
	case "application", "app":
		return Application, nil
	case "traffic":
		return Traffic, nil
	}
	return Task{}, fmt.Errorf("task %q: want application or traffic", s)
}

// TaskForOutputDim is the reference task whose head has n outputs, or an
// unnamed task of n classes.
func TaskForOutputDim(n int) Task {
	switch n {
	case Application.OutputDim:
		return Application
	case Traffic.OutputDim:
		return Traffic
	}
	return Task{OutputDim: n, Classes: n}
}

// ClassName is the name of label id, or "class <id>" for a task without
// names.
func (t Task) ClassName(id int) string {
	if t.className == nil {
		return fmt.Sprintf("class %d", id)
	}
	return t.className(id)
}

// DefaultHParams are the reference's settings for a model of kind on task
// (train_cnn.py, train_resnet.py), and the paper's SAE.
func DefaultHParams(kind Kind, task Task) (HParams, error) {
	out := int64(task.OutputDim)
	switch kind {
	case KindCNN:
		h := HParams{"c1_output_dim": int64(200), "c2_output_dim": int64(200), "output_dim": out, "signal_length": int64(1500)}
		if task.Name == Traffic.Name {
			h["c1_kernel_size"], h["c1_stride"], h["c2_kernel_size"], h["c2_stride"] = int64(5), int64(3), int64(4), int64(3)
		} else {
			h["c1_kernel_size"], h["c1_stride"], h["c2_kernel_size"], h["c2_stride"] = int64(4), int64(3), int64(5), int64(1)
		}
		return h, nil
	case KindResNet:
		return HParams{"c1_output_dim": int64(16), "c1_kernel_size": int64(5), "c1_stride": int64(3), "c1_groups": int64(1),
			"c1_n_block": int64(4), "output_dim": out, "signal_length": int64(1500)}, nil
	case KindSAE:
		return HParams{"hidden_dims": []any{int64(400), int64(300), int64(200), int64(100), int64(50)}, "output_dim": out, "signal_length": int64(1500)}, nil
	}
	return nil, fmt.Errorf("unknown model kind %q", kind)
}
