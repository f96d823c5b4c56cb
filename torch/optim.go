package torch

// #include "dptorch.h"
import "C"

import (
	"fmt"
	"unsafe"
)

// AdamConfig is torch.optim.Adam's arguments (amsgrad and maximize off).
// Fused, as PyTorch 2's Adam(fused=True), updates each float32 CPU
// parameter in one pass over memory instead of seven; results agree with the
// unfused step within float32 rounding (a few ulps), not bit for bit.
type AdamConfig struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	Fused                              bool
}

// DefaultAdam is PyTorch's default Adam: lr 1e-3, betas (0.9, 0.999), eps 1e-8.
func DefaultAdam() AdamConfig { return AdamConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8} }

// AdamState is one parameter's state, as optimizer.state_dict()["state"][i].
// ExpAvg and ExpAvgSq are nil until the parameter's first gradient.
type AdamState struct {
	Step             float64
	ExpAvg, ExpAvgSq *Tensor
}

// Adam is torch.optim.Adam over a fixed list of parameters. Step runs the
// whole update in one call into libtorch.
type Adam struct {
	Config AdamConfig
	Params []*Tensor
	State  []AdamState
}

// NewAdam is torch.optim.Adam(params, ...).
func NewAdam(params []*Tensor, c AdamConfig) *Adam {
	return &Adam{Config: c, Params: params, State: make([]AdamState, len(params))}
}

// ZeroGrad is optimizer.zero_grad(set_to_none=True), PyTorch 2's default.
// PyTorch 1.13 zeroes instead; the next backward then gives identical
// gradients (0 + g is g), without a pass over memory to clear and another to
// accumulate.
func (a *Adam) ZeroGrad() error { return zeroGrads(a.Params) }

func zeroGrads(params []*Tensor) error {
	for i, p := range params {
		if err := p.ZeroGrad(true); err != nil {
			return fmt.Errorf("zero_grad param %d: %w", i, err)
		}
	}
	return nil
}

func handles(ts []*Tensor) []C.dpt_tensor {
	hs := make([]C.dpt_tensor, len(ts))
	for i, t := range ts {
		hs[i] = handle(t)
	}
	return hs
}

// first points at hs' first handle (nil when there is none), for the C
// API's arrays.
func first(hs []C.dpt_tensor) *C.dpt_tensor {
	if len(hs) == 0 {
		return nil
	}
	return &hs[0]
}

// adopt wraps state handles that the shim created, as unscoped tensors.
func adopt(dst **Tensor, h C.dpt_tensor) {
	if *dst == nil && h != nil {
		*dst = newTensor(h, nil, nil)
	}
}

// Step updates every parameter that has a gradient.
func (a *Adam) Step() error {
	n := len(a.Params)
	if n == 0 {
		return nil
	}
	params := handles(a.Params)
	avg := make([]C.dpt_tensor, n)
	avgSq := make([]C.dpt_tensor, n)
	steps := make([]C.double, n)
	for i, s := range a.State {
		avg[i], avgSq[i], steps[i] = handle(s.ExpAvg), handle(s.ExpAvgSq), C.double(s.Step)
	}
	c := a.Config
	err := check(C.dpt_adam_step((*C.dpt_tensor)(unsafe.Pointer(&params[0])), (*C.dpt_tensor)(unsafe.Pointer(&avg[0])),
		(*C.dpt_tensor)(unsafe.Pointer(&avgSq[0])), (*C.double)(unsafe.Pointer(&steps[0])), C.int(n),
		C.double(c.LR), C.double(c.Beta1), C.double(c.Beta2), C.double(c.Eps), C.double(c.WeightDecay), cBool(c.Fused)))
	for i := range a.State {
		adopt(&a.State[i].ExpAvg, avg[i])
		adopt(&a.State[i].ExpAvgSq, avgSq[i])
		a.State[i].Step = float64(steps[i])
	}
	if err != nil {
		return fmt.Errorf("adam step: %w", err)
	}
	return nil
}

// Close frees the optimiser's state.
func (a *Adam) Close() {
	for _, s := range a.State {
		s.ExpAvg.Free()
		s.ExpAvgSq.Free()
	}
}

// SGDConfig is torch.optim.SGD's arguments.
type SGDConfig struct {
	LR, Momentum, Dampening, WeightDecay float64
	Nesterov                             bool
}

// SGD is torch.optim.SGD.
type SGD struct {
	Config SGDConfig
	Params []*Tensor
	// MomentumBuffer[i] is nil until parameter i's first step with momentum.
	MomentumBuffer []*Tensor
}

// NewSGD is torch.optim.SGD(params, ...).
func NewSGD(params []*Tensor, c SGDConfig) *SGD {
	return &SGD{Config: c, Params: params, MomentumBuffer: make([]*Tensor, len(params))}
}

// ZeroGrad is optimizer.zero_grad(set_to_none=True), as Adam.ZeroGrad.
func (o *SGD) ZeroGrad() error { return zeroGrads(o.Params) }

// Step updates every parameter that has a gradient.
func (o *SGD) Step() error {
	n := len(o.Params)
	if n == 0 {
		return nil
	}
	params := handles(o.Params)
	bufs := handles(o.MomentumBuffer)
	c := o.Config
	err := check(C.dpt_sgd_step((*C.dpt_tensor)(unsafe.Pointer(&params[0])), (*C.dpt_tensor)(unsafe.Pointer(&bufs[0])),
		C.int(n), C.double(c.LR), C.double(c.Momentum), C.double(c.Dampening), C.double(c.WeightDecay), cBool(c.Nesterov)))
	for i := range o.MomentumBuffer {
		adopt(&o.MomentumBuffer[i], bufs[i])
	}
	if err != nil {
		return fmt.Errorf("sgd step: %w", err)
	}
	return nil
}

// Close frees the momentum buffers.
func (o *SGD) Close() {
	for _, b := range o.MomentumBuffer {
		b.Free()
	}
}
