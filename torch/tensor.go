package torch

// #include "dptorch.h"
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// DType is a tensor's element type.
type DType int

// The element types the binding moves between Go and libtorch.
const (
	Float32 DType = C.DPT_FLOAT32
	Float64 DType = C.DPT_FLOAT64
	Int64   DType = C.DPT_INT64
	Uint8   DType = C.DPT_UINT8
	Bool    DType = C.DPT_BOOL
	Int32   DType = C.DPT_INT32
)

var dtypeNames = map[DType]string{Float32: "float32", Float64: "float64", Int64: "int64", Uint8: "uint8", Bool: "bool", Int32: "int32"}

func (d DType) String() string {
	if name, ok := dtypeNames[d]; ok {
		return name
	}
	return fmt.Sprintf("dtype(%d)", int(d))
}

func (d DType) size() int {
	switch d {
	case Float64, Int64:
		return 8
	case Float32, Int32:
		return 4
	}
	return 1
}

// Tensor is a handle to a libtorch tensor, or to the error that stopped the
// operations that should have made it (see the package doc).
type Tensor struct {
	h     C.dpt_tensor
	err   error
	scope *Scope
}

// Err is the error this tensor carries, nil for a valid tensor.
func (t *Tensor) Err() error {
	if t == nil {
		return fmt.Errorf("nil tensor")
	}
	if t.err == nil && t.h == nil {
		return fmt.Errorf("tensor used after Free")
	}
	return t.err
}

// Free releases the tensor's libtorch memory now. It is safe to call twice
// and on a tensor that a scope owns (the scope then skips it).
func (t *Tensor) Free() {
	if t == nil || t.h == nil {
		return
	}
	C.dpt_free(t.h)
	t.h = nil
}

// swap frees t's storage and makes t hold other's instead; other is left
// empty (its Free does nothing).
func (t *Tensor) swap(other *Tensor) {
	t.Free()
	t.h, other.h = other.h, nil
}

// Scope owns tensors until Close frees them all; see the package doc.
type Scope struct {
	mu      sync.Mutex
	tensors []*Tensor
}

// NewScope opens an empty scope.
func NewScope() *Scope { return &Scope{} }

// Close frees every tensor the scope still owns. The scope can be used again
// afterwards (a training loop reuses one scope per step).
func (s *Scope) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, t := range s.tensors {
		t.Free()
		s.tensors[i] = nil
	}
	s.tensors = s.tensors[:0]
}

// Len is the number of tensors the scope owns.
func (s *Scope) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tensors)
}

// Keep takes t out of its scope: it lives until Free (or its finalizer).
func (s *Scope) Keep(t *Tensor) *Tensor {
	s.moveTo(t, nil)
	return t
}

// Own takes an unscoped tensor (a view of a parameter, say) into s, which
// frees it on Close; a tensor of another scope is left where it is.
func (s *Scope) Own(t *Tensor) *Tensor {
	if t != nil && t.h != nil && t.scope == nil {
		runtime.SetFinalizer(t, nil)
		t.scope = s
		s.add(t)
	}
	return t
}

// moveTo hands t, if s owns it, to scope to (nil: unscoped, with the
// finalizer as a safety net).
func (s *Scope) moveTo(t *Tensor, to *Scope) {
	if t == nil || t.scope != s || s == nil {
		return
	}
	s.mu.Lock()
	for i, owned := range s.tensors {
		if owned == t {
			last := len(s.tensors) - 1
			s.tensors[i] = s.tensors[last]
			s.tensors[last] = nil
			s.tensors = s.tensors[:last]
			break
		}
	}
	s.mu.Unlock()
	t.scope = to
	if to != nil {
		to.add(t)
	} else {
		runtime.SetFinalizer(t, (*Tensor).Free)
	}
}

