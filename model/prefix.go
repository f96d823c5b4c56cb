package model

import (
	"errors"
	"fmt"

	"github.com/deeppacket/deeppacket/torch"
)

// This file is the exact inference forward that skips zero padding.
//
// A packet fills the first n of its signal_length values; the rest is zero
// padding. Past the reach of those n values, every activation of every
// layer is what an all-zero input gives there: a value that depends only
// on the weights. So the forward computes each activation only over its
// prefix, the positions the packet's bytes can reach (for a convolution of
// kernel k, stride s and left padding a over an input prefix p: the first
// ceil((p+a)/s) outputs), reading past the prefix from the zero input's
// activation, computed once per model. Where the length axis goes away,
// the zero input's contribution is added from precomputed suffix sums: the
// mean over the length (the ResNet), and the dense layer over the flattened
// activation (the CNN's fc1, the SAE's first layer). The result is the
// full forward's, up to float32 rounding (sums taken in another order).
//
// Activations with a length axis are kept with their channels innermost in
// memory ([B, C, p] tensors with strides [C*p, 1, C]): the shim runs
// convolutions, batch norms and max pools over that layout (oneDNN's
// channels-last convolution is the faster on few channels) and answers in
// it, and the zero tails are spliced on along the length in one copy.
//
// It interprets InferenceOps, the same list the TorchScript and ONNX
// exports write, so it follows the models without code of its own per
// architecture.

// batchNormEps is BatchNorm1d's eps in the reference's models (PyTorch's
// default).
const batchNormEps = 1e-5

// prefixForward holds a model's inference steps and what the all-zero
// input makes of them.
type prefixForward struct {
	ops    []Op
	params map[string]*torch.Tensor
	length int64         // signal_length
	input0 *torch.Tensor // the all-zero input, [1, 1, L]
	// zero[i] is op i's output for the all-zero input, [1, C, L], while it
	// has a length axis (nil after).
	zero []*torch.Tensor
	// meanTail[i] is, for a mean op i, the zero input's sum over positions
	// p.. of its input, for each p: [L+1][C].
	meanTail map[int][][]float32
	// dense[i] is, for a flatten op i followed by a linear one, that layer
	// read in prefix order and its bias plus the zero input's share.
	dense map[int]*prefixDense
	// fused[i] says batch norm i is run with the ReLU after it, in one
	// pass (AffineReLUInto, with its scale and shift, params[".scale"]
	// and [".shift"]); feeds[i] is, for a ReLU i, the convolution that
	// next reads its output, into whose input window (left zeros,
	// activation, zero tail, right zeros) it is written.
	fused map[int]bool
	feeds map[int]int
	// padPool[i] says length padding i is read only by the max pool
	// after it, which pads as it pools.
	padPool map[int]bool
	made    []*torch.Tensor
}

// prefixDense is a linear layer over a flattened [C, L] activation: its
// weight with columns in (position, channel) order, [out, L*C], so that
// the first p positions are its first p*C columns, and for each p the bias
// plus the contribution of the zero input's positions p..: [L+1][out].
type prefixDense struct {
	weight   *torch.Tensor
	channels int64
	tail     [][]float32
}

