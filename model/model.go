// Package model holds the Deep Packet models over package torch — the
// reference's CNN and ResNet, parameter for parameter, and the paper's
// stacked autoencoder — and what classifying with one needs (Batch,
// Classifier, Probabilities). It owns the modules only: the file formats a
// model is read from and written to (Lightning checkpoints, safetensors,
// TorchScript files) are package ckpt's.
//
// Names follow the reference (github.com/munhouiani/Deep-Packet, ml/model.py)
// exactly: hyperparameters are its constructor arguments and parameter names
// its state_dict keys ("conv1.0.weight", "fc1.0.bias", …), so its published
// checkpoints load one to one and ours load into its modules.
//
// TorchScript attributes cannot contain dots, so an exported TorchScript
// module names each tensor by its state_dict key with dots replaced by
// underscores: "conv1.0.weight" is self.conv1_0_weight (see TorchScriptName
// and TorchScriptSource, which ckpt.ExportTorchScript compiles).
//
// Imports: torch, labels, data/features (a model's preprocessing options);
// never ckpt, train or cmd.
package model

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/torch"
)

// Kind names a model architecture.
type Kind string

// The architectures.
const (
	KindCNN    Kind = "cnn"
	KindResNet Kind = "resnet"
	KindSAE    Kind = "sae"
)

// ParseKind reads "cnn", "resnet" or "sae".
func ParseKind(s string) (Kind, error) {
	switch k := Kind(strings.ToLower(s)); k {
	case KindCNN, KindResNet, KindSAE:
		return k, nil
	}
	return "", fmt.Errorf("model kind %q: want cnn, resnet or sae", s)
}

// HParams are a model's hyperparameters by the reference's names
// (c1_output_dim, …, output_dim, signal_length, and data_path, which the
// reference saves too). Values are int64, float64, string or []any as read
// from a checkpoint; Int reads integers whatever their Go type.
type HParams map[string]any

// Int returns hyperparameter name as an int64.
func (h HParams) Int(name string) (int64, error) {
	switch v := h[name].(type) {
	case int64:
		return v, nil
	case int:
		return int64(v), nil
	case float64:
		if v == math.Trunc(v) {
			return int64(v), nil
		}
	case nil:
		return 0, fmt.Errorf("hyperparameter %s is missing", name)
	}
	return 0, fmt.Errorf("hyperparameter %s = %v is not an integer", name, h[name])
}

// ints reads several integer hyperparameters at once.
func (h HParams) ints(names ...string) ([]int64, error) {
	out := make([]int64, len(names))
	for i, n := range names {
		v, err := h.Int(n)
		if err != nil {
			return nil, err
		}
		if v <= 0 {
			return nil, fmt.Errorf("hyperparameter %s = %d must be positive", n, v)
		}
		out[i] = v
	}
	return out, nil
}

// Clone copies h (values are not deep-copied; they are immutable scalars).
func (h HParams) Clone() HParams {
	out := make(HParams, len(h))
	for k, v := range h {
		out[k] = v
	}
	return out
}

// Spec is everything that decides a model besides its weights.
type Spec struct {
	Kind    Kind
	HParams HParams
	// Task gives the class names; zero means inferred from output_dim.
	Task labels.Task
	// Preprocessing is the packet transform the model expects (layout and
	// port masking; its SignalLength is the model's signal_length).
	// Reference checkpoints expect features.LayoutReference.
	Preprocessing features.Options
	// Dropout, when set, is every dropout layer's probability in training
	// (nil: the reference's, 0.05 in the dense layers and 0.5 in the
	// ResNet's blocks). It is not a hyperparameter: checkpoints do not keep
	// it, and inference does not use it.
	Dropout *float64
}

// Model is a Deep Packet classifier: feature vectors [batch, 1,
// signal_length] of bytes scaled to [0, 1] in, logits [batch, output_dim]
// out. Its parameters live in Store (dropout and batch norm follow the
// store's Train/Eval mode); Close frees them.
type Model interface {
	torch.Module
	Kind() Kind
	HParams() HParams
	Task() labels.Task
	// Preprocessing is the packet transform the model's inputs went
	// through, SignalLength included.
	Preprocessing() features.Options
	Store() *torch.Store
	OutputDim() int
	Close()
}

// base carries what every model shares.
type base struct {
	spec      Spec
	store     *torch.Store
	outputDim int
}

func (b *base) Kind() Kind                      { return b.spec.Kind }
func (b *base) HParams() HParams                { return b.spec.HParams.Clone() }
func (b *base) Task() labels.Task               { return b.spec.Task }
func (b *base) Store() *torch.Store             { return b.store }
func (b *base) OutputDim() int                  { return b.outputDim }
func (b *base) Close()                          { b.store.Close() }
func (b *base) Preprocessing() features.Options { return b.spec.Preprocessing }

// dropout is a dropout layer's probability: the spec's, or the
// reference's for that layer.
func (b *base) dropout(reference float64) float64 {
	if b.spec.Dropout != nil {
		return *b.spec.Dropout
	}
	return reference
}

