package torch_test

import (
	"syscall"
	"testing"

	"github.com/deeppacket/deeppacket/torch"
)

// TestBlocksReused: a tensor of 128 kB or more, freed, leaves its block for
// the next one of its size or smaller (shim/alloc.cpp): making it again
// costs almost no page faults, where fresh memory costs one per 4 kB. The
// sizes: the application CNN's fc1 gradient (40 MB, above glibc's largest
// mmap threshold), an activation of predict's, and a smaller tensor in a
// larger one's block. The new tensor's values are its own.
func TestBlocksReused(t *testing.T) {
	const mb = 1 << 18 // float32s
	tests := []struct {
		name          string
		first, second int64 // float32s
	}{
		{"40 MB made again", 40 * mb, 40 * mb},
		{"6 MB made again", 6 * mb, 6 * mb},
		{"5 MB in an 8 MB block", 8 * mb, 5 * mb},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := torch.NewScope()
			if err := filled(s, tc.first, 1).Err(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			defer s.Close()
			before := minorFaults(t)
			second := filled(s, tc.second, 0)
			faults := minorFaults(t) - before
			fresh := tc.second * 4 / 4096
			t.Logf("page faults making %d MB: %d (fresh memory: %d)", tc.second/mb, faults, fresh)
			if faults > fresh/10 {
				t.Errorf("%d page faults for %d MB made after %d MB was freed: its block was not reused", faults, tc.second/mb, tc.first/mb)
			}
			sum, err := second.Sum(false).Float32s()
			if err != nil {
				t.Fatal(err)
			}
			if sum[0] != 0 {
				t.Errorf("the new tensor sums to %g, want 0", sum[0])
			}
		})
	}
}

// TestKeptBlocksBounded: freed blocks are kept only up to the most the
// process has had in use at once. Tensors of 49, 50, ... 96 MB (zeros,
// every page written; larger than the blocks earlier tests leave), each
// made and freed in turn, so that none fits a block kept before it, leave
// the resident memory grown by no more than twice the largest (it in use,
// and as much kept), not by their sum (3.5 GB); made again from the largest
// down, each fits a kept block and costs almost no page faults.
func TestKeptBlocksBounded(t *testing.T) {
	const mb = 1 << 18 // float32s
	const lo, hi = 49, 96
	s := torch.NewScope()
	defer s.Close()
	zeros := func(n int64) {
		if err := torch.Zeros(s, []int64{n * mb}, torch.Float32, torch.CPU).Err(); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	before := residentMB(t)
	for n := int64(lo); n <= hi; n++ {
		zeros(n)
	}
	grown := residentMB(t) - before
	t.Logf("resident memory grew by %.0f MB", grown)
	if grown > 2*hi+16 {
		t.Errorf("resident memory grew by %.0f MB after tensors of %d to %d MB were made and freed: want at most %d", grown, lo, hi, 2*hi+16)
	}
	faults := minorFaults(t)
	for n := int64(hi); n >= lo; n-- {
		zeros(n)
	}
	faults = minorFaults(t) - faults
	fresh := int64((lo + hi) * (hi - lo + 1) / 2 * 256)
	t.Logf("page faults making them again from the largest down: %d (fresh memory: %d)", faults, fresh)
	if faults > fresh/10 {
		t.Errorf("%d page faults making tensors of %d down to %d MB again: kept blocks were not reused", faults, hi, lo)
	}
}

// filled is a tensor of n float32s, all v, in s.
func filled(s *torch.Scope, n int64, v float64) *torch.Tensor {
	return torch.Zeros(s, []int64{n}, torch.Float32, torch.CPU).AddScalar(v)
}

func minorFaults(t *testing.T) int64 {
	t.Helper()
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		t.Fatal(err)
	}
	return u.Minflt
}
