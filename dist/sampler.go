package dist

import (
	"fmt"

	"github.com/deeppacket/deeppacket/torch"
)

// Sampler is torch.utils.data.DistributedSampler: each rank's share of a
// data set's n indices, for every epoch.
type Sampler struct {
	N               int // the data set's size
	Rank, WorldSize int
	Shuffle         bool
	Seed            uint64
	DropLast        bool
}

// Indices is the sampler's list for epoch (set_epoch(epoch), then
// iter(sampler)): with Shuffle, torch.randperm(N) from a generator seeded
// with Seed+epoch, else 0..N-1; without DropLast, padded by repeating it
// from its start up to a multiple of WorldSize, with DropLast cut down to
// one; then every WorldSize-th index from Rank.
func (s Sampler) Indices(epoch int) ([]int64, error) {
	if s.WorldSize < 1 || s.Rank < 0 || s.Rank >= s.WorldSize || s.N < 0 {
		return nil, fmt.Errorf("sampler: rank %d of %d over %d indices", s.Rank, s.WorldSize, s.N)
	}
	var all []int64
	if s.Shuffle {
		sc := torch.NewScope()
		defer sc.Close()
		var err error
		if all, err = torch.Randperm(sc, int64(s.N), s.Seed+uint64(epoch)).Int64s(); err != nil {
			return nil, fmt.Errorf("sampler: %w", err)
		}
	} else {
		all = make([]int64, s.N)
		for i := range all {
			all[i] = int64(i)
		}
	}
	var perRank int
	if s.DropLast && s.N%s.WorldSize != 0 {
		perRank = s.N / s.WorldSize // ceil((N - W) / W) as PyTorch writes it
	} else {
		perRank = (s.N + s.WorldSize - 1) / s.WorldSize
	}
	total := perRank * s.WorldSize
	if total > len(all) && len(all) > 0 {
		pad := total - len(all)
		for pad > 0 {
			k := min(pad, len(all))
			all = append(all, all[:k]...)
			pad -= k
		}
	}
	all = all[:total]
	out := make([]int64, 0, perRank)
	for i := s.Rank; i < total; i += s.WorldSize {
		out = append(out, all[i])
	}
	return out, nil
}
