package model

import (
	"slices"
	"testing"

	"github.com/deeppacket/deeppacket/torch"
)

// TestSAEPretraining: each layer's autoencoder learns (its reconstruction
// loss falls on a fixed batch), pretraining changes the layer's weights but
// not the layers below, and the classifier gives [batch, output_dim].
func TestSAEPretraining(t *testing.T) {
	if err := torch.ManualSeed(7); err != nil {
		t.Fatal(err)
	}
	hp := HParams{"hidden_dims": []any{int64(32), int64(16)}, "output_dim": int64(5), "signal_length": int64(64)}
	m, err := New(Spec{Kind: KindSAE, HParams: hp})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sae := m.(*SAE)
	if sae.Layers() != 2 {
		t.Fatalf("%d layers, want 2", sae.Layers())
	}
	batch := torch.Rand(nil, []int64{32, 1, 64}, torch.Float32, torch.CPU)
	defer batch.Free()
	snapshot := func(name string) []float32 {
		v, _ := m.Store().Lookup(name)
		f, err := v.Tensor.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for layer := range sae.Layers() {
		below := snapshot("fc1.0.weight")
		p, err := sae.Pretrainer(layer)
		if err != nil {
			t.Fatal(err)
		}
		opt := torch.NewAdam(p.Parameters(), torch.AdamConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8})
		var first, last float64
		for step := range 60 {
			s := torch.NewScope()
			loss, err := p.Step(batch, opt)
			s.Close()
			if err != nil {
				t.Fatal(err)
			}
			if step == 0 {
				first = loss
			}
			last = loss
		}
		opt.Close()
		p.Close()
		if !(last < first*0.7) {
			t.Errorf("layer %d: reconstruction loss %g → %g, want a clear fall", layer, first, last)
		}
		if layer > 0 && !slices.Equal(below, snapshot("fc1.0.weight")) {
			t.Errorf("layer %d pretraining changed fc1", layer)
		}
	}
	if _, err := sae.Pretrainer(2); err == nil {
		t.Error("Pretrainer(2) of a 2-layer SAE should fail")
	}
	s := torch.NewScope()
	defer s.Close()
	y := m.Forward(batch)
	if err := y.Err(); err != nil || !slices.Equal(y.Shape(), []int64{32, 5}) {
		t.Fatalf("forward: shape %v, %v", y.Shape(), err)
	}
	y.Free()
}
