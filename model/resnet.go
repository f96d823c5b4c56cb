package model

import (
	"fmt"

	"github.com/deeppacket/deeppacket/torch"
)

// ResNetHParams are the ResNet's hyperparameter names, in the reference's
// order.
var ResNetHParams = []string{"c1_output_dim", "c1_kernel_size", "c1_stride", "c1_groups", "c1_n_block", "output_dim", "signal_length"}

// The reference's ResNet1d gaps: block i downsamples when i%2 == 1 and
// doubles its channels when i%4 == 0 (i > 0).
const (
	downsampleGap     = 2
	increaseFilterGap = 4
)

// ResNet is the reference's ResNet: conv1 = Sequential(ResNet1d, ReLU),
// whose output is 2-D [batch, c1_output_dim]; MaxPool1d(2) over that, which
// halves the feature axis (PyTorch reads a 2-D input as one unbatched
// [channels, length] signal); then the dense head.
type ResNet struct {
	base
	net *resNet1d
	pooledHead
}

func newResNet(b base) (*ResNet, error) {
	h, err := b.spec.HParams.ints(ResNetHParams...)
	if err != nil {
		return nil, err
	}
	c1Out, c1K, c1S, groups, nBlock, outDim, signal := h[0], h[1], h[2], h[3], h[4], h[5], h[6]
	root := b.store.Root()
	m := &ResNet{base: b}
	if m.net, err = newResNet1d(root.Sub("conv1").Sub("0"), c1Out, c1K, c1S, groups, nBlock, c1Out, b.dropout(0.5)); err != nil {
		return nil, err
	}
	if m.pooledHead, err = newPooledHead(b, signal, outDim, m.convs); err != nil {
		return nil, err
	}
	return m, nil
}

// convs is conv1: ResNet1d, then ReLU.
func (m *ResNet) convs(x *torch.Tensor) *torch.Tensor {
	return torch.Chain(x, m.net, relu)
}

// samePad pads the last axis with zeros as the reference's "SAME" conv and
// max pool do: total max(0, (ceil(L/s)-1)*s + k - L), the left half rounded
// down.
func samePad(x *torch.Tensor, kernel, stride int64) *torch.Tensor {
	if x.Err() != nil {
		return x
	}
	l := x.Shape()[len(x.Shape())-1]
	left, right := samePadding(l, kernel, stride)
	return x.Pad([]int64{left, right}, 0)
}

func samePadding(l, kernel, stride int64) (left, right int64) {
	out := (l + stride - 1) / stride
	p := max(0, (out-1)*stride+kernel-l)
	return p / 2, p - p/2
}

// sameConv is the reference's CustomConv1d: SAME padding, then a Conv1d
// named "conv".
type sameConv struct {
	conv           *torch.Conv1d
	kernel, stride int64
}

func newSameConv(p torch.Path, in, out, kernel, stride, groups int64) (*sameConv, error) {
	c, err := torch.NewConv1d(p.Sub("conv"), torch.Conv1dConfig{In: in, Out: out, Kernel: kernel, Stride: stride, Groups: groups})
	if err != nil {
		return nil, err
	}
	return &sameConv{conv: c, kernel: kernel, stride: stride}, nil
}

func (c *sameConv) Forward(x *torch.Tensor) *torch.Tensor {
	return torch.Chain(x, torch.Func(c.pad), c.conv)
}

func (c *sameConv) pad(x *torch.Tensor) *torch.Tensor { return samePad(x, c.kernel, c.stride) }

// basicBlock is the reference's BasicBlock with use_bn and use_do on.
type basicBlock struct {
	first, downsample bool
	in, out, stride   int64
	bn1, bn2          *torch.BatchNorm1d
	do1, do2          torch.Module
	conv1, conv2      *sameConv
}