// Tidy runs f on x in a scope of its own, as TensorFlow.js's tidy does:
// every tensor f makes from x is freed when f returns, except the one it
// returns, which joins x's scope (unscoped when x has none). Autograd keeps
// its own references to what backward needs, so a forward pass written with
// Tidy is as correct in training as in inference, and frees its
// intermediates as it goes instead of when the caller's scope closes.
func Tidy(x *Tensor, f func(*Tensor) *Tensor) *Tensor {
	if x.Err() != nil {
		return x
	}
	inner := NewScope()
	defer inner.Close()
	// x's handle in the inner scope, so that f's results land there; x
	// still owns it (the alias is in no scope's list and never freed).
	in := &Tensor{h: x.h, scope: inner}
	y := f(in)
	if y == in {
		return x
	}
	inner.moveTo(y, x.scope)
	return y
}

// Chain applies modules to x in order, as nn.Sequential does, freeing each
// intermediate result as soon as the next module has consumed it (inside a
// Tidy), so that a chain holds one or two activations at a time.
func Chain(x *Tensor, modules ...Module) *Tensor {
	return Tidy(x, func(t *Tensor) *Tensor {
		in := t
		for _, m := range modules {
			y := m.Forward(t)
			if t != in && t != y && t.scope == in.scope {
				t.Free()
			}
			t = y
		}
		return t
	})
}

// Func makes a function a Module, as http.HandlerFunc makes one a Handler.
type Func func(*Tensor) *Tensor

// Forward is f(x).
func (f Func) Forward(x *Tensor) *Tensor { return f(x) }

func (s *Scope) add(t *Tensor) {
	s.mu.Lock()
	s.tensors = append(s.tensors, t)
	s.mu.Unlock()
}

// newTensor wraps a handle the shim returned, in scope s (nil: unscoped).
func newTensor(h C.dpt_tensor, err C.dpt_error, s *Scope) *Tensor {
	if e := check(err); e != nil {
		return &Tensor{err: e}
	}
	t := &Tensor{h: h, scope: s}
	if s != nil {
		s.add(t)
	} else {
		runtime.SetFinalizer(t, (*Tensor).Free)
	}
	return t
}

// failed is a tensor carrying err.
func failed(err error) *Tensor { return &Tensor{err: err} }

// operands returns the first operand's error and the scope the result
// belongs to: that of the first operand that has one.
func operands(ts ...*Tensor) (*Scope, error) {
	var scope *Scope
	for _, t := range ts {
		if t == nil {
			continue
		}
		if err := t.Err(); err != nil {
			return nil, err
		}
		if scope == nil {
			scope = t.scope
		}
	}
	return scope, nil
}

// handle returns t's handle, or nil for an absent optional tensor.
func handle(t *Tensor) C.dpt_tensor {
	if t == nil {
		return nil
	}
	return t.h
}

// element is a Go type that has a libtorch dtype.
type element interface {
	~float32 | ~float64 | ~int64 | ~uint8 | ~int32
}

func dtypeOf[T element]() DType {
	var zero T
	switch any(zero).(type) {
	case float32:
		return Float32
	case float64:
		return Float64
	case int64:
		return Int64
	case uint8:
		return Uint8
	}
	return Int32
}

