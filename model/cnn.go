package model

import "github.com/deeppacket/deeppacket/torch"

// CNNHParams are the CNN's hyperparameter names, in the reference's order.
var CNNHParams = []string{"c1_output_dim", "c1_kernel_size", "c1_stride", "c2_output_dim", "c2_kernel_size", "c2_stride", "output_dim", "signal_length"}

// CNN is the reference's CNN: conv1 (Conv1d, ReLU), conv2 (Conv1d, ReLU),
// MaxPool1d(2), then the dense head.
type CNN struct {
	base
	conv1, conv2 *torch.Sequential
	pooledHead
}

func newCNN(b base) (*CNN, error) {
	h, err := b.spec.HParams.ints(CNNHParams...)
	if err != nil {
		return nil, err
	}
	c1Out, c1K, c1S, c2Out, c2K, c2S, outDim, signal := h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
	root := b.store.Root()
	m := &CNN{base: b}
	if m.conv1, err = torch.NewSequential(root.Sub("conv1"),
		torch.Conv1dLayer(torch.Conv1dConfig{In: 1, Out: c1Out, Kernel: c1K, Stride: c1S}), torch.ReLULayer()); err != nil {
		return nil, err
	}
	if m.conv2, err = torch.NewSequential(root.Sub("conv2"),
		torch.Conv1dLayer(torch.Conv1dConfig{In: c1Out, Out: c2Out, Kernel: c2K, Stride: c2S}), torch.ReLULayer()); err != nil {
		return nil, err
	}
	if m.pooledHead, err = newPooledHead(b, signal, outDim, m.convs); err != nil {
		return nil, err
	}
	return m, nil
}

// convs is conv1, then conv2.
func (m *CNN) convs(x *torch.Tensor) *torch.Tensor {
	return torch.Chain(x, m.conv1, m.conv2)
}