func newBasicBlock(p torch.Path, in, out, kernel, stride, groups int64, downsample, first bool, dropout float64) (*basicBlock, error) {
	if !downsample {
		stride = 1
	}
	b := &basicBlock{first: first, downsample: downsample, in: in, out: out, stride: stride}
	var err error
	// Creation order is the reference's __init__ order (its state_dict
	// order, and the order of the generator's draws).
	if b.bn1, err = torch.NewBatchNorm1d(p.Sub("bn1"), in); err != nil {
		return nil, err
	}
	do, _ := torch.DropoutLayer(dropout)(p.Sub("do1"))
	b.do1 = do
	if b.conv1, err = newSameConv(p.Sub("conv1"), in, out, kernel, stride, groups); err != nil {
		return nil, err
	}
	if b.bn2, err = torch.NewBatchNorm1d(p.Sub("bn2"), out); err != nil {
		return nil, err
	}
	do, _ = torch.DropoutLayer(dropout)(p.Sub("do2"))
	b.do2 = do
	if b.conv2, err = newSameConv(p.Sub("conv2"), out, out, kernel, 1, groups); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *basicBlock) Forward(x *torch.Tensor) *torch.Tensor {
	return torch.Tidy(x, func(x *torch.Tensor) *torch.Tensor {
		out := x
		if !b.first {
			out = torch.Chain(out, b.bn1, relu, b.do1)
		}
		out = torch.Chain(out, b.conv1, b.bn2, relu, b.do2, b.conv2)
		identity := x
		if b.downsample {
			// CustomMaxPool1d: SAME padding computed with stride 1 (k-1
			// zeros), then MaxPool1d(k) with its default stride k.
			identity = samePad(identity, b.stride, 1).MaxPool1d(torch.MaxPool1dOptions{Kernel: b.stride})
		}
		if b.out != b.in {
			// Zero channels, half before and the rest after.
			ch1 := (b.out - b.in) / 2
			identity = identity.Pad([]int64{0, 0, ch1, b.out - b.in - ch1}, 0)
		}
		return out.Add(identity)
	})
}

// relu is ReLU as a module of a Chain.
var relu = torch.ReLU{}

// resNet1d is the reference's ResNet1d (from hsd1503's resnet1d).
type resNet1d struct {
	firstConv      *sameConv
	firstBN, final *torch.BatchNorm1d
	blocks         []*basicBlock
	dense          *torch.Linear
	layers         []torch.Module // the forward pass, in order
}

// blockChannels is the reference's in/out channel rule for block i.
func blockChannels(i, base int64) (in, out int64) {
	if i == 0 {
		return base, base
	}
	in = base << ((i - 1) / increaseFilterGap)
	out = in
	if i%increaseFilterGap == 0 {
		out = in * 2
	}
	return in, out
}

func newResNet1d(p torch.Path, baseFilters, kernel, stride, groups, nBlock, nClasses int64, dropout float64) (*resNet1d, error) {
	if nBlock > 64 {
		return nil, fmt.Errorf("c1_n_block %d: at most 64 blocks", nBlock)
	}
	r := &resNet1d{}
	var err error
	if r.firstConv, err = newSameConv(p.Sub("first_block_conv"), 1, baseFilters, kernel, 1, 1); err != nil {
		return nil, err
	}
	if r.firstBN, err = torch.NewBatchNorm1d(p.Sub("first_block_bn"), baseFilters); err != nil {
		return nil, err
	}
	out := baseFilters
	list := p.Sub("basicblock_list")
	for i := range nBlock {
		var in int64
		in, out = blockChannels(i, baseFilters)
		b, err := newBasicBlock(list.Sub(fmt.Sprint(i)), in, out, kernel, stride, groups, i%downsampleGap == 1, i == 0, dropout)
		if err != nil {
			return nil, err
		}
		r.blocks = append(r.blocks, b)
	}
	if r.final, err = torch.NewBatchNorm1d(p.Sub("final_bn"), out); err != nil {
		return nil, err
	}
	if r.dense, err = torch.NewLinear(p.Sub("dense"), out, nClasses); err != nil {
		return nil, err
	}
	r.layers = []torch.Module{r.firstConv, r.firstBN, relu}
	for _, b := range r.blocks {
		r.layers = append(r.layers, b)
	}
	meanOverLength := torch.Func(func(t *torch.Tensor) *torch.Tensor { return t.Mean(false, -1) })
	r.layers = append(r.layers, r.final, relu, meanOverLength, r.dense)
	return r, nil
}

func (r *resNet1d) Forward(x *torch.Tensor) *torch.Tensor { return torch.Chain(x, r.layers...) }
