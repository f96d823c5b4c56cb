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

// AverageGradients replaces each parameter's gradient by its mean over the
// ranks, as DistributedDataParallel's backward leaves it: bucket by bucket
// (Buckets), each bucket's gradients flattened into one tensor, summed by
// one all-reduce and divided by the world size. Every rank calls it with
// the same parameters in the same order, each with a gradient (as
// DistributedDataParallel, every parameter must take part in the loss).
func AverageGradients(g *torch.ProcessGroup, params []*torch.Tensor) error {
	sizes := make([]int64, len(params))
	for i, p := range params {
		sizes[i] = p.Numel() * 4
	}
	s := torch.NewScope()
	defer s.Close()
	for b, bucket := range Buckets(sizes) {
		flat := make([]*torch.Tensor, len(bucket))
		grads := make([]*torch.Tensor, len(bucket))
		for k, i := range bucket {
			if grads[k] = s.Own(params[i].Grad()); grads[k] == nil {
				return fmt.Errorf("parameter %d has no gradient: every parameter must take part in the loss", i)
			}
			flat[k] = grads[k].Reshape(-1)
		}
		buf := torch.Cat(flat, 0)
		if err := g.AllReduceSum(buf); err != nil {
			return fmt.Errorf("bucket %d: %w", b, err)
		}
		mean := buf.DivScalar(float64(g.WorldSize()))
		var at int64
		for k, grad := range grads {
			n := grad.Numel()
			if err := grad.Copy_(mean.Narrow(0, at, n).Reshape(grad.Shape()...)); err != nil {
				return fmt.Errorf("bucket %d, parameter %d: %w", b, bucket[k], err)
			}
			at += n
		}
	}
	return nil
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
