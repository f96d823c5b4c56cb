// Package dist owns data-parallel training's environment: the variables
// torchrun, Slurm scripts and Kubeflow's PyTorchJob set (PyTorch's env://),
// joining libtorch's c10d process group from them (torch.ProcessGroup), and
// the index lists of torch.utils.data.DistributedSampler. It has no
// protocol of its own: the store, the group and the collectives are c10d's,
// and gradients are averaged by DistributedDataParallel's own engine,
// c10d's Reducer (torch.DDP).
//
// Imports: torch only.
package dist

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/deeppacket/deeppacket/torch"
)

// Env is a process's place in a distributed run, as PyTorch's env:// reads
// it.
type Env struct {
	Rank, WorldSize           int // RANK, WORLD_SIZE
	LocalRank, LocalWorldSize int // LOCAL_RANK, LOCAL_WORLD_SIZE (0 and 1 when unset)
	MasterAddr                string
	MasterPort                int
	// AgentStore: torchrun's agent runs the TCPStore already
	// (TORCHELASTIC_USE_AGENT_STORE=True), so no rank hosts one.
	AgentStore bool
	// RestartCount is torchrun's TORCHELASTIC_RESTART_COUNT: how many times
	// the group was restarted after a failure.
	RestartCount int
}

// FromEnv reads the environment: nil when RANK and WORLD_SIZE are both
// unset (a single process), an error naming the variable when one is
// missing or wrong.
func FromEnv() (*Env, error) { return parse(os.LookupEnv) }

func parse(lookup func(string) (string, bool)) (*Env, error) {
	_, hasRank := lookup("RANK")
	_, hasWorld := lookup("WORLD_SIZE")
	if !hasRank && !hasWorld {
		return nil, nil
	}
	e := &Env{LocalWorldSize: 1, MasterAddr: "127.0.0.1"}
	var errs []error
	num := func(name string, dst *int, required bool, min int) {
		v, ok := lookup(name)
		if !ok || v == "" {
			if required {
				errs = append(errs, fmt.Errorf("%s is not set", name))
			}
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			errs = append(errs, fmt.Errorf("%s=%q: want an integer of at least %d", name, v, min))
			return
		}
		*dst = n
	}
	num("RANK", &e.Rank, true, 0)
	num("WORLD_SIZE", &e.WorldSize, true, 1)
	num("LOCAL_RANK", &e.LocalRank, false, 0)
	num("LOCAL_WORLD_SIZE", &e.LocalWorldSize, false, 1)
	num("MASTER_PORT", &e.MasterPort, true, 1)
	num("TORCHELASTIC_RESTART_COUNT", &e.RestartCount, false, 0)
	if v, ok := lookup("MASTER_ADDR"); ok && v != "" {
		e.MasterAddr = v
	} else {
		errs = append(errs, errors.New("MASTER_ADDR is not set"))
	}
	if v, _ := lookup("TORCHELASTIC_USE_AGENT_STORE"); v == "True" || v == "true" || v == "1" {
		e.AgentStore = true
	}
	if e.MasterPort > 65535 {
		errs = append(errs, fmt.Errorf("MASTER_PORT=%d: want a TCP port", e.MasterPort))
	}
	if len(errs) == 0 && e.Rank >= e.WorldSize {
		errs = append(errs, fmt.Errorf("RANK=%d: want less than WORLD_SIZE=%d", e.Rank, e.WorldSize))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("distributed environment (torchrun's or env://): %w", err)
	}
	return e, nil
}

// Join joins the run's Gloo process group: rank 0 hosts the store unless
// torchrun's agent does. A MASTER_ADDR that does not resolve is refused at
// once; a store that cannot be reached, or ranks that do not all arrive,
// fail after timeout.
func (e *Env) Join(timeout time.Duration) (*torch.ProcessGroup, error) {
	if _, err := net.LookupHost(e.MasterAddr); err != nil {
		return nil, fmt.Errorf("MASTER_ADDR %q: %w", e.MasterAddr, err)
	}
	o := torch.GroupOptions{
		Addr: e.MasterAddr, Port: e.MasterPort, Rank: e.Rank, WorldSize: e.WorldSize,
		HostStore: e.Rank == 0 && !e.AgentStore, Timeout: timeout,
	}
	if e.AgentStore && e.RestartCount > 0 {
		// torchrun keeps its agent's store across restarts: the group
		// before left its keys there (the first attempt keeps
		// torch.distributed's layout, so Python ranks can join it).
		o.Prefix = fmt.Sprintf("/worker/attempt_%d", e.RestartCount)
	}
	return torch.NewProcessGroup(o)
}
