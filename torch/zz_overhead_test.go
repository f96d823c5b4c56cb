package torch

import "testing"

func clx(b, c, l int64) *Tensor {
	x := Randn(nil, []int64{b, l, c}, Float32, CPU)
	return x.Transpose(1, 2)
}

func BenchmarkReLUSmall(b *testing.B) {
	x := clx(64, 16, 128)
	defer x.Free()
	for b.Loop() {
		y := x.ReLU()
		y.Free()
	}
}

func BenchmarkAffineReLUInto(b *testing.B) {
	x := clx(64, 16, 128)
	out := clx(64, 16, 128)
	sc := Randn(nil, []int64{16}, Float32, CPU)
	sh := Randn(nil, []int64{16}, Float32, CPU)
	for b.Loop() {
		if err := x.AffineReLUInto(out, sc, sh); err != nil {
			b.Fatal(err)
		}
	}
}