// newPrefixForward prepares m's prefix forward (inference mode, no
// autograd); nil when m has no inference steps.
func newPrefixForward(m Model) (*prefixForward, error) {
	ops, err := InferenceOps(m)
	if err != nil {
		return nil, err
	}
	f := &prefixForward{ops: ops, params: map[string]*torch.Tensor{}, length: int64(m.Preprocessing().SignalLength),
		meanTail: map[int][][]float32{}, dense: map[int]*prefixDense{}, fused: map[int]bool{}, feeds: map[int]int{}, padPool: map[int]bool{}}
	for _, v := range m.Store().Vars() {
		f.params[v.Name] = v.Tensor
	}
	err = torch.NoGrad(func() error {
		if err := f.foldBatchNorms(); err != nil {
			return err
		}
		if err := f.fuse(); err != nil {
			return err
		}
		// Convolution weights channels-last too, once: the shim's
		// channels-last convolution would otherwise reorder them at every
		// call.
		for _, op := range f.ops {
			if op.Kind == OpConv1d {
				name := op.Param + ".weight"
				f.params[name] = f.keep(channelsLast(f.params[name]))
			}
		}
		return f.prepare(m.Store().Device())
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("prefix forward: %w", err)
	}
	return f, nil
}

// foldBatchNorms folds each batch norm that follows a convolution directly
// into the convolution, as inference compilers do (TorchScript's freezing,
// oneDNN): conv(x; w, b) then (· - mean)·α + β, α = γ/√(var+ε), is
// conv(x; w·α, (b - mean)·α + β), one pass fewer over the activation, the
// same values up to float32 rounding.
func (f *prefixForward) foldBatchNorms() error {
	s := torch.NewScope() // the intermediates
	defer s.Close()
	p := f.params
	ops := f.ops[:0:0]
	for i := 0; i < len(f.ops); i++ {
		op := f.ops[i]
		if op.Kind != OpConv1d || i+1 == len(f.ops) {
			ops = append(ops, op)
			continue
		}
		bn := f.ops[i+1]
		if bn.Kind != OpBatchNorm || bn.In != op.Out || bn.Out != op.Out {
			ops = append(ops, op)
			continue
		}
		q := bn.Param
		alpha := f.batchNormScale(s, q)
		shift := s.Own(p[q+".running_mean"].Neg())
		if b := p[op.Param+".bias"]; b != nil {
			shift = s.Own(b.Sub(p[q+".running_mean"]))
		}
		name := fmt.Sprintf("folded.%d", i)
		p[name+".weight"] = f.keep(s.Keep(p[op.Param+".weight"].Mul(s.Own(alpha.Reshape(-1, 1, 1)))))
		p[name+".bias"] = f.keep(s.Keep(shift.Mul(alpha).Add(p[q+".bias"])))
		if err := p[name+".bias"].Err(); err != nil {
			return fmt.Errorf("fold %s into %s: %w", q, op.Param, err)
		}
		op.Param = name
		ops = append(ops, op)
		i++
	}
	f.ops = ops
	return nil
}

// batchNormScale is batch norm q's α = γ/√(var+ε), in s.
func (f *prefixForward) batchNormScale(s *torch.Scope, q string) *torch.Tensor {
	p := f.params
	return s.Own(p[q+".weight"].Div(s.Own(s.Own(p[q+".running_var"].AddScalar(batchNormEps)).Sqrt())))
}

// fuse plans the passes that steps run together save: a batch norm that
// only its ReLU reads runs with it (its scale and shift made here); a ReLU
// whose output a convolution reads next (past copies, which alias it)
// writes straight into that convolution's input window, where the
// convolution would otherwise copy it; a length padding that only a max
// pool reads is spliced by the pool.
func (f *prefixForward) fuse() error {
	s := torch.NewScope()
	defer s.Close()
	p := f.params
	for i, op := range f.ops {
		q := op.Param
		if op.Kind == OpBatchNorm && i+1 < len(f.ops) && p[q+".weight"] != nil && p[q+".bias"] != nil {
			next := f.ops[i+1]
			if next.Kind == OpReLU && next.In == op.Out && next.Out == op.Out {
				scale := s.Keep(f.batchNormScale(s, q))
				p[q+".scale"] = f.keep(scale)
				p[q+".shift"] = f.keep(s.Keep(p[q+".bias"].Sub(s.Own(p[q+".running_mean"].Mul(scale)))))
				if err := p[q+".shift"].Err(); err != nil {
					return fmt.Errorf("batch norm %s as scale and shift: %w", q, err)
				}
				f.fused[i] = true
			}
		}
		if op.Kind == OpPad && len(op.Pads) == 2 && i+1 < len(f.ops) {
			next := f.ops[i+1]
			f.padPool[i] = next.Kind == OpMaxPool1d && !next.Unbatched && next.In == op.Out && next.Out == op.Out
		}
		if op.Kind != OpReLU {
			continue
		}
		for j := i + 1; j < len(f.ops); j++ {
			next := f.ops[j]
			reads := next.In == op.Out || next.In2 == op.Out
			if next.Kind == OpCopy && reads && next.Out != op.Out {
				continue // an alias, which sees the same values
			}
			if reads && next.Kind == OpConv1d && next.In == op.Out {
				f.feeds[i] = j
			}
			if reads || next.Out == op.Out {
				break
			}
		}
	}
	return nil
}

// Close frees the zero input's activations and the rearranged weights.
func (f *prefixForward) Close() {
	for _, t := range f.made {
		t.Free()
	}
	f.made = nil
}

func (f *prefixForward) keep(t *torch.Tensor) *torch.Tensor {
	f.made = append(f.made, t)
	return t
}

// prepare runs the all-zero input through the steps, keeping each
// activation that has a length axis and the tables of the steps that
// remove it.
func (f *prefixForward) prepare(device torch.Device) error {
	s := torch.NewScope()
	defer s.Close()
	f.input0 = f.keep(torch.Zeros(nil, []int64{1, 1, f.length}, torch.Float32, device))
	vals := map[string]*torch.Tensor{"x": f.input0}
	f.zero = make([]*torch.Tensor, len(f.ops))
	for i, op := range f.ops {
		in := vals[op.In]
		if len(in.Shape()) == 3 {
			switch {
			case op.Kind == OpMean:
				tail, err := suffixSums(in.Narrow(0, 0, 1).Reshape(in.Shape()[1], -1).Transpose(0, 1))
				if err != nil {
					return err
				}
				f.meanTail[i] = tail
			case op.Kind == OpFlatten && i+1 < len(f.ops) && f.ops[i+1].Kind == OpLinear:
				d, err := f.newDense(in, f.ops[i+1].Param)
				if err != nil {
					return err
				}
				f.dense[i] = d
			}
		}
		out, err := f.full(op, vals)
		if err != nil {
			return fmt.Errorf("step %d (%v): %w", i, op.Kind, err)
		}
		vals[op.Out] = out
		if len(out.Shape()) == 3 {
			f.zero[i] = f.keep(s.Keep(channelsLast(out)))
		}
	}
	return nil
}

// newDense rearranges the linear layer param that follows a flatten of z
// (the zero input's [1, C, L] activation there).
func (f *prefixForward) newDense(z *torch.Tensor, param string) (*prefixDense, error) {
	shape := z.Shape()
	c, l := shape[1], shape[2]
	w, b := f.params[param+".weight"], f.params[param+".bias"]
	out := w.Shape()[0]
	wv := w.Reshape(out, c, l)
	// The zero input's share of each output, position by position:
	// sum over c of w[o, c, j] * z[c, j], then summed from each p on.
	share, err := suffixSums(wv.Mul(z).Sum(false, 1).Transpose(0, 1))
	if err != nil {
		return nil, err
	}
	bias, err := b.Float32s()
	if err != nil {
		return nil, err
	}
	for _, row := range share {
		for o := range row {
			row[o] += bias[o]
		}
	}
	weight := f.keep(wv.Transpose(1, 2).Reshape(out, l*c))
	return &prefixDense{weight: weight, channels: c, tail: share}, weight.Err()
}

// suffixSums takes t, [L, N], and returns for each p in 0..L the sums over
// rows p.. (accumulated in float64): [L+1][N].
func suffixSums(t *torch.Tensor) ([][]float32, error) {
	shape := t.Shape()
	vals, err := t.Reshape(-1).Float32s()
	if err != nil {
		return nil, err
	}
	l, n := int(shape[0]), int(shape[1])
	out := make([][]float32, l+1)
	acc := make([]float64, n)
	out[l] = make([]float32, n)
	for p := l - 1; p >= 0; p-- {
		out[p] = make([]float32, n)
		for j := range n {
			acc[j] += float64(vals[p*n+j])
			out[p][j] = float32(acc[j])
		}
	}
	return out, nil
}

// value is an activation during a prefix forward: t is [B, C, p], the
// first p positions of a [B, C, L] activation whose other positions are
// zero's (broadcast over the batch); or, once the length axis is gone, the
// whole activation (zero nil).
type value struct {
	t    *torch.Tensor
	p    int64
	zero *torch.Tensor
	// owned: t is a convolution's fresh output, which an add may
	// update in place once no other name holds it.
	owned bool
}

// run is one forward's state: its activations by name, the input windows
// that ReLUs wrote ahead for convolutions (by the convolution's step), and
// a scope for table rows.
type run struct {
	s       *torch.Scope
	vals    map[string]value
	windows map[int]*torch.Tensor
}

// length is the full activation's length.
func (v value) length() int64 { return v.zero.Shape()[2] }

// upTo is the first n positions of the activation, computed ones first,
// then the zero input's, [B, C, n].
func (f *prefixForward) upTo(v value, n int64) *torch.Tensor { return f.spliced(v, 0, n, 0) }

// spliced is left zeros, the first n positions of the activation (computed
// ones first, then the zero input's) and right zeros, [B, C, left+n+right],
// channels innermost: a view of v.t when there is nothing to add, else one
// concatenation along the length (which the shim does over [B, length, C],
// keeping the layout). It is a tensor of its own, which the caller frees
// once it is used, so that a forward holds no more than its live
// activations.
func (f *prefixForward) spliced(v value, left, n, right int64) *torch.Tensor {
	if left == 0 && right == 0 && n <= v.p {
		return v.t.Narrow(2, 0, n)
	}
	shape := v.t.Shape()
	b, c := shape[0], shape[1]
	var made []*torch.Tensor // freed on return: views that hold v.t's storage
	defer func() {
		for _, t := range made {
			t.Free()
		}
	}()
	piece := func(t *torch.Tensor) *torch.Tensor {
		made = append(made, t)
		return t
	}
	broadcast := func(t *torch.Tensor, from, k int64) *torch.Tensor { // [1, C or 1, L] to [B, C, k]
		return piece(piece(t.Narrow(2, from, k)).Expand(b, c, k))
	}
	var parts []*torch.Tensor
	if left > 0 {
		parts = append(parts, broadcast(f.input0, 0, left))
	}
	parts = append(parts, piece(v.t.Narrow(2, 0, min(n, v.p))))
	if n > v.p {
		parts = append(parts, broadcast(v.zero, v.p, n-v.p))
	}
	if right > 0 {
		parts = append(parts, broadcast(f.input0, 0, right))
	}
	return torch.Cat(parts, 2)
}

// channelsLast is t, [B, C, L] (or a convolution's weight, [out, in, k]),
// with its channels innermost in memory.
func channelsLast(t *torch.Tensor) *torch.Tensor {
	tt := t.Transpose(1, 2)
	defer tt.Free()
	c := tt.Contiguous()
	defer c.Free()
	return c.Transpose(1, 2)
}

// Forward computes the logits of inputs whose first n values are x, [B, 1,
// n] (0 < n ≤ signal_length), and whose other values are zero.
func (f *prefixForward) Forward(x *torch.Tensor) (*torch.Tensor, error) {
	var err error
	y := torch.Tidy(x, func(x *torch.Tensor) *torch.Tensor {
		s := torch.NewScope() // the tables' rows and the weights' views
		defer s.Close()
		n := x.Shape()[2]
		if n < 1 || n > f.length {
			err = fmt.Errorf("input of %d values: want 1 to %d", n, f.length)
			return x
		}
		// One channel: [B, 1, n] is also channels-last, once its strides
		// say so.
		xs := x.Reshape(x.Shape()[0], n, 1).Transpose(1, 2)
		r := &run{s: s, vals: map[string]value{"x": {t: xs, p: n, zero: f.input0}}, windows: map[int]*torch.Tensor{}}
		defer func() {
			for _, w := range r.windows {
				w.Free()
			}
		}()
		for i := 0; i < len(f.ops); i++ {
			op := f.ops[i]
			in := r.vals[op.In]
			var out value
			switch d := f.dense[i]; {
			case d != nil && in.zero != nil:
				out, op = f.flattenLinear(s, d, in), f.ops[i+1]
				i++
			case f.padPool[i] && in.zero != nil:
				op = f.ops[i+1]
				out = f.maxPool(in, op.Kernel, f.ops[i].Pads[0], f.ops[i].Pads[1], f.zero[i+1])
				i++
			case f.fused[i] && in.zero != nil:
				out, err = f.affineReLU(r, i+1, op.Param, in)
				op = f.ops[i+1]
				i++
			default:
				out, err = f.step(r, i, op)
			}
			if err != nil {
				err = fmt.Errorf("step %d (%v): %w", i, op.Kind, err)
				return x
			}
			release(r.vals, op.Out, out.t, x)
			r.vals[op.Out] = out
		}
		return r.vals["x"].t
	})
	if err != nil {
		return nil, err
	}
	return y, y.Err()
}

// release frees the tensor that name held before it is replaced by next,
// unless another name still holds it or it is the input: a forward so
// holds only the activations still to be read.
func release(vals map[string]value, name string, next, input *torch.Tensor) {
	old := vals[name].t
	if old == nil || old == next || old == input || heldElsewhere(vals, name, old) {
		return
	}
	old.Free()
}

// heldElsewhere says whether a name other than name holds t.
func heldElsewhere(vals map[string]value, name string, t *torch.Tensor) bool {
	for other, v := range vals {
		if other != name && v.t == t {
			return true
		}
	}
	return false
}

// flattenLinear is a flatten and the linear layer after it, over the
// prefix only: its positions' channels in (position, channel) order, as
// d.weight's columns, and the zero input's share in the bias.
func (f *prefixForward) flattenLinear(s *torch.Scope, d *prefixDense, in value) value {
	shape := in.t.Shape()
	x := in.t.Transpose(1, 2).Reshape(shape[0], in.p*d.channels)
	defer x.Free()
	return value{t: x.Linear(s.Own(d.weight.Narrow(1, 0, in.p*d.channels)), f.row(s, d.tail[in.p], x))}
}

// row is a table row as a tensor on like's device, owned by s.
func (f *prefixForward) row(s *torch.Scope, vals []float32, like *torch.Tensor) *torch.Tensor {
	dev, err := like.Device()
	if err != nil {
		return like
	}
	return torch.FromSlice(s, vals, []int64{int64(len(vals))}, dev)
}

// step runs op i over its prefixes.
func (f *prefixForward) step(r *run, i int, op Op) (value, error) {
	vals := r.vals
	in := vals[op.In]
	if in.zero == nil { // no length axis left: the plain step
		t, err := f.full(op, map[string]*torch.Tensor{op.In: in.t, op.In2: vals[op.In2].t})
		return value{t: t}, err
	}
	zero := f.zero[i]
	switch op.Kind {
	case OpCopy:
		return in, nil
	case OpReLU:
		return f.affineReLU(r, i, "", in)
	case OpBatchNorm:
		t, err := f.full(op, map[string]*torch.Tensor{op.In: in.t})
		return value{t: t, p: in.p, zero: zero}, err
	case OpConv1d:
		return f.conv(r, i, op, in, zero), nil
	case OpPad:
		return f.pad(op, in, zero)
	case OpMaxPool1d:
		return f.maxPool(in, op.Kernel, 0, 0, zero), nil
	case OpAdd:
		other := vals[op.In2]
		if in.owned && in.p >= other.p && !heldElsewhere(vals, op.In, in.t) {
			return value{t: in.t, p: in.p, zero: zero, owned: true}, addInto(in, other)
		}
		p := max(in.p, other.p)
		a, b := f.upTo(in, p), f.upTo(other, p)
		defer a.Free()
		defer b.Free()
		return value{t: a.Add(b), p: p, zero: zero}, nil
	case OpMean:
		t := in.t.Sum(false, -1).Add(f.row(r.s, f.meanTail[i][in.p], in.t)).DivScalar(float64(in.length()))
		return value{t: t}, nil
	case OpFlatten:
		t := f.upTo(in, in.length())
		defer t.Free()
		return value{t: t.Reshape(t.Shape()[0], -1)}, nil
	}
	return value{}, fmt.Errorf("no prefix form for step kind %v", op.Kind)
}

// addInto adds other to in's activation in place, in.p ≥ other.p: other's
// prefix, then its zero tail up to in.p (broadcast over the batch).
func addInto(in, other value) error {
	head := in.t.Narrow(2, 0, other.p)
	defer head.Free()
	if err := head.Add_(other.t, 1).Err(); err != nil || in.p == other.p {
		return err
	}
	rest, tail := in.t.Narrow(2, other.p, in.p-other.p), other.zero.Narrow(2, other.p, in.p-other.p)
	defer rest.Free()
	defer tail.Free()
	return rest.Add_(tail, 1).Err()
}

// convWindow is what convolution op reads of an activation of prefix p and
// length l: left zeros, the activation's first hi positions (computed ones,
// then the zero input's) and right zeros; and its output's prefix, the
// outputs that the prefix reaches.
func (f *prefixForward) convWindow(op Op, p, l int64) (left, hi, right, pOut int64) {
	k, stride := f.params[op.Param+".weight"].Shape()[2], max(op.Stride, 1)
	var padRight int64
	if op.Same {
		left, padRight = samePadding(l, k, stride)
	}
	lOut := (l+left+padRight-k)/stride + 1
	pOut = min(lOut, (p+left+stride-1)/stride)
	need := (pOut-1)*stride - left + k // input positions read, from -left
	hi = min(l, need)
	return left, hi, need - hi, pOut
}

// conv is convolution op i over a prefix: the outputs the prefix reaches,
// from the inputs they read (the zero input's past the prefix, and the
// SAME padding's zeros), in the window the ReLU before wrote, or spliced
// here.
func (f *prefixForward) conv(r *run, i int, op Op, in value, zero *torch.Tensor) value {
	left, hi, right, p := f.convWindow(op, in.p, in.length())
	x := r.windows[i]
	if x != nil {
		delete(r.windows, i)
	} else {
		x = f.spliced(in, left, hi, right)
	}
	defer x.Free()
	t := x.Conv1d(f.params[op.Param+".weight"], f.params[op.Param+".bias"], torch.Conv1dOptions{Stride: max(op.Stride, 1), Groups: op.Groups})
	return value{t: t, p: p, zero: zero, owned: true}
}

// affineReLU is ReLU op i over a prefix, with batch norm bn before it
// when bn is not "" (fused), in one pass: written into the input window of
// the convolution it feeds, when that window holds more than the prefix
// (the convolution then copies nothing), else into a tensor of its own.
func (f *prefixForward) affineReLU(r *run, i int, bn string, in value) (value, error) {
	var scale, shift *torch.Tensor
	if bn != "" {
		scale, shift = f.params[bn+".scale"], f.params[bn+".shift"]
	}
	zero := f.zero[i]
	shape := in.t.Shape()
	b, c := shape[0], shape[1]
	var left, hi, right int64
	j, feeds := f.feeds[i]
	if feeds {
		left, hi, right, _ = f.convWindow(f.ops[j], in.p, in.length())
		// A window that is the prefix alone, or that ends inside it, is
		// no use: the convolution reads a view of the activation.
		feeds = hi >= in.p && left+hi+right > in.p
	}
	if !feeds {
		left, hi, right = 0, in.p, 0
	}
	buf := channelsLastEmpty(in.t, b, c, left+hi+right)
	if feeds {
		r.windows[j] = buf
	} else {
		defer buf.Free() // the activation, a view, keeps its storage
	}
	if err := fillWindow(buf, left, in.p, hi, right, zero); err != nil {
		return value{}, err
	}
	t := buf.Narrow(2, left, in.p)
	if err := in.t.AffineReLUInto(t, scale, shift); err != nil {
		t.Free()
		return value{}, err
	}
	return value{t: t, p: in.p, zero: zero}, nil
}

// channelsLastEmpty is a new [b, c, n] tensor like like, channels
// innermost, its values unset.
func channelsLastEmpty(like *torch.Tensor, b, c, n int64) *torch.Tensor {
	e := like.NewEmpty(b, n, c)
	defer e.Free()
	return e.Transpose(1, 2)
}

// fillWindow sets what a convolution window holds around an activation of
// prefix p written at left: zeros before it, zero's positions p..hi (the
// zero input's activation, broadcast over the batch) after it, then right
// zeros.
func fillWindow(buf *torch.Tensor, left, p, hi, right int64, zero *torch.Tensor) error {
	shape := buf.Shape()
	var errs []error
	fill := func(from, n int64, src *torch.Tensor) {
		if n == 0 {
			return
		}
		dst := buf.Narrow(2, from, n)
		defer dst.Free()
		if src == nil {
			errs = append(errs, dst.Fill_(0))
			return
		}
		part := src.Narrow(2, p, n)
		defer part.Free()
		wide := part.Expand(shape[0], shape[1], n)
		defer wide.Free()
		errs = append(errs, dst.Copy_(wide))
	}
	fill(0, left, nil)
	fill(left+p, hi-p, zero)
	fill(left+hi, right, nil)
	return errors.Join(errs...)
}

// maxPool is max_pool1d of kernel and stride k over a prefix padded with
// left and right zeros (a length padding before the pool, fused): the
// outputs the prefix reaches, from one splice of what they read.
func (f *prefixForward) maxPool(in value, k, left, right int64, zero *torch.Tensor) value {
	p := min((in.length()+left+right)/k, (in.p+left+k-1)/k)
	hi := min(in.length(), p*k-left)
	x := f.spliced(in, left, hi, p*k-left-hi)
	defer x.Free()
	return value{t: x.MaxPool1d(torch.MaxPool1dOptions{Kernel: k}), p: p, zero: zero}
}

// pad is zero padding over a prefix: channels are padded as they are, the
// length's left padding shifts the prefix (its right padding is zero's).
func (f *prefixForward) pad(op Op, in value, zero *torch.Tensor) (value, error) {
	switch {
	case len(op.Pads) == 4 && op.Pads[0] == 0 && op.Pads[1] == 0:
		// Channels, padded over the [B, p, C] layout.
		tt := in.t.Transpose(1, 2)
		defer tt.Free()
		padded := tt.Pad(op.Pads[2:], 0)
		defer padded.Free()
		return value{t: padded.Transpose(1, 2), p: in.p, zero: zero}, nil
	case len(op.Pads) != 2:
		return value{}, fmt.Errorf("padding %v: want the length's or the channels'", op.Pads)
	}
	left, right := op.Pads[0], op.Pads[1]
	if in.p == in.length() {
		return value{t: f.spliced(in, left, in.p, right), p: in.p + left + right, zero: zero}, nil
	}
	return value{t: f.spliced(in, left, in.p, 0), p: in.p + left, zero: zero}, nil
}

// full runs op on whole activations (vals by name).
func (f *prefixForward) full(op Op, vals map[string]*torch.Tensor) (*torch.Tensor, error) {
	x := vals[op.In]
	switch op.Kind {
	case OpCopy:
		return x, nil
	case OpConv1d:
		w := f.params[op.Param+".weight"]
		if op.Same {
			x = samePad(x, w.Shape()[2], max(op.Stride, 1))
		}
		return x.Conv1d(w, f.params[op.Param+".bias"], torch.Conv1dOptions{Stride: max(op.Stride, 1), Groups: op.Groups}), nil
	case OpBatchNorm:
		p := op.Param
		return x.BatchNorm(f.params[p+".weight"], f.params[p+".bias"], f.params[p+".running_mean"], f.params[p+".running_var"], false, 0.1, batchNormEps), nil
	case OpReLU:
		return x.ReLU(), nil
	case OpPad:
		return x.Pad(op.Pads, 0), nil
	case OpMaxPool1d:
		return x.MaxPool1d(torch.MaxPool1dOptions{Kernel: op.Kernel}), nil
	case OpMean:
		return x.Mean(false, -1), nil
	case OpAdd:
		return x.Add(vals[op.In2]), nil
	case OpFlatten:
		return x.Reshape(x.Shape()[0], -1), nil
	case OpLinear:
		return x.Linear(f.params[op.Param+".weight"], f.params[op.Param+".bias"]), nil
	}
	return nil, fmt.Errorf("unknown step kind %v", op.Kind)
}