// New builds a model from its spec with freshly initialised parameters,
// drawing from torch's default generator exactly as the reference's
// constructor does (torch.ManualSeed first gives PyTorch's weights).
func New(spec Spec) (Model, error) {
	spec.HParams = spec.HParams.Clone()
	signal, err := spec.HParams.ints("signal_length")
	if err != nil {
		return nil, err
	}
	out, err := spec.HParams.ints("output_dim")
	if err != nil {
		return nil, err
	}
	if spec.Task.Name == "" {
		spec.Task = labels.TaskForOutputDim(int(out[0]))
	}
	spec.Preprocessing.SignalLength = int(signal[0])
	b := base{spec: spec, store: torch.NewStore(), outputDim: int(out[0])}
	var m Model
	switch spec.Kind {
	case KindCNN:
		m, err = newCNN(b)
	case KindResNet:
		m, err = newResNet(b)
	case KindSAE:
		m, err = newSAE(b)
	default:
		err = fmt.Errorf("unknown model kind %q", spec.Kind)
	}
	if err != nil {
		b.store.Close()
		return nil, fmt.Errorf("build %s model: %w", spec.Kind, err)
	}
	return m, nil
}

// KindOf tells the architecture of a state_dict by its keys.
func KindOf(names []string) (Kind, error) {
	switch {
	case slices.Contains(names, "conv1.0.first_block_conv.conv.weight"):
		return KindResNet, nil
	case slices.Contains(names, "conv2.0.weight"):
		return KindCNN, nil
	case slices.Contains(names, "fc1.0.weight") && !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "conv") }):
		return KindSAE, nil
	}
	return "", fmt.Errorf("state_dict is neither the reference's CNN (conv2.0.weight) nor its ResNet (conv1.0.first_block_conv.conv.weight) nor an SAE (fc1.0.weight without conv layers)")
}

// denseHead builds the reference's fc1 (→200), fc2 (→100), fc3 (→50), each
// Linear, Dropout(0.05), ReLU, and out (50→output_dim).
func denseHead(root torch.Path, in, outputDim int64, dropout float64) (*head, error) {
	h := &head{}
	dims := []int64{in, 200, 100, 50}
	for i := range 3 {
		fc, err := torch.NewSequential(root.Sub(fmt.Sprintf("fc%d", i+1)),
			torch.LinearLayer(dims[i], dims[i+1]), torch.DropoutLayer(dropout), torch.ReLULayer())
		if err != nil {
			return nil, err
		}
		h.fc = append(h.fc, fc)
	}
	var err error
	if h.out, err = torch.NewLinear(root.Sub("out"), 50, outputDim); err != nil {
		return nil, err
	}
	return h, nil
}

// head is the reference's dense layers after the convolutions.
type head struct {
	fc  []*torch.Sequential
	out *torch.Linear
}

// Forward flattens x per sample and runs the dense layers.
func (h *head) Forward(x *torch.Tensor) *torch.Tensor {
	return torch.Tidy(x, func(x *torch.Tensor) *torch.Tensor {
		x = x.Reshape(x.Shape()[0], -1)
		for _, fc := range h.fc {
			x = fc.Forward(x)
		}
		return h.out.Forward(x)
	})
}

// pooledHead is what the CNN and the ResNet share after their convolutions:
// MaxPool1d(2), then the dense head, whose fc1 is sized by a dummy run
// through convs and the pool.
type pooledHead struct {
	convs func(*torch.Tensor) *torch.Tensor
	pool  torch.MaxPool1d
	head  *head
}

// newPooledHead builds the pool and the dense head after convs, whose
// parameters must already exist: the dummy draw comes between theirs and
// the head's, as in the reference's constructors.
func newPooledHead(b base, signal, outputDim int64, convs func(*torch.Tensor) *torch.Tensor) (pooledHead, error) {
	p := pooledHead{convs: convs, pool: torch.MaxPool1d{Options: torch.MaxPool1dOptions{Kernel: 2}}}
	flat, err := flatSize(signal, p.features)
	if err != nil {
		return p, err
	}
	p.head, err = denseHead(b.store.Root(), flat, outputDim, b.dropout(0.05))
	return p, err
}

func (p *pooledHead) features(x *torch.Tensor) *torch.Tensor {
	return torch.Chain(x, torch.Func(p.convs), p.pool)
}

// Forward maps [batch, 1, signal_length] to logits [batch, output_dim].
func (p *pooledHead) Forward(x *torch.Tensor) *torch.Tensor {
	return torch.Chain(x, torch.Func(p.features), p.head)
}

// flatSize runs a torch.rand(1, 1, signal_length) dummy through f, as the
// reference's constructors do to size fc1, and returns its element count.
// The draw matters: it advances the generator before fc1's initialisation.
func flatSize(signal int64, f func(*torch.Tensor) *torch.Tensor) (int64, error) {
	scope := torch.NewScope()
	defer scope.Close()
	y := f(torch.Rand(scope, []int64{1, 1, signal}, torch.Float32, torch.CPU))
	if err := y.Err(); err != nil {
		return 0, fmt.Errorf("size fc1 with a dummy input: %w", err)
	}
	return y.Numel(), nil
}

// DefaultHParams are the reference's settings for a model of kind on task
// (train_cnn.py, train_resnet.py), and the paper's SAE.
func DefaultHParams(kind Kind, task labels.Task) (HParams, error) {
	out := int64(task.OutputDim)
	switch kind {
	case KindCNN:
		h := HParams{"c1_output_dim": int64(200), "c2_output_dim": int64(200), "output_dim": out, "signal_length": int64(1500)}
		if task.Name == labels.Traffic.Name {
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
