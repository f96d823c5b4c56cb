package torch

import (
	"errors"
	"fmt"
	"slices"
)

// Optimizer is torch.optim.Optimizer: one step over a fixed list of
// parameters, and its state as optimizer.state_dict() lays it out, so that
// a checkpoint of any optimiser resumes the same way. Adam and SGD implement
// it.
type Optimizer interface {
	// ZeroGrad is optimizer.zero_grad(set_to_none=True).
	ZeroGrad() error
	// Step updates every parameter that has a gradient.
	Step() error
	// StateDict is optimizer.state_dict(): "state", a dict from parameter
	// index (int64) to that parameter's state (tensors as new CPU copies),
	// holding only parameters that have state, and "param_groups", one
	// group of the hyperparameters with "params" listing the indices. The
	// caller frees it with FreeTree once saved.
	StateDict() *Dict
	// LoadStateDict is optimizer.load_state_dict(sd): a StateDict of the
	// same optimiser over the same parameters in the same order (as read
	// from a checkpoint). It restores the state (copied onto each
	// parameter's device) and the group's lr.
	LoadStateDict(sd any) error
	// SetLR sets the learning rate (param_groups[0]["lr"]).
	SetLR(lr float64)
	// Close frees the state.
	Close()
}

var (
	_ Optimizer = (*Adam)(nil)
	_ Optimizer = (*SGD)(nil)
)

// FreeTree frees the tensors of a tree of Dicts, lists and tensors, such as
// a StateDict once saved or a pickle's tree.
func FreeTree(v any) {
	switch x := v.(type) {
	case *Tensor:
		x.Free()
	case []any:
		for _, item := range x {
			FreeTree(item)
		}
	case *Dict:
		for _, item := range x.Values {
			FreeTree(item)
		}
	}
}

// stateDict lays out a state_dict: state[i] for every i with state, and one
// param group of hyperparameters over n parameters.
func stateDict(n int, state func(i int) *Dict, group [][2]any) *Dict {
	st := &Dict{}
	for i := range n {
		if s := state(i); s != nil {
			st.Set(int64(i), s)
		}
	}
	params := make([]any, n)
	for i := range params {
		params[i] = int64(i)
	}
	g := &Dict{}
	for _, kv := range group {
		g.Set(kv[0], kv[1])
	}
	g.Set("params", params)
	out := &Dict{}
	out.Set("state", st)
	out.Set("param_groups", []any{g})
	return out
}

// loadStateDict reads a state_dict over params: the group's lr (when there
// is one) into lr, and each parameter's state dict to restore.
func loadStateDict(sd any, params []*Tensor, lr *float64, restore func(i int, st *Dict) error) error {
	top, ok := sd.(*Dict)
	if !ok {
		return fmt.Errorf("optimizer state is a %T, not a dict", sd)
	}
	groups, _ := top.Get("param_groups")
	if gl, ok := groups.([]any); ok && len(gl) == 1 {
		if g, ok := gl[0].(*Dict); ok {
			if p, ok := g.Get("params"); ok {
				if pl, ok := p.([]any); ok && len(pl) != len(params) {
					return fmt.Errorf("optimizer state covers %d parameters, the model has %d", len(pl), len(params))
				}
			}
			if v, ok := g.Get("lr"); ok {
				if f, ok := v.(float64); ok {
					*lr = f
				}
			}
		}
	}
	rawState, _ := top.Get("state")
	state, ok := rawState.(*Dict)
	if !ok {
		return errors.New("optimizer state has no state dict")
	}
	for i, k := range state.Keys {
		idx, ok := k.(int64)
		if !ok || idx < 0 || int(idx) >= len(params) {
			return fmt.Errorf("optimizer state for parameter %v: the model has %d", k, len(params))
		}
		st, ok := state.Values[i].(*Dict)
		if !ok {
			return fmt.Errorf("optimizer state %d is a %T", idx, state.Values[i])
		}
		if err := restore(int(idx), st); err != nil {
			return fmt.Errorf("optimizer state %d: %w", idx, err)
		}
	}
	return nil
}

