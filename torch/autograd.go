package torch

// #include "dptorch.h"
import "C"

// SetRequiresGrad is Tensor.requires_grad_.
func (t *Tensor) SetRequiresGrad(requires bool) error {
	if err := t.Err(); err != nil {
		return err
	}
	return check(C.dpt_set_requires_grad(t.h, cBool(requires)))
}

// RequiresGrad reports whether autograd records operations on t.
func (t *Tensor) RequiresGrad() bool { return t.Err() == nil && C.dpt_requires_grad(t.h) != 0 }

// Backward is Tensor.backward() of a scalar.
func (t *Tensor) Backward() error {
	if err := t.Err(); err != nil {
		return err
	}
	return check(C.dpt_backward(t.h))
}

// Grad is Tensor.grad: nil when no gradient has been computed. The result
// shares the gradient's memory and belongs to t's scope.
func (t *Tensor) Grad() *Tensor {
	s, err := operands(t)
	if err != nil {
		return failed(err)
	}
	var h C.dpt_tensor
	if err := check(C.dpt_grad(t.h, &h)); err != nil {
		return failed(err)
	}
	if h == nil {
		return nil
	}
	return newTensor(h, nil, s)
}

// ZeroGrad clears t's gradient: to None with setToNone, else to zeros, as
// torch.optim.Optimizer.zero_grad.
func (t *Tensor) ZeroGrad(setToNone bool) error {
	if err := t.Err(); err != nil {
		return err
	}
	return check(C.dpt_zero_grad(t.h, cBool(setToNone)))
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
