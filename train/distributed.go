package train

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/deeppacket/deeppacket/data/loader"
	"github.com/deeppacket/deeppacket/dist"
	"github.com/deeppacket/deeppacket/internal/progress"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// This file is data-parallel training, as PyTorch's DistributedDataParallel
// does it, over libtorch's c10d (package dist): every rank holds the whole
// model, rank 0's parameters and buffers are broadcast at the start, each
// rank trains on its DistributedSampler share of every epoch, and the
// gradients are averaged over the ranks by DDP's own engine, c10d's
// Reducer (torch.DDP: bucket by bucket, while backward runs), so that all
// ranks keep the same weights. The epoch's
// training loss and validation metrics are averaged over the ranks (every
// rank evaluates the whole validation set), so that early stopping decides
// the same everywhere. Only rank 0
// writes the run folder; the others write to a temporary folder they
// remove, draw no progress bars and log warnings only, with their rank.

// group is a trainer's place in a distributed run; nil when it runs alone.
type group struct {
	env *dist.Env
	pg  *torch.ProcessGroup
	ddp *torch.DDP // made by start, once the model is
	tmp string     // rank > 0: the run folder it writes instead of the real one
}

// joinGroup joins the process group the environment describes (nil, nil
// without one) and sets the process up for its rank.
func joinGroup(cfg Config, opts *Options) (*group, error) {
	env, err := dist.FromEnv()
	if env == nil || err != nil {
		return nil, err
	}
	switch cfg.Distributed.Backend {
	case "nccl":
		return nil, errors.New("distributed.backend nccl: this build binds c10d's Gloo only; use gloo (or auto)")
	case "auto", "gloo":
	}
	if d, err := torch.ParseDevice(cfg.Device); err == nil && d.CUDA {
		return nil, fmt.Errorf("device %s: distributed training runs on the CPU (Gloo) in this build; set device cpu", cfg.Device)
	}
	g := &group{env: env}
	level := slog.LevelInfo
	if env.Rank > 0 {
		level = slog.LevelWarn
	}
	slog.Log(context.Background(), level, "distributed", "rank", env.Rank, "world_size", env.WorldSize,
		"local_rank", env.LocalRank, "master", fmt.Sprintf("%s:%d", env.MasterAddr, env.MasterPort),
		"backend", "gloo", "restart_count", env.RestartCount)
	if env.Rank > 0 {
		slog.SetDefault(slog.New(warnOnly{rankHandler()}).With("rank", env.Rank))
		progress.Quiet = true
		if g.tmp, err = os.MkdirTemp("", fmt.Sprintf("deeppacket-rank%d-", env.Rank)); err != nil {
			return nil, err
		}
		opts.RunDir = g.tmp
	}
	if g.pg, err = env.Join(time.Duration(cfg.Distributed.TimeoutS) * time.Second); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

func (g *group) close() {
	if g == nil {
		return
	}
	if g.ddp != nil {
		g.ddp.Close()
	}
	if g.pg != nil {
		g.pg.Close()
	}
	if g.tmp != "" {
		os.RemoveAll(g.tmp)
	}
}

// rankHandler is the handler a rank above 0 filters: the program's (the
// CLI's text or JSON lines), or a text handler on stderr when the default
// is still the log package's bridge, which cannot be wrapped (its output
// would come back to the new default).
func rankHandler() slog.Handler {
	h := slog.Default().Handler()
	if fmt.Sprintf("%T", h) == "*slog.defaultHandler" {
		return slog.NewTextHandler(os.Stderr, nil)
	}
	return h
}

// warnOnly passes a handler's records from warning level up.
type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}
func (w warnOnly) WithAttrs(a []slog.Attr) slog.Handler { return warnOnly{w.Handler.WithAttrs(a)} }
func (w warnOnly) WithGroup(n string) slog.Handler      { return warnOnly{w.Handler.WithGroup(n)} }

// shard makes the training loader read this rank's DistributedSampler
// share of each epoch: shuffled from the config's seed, padded as
// DistributedSampler pads, or with the loader's drop_last cut as its
// drop_last cuts (so that no rank repeats a row to fill the last batches).
func (g *group) shard(o *loader.Options, seed uint64) {
	if g == nil {
		return
	}
	rank, world, drop := g.env.Rank, g.env.WorldSize, o.DropLast
	o.Indices = func(epoch int, rows int64) ([]int64, error) {
		return dist.Sampler{N: int(rows), Rank: rank, WorldSize: world, Shuffle: true, Seed: seed, DropLast: drop}.Indices(epoch)
	}
}

// start checks that every rank runs the same experiment (the resolved
// config and the model's parameter names and shapes), then gives every rank
// rank 0's parameters and buffers.
func (g *group) start(t *trainer) error {
	if g == nil {
		return nil
	}
	doc, err := t.cfg.YAML()
	if err != nil {
		return err
	}
	h := fnv.New64a()
	h.Write(doc)
	vars := t.model.Store().Vars()
	for _, v := range vars {
		fmt.Fprintf(h, "%s%v;", v.Name, v.Tensor.Shape())
	}
	sum := h.Sum64()
	if n, err := g.differing(sum); err != nil || n > 0 {
		return errors.Join(err, fmt.Errorf("distributed: %d rank(s) run another configuration or model than rank 0 (compare their config files, flags and DEEPPACKET_ variables; this rank's hash %x)", n, sum))
	}
	unused, err := unusedParameters(t.model, t.device)
	if err != nil {
		return fmt.Errorf("distributed: find the parameters the loss does not use: %w", err)
	}
	if len(unused) > 0 {
		slog.Info("distributed: parameters the forward does not use (DDP's find_unused_parameters)", "parameters", unused)
	}
	store := t.model.Store()
	if g.ddp, err = torch.NewDDP(g.pg, store.Parameters(), store.Buffers(), torch.DDPOptions{FindUnusedParameters: len(unused) > 0}); err != nil {
		return fmt.Errorf("distributed: %w", err)
	}
	slog.Info("distributed: ranks agree", "config_hash", fmt.Sprintf("%016x", sum), "tensors_broadcast", len(vars))
	return nil
}