func shapeArg(shape []int64) (*C.int64_t, C.int) {
	if len(shape) == 0 {
		return nil, 0
	}
	return (*C.int64_t)(unsafe.Pointer(&shape[0])), C.int(len(shape))
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// FromSlice copies data into a new tensor of the given shape on device, owned
// by scope s (nil: unscoped, freed by Free).
func FromSlice[T element](s *Scope, data []T, shape []int64, device Device) *Tensor {
	if n := numel(shape); int64(len(data)) != n {
		return failed(fmt.Errorf("from slice: %d values for shape %v (%d elements)", len(data), shape, n))
	}
	if len(data) == 0 {
		return fromData(s, nil, dtypeOf[T](), shape, device)
	}
	return fromData(s, unsafe.Pointer(&data[0]), dtypeOf[T](), shape, device)
}

// fromData copies the elements at ptr into a new tensor.
func fromData(s *Scope, ptr unsafe.Pointer, dtype DType, shape []int64, device Device) *Tensor {
	sp, nd := shapeArg(shape)
	dev := cString(device.String())
	defer freeC(dev)
	var h C.dpt_tensor
	err := C.dpt_from_data(ptr, sp, nd, C.int(dtype), dev, &h)
	return newTensor(h, err, s)
}

// FromBytes makes a tensor of dtype and shape from its elements' bytes in
// the machine's byte order (little-endian on every platform libtorch
// supports), owned by scope s (nil: unscoped).
func FromBytes(s *Scope, data []byte, dtype DType, shape []int64, device Device) *Tensor {
	if n := numel(shape) * int64(dtype.size()); int64(len(data)) != n {
		return failed(fmt.Errorf("from bytes: %d bytes for %s%v (%d bytes)", len(data), dtype, shape, n))
	}
	if len(data) == 0 {
		return fromData(s, nil, dtype, shape, device)
	}
	return fromData(s, unsafe.Pointer(&data[0]), dtype, shape, device)
}

// Bytes copies the tensor's elements out as bytes, in its dtype and the
// machine's byte order, row-major.
func (t *Tensor) Bytes() ([]byte, error) {
	if err := t.Err(); err != nil {
		return nil, err
	}
	dtype := t.DType()
	out := make([]byte, t.Numel()*int64(dtype.size()))
	var ptr unsafe.Pointer
	if len(out) > 0 {
		ptr = unsafe.Pointer(&out[0])
	}
	if err := check(C.dpt_copy_out(t.h, ptr, C.int64_t(len(out)), C.int(dtype))); err != nil {
		return nil, err
	}
	return out, nil
}

// Full makes a tensor filled with value (torch.full).
func Full(s *Scope, shape []int64, value float64, dtype DType, device Device) *Tensor {
	sp, nd := shapeArg(shape)
	dev := cString(device.String())
	defer freeC(dev)
	var h C.dpt_tensor
	err := C.dpt_full(sp, nd, C.double(value), C.int(dtype), dev, &h)
	return newTensor(h, err, s)
}

// Zeros is torch.zeros.
func Zeros(s *Scope, shape []int64, dtype DType, device Device) *Tensor {
	return Full(s, shape, 0, dtype, device)
}

// Rand is torch.rand: uniform on [0, 1) from the default generator.
func Rand(s *Scope, shape []int64, dtype DType, device Device) *Tensor {
	sp, nd := shapeArg(shape)
	dev := cString(device.String())
	defer freeC(dev)
	var h C.dpt_tensor
	err := C.dpt_rand(sp, nd, C.int(dtype), dev, &h)
	return newTensor(h, err, s)
}

// Randn is torch.randn.
func Randn(s *Scope, shape []int64, dtype DType, device Device) *Tensor {
	sp, nd := shapeArg(shape)
	dev := cString(device.String())
	defer freeC(dev)
	var h C.dpt_tensor
	err := C.dpt_randn(sp, nd, C.int(dtype), dev, &h)
	return newTensor(h, err, s)
}

// Shape is the tensor's size per dimension (nil for a failed tensor).
func (t *Tensor) Shape() []int64 {
	return t.perAxis(func(out *C.int64_t) { C.dpt_shape(t.h, out) })
}

// Stride is Tensor.stride(): for each axis, how many elements apart in
// memory two neighbours along it are.
func (t *Tensor) Stride() []int64 {
	return t.perAxis(func(out *C.int64_t) { C.dpt_stride(t.h, out) })
}

// perAxis is one value per axis of t, as get writes them.
func (t *Tensor) perAxis(get func(out *C.int64_t)) []int64 {
	if t.Err() != nil {
		return nil
	}
	vals := make([]int64, int(C.dpt_dim(t.h)))
	if len(vals) > 0 {
		get((*C.int64_t)(unsafe.Pointer(&vals[0])))
	}
	return vals
}

// Numel is the number of elements.
func (t *Tensor) Numel() int64 { return numel(t.Shape()) }

// DType is the element type.
func (t *Tensor) DType() DType {
	if t.Err() != nil {
		return -1
	}
	return DType(C.dpt_dtype(t.h))
}

// Device is where the tensor lives.
func (t *Tensor) Device() (Device, error) {
	if err := t.Err(); err != nil {
		return Device{}, err
	}
	var s *C.char
	if err := check(C.dpt_device(t.h, &s)); err != nil {
		return Device{}, err
	}
	return ParseDevice(goString(s))
}

// To copies the tensor to a device (and keeps its scope).
func (t *Tensor) To(device Device) *Tensor { return t.ToType(device, t.DType()) }

// ToType converts the tensor's device and element type (Tensor.to).
func (t *Tensor) ToType(device Device, dtype DType) *Tensor {
	dev := cString(device.String())
	defer freeC(dev)
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_to(t.h, dev, C.int(dtype), out) }, t)
}

