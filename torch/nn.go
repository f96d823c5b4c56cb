package torch

import (
	"fmt"
	"math"
)

// Module is a layer: Forward maps a tensor to a tensor, carrying errors in
// the result (see the package doc).
type Module interface {
	Forward(x *Tensor) *Tensor
}

// Layer builds a module at a path; Sequential hands each layer the path of
// its index.
type Layer func(p Path) (Module, error)

// Sequential is nn.Sequential: children named "0", "1", … in order.
type Sequential struct{ Modules []Module }

// NewSequential builds the layers at p.0, p.1, … in order (so parameters are
// created, and the random generator drawn, in PyTorch's order).
func NewSequential(p Path, layers ...Layer) (*Sequential, error) {
	seq := &Sequential{}
	for i, build := range layers {
		m, err := build(p.Sub(fmt.Sprint(i)))
		if err != nil {
			return nil, err
		}
		seq.Modules = append(seq.Modules, m)
	}
	return seq, nil
}

// Forward applies the children in order (Chain).
func (s *Sequential) Forward(x *Tensor) *Tensor { return Chain(x, s.Modules...) }

// kaimingUniform_ is nn.init.kaiming_uniform_(t, a=√5), the default
// initialisation of nn.Linear and nn.Conv*d weights, computed in float64
// exactly as PyTorch's Python does.
func kaimingUniform_(t *Tensor, fanIn int64) error {
	negativeSlope := math.Sqrt(5)
	gain := math.Sqrt(2.0 / (1 + math.Pow(negativeSlope, 2)))
	std := gain / math.Sqrt(float64(fanIn))
	bound := math.Sqrt(3.0) * std
	return t.Uniform_(-bound, bound)
}

// biasUniform_ is the bias initialisation of nn.Linear and nn.Conv*d.
func biasUniform_(t *Tensor, fanIn int64) error {
	bound := 0.0
	if fanIn > 0 {
		bound = 1 / math.Sqrt(float64(fanIn))
	}
	return t.Uniform_(-bound, bound)
}

// Conv1dConfig is nn.Conv1d's constructor arguments; zero Stride, Dilation
// and Groups mean 1, and NoBias is bias=False.
type Conv1dConfig struct {
	In, Out, Kernel                   int64
	Stride, Padding, Dilation, Groups int64
	NoBias                            bool
}

// Conv1d is nn.Conv1d.
type Conv1d struct {
	Weight, Bias *Tensor // Bias nil when NoBias
	Options      Conv1dOptions
}

// NewConv1d creates weight [Out, In/Groups, Kernel] and bias [Out] at p and
// initialises them as nn.Conv1d.reset_parameters.
func NewConv1d(p Path, c Conv1dConfig) (*Conv1d, error) {
	groups := orOne(c.Groups)
	if c.In%groups != 0 || c.Out%groups != 0 {
		return nil, fmt.Errorf("conv1d %s: in %d and out %d channels must divide by groups %d", p.prefix, c.In, c.Out, groups)
	}
	m := &Conv1d{Options: Conv1dOptions{Stride: c.Stride, Padding: c.Padding, Dilation: c.Dilation, Groups: groups}}
	var err error
	if m.Weight, err = p.Param("weight", c.Out, c.In/groups, c.Kernel); err != nil {
		return nil, err
	}
	fanIn := c.In / groups * c.Kernel
	if err := kaimingUniform_(m.Weight, fanIn); err != nil {
		return nil, fmt.Errorf("init %s: %w", p.Name("weight"), err)
	}
	if !c.NoBias {
		if m.Bias, err = p.Param("bias", c.Out); err != nil {
			return nil, err
		}
		if err := biasUniform_(m.Bias, fanIn); err != nil {
			return nil, fmt.Errorf("init %s: %w", p.Name("bias"), err)
		}
	}
	return m, nil
}

// Conv1dLayer is NewConv1d as a Sequential layer.
func Conv1dLayer(c Conv1dConfig) Layer {
	return func(p Path) (Module, error) { return NewConv1d(p, c) }
}

// Forward is conv1d.
func (m *Conv1d) Forward(x *Tensor) *Tensor { return x.Conv1d(m.Weight, m.Bias, m.Options) }

// Linear is nn.Linear.
type Linear struct{ Weight, Bias *Tensor }