// unusedParameters names the parameters no gradient reaches from the
// model's output, which DDP must be told of (find_unused_parameters): one
// forward of a zero batch and its backward, in eval mode (no dropout draw,
// no batch-norm update, so training is as it would be without it), the
// gradients cleared after. The reference's ResNet has such parameters (its
// first block's bn1); its CNN and the SAE have none.
func unusedParameters(m model.Model, device torch.Device) ([]string, error) {
	store := m.Store()
	defer store.Train(store.Train(false))
	s := torch.NewScope()
	defer s.Close()
	x := torch.Zeros(s, []int64{1, 1, int64(m.Preprocessing().SignalLength)}, torch.Float32, device)
	if err := m.Forward(x).Sum(false).Backward(); err != nil {
		return nil, err
	}
	var unused []string
	for _, v := range store.Vars() {
		if v.Buffer {
			continue
		}
		if g := v.Tensor.Grad(); g == nil {
			unused = append(unused, v.Name)
		} else {
			g.Free()
		}
		if err := v.Tensor.ZeroGrad(true); err != nil {
			return nil, err
		}
	}
	return unused, nil
}

// differing is how many ranks' sum differ from rank 0's: rank 0's is
// broadcast in four 16-bit pieces (exact in any dtype), each rank compares,
// and the mismatches are summed.
func (g *group) differing(sum uint64) (int64, error) {
	s := torch.NewScope()
	defer s.Close()
	pieces := make([]int64, 4)
	for i := range pieces {
		pieces[i] = int64(sum >> (16 * i) & 0xffff)
	}
	theirs := torch.FromSlice(s, pieces, []int64{4}, torch.CPU)
	if err := g.pg.Broadcast(theirs, 0); err != nil {
		return 0, err
	}
	got, err := theirs.Int64s()
	if err != nil {
		return 0, err
	}
	differ := 0.0
	if !slices.Equal(got, pieces) {
		differ = 1
	}
	if err := g.sum(&differ); err != nil {
		return 0, err
	}
	return int64(differ), nil
}

// checkInSync checks, once training ends, that every rank holds the same
// parameters, bit for bit (a hash), as the gradient averaging keeps them.
// Buffers (batch norm's statistics) are not compared: each rank's last
// forward updated its own from its own batch, after rank 0's were
// broadcast; rank 0's are the ones its checkpoints keep.
func (g *group) checkInSync(t *trainer) error {
	if g == nil {
		return nil
	}
	h := fnv.New64a()
	for _, p := range t.model.Store().Parameters() {
		b, err := p.Bytes()
		if err != nil {
			return err
		}
		h.Write(b)
	}
	n, err := g.differing(h.Sum64())
	if err == nil && n > 0 {
		err = fmt.Errorf("distributed: after training, %d rank(s) hold other weights than rank 0", n)
	}
	if err == nil {
		slog.Info("distributed: every rank ends with rank 0's weights")
	}
	return err
}

// forward is a training forward, wrapped as DDP wraps it when the run is
// distributed.
func (g *group) forward(f func() *torch.Tensor) (*torch.Tensor, error) {
	if g == nil {
		return f(), nil
	}
	if err := g.ddp.PreForward(); err != nil {
		return nil, err
	}
	out := f()
	if err := out.Err(); err != nil {
		return nil, err
	}
	return out, g.ddp.PostForward(out)
}

// backward is loss.Backward(), which in a distributed run leaves every
// rank with the gradients' mean over the ranks.
func (g *group) backward(loss *torch.Tensor) error {
	if g == nil {
		return loss.Backward()
	}
	return g.ddp.Backward(loss)
}

// sum replaces each value by its sum over the ranks (one all-reduce).
func (g *group) sum(vals ...*float64) error {
	if g == nil {
		return nil
	}
	s := torch.NewScope()
	defer s.Close()
	in := make([]float64, len(vals))
	for i, v := range vals {
		in[i] = *v
	}
	t := torch.FromSlice(s, in, []int64{int64(len(in))}, torch.CPU)
	if err := g.pg.AllReduceSum(t); err != nil {
		return err
	}
	out, err := t.Float64s()
	if err != nil {
		return err
	}
	for i, v := range vals {
		*v = out[i]
	}
	return nil
}

// mean replaces each value by its mean over the ranks: the validation
// metrics, which differ between ranks by their batch-norm statistics (each
// rank's last forward updated its own), so that early stopping and the
// best checkpoint decide alike everywhere.
func (g *group) mean(vals ...*float64) error {
	if g == nil {
		return nil
	}
	if err := g.sum(vals...); err != nil {
		return err
	}
	for _, v := range vals {
		*v /= float64(g.env.WorldSize)
	}
	return nil
}
