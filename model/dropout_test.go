package model

import (
	"slices"
	"testing"

	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/torch"
)

// TestSpecDropout: with Spec.Dropout 0, two training-mode forwards of one
// batch agree (no unit dropped; batch norm uses the batch's statistics
// either time), for every kind; without it, the reference's dropout draws
// other masks each time.
func TestSpecDropout(t *testing.T) {
	zero := 0.0
	for _, tc := range []struct {
		kind    Kind
		dropout *float64
		same    bool
	}{
		{KindCNN, &zero, true}, {KindResNet, &zero, true}, {KindSAE, &zero, true},
		{KindCNN, nil, false}, {KindResNet, nil, false}, {KindSAE, nil, false},
	} {
		h, err := DefaultHParams(tc.kind, labels.Application)
		if err != nil {
			t.Fatal(err)
		}
		h["signal_length"] = int64(200)
		if err := torch.ManualSeed(3); err != nil {
			t.Fatal(err)
		}
		m, err := New(Spec{Kind: tc.kind, HParams: h, Dropout: tc.dropout})
		if err != nil {
			t.Fatal(err)
		}
		s := torch.NewScope()
		x := torch.Rand(s, []int64{4, 1, 200}, torch.Float32, torch.CPU)
		forward := func() []float32 {
			defer m.Store().Train(m.Store().Train(true))
			var out []float32
			err := torch.NoGrad(func() error {
				var err error
				out, err = s.Own(m.Forward(x)).Float32s()
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		if same := slices.Equal(forward(), forward()); same != tc.same {
			t.Errorf("%s, dropout 0 %v: two training forwards agree: %v, want %v", tc.kind, tc.dropout != nil, same, tc.same)
		}
		s.Close()
		m.Close()
	}
}
