package torch_test

import (
	"syscall"
	"testing"

	"github.com/deeppacket/deeppacket/torch"
)

// TestLargeBlocksReused: a tensor of 40 MB (above glibc's largest mmap
// threshold, as the application CNN's fc1 gradient), freed and made again,
// takes the kept block (shim/alloc.cpp): the second one costs almost no
// page faults, where a fresh mapping costs one per 4 kB (10,240). Its
// values are the new tensor's, not the old one's.
func TestLargeBlocksReused(t *testing.T) {
	const n = 10 << 20 // float32s: 40 MB
	build := func(s *torch.Scope, v float64) *torch.Tensor {
		return torch.Zeros(s, []int64{n}, torch.Float32, torch.CPU).AddScalar(v)
	}
	s := torch.NewScope()
	if err := build(s, 1).Err(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = torch.NewScope()
	defer s.Close()
	before := minorFaults(t)
	second := build(s, 0)
	faults := minorFaults(t) - before
	t.Logf("page faults making a 40 MB tensor again: %d", faults)
	if faults > 1000 {
		t.Errorf("%d page faults for a 40 MB tensor made again: its block was not reused", faults)
	}
	sum, err := second.Sum(false).Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if sum[0] != 0 {
		t.Errorf("the new tensor sums to %g, want 0", sum[0])
	}
}

func minorFaults(t *testing.T) int64 {
	t.Helper()
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		t.Fatal(err)
	}
	return u.Minflt
}
