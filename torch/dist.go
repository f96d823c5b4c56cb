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
	if err := check(C.dpt_pg_new(host, C.int(o.Port), C.int(o.Rank), C.int(o.WorldSize), cBool(o.HostStore),
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

// DDP is torch.nn.parallel.DistributedDataParallel's engine over a
// model's parameters and buffers: c10d's own Reducer, driven as DDP's
// Python module drives it, with its defaults (25 MiB buckets, the first
// 1 MiB once rebuilt; buffers broadcast from rank 0 before each forward)
// and DDPOptions. NewDDP does what DDP's constructor does: checks
// every rank's parameter shapes against rank 0's, gives every rank rank
// 0's parameters and buffers (one broadcast per 250 MiB) and registers
// the Reducer's gradient hooks. A training step is then PreForward, the
// forward, PostForward and Backward, in which each bucket's gradients are
// all-reduced as soon as backward has produced them, overlapping the rest
// of backward, and averaged: when Backward returns, every rank holds the
// mean gradient. Evaluation forwards (no gradients) skip PreForward and
// PostForward, as DDP's do.
type DDP struct {
	h C.dpt_ddp
	g *ProcessGroup
}

// DDPOptions are DistributedDataParallel's arguments that change what it
// does.
type DDPOptions struct {
	// FindUnusedParameters is find_unused_parameters: some parameters may
	// take no part in the loss (the reference's ResNet skips its first
	// block's bn1), so each step's graph is searched for them from the
	// forward's output, and they are counted as ready.
	FindUnusedParameters bool
}

// NewDDP makes g's DDP over params and buffers (every rank the same lists,
// in the same order: the module's named_parameters and named_buffers).
func NewDDP(g *ProcessGroup, params, buffers []*Tensor, o DDPOptions) (*DDP, error) {
	for _, t := range append(params[:len(params):len(params)], buffers...) {
		if err := t.Err(); err != nil {
			return nil, err
		}
	}
	ps, bs := handles(params), handles(buffers)
	var h C.dpt_ddp
	if err := check(C.dpt_ddp_new(g.h, first(ps), C.int(len(ps)), first(bs), C.int(len(bs)), cBool(o.FindUnusedParameters), &h)); err != nil {
		return nil, fmt.Errorf("rank %d of %d: DistributedDataParallel: %s: %w", g.rank, g.worldSize, g.lost(), err)
	}
	return &DDP{h: h, g: g}, nil
}

// PreForward is DDP's step before a training forward: the Reducer's
// prepare_for_forward, its bucket rebuild (at the second step, from the
// order the first backward produced gradients in; rank 0's buckets are
// broadcast), and rank 0's buffers broadcast.
func (d *DDP) PreForward() error {
	if err := check(C.dpt_ddp_pre_forward(d.h)); err != nil {
		return fmt.Errorf("rank %d of %d: before the forward: %s: %w", d.g.rank, d.g.worldSize, d.g.lost(), err)
	}
	return nil
}

// PostForward is DDP's step after a training forward whose output is out:
// the Reducer then expects a backward.
func (d *DDP) PostForward(out *Tensor) error {
	if err := out.Err(); err != nil {
		return err
	}
	h := out.h
	return check(C.dpt_ddp_post_forward(d.h, &h, 1))
}

// Backward is loss.Backward() with the Reducer's hooks all-reducing the
// gradients; a failure names the ranks lost.
func (d *DDP) Backward(loss *Tensor) error {
	if err := loss.Backward(); err != nil {
		return fmt.Errorf("rank %d of %d: backward's all-reduce: %s: %w", d.g.rank, d.g.worldSize, d.g.lost(), err)
	}
	return nil
}

// Close removes the Reducer's hooks and frees it.
func (d *DDP) Close() {
	if d.h != nil {
		C.dpt_ddp_free(d.h)
		d.h = nil
	}
}

// Randperm is torch.randperm(n, generator=g) with g a CPU generator seeded
// with seed: the order torch.utils.data.DistributedSampler shuffles by.
func Randperm(s *Scope, n int64, seed uint64) *Tensor {
	var h C.dpt_tensor
	err := C.dpt_randperm(C.int64_t(n), C.uint64_t(seed), &h)
	return newTensor(h, err, s)
}
