package dist

import (
	"fmt"

	"github.com/deeppacket/deeppacket/torch"
)

// DistributedDataParallel's bucket sizes: the first bucket small, so that
// its all-reduce can start early, the others bucket_cap_mb's default.
const (
	firstBucketBytes = 1 << 20
	bucketBytes      = 25 << 20
)

// Buckets groups parameters, given their sizes in bytes, as
// DistributedDataParallel does: in reverse order (the order backward
// produces gradients in), each bucket closed once it holds at least its
// cap (1 MiB for the first, 25 MiB after), no parameter split. It returns
// the parameters' indices, bucket by bucket.
func Buckets(sizes []int64) [][]int {
	var out [][]int
	var cur []int
	var bytes int64
	limit := int64(firstBucketBytes)
	for i := len(sizes) - 1; i >= 0; i-- {
		cur = append(cur, i)
		bytes += sizes[i]
		if bytes >= limit {
			out = append(out, cur)
			cur, bytes, limit = nil, 0, bucketBytes
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// GradSync averages parameters' gradients over the ranks, as
// DistributedDataParallel's backward leaves them: bucket by bucket
// (Buckets), each bucket's gradients copied into one flat buffer, divided
// by the world size, summed by one all-reduce and copied back. The buffers
// are kept from step to step (a bucket of the reference CNN is 40 MB: made
// anew each step, it would cost a page fault per 4 kB). Every rank makes
// one over the same parameters in the same order.
type GradSync struct {
	g       *torch.ProcessGroup
	params  []*torch.Tensor
	buckets [][]int
	flats   []*torch.Tensor
}

// NewGradSync prepares the buckets of params (float32) on g.
func NewGradSync(g *torch.ProcessGroup, params []*torch.Tensor) *GradSync {
	sizes := make([]int64, len(params))
	for i, p := range params {
		sizes[i] = p.Numel() * 4
	}
	return &GradSync{g: g, params: params, buckets: Buckets(sizes), flats: make([]*torch.Tensor, len(sizes))}
}

// Average replaces each parameter's gradient by its mean over the ranks.
// Every parameter must have one (as with DistributedDataParallel, every
// parameter takes part in the loss).
func (s *GradSync) Average() error {
	sc := torch.NewScope()
	defer sc.Close()
	w := float64(s.g.WorldSize())
	for b, bucket := range s.buckets {
		grads := make([]*torch.Tensor, len(bucket))
		var n int64
		for k, i := range bucket {
			if grads[k] = sc.Own(s.params[i].Grad()); grads[k] == nil {
				return fmt.Errorf("parameter %d has no gradient: every parameter must take part in the loss", i)
			}
			n += grads[k].Numel()
		}
		if s.flats[b] == nil {
			dev, err := s.params[bucket[0]].Device()
			if err != nil {
				return err
			}
			s.flats[b] = torch.Zeros(nil, []int64{n}, torch.Float32, dev)
		}
		flat := s.flats[b]
		var at int64
		for _, grad := range grads {
			if err := sc.Own(flat.Narrow(0, at, grad.Numel())).Copy_(grad.Reshape(-1)); err != nil {
				return fmt.Errorf("bucket %d: %w", b, err)
			}
			at += grad.Numel()
		}
		if err := flat.DivScalar_(w); err != nil {
			return fmt.Errorf("bucket %d: %w", b, err)
		}
		if err := s.g.AllReduceSum(flat); err != nil {
			return fmt.Errorf("bucket %d: %w", b, err)
		}
		at = 0
		for k, grad := range grads {
			n := grad.Numel()
			if err := grad.Copy_(sc.Own(flat.Narrow(0, at, n)).Reshape(grad.Shape()...)); err != nil {
				return fmt.Errorf("bucket %d, parameter %d: %w", b, bucket[k], err)
			}
			at += n
		}
	}
	return nil
}

// Close frees the buffers.
func (s *GradSync) Close() {
	for i, f := range s.flats {
		f.Free()
		s.flats[i] = nil
	}
}

// Broadcast replaces every tensor (parameters and buffers) by rank 0's, as
// DistributedDataParallel does when it is made, so that all ranks start
// from the same model.
func Broadcast(g *torch.ProcessGroup, ts []*torch.Tensor) error {
	return torch.NoGrad(func() error {
		for i, t := range ts {
			if err := g.Broadcast(t, 0); err != nil {
				return fmt.Errorf("tensor %d: %w", i, err)
			}
		}
		return nil
	})
}
