package model

import (
	"fmt"

	"github.com/deeppacket/deeppacket/torch"
)

// OpKind names one step of a model's inference forward.
type OpKind int

// The steps of an inference forward. Each reads In (and In2) and writes
// Out, values named "x" (the input, then the running activation) and
// "identity" (a ResNet block's shortcut).
const (
	// OpCopy is Out = In.
	OpCopy OpKind = iota
	// OpConv1d is nn.Conv1d with Param's weight and bias, Stride and
	// Groups, no padding, or the reference's "SAME" padding when Same:
	// total max(0, (ceil(L/s)-1)*s + k - L) zeros, the left half rounded
	// down (ONNX's auto_pad SAME_UPPER).
	OpConv1d
	// OpBatchNorm is BatchNorm1d in eval mode over Param's weight, bias,
	// running_mean and running_var, eps 1e-5.
	OpBatchNorm
	// OpReLU is ReLU.
	OpReLU
	// OpPad pads with zeros, Pads as torch.constant_pad_nd reads them:
	// (before, after) pairs from the last axis backwards.
	OpPad
	// OpMaxPool1d is max_pool1d over the last axis, kernel and stride
	// Kernel. Unbatched: In is 2-D and read as PyTorch reads it, one
	// unbatched [channels, length] signal.
	OpMaxPool1d
	// OpMean is the mean over the last axis, which is dropped.
	OpMean
	// OpAdd is Out = In + In2.
	OpAdd
	// OpFlatten is In.reshape(batch, -1).
	OpFlatten
	// OpLinear is nn.Linear with Param's weight and bias.
	OpLinear
)

// Op is one step of an inference forward (see InferenceOps).
type Op struct {
	Kind         OpKind
	Out, In, In2 string
	// Param is the state_dict prefix of the step's tensors ("conv1.0":
	// conv1.0.weight, conv1.0.bias).
	Param                  string
	Kernel, Stride, Groups int64
	Same, Unbatched        bool
	Pads                   []int64
}

// ops accumulates an inference forward.
type ops []Op

func (o *ops) add(op Op) {
	if op.Out == "" {
		op.Out = "x"
	}
	if op.In == "" {
		op.In = "x"
	}
	*o = append(*o, op)
}

// head is the reference's dense layers (and the SAE's): flatten, fc1…fcN
// (Linear, ReLU), then out.
func (o *ops) head(n int) {
	o.add(Op{Kind: OpFlatten})
	for i := range n {
		o.add(Op{Kind: OpLinear, Param: fmt.Sprintf("fc%d.0", i+1)})
		o.add(Op{Kind: OpReLU})
	}
	o.add(Op{Kind: OpLinear, Param: "out"})
}

// conv is the SAME-padded convolution c of the ResNet.
func (o *ops) conv(prefix string, c *sameConv) {
	o.add(Op{Kind: OpConv1d, Param: prefix, Kernel: c.kernel, Stride: c.stride, Groups: max(c.conv.Options.Groups, 1), Same: true})
}

// bnReLU is the BatchNorm1d at prefix, then ReLU.
func (o *ops) bnReLU(prefix string) {
	o.add(Op{Kind: OpBatchNorm, Param: prefix})
	o.add(Op{Kind: OpReLU})
}

// InferenceOps is m's forward as a list of steps over its state_dict
// names: inference, with dropout off and batch norm on the running
// statistics, whatever m's mode. The input "x" is [batch, 1,
// signal_length]; the last step leaves the logits [batch, output_dim] in
// "x". TorchScriptSource and the ONNX export (package ckpt/onnx) write
// these steps in their formats.
func InferenceOps(m Model) ([]Op, error) {
	var o ops
	switch m := m.(type) {
	case *CNN:
		for _, c := range []struct {
			name string
			conv *torch.Sequential
		}{{"conv1", m.conv1}, {"conv2", m.conv2}} {
			conv := c.conv.Modules[0].(*torch.Conv1d)
			o.add(Op{Kind: OpConv1d, Param: c.name + ".0", Kernel: conv.Weight.Shape()[2],
				Stride: max(conv.Options.Stride, 1), Groups: max(conv.Options.Groups, 1)})
			o.add(Op{Kind: OpReLU})
		}
		o.add(Op{Kind: OpMaxPool1d, Kernel: 2})
		o.head(len(m.head.fc))
	case *ResNet:
		r := m.net
		p := "conv1.0."
		o.conv(p+"first_block_conv.conv", r.firstConv)
		o.bnReLU(p + "first_block_bn")
		for i, b := range r.blocks {
			bp := fmt.Sprintf("%sbasicblock_list.%d.", p, i)
			o.add(Op{Kind: OpCopy, Out: "identity"})
			if !b.first {
				o.bnReLU(bp + "bn1")
			}
			o.conv(bp+"conv1.conv", b.conv1)
			o.bnReLU(bp + "bn2")
			o.conv(bp+"conv2.conv", b.conv2)
			if b.downsample {
				// CustomMaxPool1d: SAME padding with stride 1 (k-1 zeros),
				// then MaxPool1d(k).
				left, right := samePadding(1, b.stride, 1)
				o.add(Op{Kind: OpPad, Out: "identity", In: "identity", Pads: []int64{left, right}})
				o.add(Op{Kind: OpMaxPool1d, Out: "identity", In: "identity", Kernel: b.stride})
			}
			if b.out != b.in {
				ch1 := (b.out - b.in) / 2
				o.add(Op{Kind: OpPad, Out: "identity", In: "identity", Pads: []int64{0, 0, ch1, b.out - b.in - ch1}})
			}
			o.add(Op{Kind: OpAdd, In2: "identity"})
		}
		o.bnReLU(p + "final_bn")
		o.add(Op{Kind: OpMean})
		o.add(Op{Kind: OpLinear, Param: p + "dense"})
		o.add(Op{Kind: OpReLU})
		// The reference max-pools conv1's 2-D output: one unbatched signal.
		o.add(Op{Kind: OpMaxPool1d, Kernel: 2, Unbatched: true})
		o.head(len(m.head.fc))
	case *SAE:
		o.head(len(m.fc))
	default:
		return nil, fmt.Errorf("no inference forward for a %T", m)
	}
	return o, nil
}
