package torch_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/torch"
)

// TestChannelsLast1d: Conv1d, BatchNorm, MaxPool1d and Cat along the
// length over a [N, C, L] tensor whose channels are innermost in memory (a
// transposed [N, L, C]) answer in that layout (strides [C'L', 1, C']), with
// the values they give for the same tensor in row-major order: the
// convolution within the float32 bound of a sum of C*k+1 products taken in
// another order (2·γ(n)·Σ|x·w|, per output), batch norm (x·α + β per
// channel) within a few roundings of its terms (2⁻²²·(|x·α| + |β|): with or
// without a fused multiply-add), max pooling and concatenation exactly.
func TestChannelsLast1d(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	if err := torch.ManualSeed(3); err != nil {
		t.Fatal(err)
	}
	randn := func(shape ...int64) *torch.Tensor { return torch.Randn(s, shape, torch.Float32, torch.CPU) }
	type op struct {
		name     string
		channels int64
		apply    func(x *torch.Tensor) *torch.Tensor
		// bound is the tolerance per output for x (nil: exact).
		bound func(x *torch.Tensor) *torch.Tensor
	}
	conv := func(name string, in, out, k, stride, pad int64) op {
		w, b := randn(out, in, k).MulScalar(0.2), randn(out)
		o := torch.Conv1dOptions{Stride: stride, Padding: pad}
		n := float64(in*k + 1)
		gamma := n * 0x1p-24 / (1 - n*0x1p-24)
		return op{name, in,
			func(x *torch.Tensor) *torch.Tensor { return x.Conv1d(w, b, o) },
			func(x *torch.Tensor) *torch.Tensor {
				return x.Abs().Conv1d(w.Abs(), b.Abs(), o).MulScalar(2 * gamma)
			}}
	}
	mean, vr, g, beta := randn(16), randn(16).Abs().AddScalar(0.5), randn(16), randn(16)
	tests := []op{
		conv("conv1d 16 to 16, k5, SAME", 16, 16, 5, 1, 2),
		conv("conv1d 16 to 16, k5, stride 3", 16, 16, 5, 3, 1),
		conv("conv1d 1 to 16, k5", 1, 16, 5, 1, 2),
		conv("conv1d 16 to 32, k4, stride 3", 16, 32, 4, 3, 0),
		{"batch norm, eval", 16, func(x *torch.Tensor) *torch.Tensor {
			return x.BatchNorm(g, beta, mean, vr, false, 0.1, 1e-5)
		}, func(x *torch.Tensor) *torch.Tensor {
			alpha := g.Div(vr.AddScalar(1e-5).Sqrt())
			b := beta.Sub(mean.Mul(alpha))
			return x.Mul(alpha.Reshape(1, -1, 1)).Abs().Add(b.Reshape(1, -1, 1).Abs()).MulScalar(0x1p-22)
		}},
		{"max_pool1d 3", 16, func(x *torch.Tensor) *torch.Tensor {
			return x.MaxPool1d(torch.MaxPool1dOptions{Kernel: 3})
		}, nil},
		{"max_pool1d 2, stride 1", 16, func(x *torch.Tensor) *torch.Tensor {
			return x.MaxPool1d(torch.MaxPool1dOptions{Kernel: 2, Stride: 1})
		}, nil},
		{"cat along the length, with broadcast pieces", 16, func(x *torch.Tensor) *torch.Tensor {
			shape := x.Shape()
			edge := x.Narrow(0, 0, 1).Narrow(2, 0, 3).Expand(shape[0], shape[1], 3)
			return torch.Cat([]*torch.Tensor{edge, x, x.Narrow(2, 0, 7)}, 2)
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nlc := randn(4, 101, tc.channels) // [N, L, C] in row-major order
			x := nlc.Transpose(1, 2)          // [N, C, L], channels innermost
			vals, err := x.Contiguous().Float32s()
			if err != nil {
				t.Fatal(err)
			}
			rowMajor := torch.FromSlice(s, vals, x.Shape(), torch.CPU) // strides [C*L, L, 1]
			if slices.Equal(x.Stride(), rowMajor.Stride()) {
				t.Fatalf("the transposed input has row-major strides %v", x.Stride())
			}
			got, want := tc.apply(x), tc.apply(rowMajor)
			shape := got.Shape()
			if wantStride := []int64{shape[1] * shape[2], 1, shape[1]}; !slices.Equal(got.Stride(), wantStride) {
				t.Errorf("strides %v for shape %v: want channels innermost, %v", got.Stride(), shape, wantStride)
			}
			if !slices.Equal(shape, want.Shape()) {
				t.Fatalf("shape %v, want %v", shape, want.Shape())
			}
			g, err := got.Contiguous().Float32s()
			if err != nil {
				t.Fatal(err)
			}
			w, err := want.Float32s()
			if err != nil {
				t.Fatal(err)
			}
			bound := make([]float32, len(w))
			if tc.bound != nil {
				if bound, err = tc.bound(rowMajor).Float32s(); err != nil {
					t.Fatal(err)
				}
			}
			worst := 0.0
			for i := range w {
				d := math.Abs(float64(g[i] - w[i]))
				if d > float64(bound[i]) {
					t.Fatalf("output %d: %g, want %g within %g", i, g[i], w[i], bound[i])
				}
				worst = max(worst, d)
			}
			t.Logf("largest difference %g", worst)
		})
	}
}

