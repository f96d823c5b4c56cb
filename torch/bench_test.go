package torch

import (
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
)

// appCNN is the reference's application CNN: c1 (200, 4, 3), c2 (200, 5, 1),
// 17 outputs, 1500 bytes.
var appCNN = []int64{200, 4, 3, 200, 5, 1, 17, 1500}

// trainBatch is a fixed batch of 16 packets and labels, as Go slices the way
// a loader delivers them.
func trainBatch() ([]float32, []int64) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, 16*1500)
	for i := range x {
		x[i] = float32(rng.IntN(256)) / 255
	}
	y := make([]int64, 16)
	for i := range y {
		y[i] = int64(rng.IntN(17))
	}
	return x, y
}

func benchThreads() {
	if n, err := strconv.Atoi(os.Getenv("DEEPPACKET_THREADS")); err == nil && n > 0 {
		SetNumThreads(n)
	}
}

// trainStep is one optimisation step as a trainer runs it: the batch is
// copied into tensors of the step's scope, which is closed at the end.
func trainStep(b *testing.B, m *refCNN, opt *Adam, x []float32, y []int64, s *Scope) {
	if err := opt.ZeroGrad(); err != nil {
		b.Fatal(err)
	}
	loss := m.Forward(FromSlice(s, x, []int64{16, 1, 1500}, CPU)).CrossEntropy(FromSlice(s, y, []int64{16}, CPU))
	if err := loss.Backward(); err != nil {
		b.Fatal(err)
	}
	if err := opt.Step(); err != nil {
		b.Fatal(err)
	}
	s.Close()
}

// BenchmarkTrainStep is one training step of the reference application CNN
// (batch 16, Adam); scripts/bench-train.sh compares it with PyTorch.
func BenchmarkTrainStep(b *testing.B) {
	benchThreads()
	if err := ManualSeed(9876); err != nil {
		b.Fatal(err)
	}
	m, err := newRefCNN(appCNN)
	if err != nil {
		b.Fatal(err)
	}
	defer m.store.Close()
	config := DefaultAdam()
	config.Fused = os.Getenv("DEEPPACKET_ADAM_FUSED") != "0"
	opt := NewAdam(m.store.Parameters(), config)
	defer opt.Close()
	x, y := trainBatch()
	step := NewScope()
	trainStep(b, m, opt, x, y, step) // warm-up: allocates Adam state
	b.ResetTimer()
	for range b.N {
		trainStep(b, m, opt, x, y, step)
	}
	b.ReportMetric(float64(16*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// residentMB reads this process's resident set size.
func residentMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skipf("no /proc/self/statm: %v", err)
	}
	fields := strings.Fields(string(data))
	pages, err := strconv.ParseFloat(fields[1], 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * float64(os.Getpagesize()) / (1 << 20)
}

// BenchmarkTrainMemory trains the application CNN for DEEPPACKET_STEPS steps
// (default 3000) and reports resident memory after step 300 and after the
// last; it fails if the end is more than 5% above step 300, which would mean
// tensors leak.
func BenchmarkTrainMemory(b *testing.B) {
	benchThreads()
	steps := 3000
	if n, err := strconv.Atoi(os.Getenv("DEEPPACKET_STEPS")); err == nil && n > 300 {
		steps = n
	}
	m, err := newRefCNN(appCNN)
	if err != nil {
		b.Fatal(err)
	}
	defer m.store.Close()
	opt := NewAdam(m.store.Parameters(), DefaultAdam())
	defer opt.Close()
	x, y := trainBatch()
	step := NewScope()
	var at300 float64
	for i := 1; i <= steps; i++ {
		trainStep(b, m, opt, x, y, step)
		if i == 300 {
			at300 = residentMB(b)
		}
	}
	end := residentMB(b)
	b.ReportMetric(at300, "rss_step300_MB")
	b.ReportMetric(end, "rss_end_MB")
	b.ReportMetric(100*(end-at300)/at300, "growth_%")
	if end > at300*1.05 {
		b.Errorf("resident memory grew from %.1f MB at step 300 to %.1f MB at step %d", at300, end, steps)
	}
}
