package torch

// #include "dptorch.h"
import "C"

import "unsafe"

// Conv1dOptions are torch.nn.functional.conv1d's arguments; zero values take
// PyTorch's defaults (stride 1, padding 0, dilation 1, groups 1).
type Conv1dOptions struct {
	Stride, Padding, Dilation, Groups int64
}

func orOne(v int64) int64 {
	if v == 0 {
		return 1
	}
	return v
}

// Conv1d is F.conv1d(x, weight, bias, ...); bias may be nil.
func (t *Tensor) Conv1d(weight, bias *Tensor, o Conv1dOptions) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_conv1d(t.h, handle(weight), handle(bias), C.int64_t(orOne(o.Stride)), C.int64_t(o.Padding),
			C.int64_t(orOne(o.Dilation)), C.int64_t(orOne(o.Groups)), out)
	}, t, weight, bias)
}

// MaxPool1dOptions are F.max_pool1d's arguments; Stride 0 means the kernel
// size and Dilation 0 means 1, as in PyTorch.
type MaxPool1dOptions struct {
	Kernel, Stride, Padding, Dilation int64
	CeilMode                          bool
}

// MaxPool1d is F.max_pool1d.
func (t *Tensor) MaxPool1d(o MaxPool1dOptions) *Tensor {
	stride := o.Stride
	if stride == 0 {
		stride = o.Kernel
	}
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_max_pool1d(t.h, C.int64_t(o.Kernel), C.int64_t(stride), C.int64_t(o.Padding),
			C.int64_t(orOne(o.Dilation)), cBool(o.CeilMode), out)
	}, t)
}

// Linear is F.linear(x, weight, bias); bias may be nil.
func (t *Tensor) Linear(weight, bias *Tensor) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_linear(t.h, handle(weight), handle(bias), out)
	}, t, weight, bias)
}

// BatchNorm is F.batch_norm. In training it normalises with the batch's
// statistics and updates runningMean and runningVar in place.
func (t *Tensor) BatchNorm(weight, bias, runningMean, runningVar *Tensor, training bool, momentum, eps float64) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_batch_norm(t.h, handle(weight), handle(bias), handle(runningMean), handle(runningVar),
			cBool(training), C.double(momentum), C.double(eps), out)
	}, t, weight, bias, runningMean, runningVar)
}

// Dropout is F.dropout(x, p, training).
func (t *Tensor) Dropout(p float64, training bool) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_dropout(t.h, C.double(p), cBool(training), out)
	}, t)
}

func (t *Tensor) unaryOp(op C.int) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_unary(op, t.h, out) }, t)
}

// ReLU is torch.relu.
func (t *Tensor) ReLU() *Tensor { return t.unaryOp(C.DPT_RELU) }

// NewEmpty is Tensor.new_empty: a tensor of t's dtype and device whose
// values are whatever its memory held, for a caller that writes them all.
func (t *Tensor) NewEmpty(shape ...int64) *Tensor {
	sp, nd := shapeArg(shape)
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_new_empty(t.h, sp, nd, out) }, t)
}

// AffineReLUInto writes relu(t*scale + shift) into out, a tensor of t's
// shape (a view into a larger one, say) that does not overlap t: scale and
// shift are [C] (t's dim 1), both nil for a plain ReLU. It is batch norm's
// inference form (scale γ/√(var+ε), shift β - mean·scale) and ReLU in one
// pass, rounded as t.Mul(scale).Add(shift).ReLU() (a product, then a sum);
// float32 CPU tensors with their channels innermost in memory take the
// shim's own loop, others ATen's operators.
func (t *Tensor) AffineReLUInto(out, scale, shift *Tensor) error {
	if _, err := operands(t, out, scale, shift); err != nil {
		return err
	}
	return check(C.dpt_affine_relu_into(t.h, handle(scale), handle(shift), out.h))
}

// Sigmoid is torch.sigmoid.
func (t *Tensor) Sigmoid() *Tensor { return t.unaryOp(C.DPT_SIGMOID) }

// Tanh is torch.tanh.
func (t *Tensor) Tanh() *Tensor { return t.unaryOp(C.DPT_TANH) }

// Neg is torch.neg.
func (t *Tensor) Neg() *Tensor { return t.unaryOp(C.DPT_NEG) }

// Sqrt is torch.sqrt.
func (t *Tensor) Sqrt() *Tensor { return t.unaryOp(C.DPT_SQRT) }

