package torch_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// The reference's CNN (package model) trained through the binding:
// PyTorch parity of initialisation and Adam, and the training benchmarks.

// newCNN builds the reference CNN from its hyperparameters in the
// reference's order (c1_output_dim, …, signal_length).
func newCNN(tb testing.TB, h []int64) model.Model {
	tb.Helper()
	hp := model.HParams{}
	for i, name := range model.CNNHParams {
		hp[name] = h[i]
	}
	m, err := model.New(model.Spec{Kind: model.KindCNN, HParams: hp})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestParityCNNInitAndAdam(t *testing.T) {
	p := pytorch(t)
	in, want := p.in, p.out
	for _, fused := range []bool{false, true} {
		t.Run(fmt.Sprintf("fused=%v", fused), func(t *testing.T) {
			if err := torch.ManualSeed(9876); err != nil {
				t.Fatal(err)
			}
			m := newCNN(t, smallCNN)
			defer m.Close()
			vars := m.Store().Vars()
			for _, v := range vars {
				// Bit-identical: the same seed draws the same initial weights.
				assertClose(t, want, "cnn/init/"+v.Name, v.Tensor, 0)
			}
			if len(vars) != 12 {
				t.Fatalf("%d variables, want 12 as the reference's state_dict", len(vars))
			}
			if err := m.Store().To(testDevice(t)); err != nil {
				t.Fatal(err)
			}
			config := torch.DefaultAdam()
			config.Fused = fused
			opt := torch.NewAdam(m.Store().Parameters(), config)
			defer opt.Close()
			s := torch.NewScope()
			losses := make([]float64, 0, 10)
			for range 10 {
				if err := opt.ZeroGrad(); err != nil {
					t.Fatal(err)
				}
				loss := m.Forward(in["cnn/x"]).CrossEntropy(in["cnn/y"])
				if err := loss.Backward(); err != nil {
					t.Fatal(err)
				}
				if err := opt.Step(); err != nil {
					t.Fatal(err)
				}
				l, err := loss.Item()
				if err != nil {
					t.Fatal(err)
				}
				losses = append(losses, l)
				s.Close()
			}
			assertClose(t, want, "cnn/adam/losses", torch.FromSlice(nil, losses, []int64{10}, torch.CPU), parityTol)
			for _, v := range vars {
				assertClose(t, want, "cnn/adam/"+v.Name, v.Tensor, parityTol)
			}
			if got := opt.State[0].Step; got != 10 {
				t.Errorf("adam step count %v, want 10", got)
			}
			assertClose(t, want, "cnn/adam/state0/exp_avg_sq", opt.State[0].ExpAvgSq, parityTol)
		})
	}
}

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

// benchModel builds the application CNN and its Adam (fused unless
// DEEPPACKET_ADAM_FUSED=0) on DEEPPACKET_THREADS threads, on the test
// device (DEEPPACKET_TEST_DEVICE, the CPU by default).
func benchModel(b *testing.B) (model.Model, *torch.Adam) {
	if n, err := strconv.Atoi(os.Getenv("DEEPPACKET_THREADS")); err == nil && n > 0 {
		torch.SetNumThreads(n)
	}
	if err := torch.ManualSeed(9876); err != nil {
		b.Fatal(err)
	}
	m := newCNN(b, appCNN)
	if err := m.Store().To(testDevice(b)); err != nil {
		b.Fatal(err)
	}
	config := torch.DefaultAdam()
	config.Fused = os.Getenv("DEEPPACKET_ADAM_FUSED") != "0"
	return m, torch.NewAdam(m.Store().Parameters(), config)
}

// trainStep is one optimisation step as a trainer runs it: the batch is
// copied into tensors of the step's scope, which is closed at the end.
func trainStep(b *testing.B, m model.Model, opt *torch.Adam, x []float32, y []int64, s *torch.Scope) {
	if err := opt.ZeroGrad(); err != nil {
		b.Fatal(err)
	}
	device := m.Store().Device()
	logits := m.Forward(torch.FromSlice(s, x, []int64{16, 1, 1500}, device))
	if err := logits.CrossEntropy(torch.FromSlice(s, y, []int64{16}, device)).Backward(); err != nil {
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
	m, opt := benchModel(b)
	defer m.Close()
	defer opt.Close()
	x, y := trainBatch()
	step := torch.NewScope()
	trainStep(b, m, opt, x, y, step) // warm-up: allocates Adam state
	b.ResetTimer()
	u0, s0 := testenv.CPUSeconds(b)
	for range b.N {
		trainStep(b, m, opt, x, y, step)
	}
	// A value read back waits for the device's queued work (CUDA).
	if _, err := opt.Params[0].Sum(false).Item(); err != nil {
		b.Fatal(err)
	}
	u1, s1 := testenv.CPUSeconds(b)
	b.ReportMetric(float64(16*b.N)/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(u1-u0, "user-s")
	b.ReportMetric(s1-s0, "system-s")
}

// residentMB reads this process's resident set size.
func residentMB(b testing.TB) float64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skipf("no /proc/self/statm: %v", err)
	}
	pages, err := strconv.ParseFloat(strings.Fields(string(data))[1], 64)
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
	steps := 3000
	if n, err := strconv.Atoi(os.Getenv("DEEPPACKET_STEPS")); err == nil && n > 300 {
		steps = n
	}
	m, opt := benchModel(b)
	defer m.Close()
	defer opt.Close()
	x, y := trainBatch()
	step := torch.NewScope()
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

// Inference from several goroutines on one model in eval mode is safe and
// gives each caller the result a single caller gets.
func TestConcurrentInference(t *testing.T) {
	if err := torch.ManualSeed(1); err != nil {
		t.Fatal(err)
	}
	m := newCNN(t, smallCNN)
	defer m.Close()
	m.Store().Train(false)
	x, _ := trainBatch()
	infer := func() ([]float32, error) {
		var logits []float32
		err := torch.NoGrad(func() error {
			s := torch.NewScope()
			defer s.Close()
			var err error
			logits, err = m.Forward(torch.FromSlice(s, x, []int64{16, 1, 1500}, torch.CPU)).Float32s()
			return err
		})
		return logits, err
	}
	want, err := infer()
	if err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 8, 10
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for range rounds {
				got, err := infer()
				if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(got, want) {
					errs <- fmt.Errorf("concurrent forward gave %v…, alone %v…", got[:3], want[:3])
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
