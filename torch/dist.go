package torch

// #include "dptorch.h"
import "C"

import (
	"fmt"
	"time"
)

// GroupOptions say how to join a process group: the TCPStore rendezvous of
// torch.distributed's env:// (MASTER_ADDR, MASTER_PORT), this process's rank
// and the group's size.
type GroupOptions struct {
	Addr            string
	Port            int
	Rank, WorldSize int
	// HostStore: this process runs the store's server (rank 0, unless
	// torchrun's agent already runs it: TORCHELASTIC_USE_AGENT_STORE).
	HostStore bool
	// Timeout bounds the rendezvous and every collective: a rank that does
	// not answer within it makes the others fail, not hang.
	Timeout time.Duration
	// Prefix goes before the group's store keys: a store that outlives a
	// group (torchrun's agent's, across restarts) keeps the keys of the
	// group before. "" is torch.distributed's own layout.
	Prefix string
}

// ProcessGroup is a c10d Gloo process group, the one
// torch.distributed.init_process_group("gloo", init_method="env://") makes,
// with the same store keys: Go and Python ranks can share it.
type ProcessGroup struct {
	h               C.dpt_pg
	rank, worldSize int
}

// NewProcessGroup joins the group o describes: it returns once every rank
// has joined, or fails after o.Timeout.
func NewProcessGroup(o GroupOptions) (*ProcessGroup, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	host, prefix := cString(o.Addr), cString(o.Prefix)
	defer freeC(host)
	defer freeC(prefix)
	var h C.dpt_pg
	hostStore := 0
	if o.HostStore {
		hostStore = 1
	}
	if err := check(C.dpt_pg_new(host, C.int(o.Port), C.int(o.Rank), C.int(o.WorldSize), C.int(hostStore),
		C.int64_t(o.Timeout.Milliseconds()), prefix, &h)); err != nil {
		return nil, fmt.Errorf("join the process group at %s:%d as rank %d of %d: %w", o.Addr, o.Port, o.Rank, o.WorldSize, err)
	}
	return &ProcessGroup{h: h, rank: o.Rank, worldSize: o.WorldSize}, nil
}

// Rank is this process's rank.
func (g *ProcessGroup) Rank() int { return g.rank }

// WorldSize is the number of ranks.
func (g *ProcessGroup) WorldSize() int { return g.worldSize }

// AllReduceSum replaces t by its sum over the ranks (dist.all_reduce with
// ReduceOp.SUM).
func (g *ProcessGroup) AllReduceSum(t *Tensor) error {
	return g.collective("all-reduce", t, func(p *C.dpt_tensor) C.dpt_error { return C.dpt_pg_allreduce_sum(g.h, p, 1) })
}

// Broadcast replaces t by root's (dist.broadcast).
func (g *ProcessGroup) Broadcast(t *Tensor, root int) error {
	return g.collective("broadcast", t, func(p *C.dpt_tensor) C.dpt_error { return C.dpt_pg_broadcast(g.h, p, 1, C.int(root)) })
}

// collective runs call on t's handle. (c10d's lists hold one tensor per
// device of a rank; a CPU rank has one.) A failure names the ranks lost.
func (g *ProcessGroup) collective(what string, t *Tensor, call func(*C.dpt_tensor) C.dpt_error) error {
	if err := t.Err(); err != nil {
		return err
	}
	h := t.h
	if err := check(call(&h)); err != nil {
		return fmt.Errorf("rank %d of %d: %s: %s: %w", g.rank, g.worldSize, what, g.lost(), err)
	}
	return nil
}

// lost says which ranks are gone after a collective failed: the survivors
// each mark themselves in the group's store, then see, for up to 3 s,
// which marks appear; a rank whose mark does not is named. Without the
// store (rank 0 hosts it), rank 0 is.
func (g *ProcessGroup) lost() string {
	mark := func(r int) *C.char { return cString(fmt.Sprintf("deeppacket_failed/%d", r)) }
	me, yes := mark(g.rank), cString("1")
	defer freeC(me)
	defer freeC(yes)
	if check(C.dpt_pg_store_set(g.h, me, yes)) != nil {
		return "lost rank 0 (its store is gone)"
	}
	var missing []int
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		missing = missing[:0]
		for r := range g.worldSize {
			k := mark(r)
			var present C.int
			err := check(C.dpt_pg_store_check(g.h, k, &present))
			freeC(k)
			if err != nil {
				return "lost rank 0 (its store is gone)"
			}
			if present == 0 {
				missing = append(missing, r)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) == 0 {
		return "no rank lost (every rank saw the failure)"
	}
	return fmt.Sprintf("lost rank(s) %v", missing)
}

// Close leaves the group.
func (g *ProcessGroup) Close() {
	if g.h != nil {
		C.dpt_pg_free(g.h)
		g.h = nil
	}
}

// Randperm is torch.randperm(n, generator=g) with g a CPU generator seeded
// with seed: the order torch.utils.data.DistributedSampler shuffles by.
func Randperm(s *Scope, n int64, seed uint64) *Tensor {
	var h C.dpt_tensor
	err := C.dpt_randperm(C.int64_t(n), C.uint64_t(seed), &h)
	return newTensor(h, err, s)
}