// TestAffineReLUInto: relu(x·scale + shift) written into out equals
// x.Mul(scale).Add(shift).ReLU() bit for bit (a product, then a sum), for
// channel counts the shim's loop knows (16, 32) and others (7),
// channels-last or not (ATen's operators then), into a view of a larger
// tensor whose other values stay as they were; NaN stays NaN.
func TestAffineReLUInto(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	if err := torch.ManualSeed(5); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		n, c, l      int64
		affine       bool
		channelsLast bool
		left, right  int64 // out is positions left.. of a [n, c, left+l+right] tensor
		nanAt        int64 // a NaN at this flat index of x, -1 none
	}{
		{"16 channels, into a window", 4, 16, 37, true, true, 3, 2, -1},
		{"32 channels", 3, 32, 20, true, true, 0, 0, -1},
		{"7 channels, into a window", 2, 7, 11, true, true, 2, 5, -1},
		{"plain ReLU", 4, 16, 9, false, true, 1, 1, -1},
		{"row-major (ATen's operators)", 3, 16, 13, true, false, 2, 1, -1},
		{"NaN", 2, 16, 8, true, true, 0, 0, 17},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := torch.Randn(s, []int64{tc.n, tc.c, tc.l}, torch.Float32, torch.CPU)
			if tc.channelsLast {
				x = torch.Randn(s, []int64{tc.n, tc.l, tc.c}, torch.Float32, torch.CPU).Transpose(1, 2)
			}
			if tc.nanAt >= 0 {
				vals, _ := x.Contiguous().Float32s()
				vals[tc.nanAt] = float32(math.NaN())
				x = torch.FromSlice(s, vals, []int64{tc.n, tc.c, tc.l}, torch.CPU).Transpose(1, 2).Contiguous().Transpose(1, 2)
				// channels-last again, the NaN at the same [n, c, l]
			}
			var scale, shift *torch.Tensor
			want := x.ReLU()
			if tc.affine {
				scale, shift = torch.Randn(s, []int64{tc.c}, torch.Float32, torch.CPU), torch.Randn(s, []int64{tc.c}, torch.Float32, torch.CPU)
				want = x.Mul(scale.Reshape(1, -1, 1)).Add(shift.Reshape(1, -1, 1)).ReLU()
			}
			width := tc.left + tc.l + tc.right
			buf := torch.Full(s, []int64{tc.n, width, tc.c}, 7, torch.Float32, torch.CPU).Transpose(1, 2)
			if !tc.channelsLast {
				buf = torch.Full(s, []int64{tc.n, tc.c, width}, 7, torch.Float32, torch.CPU)
			}
			out := buf.Narrow(2, tc.left, tc.l)
			if err := x.AffineReLUInto(out, scale, shift); err != nil {
				t.Fatal(err)
			}
			got, err := out.Contiguous().Float32s()
			if err != nil {
				t.Fatal(err)
			}
			w, _ := want.Contiguous().Float32s()
			for i := range w {
				if got[i] != w[i] && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(w[i]))) {
					t.Fatalf("value %d: %v, want %v", i, got[i], w[i])
				}
			}
			if tc.nanAt >= 0 && !slices.ContainsFunc(got, func(v float32) bool { return math.IsNaN(float64(v)) }) {
				t.Error("the NaN was lost")
			}
			for _, side := range [][2]int64{{0, tc.left}, {tc.left + tc.l, tc.right}} {
				if side[1] == 0 {
					continue
				}
				rest, _ := buf.Narrow(2, side[0], side[1]).Contiguous().Float32s()
				if slices.ContainsFunc(rest, func(v float32) bool { return v != 7 }) {
					t.Errorf("positions %d..%d outside out were written", side[0], side[0]+side[1])
				}
			}
		})
	}
	x := torch.Randn(s, []int64{2, 16, 5}, torch.Float32, torch.CPU)
	if err := x.AffineReLUInto(x.NewEmpty(2, 16, 4), nil, nil); err == nil || !strings.Contains(err.Error(), "[2, 16, 5]") {
		t.Errorf("out of another shape: error %v, want one naming the shapes", err)
	}
	if err := x.AffineReLUInto(x.NewEmpty(2, 16, 5), torch.Randn(s, []int64{16}, torch.Float32, torch.CPU), nil); err == nil {
		t.Error("a scale without a shift: no error")
	}
}
