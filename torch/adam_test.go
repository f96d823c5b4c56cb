package torch

import (
	"fmt"
	"testing"
)

// The fused Adam step rounds as the unfused one (PyTorch's own operations)
// does, element for element: on the CPUs we test (with FMA) the two agree to
// the last bit, here over ten steps of a large parameter, with and without
// weight decay.
func TestAdamFusedEqualsUnfused(t *testing.T) {
	for _, decay := range []float64{0, 0.01} {
		t.Run(fmt.Sprintf("weight_decay=%g", decay), func(t *testing.T) {
			params := make([]*Tensor, 2)
			opts := make([]*Adam, 2)
			for i, fused := range []bool{false, true} {
				if err := ManualSeed(1); err != nil {
					t.Fatal(err)
				}
				params[i] = Randn(nil, []int64{100000}, Float32, CPU)
				defer params[i].Free()
				if err := params[i].SetRequiresGrad(true); err != nil {
					t.Fatal(err)
				}
				c := DefaultAdam()
				c.Fused, c.WeightDecay = fused, decay
				opts[i] = NewAdam([]*Tensor{params[i]}, c)
				defer opts[i].Close()
			}
			for step := range 10 {
				s := NewScope()
				if err := ManualSeed(uint64(step + 5)); err != nil {
					t.Fatal(err)
				}
				g := Randn(s, []int64{100000}, Float32, CPU)
				for i, p := range params {
					if err := opts[i].ZeroGrad(); err != nil {
						t.Fatal(err)
					}
					if err := p.Mul(g).Mul(p).Sum(false).Backward(); err != nil {
						t.Fatal(err)
					}
					if err := opts[i].Step(); err != nil {
						t.Fatal(err)
					}
				}
				s.Close()
				unfused, err := params[0].Float32s()
				if err != nil {
					t.Fatal(err)
				}
				fused, err := params[1].Float32s()
				if err != nil {
					t.Fatal(err)
				}
				for i := range unfused {
					if unfused[i] != fused[i] {
						t.Fatalf("step %d: element %d is %v fused, %v unfused", step+1, i, fused[i], unfused[i])
					}
				}
			}
		})
	}
}