// stateTensor is st[name] copied onto param's device as float32, checked
// to have param's shape; the caller owns it.
func stateTensor(st *Dict, name string, param *Tensor) (*Tensor, error) {
	v, _ := st.Get(name)
	t, ok := v.(*Tensor)
	if !ok {
		return nil, fmt.Errorf("%s is a %T", name, v)
	}
	if want, got := param.Shape(), t.Shape(); !slices.Equal(want, got) {
		return nil, fmt.Errorf("%s has shape %v, the parameter %v", name, got, want)
	}
	dev, err := param.Device()
	if err != nil {
		return nil, err
	}
	moved := t.ToType(dev, Float32)
	c := moved.Clone()
	moved.Free()
	if err := c.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// stateScalar reads a number stored as a Python number or a one-element
// tensor.
func stateScalar(d *Dict, key string) (float64, error) {
	v, _ := d.Get(key)
	switch x := v.(type) {
	case float64:
		return x, nil
	case int64:
		return float64(x), nil
	case *Tensor:
		return x.Item()
	}
	return 0, fmt.Errorf("%s is a %T", key, v)
}

// StateDict is Adam's optimizer.state_dict() in PyTorch 1.13's layout (step
// as a float tensor), as Lightning stores it in optimizer_states; PyTorch
// 2.x loads it too.
func (a *Adam) StateDict() *Dict {
	c := a.Config
	return stateDict(len(a.Params), func(i int) *Dict {
		if i >= len(a.State) || a.State[i].ExpAvg == nil {
			return nil
		}
		s := a.State[i]
		st := &Dict{}
		st.Set("step", FromSlice(nil, []float32{float32(s.Step)}, []int64{}, CPU))
		st.Set("exp_avg", s.ExpAvg.CPUCopy())
		st.Set("exp_avg_sq", s.ExpAvgSq.CPUCopy())
		return st
	}, [][2]any{{"lr", c.LR}, {"betas", []any{c.Beta1, c.Beta2}}, {"eps", c.Eps}, {"weight_decay", c.WeightDecay},
		{"amsgrad", false}, {"maximize", false}, {"foreach", nil}, {"capturable", false}})
}

// LoadStateDict restores an Adam state_dict (StateDict's, or a Lightning
// checkpoint's optimizer_states[0]).
func (a *Adam) LoadStateDict(sd any) error {
	if len(a.State) < len(a.Params) {
		a.State = append(a.State, make([]AdamState, len(a.Params)-len(a.State))...)
	}
	return loadStateDict(sd, a.Params, &a.Config.LR, func(i int, st *Dict) error {
		step, err := stateScalar(st, "step")
		if err != nil {
			return err
		}
		avg, err := stateTensor(st, "exp_avg", a.Params[i])
		if err != nil {
			return err
		}
		avgSq, err := stateTensor(st, "exp_avg_sq", a.Params[i])
		if err != nil {
			avg.Free()
			return err
		}
		old := a.State[i]
		old.ExpAvg.Free()
		old.ExpAvgSq.Free()
		a.State[i] = AdamState{Step: step, ExpAvg: avg, ExpAvgSq: avgSq}
		return nil
	})
}

// SetLR sets Adam's learning rate.
func (a *Adam) SetLR(lr float64) { a.Config.LR = lr }

// StateDict is SGD's optimizer.state_dict(): state[i] = {"momentum_buffer"}
// for each parameter with a buffer (none without momentum), as PyTorch
// keeps it.
func (o *SGD) StateDict() *Dict {
	c := o.Config
	return stateDict(len(o.Params), func(i int) *Dict {
		if i >= len(o.MomentumBuffer) || o.MomentumBuffer[i] == nil {
			return nil
		}
		st := &Dict{}
		st.Set("momentum_buffer", o.MomentumBuffer[i].CPUCopy())
		return st
	}, [][2]any{{"lr", c.LR}, {"momentum", c.Momentum}, {"dampening", c.Dampening}, {"weight_decay", c.WeightDecay},
		{"nesterov", c.Nesterov}, {"maximize", false}, {"foreach", nil}, {"differentiable", false}})
}

// LoadStateDict restores an SGD state_dict (StateDict's, or one PyTorch
// wrote); a parameter whose momentum_buffer is None keeps none.
func (o *SGD) LoadStateDict(sd any) error {
	if len(o.MomentumBuffer) < len(o.Params) {
		o.MomentumBuffer = append(o.MomentumBuffer, make([]*Tensor, len(o.Params)-len(o.MomentumBuffer))...)
	}
	return loadStateDict(sd, o.Params, &o.Config.LR, func(i int, st *Dict) error {
		if v, _ := st.Get("momentum_buffer"); v == nil {
			return nil
		}
		buf, err := stateTensor(st, "momentum_buffer", o.Params[i])
		if err != nil {
			return err
		}
		o.MomentumBuffer[i].Free()
		o.MomentumBuffer[i] = buf
		return nil
	})
}

// SetLR sets SGD's learning rate.
func (o *SGD) SetLR(lr float64) { o.Config.LR = lr }
