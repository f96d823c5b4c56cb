package train

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/torch"
)

// BenchmarkTrainEpoch trains the reference application CNN (batch 16,
// Adam, seed 9876) for one full epoch through Train, on the set named by
// DEEPPACKET_BENCH_SET, with DEEPPACKET_THREADS libtorch threads, and
// reports samples per second, of wall time and of CPU time. With DEEPPACKET_BENCH_DUMP it also writes
// the set as tensors (x [N,1,1500] float32, y [N] int64) for the PyTorch
// loop of scripts/bench-train-epoch.sh.
func BenchmarkTrainEpoch(b *testing.B) {
	set := os.Getenv("DEEPPACKET_BENCH_SET")
	if set == "" {
		b.Skip("DEEPPACKET_BENCH_SET names no training set (scripts/bench-train-epoch.sh makes one)")
	}
	cfg := DefaultConfig()
	cfg.Data.Train = set
	cfg.Epochs = 1
	cfg.Device = "cpu"
	cfg.Checkpoint = CheckpointConfig{}
	if n, err := strconv.Atoi(os.Getenv("DEEPPACKET_THREADS")); err == nil {
		cfg.Threads = n
	}
	if v := os.Getenv("DEEPPACKET_ADAM_FUSED"); v != "" {
		cfg.Optimizer.Fused = v != "0"
	}
	if dump := os.Getenv("DEEPPACKET_BENCH_DUMP"); dump != "" {
		dumpSet(b, cfg, dump)
	}
	var rate, cpuRate, user, system float64
	for b.Loop() {
		u0, s0 := testenv.CPUSeconds(b)
		res, err := Train(context.Background(), cfg, Options{RunDir: filepath.Join(b.TempDir(), "run")})
		if err != nil {
			b.Fatal(err)
		}
		u1, s1 := testenv.CPUSeconds(b)
		user, system = u1-u0, s1-s0
		rate = res.Epochs[0].SamplesPerSec
		cpuRate = float64(res.Epochs[0].Samples) / (user + system)
	}
	b.ReportMetric(rate, "samples/s")
	b.ReportMetric(cpuRate, "samples/cpu-s")
	b.ReportMetric(user, "user-s")
	b.ReportMetric(system, "system-s")
}

// dumpSet writes every row of cfg's training set as two tensors.
func dumpSet(b *testing.B, cfg Config, path string) {
	xs, ys := epochRows(b, cfg, false)
	n := int64(len(ys))
	x := torch.FromSlice(nil, xs, []int64{n, 1, cfg.Model.SignalLength}, torch.CPU)
	y := torch.FromSlice(nil, ys, []int64{n}, torch.CPU)
	defer x.Free()
	defer y.Free()
	if err := torch.SaveTensors(path, map[string]*torch.Tensor{"x": x, "y": y}); err != nil {
		b.Fatal(err)
	}
}
