package deeppacket

import (
	"fmt"

	"github.com/deeppacket/deeppacket/torch"
)

// Batch gathers feature vectors into the model's input layout: each vector
// zero-padded (or cut) to signal_length and scaled by 1/255, as the
// reference's loader does. Reuse one Batch across calls to keep its buffer.
type Batch struct {
	signal int
	data   []float32
	n      int
}

// NewBatch makes an empty batch for vectors of signal bytes.
func NewBatch(signal int) *Batch { return &Batch{signal: signal} }

// Add appends one vector (the transform's bytes, before padding and
// scaling).
func (b *Batch) Add(feature []byte) {
	if need := (b.n + 1) * b.signal; cap(b.data) < need {
		grown := make([]float32, need, max(need, 2*cap(b.data)))
		copy(grown, b.data)
		b.data = grown
	}
	b.data = b.data[:(b.n+1)*b.signal]
	row := b.data[b.n*b.signal:]
	k := min(len(feature), b.signal)
	for i, c := range feature[:k] {
		row[i] = float32(c) / 255
	}
	clear(row[k:])
	b.n++
}

// Len is the number of vectors in the batch.
func (b *Batch) Len() int { return b.n }

// Reset empties the batch, keeping its buffer.
func (b *Batch) Reset() { b.n, b.data = 0, b.data[:0] }

// Probabilities runs m on the batch in eval mode without autograd, on m's
// device, and returns the softmax of its logits: Len()×OutputDim values,
// row-major. Every intermediate tensor is freed before it returns.
func Probabilities(m Model, b *Batch) ([]float32, error) {
	if b.n == 0 {
		return nil, nil
	}
	if m.Store().Training() {
		return nil, fmt.Errorf("classify: the model is in training mode (call Store().Eval())")
	}
	var out []float32
	err := torch.NoGrad(func() error {
		s := torch.NewScope()
		defer s.Close()
		x := torch.FromSlice(s, b.data, []int64{int64(b.n), 1, int64(b.signal)}, m.Store().Device())
		var err error
		out, err = m.Forward(x).Softmax(1).Float32s()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("classify a batch of %d: %w", b.n, err)
	}
	return out, nil
}