// Exp is torch.exp.
func (t *Tensor) Exp() *Tensor { return t.unaryOp(C.DPT_EXP) }

// Log is torch.log.
func (t *Tensor) Log() *Tensor { return t.unaryOp(C.DPT_LOG) }

// Abs is torch.abs.
func (t *Tensor) Abs() *Tensor { return t.unaryOp(C.DPT_ABS) }

func (t *Tensor) binaryOp(op C.int, other *Tensor, alpha float64) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_binary(op, t.h, handle(other), C.double(alpha), out)
	}, t, other)
}

// Add is torch.add(t, other) (broadcasting).
func (t *Tensor) Add(other *Tensor) *Tensor { return t.binaryOp(C.DPT_ADD, other, 1) }

// AddScaled is torch.add(t, other, alpha=alpha).
func (t *Tensor) AddScaled(other *Tensor, alpha float64) *Tensor {
	return t.binaryOp(C.DPT_ADD, other, alpha)
}

// Sub is torch.sub.
func (t *Tensor) Sub(other *Tensor) *Tensor { return t.binaryOp(C.DPT_SUB, other, 1) }

// Mul is torch.mul.
func (t *Tensor) Mul(other *Tensor) *Tensor { return t.binaryOp(C.DPT_MUL, other, 0) }

// Div is torch.div.
func (t *Tensor) Div(other *Tensor) *Tensor { return t.binaryOp(C.DPT_DIV, other, 0) }

// Eq is torch.eq (a bool tensor).
func (t *Tensor) Eq(other *Tensor) *Tensor { return t.binaryOp(C.DPT_EQ, other, 0) }

// Add_ is Tensor.add_(other, alpha=alpha), in place; it returns t.
func (t *Tensor) Add_(other *Tensor, alpha float64) *Tensor {
	if _, err := operands(t, other); err != nil {
		return failed(err)
	}
	var h C.dpt_tensor
	if err := check(C.dpt_binary(C.DPT_ADD_, t.h, handle(other), C.double(alpha), &h)); err != nil {
		return failed(err)
	}
	return t
}

func (t *Tensor) scalarOp(op C.int, s float64) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_scalar_op(op, t.h, C.double(s), out) }, t)
}

// AddScalar is t + s.
func (t *Tensor) AddScalar(s float64) *Tensor { return t.scalarOp(C.DPT_ADD, s) }

// MulScalar is t * s.
func (t *Tensor) MulScalar(s float64) *Tensor { return t.scalarOp(C.DPT_MUL, s) }

// DivScalar is t / s.
func (t *Tensor) DivScalar(s float64) *Tensor { return t.scalarOp(C.DPT_DIV, s) }

// Pad is F.pad(x, pad, mode="constant", value=value): pad lists (before,
// after) pairs starting from the last dimension.
func (t *Tensor) Pad(pad []int64, value float64) *Tensor {
	p, n := shapeArg(pad)
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_pad(t.h, p, n, C.double(value), out) }, t)
}

// Transpose is torch.transpose(t, d0, d1).
func (t *Tensor) Transpose(d0, d1 int64) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_transpose(t.h, C.int64_t(d0), C.int64_t(d1), out)
	}, t)
}

// Reshape is torch.reshape; one dimension may be -1.
func (t *Tensor) Reshape(shape ...int64) *Tensor { return t.reshape(shape, false) }

// View is Tensor.view: like Reshape, but fails instead of copying.
func (t *Tensor) View(shape ...int64) *Tensor { return t.reshape(shape, true) }

func (t *Tensor) reshape(shape []int64, view bool) *Tensor {
	sp, nd := shapeArg(shape)
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_reshape(t.h, sp, nd, cBool(view), out) }, t)
}

// Flatten is torch.flatten(t, start, end).
func (t *Tensor) Flatten(start, end int64) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_flatten(t.h, C.int64_t(start), C.int64_t(end), out)
	}, t)
}

// Expand is Tensor.expand(shape): a view repeating size-1 axes (-1 keeps an
// axis), with no copy.
func (t *Tensor) Expand(shape ...int64) *Tensor {
	sp, nd := shapeArg(shape)
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_expand(t.h, sp, nd, out) }, t)
}

// Narrow is Tensor.narrow(dim, start, length): a view of a slice.
func (t *Tensor) Narrow(dim, start, length int64) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_narrow(t.h, C.int64_t(dim), C.int64_t(start), C.int64_t(length), out)
	}, t)
}

