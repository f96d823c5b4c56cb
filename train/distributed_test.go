package train

import (
	"slices"
	"testing"

	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// TestUnusedParameters: the probe that decides DDP's
// find_unused_parameters names the ResNet's first-block bn1 and nothing of
// the CNN or the SAE, leaves no gradient behind, and draws nothing from the
// generator (a training run is the same with or without it).
func TestUnusedParameters(t *testing.T) {
	for _, tc := range []struct {
		kind model.Kind
		want []string
	}{
		{model.KindCNN, nil},
		{model.KindResNet, []string{"conv1.0.basicblock_list.0.bn1.weight", "conv1.0.basicblock_list.0.bn1.bias"}},
		{model.KindSAE, nil},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			h, err := model.DefaultHParams(tc.kind, labels.Application)
			if err != nil {
				t.Fatal(err)
			}
			h["signal_length"] = int64(300)
			m, err := model.New(model.Spec{Kind: tc.kind, HParams: h})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if err := torch.ManualSeed(5); err != nil {
				t.Fatal(err)
			}
			got, err := unusedParameters(m, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("unused parameters %v, want %v", got, tc.want)
			}
			for _, v := range m.Store().Vars() {
				if g := v.Tensor.Grad(); g != nil {
					g.Free()
					t.Errorf("%s keeps a gradient", v.Name)
				}
			}
			if !m.Store().Training() {
				t.Error("the probe left the model in eval mode")
			}
			after := torch.Rand(nil, []int64{4}, torch.Float32, torch.CPU)
			defer after.Free()
			if err := torch.ManualSeed(5); err != nil {
				t.Fatal(err)
			}
			fresh := torch.Rand(nil, []int64{4}, torch.Float32, torch.CPU)
			defer fresh.Free()
			if eq, err := after.Equal(fresh); err != nil || !eq {
				t.Errorf("the probe drew from the generator (%v)", err)
			}
		})
	}
}