// NewLinear creates weight [out, in] and bias [out] at p, initialised as
// nn.Linear.reset_parameters.
func NewLinear(p Path, in, out int64) (*Linear, error) {
	m := &Linear{}
	var err error
	if m.Weight, err = p.Param("weight", out, in); err != nil {
		return nil, err
	}
	if err := kaimingUniform_(m.Weight, in); err != nil {
		return nil, fmt.Errorf("init %s: %w", p.Name("weight"), err)
	}
	if m.Bias, err = p.Param("bias", out); err != nil {
		return nil, err
	}
	if err := biasUniform_(m.Bias, in); err != nil {
		return nil, fmt.Errorf("init %s: %w", p.Name("bias"), err)
	}
	return m, nil
}

// LinearLayer is NewLinear as a Sequential layer.
func LinearLayer(in, out int64) Layer {
	return func(p Path) (Module, error) { return NewLinear(p, in, out) }
}

// Forward is linear.
func (m *Linear) Forward(x *Tensor) *Tensor { return x.Linear(m.Weight, m.Bias) }

// BatchNorm1d is nn.BatchNorm1d(features) with PyTorch's defaults: eps 1e-5,
// momentum 0.1, affine, tracking running statistics.
type BatchNorm1d struct {
	Weight, Bias, RunningMean, RunningVar, NumBatchesTracked *Tensor
	Momentum, Eps                                            float64
	store                                                    *Store
}

// NewBatchNorm1d creates weight (ones), bias (zeros) and the buffers
// running_mean (zeros), running_var (ones), num_batches_tracked (0) at p.
func NewBatchNorm1d(p Path, features int64) (*BatchNorm1d, error) {
	m := &BatchNorm1d{Momentum: 0.1, Eps: 1e-5, store: p.store}
	var err error
	if m.Weight, err = p.store.register(p.Name("weight"), Full(nil, []int64{features}, 1, Float32, CPU), false); err != nil {
		return nil, err
	}
	if m.Bias, err = p.Param("bias", features); err != nil {
		return nil, err
	}
	if m.RunningMean, err = p.Buffer("running_mean", Zeros(nil, []int64{features}, Float32, CPU)); err != nil {
		return nil, err
	}
	if m.RunningVar, err = p.Buffer("running_var", Full(nil, []int64{features}, 1, Float32, CPU)); err != nil {
		return nil, err
	}
	if m.NumBatchesTracked, err = p.Buffer("num_batches_tracked", Zeros(nil, nil, Int64, CPU)); err != nil {
		return nil, err
	}
	return m, nil
}

// Forward normalises with batch statistics in training mode (updating the
// running ones and counting the batch) and with running statistics in eval.
func (m *BatchNorm1d) Forward(x *Tensor) *Tensor {
	training := m.store.Training()
	if training && x.Err() == nil {
		one := Full(nil, nil, 1, Int64, m.store.device)
		counted := m.NumBatchesTracked.Add_(one, 1)
		one.Free()
		if err := counted.Err(); err != nil {
			return failed(fmt.Errorf("count batches: %w", err))
		}
	}
	return x.BatchNorm(m.Weight, m.Bias, m.RunningMean, m.RunningVar, training, m.Momentum, m.Eps)
}

// Dropout is nn.Dropout(p): active only in training mode.
type Dropout struct {
	P     float64
	store *Store
}

// DropoutLayer is nn.Dropout(prob) as a Sequential layer.
func DropoutLayer(prob float64) Layer {
	return func(p Path) (Module, error) { return &Dropout{P: prob, store: p.store}, nil }
}

// Forward is dropout in training mode and the identity in eval mode.
func (m *Dropout) Forward(x *Tensor) *Tensor { return x.Dropout(m.P, m.store.Training()) }

// ReLU is nn.ReLU.
type ReLU struct{}

// ReLULayer is nn.ReLU as a Sequential layer.
func ReLULayer() Layer { return func(Path) (Module, error) { return ReLU{}, nil } }

// Forward is relu.
func (ReLU) Forward(x *Tensor) *Tensor { return x.ReLU() }

// MaxPool1d is nn.MaxPool1d.
type MaxPool1d struct{ Options MaxPool1dOptions }

// Forward is max_pool1d.
func (m MaxPool1d) Forward(x *Tensor) *Tensor { return x.MaxPool1d(m.Options) }