func (t *Tensor) reduce(op C.int, dims []int64, keepdim bool) *Tensor {
	d, n := shapeArg(dims)
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_reduce(op, t.h, d, n, cBool(keepdim), out) }, t)
}

// Mean is torch.mean: over every element when dims is empty.
func (t *Tensor) Mean(keepdim bool, dims ...int64) *Tensor {
	return t.reduce(C.DPT_MEAN, dims, keepdim)
}

// Sum is torch.sum: over every element when dims is empty.
func (t *Tensor) Sum(keepdim bool, dims ...int64) *Tensor { return t.reduce(C.DPT_SUM, dims, keepdim) }

func join(ts []*Tensor, dim int64, stack bool) *Tensor {
	if len(ts) == 0 {
		return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_cat(nil, 0, C.int64_t(dim), cBool(stack), out) })
	}
	hs := make([]C.dpt_tensor, len(ts))
	for i, t := range ts {
		hs[i] = handle(t)
	}
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		// hs is Go memory holding C pointers only, which cgo allows passing.
		return C.dpt_cat((*C.dpt_tensor)(unsafe.Pointer(&hs[0])), C.int(len(hs)), C.int64_t(dim), cBool(stack), out)
	}, ts...)
}

// Cat is torch.cat(ts, dim).
func Cat(ts []*Tensor, dim int64) *Tensor { return join(ts, dim, false) }

// Stack is torch.stack(ts, dim).
func Stack(ts []*Tensor, dim int64) *Tensor { return join(ts, dim, true) }

// Reduction is a loss's reduction argument.
type Reduction int64

// Loss reductions, as torch's Reduction enum.
const (
	ReductionNone Reduction = 0
	ReductionMean Reduction = 1
	ReductionSum  Reduction = 2
)

// CrossEntropy is F.cross_entropy(logits, target) with mean reduction.
func (t *Tensor) CrossEntropy(target *Tensor) *Tensor {
	return t.CrossEntropyWith(target, nil, ReductionMean, -100, 0)
}

// CrossEntropyWith is F.cross_entropy with every argument; weight may be nil.
func (t *Tensor) CrossEntropyWith(target, weight *Tensor, reduction Reduction, ignoreIndex int64, labelSmoothing float64) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_cross_entropy(t.h, handle(target), handle(weight), C.int64_t(reduction), C.int64_t(ignoreIndex),
			C.double(labelSmoothing), out)
	}, t, target, weight)
}

// MSELoss is F.mse_loss(t, target, reduction).
func (t *Tensor) MSELoss(target *Tensor, reduction Reduction) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_mse_loss(t.h, handle(target), C.int64_t(reduction), out)
	}, t, target)
}

// Softmax is torch.softmax(t, dim).
func (t *Tensor) Softmax(dim int64) *Tensor { return t.softmax(dim, false) }

// LogSoftmax is torch.log_softmax(t, dim).
func (t *Tensor) LogSoftmax(dim int64) *Tensor { return t.softmax(dim, true) }

func (t *Tensor) softmax(dim int64, log bool) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_softmax(t.h, C.int64_t(dim), cBool(log), out) }, t)
}

// Argmax is torch.argmax(t, dim, keepdim).
func (t *Tensor) Argmax(dim int64, keepdim bool) *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_argmax(t.h, C.int64_t(dim), cBool(keepdim), out)
	}, t)
}

// Uniform_ fills t from U(from, to) in place, outside autograd (init.uniform_).
func (t *Tensor) Uniform_(from, to float64) error {
	if err := t.Err(); err != nil {
		return err
	}
	return check(C.dpt_uniform_(t.h, C.double(from), C.double(to)))
}

// Normal_ fills t from N(mean, std) in place, outside autograd.
func (t *Tensor) Normal_(mean, std float64) error {
	if err := t.Err(); err != nil {
		return err
	}
	return check(C.dpt_normal_(t.h, C.double(mean), C.double(std)))
}

// Fill_ sets every element to value in place, outside autograd.
func (t *Tensor) Fill_(value float64) error {
	if err := t.Err(); err != nil {
		return err
	}
	return check(C.dpt_fill_(t.h, C.double(value)))
}

// Copy_ copies src into t in place (same shape), outside autograd.
func (t *Tensor) Copy_(src *Tensor) error {
	if _, err := operands(t, src); err != nil {
		return err
	}
	return check(C.dpt_copy_(t.h, handle(src)))
}
