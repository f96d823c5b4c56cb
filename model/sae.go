package model

import (
	"fmt"

	"github.com/deeppacket/deeppacket/torch"
)

// SAE is the paper's stacked autoencoder, which the reference never built:
// fully connected layers signal_length→400→300→200→100→50 (hyperparameter
// hidden_dims), each Linear, Dropout(0.05), ReLU and named fc1, fc2, … as
// the reference names its dense layers, then out (→output_dim). Each hidden
// layer is first pretrained greedily as an autoencoder (Pretrainer), then
// the whole network is fine-tuned as a classifier.
type SAE struct {
	base
	hidden []int64
	fc     []*torch.Sequential
	out    *torch.Linear
}

func newSAE(b base) (*SAE, error) {
	h, err := b.spec.HParams.ints("signal_length", "output_dim")
	if err != nil {
		return nil, err
	}
	m := &SAE{base: b}
	if raw, ok := b.spec.HParams["hidden_dims"]; ok {
		list, ok := raw.([]any)
		if !ok || len(list) == 0 {
			return nil, fmt.Errorf("hyperparameter hidden_dims = %v: want a non-empty list of sizes", raw)
		}
		for i := range list {
			v, err := HParams{"hidden_dims": list[i]}.ints("hidden_dims")
			if err != nil {
				return nil, err
			}
			m.hidden = append(m.hidden, v[0])
		}
	} else {
		m.hidden = []int64{400, 300, 200, 100, 50}
		m.spec.HParams["hidden_dims"] = []any{int64(400), int64(300), int64(200), int64(100), int64(50)}
	}
	root := b.store.Root()
	in := h[0]
	for i, d := range m.hidden {
		fc, err := torch.NewSequential(root.Sub(fmt.Sprintf("fc%d", i+1)),
			torch.LinearLayer(in, d), torch.DropoutLayer(b.dropout(0.05)), torch.ReLULayer())
		if err != nil {
			return nil, err
		}
		m.fc = append(m.fc, fc)
		in = d
	}
	if m.out, err = torch.NewLinear(root.Sub("out"), in, h[1]); err != nil {
		return nil, err
	}
	return m, nil
}

// Layers is the number of hidden layers, each pretrained on its own.
func (m *SAE) Layers() int { return len(m.fc) }

// encode runs the first n hidden layers.
func (m *SAE) encode(x *torch.Tensor, n int) *torch.Tensor {
	if x.Err() != nil {
		return x
	}
	x = x.Reshape(x.Shape()[0], -1)
	for _, fc := range m.fc[:n] {
		x = fc.Forward(x)
	}
	return x
}

// Forward maps [batch, 1, signal_length] to logits [batch, output_dim].
func (m *SAE) Forward(x *torch.Tensor) *torch.Tensor {
	return m.out.Forward(m.encode(x, len(m.fc)))
}

// Pretrainer trains one hidden layer of an SAE as an autoencoder: the layer
// (encoder) and a decoder back to its input size, on the output of the
// layers below, which stay fixed. The decoder is not part of the model and
// is freed by Close.
type Pretrainer struct {
	sae     *SAE
	layer   int
	encoder *torch.Sequential
	decoder *torch.Linear
	store   *torch.Store // the decoder's
}

// Pretrainer prepares the pretraining of hidden layer (0-based). The
// decoder is initialised as nn.Linear from torch's default generator.
func (m *SAE) Pretrainer(layer int) (*Pretrainer, error) {
	if layer < 0 || layer >= len(m.fc) {
		return nil, fmt.Errorf("SAE layer %d: the model has %d hidden layers", layer, len(m.fc))
	}
	var in int64
	if layer == 0 {
		in, _ = m.spec.HParams.Int("signal_length")
	} else {
		in = m.hidden[layer-1]
	}
	store := torch.NewStore()
	dec, err := torch.NewLinear(store.Root().Sub("decoder"), m.hidden[layer], in)
	if err != nil {
		store.Close()
		return nil, err
	}
	if err := store.To(m.store.Device()); err != nil {
		store.Close()
		return nil, err
	}
	return &Pretrainer{sae: m, layer: layer, encoder: m.fc[layer], decoder: dec, store: store}, nil
}

// Parameters are what the layer's optimiser updates: the layer's and the
// decoder's.
func (p *Pretrainer) Parameters() []*torch.Tensor {
	enc := p.encoder.Modules[0].(*torch.Linear)
	return []*torch.Tensor{enc.Weight, enc.Bias, p.decoder.Weight, p.decoder.Bias}
}

// Loss is the reconstruction error (mean squared) of the layer's input for
// a batch x [batch, 1, signal_length]. The layers below run without
// gradients; dropout follows the model's Train/Eval mode.
func (p *Pretrainer) Loss(x *torch.Tensor) *torch.Tensor {
	var in *torch.Tensor
	if err := torch.NoGrad(func() error {
		in = p.sae.encode(x, p.layer).Detach()
		return in.Err()
	}); err != nil {
		return in
	}
	return p.decoder.Forward(p.encoder.Forward(in)).MSELoss(in, torch.ReductionMean)
}

// Step is one pretraining step on batch x: zero the gradients, compute the
// loss, back-propagate and update. It returns the loss. Run it inside a
// scope that the caller closes.
func (p *Pretrainer) Step(x *torch.Tensor, opt torch.Optimizer) (float64, error) {
	if err := opt.ZeroGrad(); err != nil {
		return 0, err
	}
	loss := p.Loss(x)
	if err := loss.Backward(); err != nil {
		return 0, fmt.Errorf("pretrain layer %d: %w", p.layer+1, err)
	}
	if err := opt.Step(); err != nil {
		return 0, fmt.Errorf("pretrain layer %d: %w", p.layer+1, err)
	}
	return loss.Item()
}

// Close frees the decoder.
func (p *Pretrainer) Close() { p.store.Close() }