// copyOut copies the tensor's elements, converted to T, into a new slice.
func copyOut[T element](t *Tensor) ([]T, error) {
	if err := t.Err(); err != nil {
		return nil, err
	}
	out := make([]T, t.Numel())
	var ptr unsafe.Pointer
	if len(out) > 0 {
		ptr = unsafe.Pointer(&out[0])
	}
	nbytes := C.int64_t(len(out) * dtypeOf[T]().size())
	if err := check(C.dpt_copy_out(t.h, ptr, nbytes, C.int(dtypeOf[T]()))); err != nil {
		return nil, err
	}
	return out, nil
}

// Float32s copies the elements out as float32, in row-major order.
func (t *Tensor) Float32s() ([]float32, error) { return copyOut[float32](t) }

// Float64s copies the elements out as float64.
func (t *Tensor) Float64s() ([]float64, error) { return copyOut[float64](t) }

// Int64s copies the elements out as int64.
func (t *Tensor) Int64s() ([]int64, error) { return copyOut[int64](t) }

// Uint8s copies the elements out as uint8.
func (t *Tensor) Uint8s() ([]uint8, error) { return copyOut[uint8](t) }

// Item is the value of a one-element tensor (Tensor.item).
func (t *Tensor) Item() (float64, error) {
	if err := t.Err(); err != nil {
		return 0, err
	}
	var v C.double
	if err := check(C.dpt_item(t.h, &v)); err != nil {
		return 0, err
	}
	return float64(v), nil
}

// String prints the tensor as PyTorch does, or its error.
func (t *Tensor) String() string {
	if err := t.Err(); err != nil {
		return "tensor error: " + err.Error()
	}
	var s *C.char
	if err := check(C.dpt_to_string(t.h, &s)); err != nil {
		return "tensor error: " + err.Error()
	}
	return goString(s)
}

// Clone is Tensor.clone.
func (t *Tensor) Clone() *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_clone(t.h, out) }, t)
}

// Contiguous is Tensor.contiguous: t itself (a new handle) when its values
// are in row-major order, else a copy that has them so.
func (t *Tensor) Contiguous() *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_contiguous(t.h, out) }, t)
}

// Detach is Tensor.detach: the same data, outside autograd.
func (t *Tensor) Detach() *Tensor {
	return apply(func(out *C.dpt_tensor) C.dpt_error { return C.dpt_detach(t.h, out) }, t)
}

// CPUCopy is t.detach().cpu(): a new unscoped handle the caller frees, as
// saved state holds tensors.
func (t *Tensor) CPUCopy() *Tensor {
	d := t.Detach()
	c := d.To(CPU)
	d.Free()
	return c
}

// Equal is torch.equal: same shape and elements.
func (t *Tensor) Equal(other *Tensor) (bool, error) {
	if _, err := operands(t, other); err != nil {
		return false, err
	}
	var eq C.int
	if err := check(C.dpt_equal(t.h, handle(other), &eq)); err != nil {
		return false, err
	}
	return eq != 0, nil
}

// apply runs a shim call that makes one tensor from inputs, unless an input
// carries an error; the result joins the scope of the first scoped input.
func apply(call func(out *C.dpt_tensor) C.dpt_error, inputs ...*Tensor) *Tensor {
	s, err := operands(inputs...)
	if err != nil {
		return failed(err)
	}
	var h C.dpt_tensor
	e := call(&h)
	return newTensor(h, e, s)
}
