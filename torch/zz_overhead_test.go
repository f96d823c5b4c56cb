package torch

import "testing"

func BenchmarkNarrowFree(b *testing.B) {
	x := Zeros(nil, []int64{64, 16, 128}, Float32, CPU)
	defer x.Free()
	for b.Loop() {
		y := x.Narrow(2, 0, 64)
		y.Free()
	}
}

func BenchmarkReLUSmall(b *testing.B) {
	x := Zeros(nil, []int64{64, 16, 128}, Float32, CPU)
	defer x.Free()
	for b.Loop() {
		y := x.ReLU()
		y.Free()
	}
}
