package dist_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/dist"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// freePort is a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestGoAndPythonTrainAsOneDDP: a Go rank (this test, hosting the store)
// and a Python rank (torch.distributed, init_process_group("gloo",
// "env://"), the same PyTorch as the build) form one process group and
// train a reference model side by side, each with DistributedDataParallel:
// PyTorch's module there, torch.DDP (the same c10d Reducer) here. The
// Python rank starts from other weights, which DDP's construction replaces
// by rank 0's; each rank trains on its own batches with dropout on (its own
// masks); the buckets are rebuilt at the second step, rank 0's layout
// broadcast. After the steps both hold the same parameters, bit for bit,
// and they are not the starting ones. The CNN uses every parameter; the
// ResNet leaves its first block's bn1 unused (find_unused_parameters on
// both sides) and has batch-norm buffers (rank 0's broadcast before each
// forward).
//
// Which parameters must have moved: every one the loss reaches, but for
// the ResNet's convolution biases: each reaches the loss only through a
// training-mode batch norm, which subtracts it again (its gradient is zero
// but for rounding, so that it may or may not move).
func TestGoAndPythonTrainAsOneDDP(t *testing.T) {
	python := testenv.Python(t)
	for _, tc := range []struct {
		fixture, class string
		unused         []string
	}{
		{"fixtures/cnn_small.ckpt", "CNN", nil},
		{"fixtures/reference_traffic_resnet.ckpt", "ResNet", []string{"conv1.0.basicblock_list.0.bn1.weight", "conv1.0.basicblock_list.0.bn1.bias"}},
	} {
		t.Run(tc.class, func(t *testing.T) {
			trainAsOneDDP(t, python, testenv.Shared(t, tc.fixture), tc.class, tc.unused)
		})
	}
}

func trainAsOneDDP(t *testing.T, python, fixture, class string, unused []string) {
	findUnused := len(unused) > 0
	const lr, steps = 0.1, 4
	m, err := ckpt.Load(fixture)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dir := t.TempDir()
	batch := func(seed uint64) (x []float32, y []int64) {
		rng := rand.New(rand.NewPCG(seed, 9))
		x = make([]float32, 8*1500)
		for i := range x {
			x[i] = float32(rng.IntN(256)) / 255
		}
		y = make([]int64, 8)
		for i := range y {
			y[i] = int64(rng.IntN(m.OutputDim()))
		}
		return x, y
	}
	pyIn, pyOut := filepath.Join(dir, "in.pt"), filepath.Join(dir, "out.pt")
	theirBatches := map[string]*torch.Tensor{}
	for step := range steps {
		x, y := batch(uint64(2*step + 2))
		theirBatches[fmt.Sprint("x", step)] = torch.FromSlice(nil, x, []int64{8, 1, 1500}, torch.CPU)
		theirBatches[fmt.Sprint("y", step)] = torch.FromSlice(nil, y, []int64{8}, torch.CPU)
	}
	err = torch.SaveTensors(pyIn, theirBatches)
	for _, v := range theirBatches {
		v.Free()
	}
	if err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	peer := exec.Command(python, "testdata/peer.py", fixture, class, strconv.FormatBool(findUnused), pyIn, pyOut,
		strconv.FormatFloat(lr, 'g', -1, 64), strconv.Itoa(steps))
	peer.Env = append(os.Environ(), "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port), "RANK=1", "WORLD_SIZE=2")
	var peerOut strings.Builder
	peer.Stdout, peer.Stderr = &peerOut, &peerOut
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	peerDone := make(chan error, 1)
	go func() { peerDone <- peer.Wait() }()
	fail := func(err error) {
		peer.Process.Kill()
		<-peerDone
		t.Fatalf("%v\npython: %s", err, peerOut.String())
	}

	g, err := torch.NewProcessGroup(torch.GroupOptions{Addr: "127.0.0.1", Port: port, Rank: 0, WorldSize: 2, HostStore: true, Timeout: 60 * time.Second})
	if err != nil {
		fail(err)
	}
	defer g.Close()
	defer m.Store().Train(m.Store().Train(true))
	// This rank's dropout masks from a fixed seed, as the Python rank's
	// (manual_seed there): every run draws the same steps.
	if err := torch.ManualSeed(1); err != nil {
		t.Fatal(err)
	}
	params := m.Store().Parameters()
	start := make([][]float32, len(params))
	for i, p := range params {
		if start[i], err = p.Float32s(); err != nil {
			t.Fatal(err)
		}
	}
	ddp, err := torch.NewDDP(g, params, m.Store().Buffers(), torch.DDPOptions{FindUnusedParameters: findUnused})
	if err != nil {
		fail(err)
	}
	defer ddp.Close()
	for step := range steps {
		s := torch.NewScope()
		x, y := batch(uint64(2*step + 1))
		for _, p := range params {
			if err := p.ZeroGrad(true); err != nil {
				t.Fatal(err)
			}
		}
		err := ddpStep(ddp, func() *torch.Tensor {
			return m.Forward(torch.FromSlice(s, x, []int64{8, 1, 1500}, torch.CPU)).CrossEntropy(torch.FromSlice(s, y, []int64{8}, torch.CPU))
		})
		if err == nil {
			err = torch.NoGrad(func() error {
				for _, p := range params {
					if g := s.Own(p.Grad()); g != nil {
						if err := p.Add_(g, -lr).Err(); err != nil {
							return err
						}
					}
				}
				return nil
			})
		}
		s.Close()
		if err != nil {
			fail(fmt.Errorf("step %d: %w", step, err))
		}
	}
	if err := <-peerDone; err != nil {
		t.Fatalf("python rank: %v\n%s", err, peerOut.String())
	}
	theirs, err := ckpt.ReadTensors(pyOut)
	if err != nil {
		t.Fatal(err)
	}
	batchNorm := len(m.Store().Buffers()) > 0
	i := 0
	for _, v := range m.Store().Vars() {
		if v.Buffer {
			continue
		}
		now, err := v.Tensor.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		moved := !slices.Equal(now, start[i])
		switch {
		case slices.Contains(unused, v.Name) && moved:
			t.Errorf("%s, which the loss does not use, changed", v.Name)
		case !slices.Contains(unused, v.Name) && !moved && !(batchNorm && strings.HasSuffix(v.Name, ".conv.bias")):
			t.Errorf("%s did not change in %d steps", v.Name, steps)
		}
		i++
		want, ok := theirs[v.Name]
		if !ok {
			t.Errorf("the Python rank has no %s", v.Name)
			continue
		}
		if eq, err := v.Tensor.Equal(want); err != nil || !eq {
			t.Errorf("%s differs between the Go and the Python rank after %d DDP steps (%v)", v.Name, steps, err)
		}
		want.Free()
	}
}

// ddpStep is a training step's forward and backward through ddp (nil:
// without one): the gradients then are the ranks' mean.
func ddpStep(ddp *torch.DDP, forward func() *torch.Tensor) error {
	if ddp == nil {
		return forward().Backward()
	}
	if err := ddp.PreForward(); err != nil {
		return err
	}
	loss := forward()
	if err := ddp.PostForward(loss); err != nil {
		return err
	}
	return ddp.Backward(loss)
}

// childEnv makes the test binary a child rank: "leave" joins the group the
// environment names and exits without any collective (TestLostRank);
// "allreduce:FILE" all-reduces a tensor of rank-specific values and writes
// the result to FILE (TestAcrossNetworkNamespaces).
const childEnv = "DEEPPACKET_DIST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := child(mode); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child(mode string) error {
	e, err := dist.FromEnv()
	if err != nil {
		return err
	}
	g, err := e.Join(20 * time.Second)
	if err != nil {
		return err
	}
	defer g.Close()
	if out, ok := strings.CutPrefix(mode, "steps:"); ok {
		return trainSteps(g, out)
	}
	if mode == "leave-ddp" {
		f, err := newFixtureDDP(g)
		if err == nil {
			f.Close()
		}
		return err
	}
	out, ok := strings.CutPrefix(mode, "allreduce:")
	if !ok {
		return nil
	}
	s := torch.NewScope()
	defer s.Close()
	vals := make([]float32, 1<<16)
	rng := rand.New(rand.NewPCG(uint64(e.Rank), 1))
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
	}
	x := torch.FromSlice(s, vals, []int64{int64(len(vals))}, torch.CPU)
	if err := g.AllReduceSum(x); err != nil {
		return err
	}
	return torch.SaveTensors(out, map[string]*torch.Tensor{"sum": x})
}

// TestLostRank: when a rank leaves (it exits after joining, or after
// making its DDP), the others' next collective (an all-reduce; DDP's
// backward, whose Reducer all-reduces the gradients) fails within the
// configured timeout, with an error naming the lost rank, and does not
// hang.
func TestLostRank(t *testing.T) {
	fixture := testenv.Shared(t, "fixtures/cnn_small.ckpt")
	t.Setenv("DEEPPACKET_DIST_FIXTURE", fixture)
	for _, tc := range []struct {
		name, mode string
		collective func(*torch.Scope, *torch.ProcessGroup, *fixtureDDP) error
	}{
		{"all-reduce", "leave", func(s *torch.Scope, g *torch.ProcessGroup, _ *fixtureDDP) error {
			return g.AllReduceSum(torch.Zeros(s, []int64{1 << 16}, torch.Float32, torch.CPU))
		}},
		{"DDP backward", "leave-ddp", func(s *torch.Scope, _ *torch.ProcessGroup, f *fixtureDDP) error {
			return ddpStep(f.ddp, func() *torch.Tensor {
				return f.m.Forward(torch.Zeros(s, []int64{2, 1, 1500}, torch.Float32, torch.CPU)).Sum(false)
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			child := exec.Command(os.Args[0], "-test.run=^$")
			child.Env = append(os.Environ(), childEnv+"="+tc.mode, "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port), "RANK=1", "WORLD_SIZE=2")
			var out strings.Builder
			child.Stdout, child.Stderr = &out, &out
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			const timeout = 5 * time.Second
			g, err := torch.NewProcessGroup(torch.GroupOptions{Addr: "127.0.0.1", Port: port, Rank: 0, WorldSize: 2, HostStore: true, Timeout: timeout})
			if err != nil {
				child.Process.Kill()
				t.Fatalf("%v\nchild: %s", err, out.String())
			}
			defer g.Close()
			var f *fixtureDDP
			if tc.mode == "leave-ddp" {
				if f, err = newFixtureDDP(g); err != nil {
					child.Process.Kill()
					t.Fatalf("%v\nchild: %s", err, out.String())
				}
				defer f.Close()
			}
			if err := child.Wait(); err != nil {
				t.Fatalf("child rank: %v\n%s", err, out.String())
			}
			s := torch.NewScope()
			defer s.Close()
			start := time.Now()
			err = tc.collective(s, g, f)
			took := time.Since(start)
			t.Logf("after %v: %v", took.Round(time.Millisecond), err)
			if err == nil {
				t.Fatal("a collective with a rank gone succeeded")
			}
			if !strings.Contains(err.Error(), "rank 0 of 2") || !strings.Contains(err.Error(), "lost rank(s) [1]") {
				t.Errorf("error %q does not say which rank saw it and which was lost", err)
			}
			if took > 2*timeout+3*time.Second {
				t.Errorf("the collective failed after %v, more than twice the %v timeout", took, timeout)
			}
		})
	}
}

// fixtureDDP is the CNN fixture in a DDP on a group, as the test rank and
// a "leave-ddp" child make it.
type fixtureDDP struct {
	m   model.Model
	ddp *torch.DDP
}

func newFixtureDDP(g *torch.ProcessGroup) (*fixtureDDP, error) {
	m, err := ckpt.Load(os.Getenv("DEEPPACKET_DIST_FIXTURE"))
	if err != nil {
		return nil, err
	}
	ddp, err := torch.NewDDP(g, m.Store().Parameters(), m.Store().Buffers(), torch.DDPOptions{})
	if err != nil {
		m.Close()
		return nil, err
	}
	return &fixtureDDP{m: m, ddp: ddp}, nil
}

func (f *fixtureDDP) Close() {
	f.ddp.Close()
	f.m.Close()
}

// TestBadRendezvous: a store port already in use, a store nobody runs and
// a MASTER_ADDR that does not resolve are errors at start, each within the
// timeout, saying where.
func TestBadRendezvous(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	const timeout = 3 * time.Second
	tests := []struct {
		name string
		join func() error
		want string
	}{
		{"port in use", func() error {
			g, err := torch.NewProcessGroup(torch.GroupOptions{Addr: "127.0.0.1", Port: busy.Addr().(*net.TCPAddr).Port, Rank: 0, WorldSize: 2, HostStore: true, Timeout: timeout})
			if g != nil {
				g.Close()
			}
			return err
		}, fmt.Sprintf("127.0.0.1:%d", busy.Addr().(*net.TCPAddr).Port)},
		{"no store", func() error {
			g, err := torch.NewProcessGroup(torch.GroupOptions{Addr: "127.0.0.1", Port: freePort(t), Rank: 1, WorldSize: 2, Timeout: timeout})
			if g != nil {
				g.Close()
			}
			return err
		}, "rank 1 of 2"},
		{"unknown MASTER_ADDR", func() error {
			e := &dist.Env{Rank: 1, WorldSize: 2, MasterAddr: "no-such-host.invalid", MasterPort: 29500}
			g, err := e.Join(timeout)
			if g != nil {
				g.Close()
			}
			return err
		}, "no-such-host.invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.join()
			took := time.Since(start)
			t.Logf("after %v: %v", took.Round(time.Millisecond), err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %q", err, tc.want)
			}
			if took > 3*timeout {
				t.Errorf("took %v, more than three times the %v timeout", took, timeout)
			}
		})
	}
}

// TestAcrossNetworkNamespaces: two ranks in two network namespaces joined by
// a veth pair, MASTER_ADDR the first one's address (each rank's Gloo on its
// side of the pair, GLOO_SOCKET_IFNAME), all-reduce to the same bits as two
// ranks on loopback. Skipped, saying why, where namespaces cannot be made.
func TestAcrossNetworkNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	tag := strconv.Itoa(os.Getpid() % 100000)
	nsA, nsB, vethA, vethB := "dpA"+tag, "dpB"+tag, "dpa"+tag, "dpb"+tag
	ip := func(args ...string) error {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := ip("netns", "add", nsA); err != nil {
		t.Skipf("cannot make a network namespace here: %v", err)
	}
	defer ip("netns", "del", nsA)
	if err := ip("netns", "add", nsB); err != nil {
		t.Fatal(err)
	}
	defer ip("netns", "del", nsB)
	for _, args := range [][]string{
		{"link", "add", vethA, "type", "veth", "peer", "name", vethB},
		{"link", "set", vethA, "netns", nsA},
		{"link", "set", vethB, "netns", nsB},
		{"-n", nsA, "addr", "add", "10.77.0.1/24", "dev", vethA},
		{"-n", nsB, "addr", "add", "10.77.0.2/24", "dev", vethB},
		{"-n", nsA, "link", "set", vethA, "up"},
		{"-n", nsB, "link", "set", vethB, "up"},
		{"-n", nsA, "link", "set", "lo", "up"},
		{"-n", nsB, "link", "set", "lo", "up"},
	} {
		if err := ip(args...); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	run := func(name string, ranks [2][]string, addr string, ifnames [2]string) [2][]float32 {
		port := strconv.Itoa(freePort(t))
		var cmds [2]*exec.Cmd
		var outs [2]strings.Builder
		for r := range 2 {
			file := filepath.Join(dir, fmt.Sprintf("%s-%d.pt", name, r))
			args := append(append([]string{}, ranks[r]...), os.Args[0], "-test.run=^$")
			cmds[r] = exec.Command(args[0], args[1:]...)
			cmds[r].Env = append(os.Environ(), childEnv+"=allreduce:"+file, "MASTER_ADDR="+addr, "MASTER_PORT="+port,
				"RANK="+strconv.Itoa(r), "WORLD_SIZE=2", "GLOO_SOCKET_IFNAME="+ifnames[r])
			cmds[r].Stdout, cmds[r].Stderr = &outs[r], &outs[r]
			if err := cmds[r].Start(); err != nil {
				t.Fatal(err)
			}
		}
		var sums [2][]float32
		for r := range 2 {
			if err := cmds[r].Wait(); err != nil {
				t.Fatalf("%s rank %d: %v\n%s", name, r, err, outs[r].String())
			}
			res, err := ckpt.ReadTensors(filepath.Join(dir, fmt.Sprintf("%s-%d.pt", name, r)))
			if err != nil {
				t.Fatal(err)
			}
			if sums[r], err = res["sum"].Float32s(); err != nil {
				t.Fatal(err)
			}
			res["sum"].Free()
		}
		return sums
	}
	loop := run("loopback", [2][]string{nil, nil}, "127.0.0.1", [2]string{"lo", "lo"})
	apart := run("namespaces", [2][]string{{"ip", "netns", "exec", nsA}, {"ip", "netns", "exec", nsB}}, "10.77.0.1", [2]string{vethA, vethB})
	for r := range 2 {
		if !slices.Equal(apart[r], loop[0]) || !slices.Equal(loop[r], loop[0]) {
			t.Errorf("rank %d's all-reduce across namespaces differs from loopback's", r)
		}
	}
}

// The equivalence run: equivSteps SGD steps (momentum 0.9) of the CNN
// fixture over
// equivSteps batches of equivBatch samples each, which world ranks share.
// (SGD: Adam divides each gradient by its own running size, so that the
// last-bit differences between a mean of two half-batch means and one
// whole-batch mean grow, in gradients near zero, to 1e-4 in 50 steps.)
const equivSteps, equivBatch = 50, 8

// equivData is step's batch: equivBatch packets and labels, the same in
// every process.
func equivData(step int) ([]float32, []int64) {
	rng := rand.New(rand.NewPCG(uint64(step), 77))
	x := make([]float32, equivBatch*1500)
	for i := range x {
		x[i] = float32(rng.IntN(256)) / 255
	}
	y := make([]int64, equivBatch)
	for i := range y {
		y[i] = int64(rng.IntN(17))
	}
	return x, y
}

// trainSteps runs the equivalence run on g's rank (g nil: alone, the whole
// batch each step) and saves the parameters to out. The model is in eval
// mode: dropout off, so that the ranks' steps and one process's draw
// nothing at random.
func trainSteps(g *torch.ProcessGroup, out string) error {
	m, err := ckpt.Load(os.Getenv("DEEPPACKET_DIST_FIXTURE"))
	if err != nil {
		return err
	}
	defer m.Close()
	params := m.Store().Parameters()
	opt := torch.NewSGD(params, torch.SGDConfig{LR: 0.01, Momentum: 0.9})
	defer opt.Close()
	rank, world := 0, 1
	var ddp *torch.DDP
	if g != nil {
		rank, world = g.Rank(), g.WorldSize()
		if ddp, err = torch.NewDDP(g, params, m.Store().Buffers(), torch.DDPOptions{}); err != nil {
			return err
		}
		defer ddp.Close()
	}
	n := equivBatch / world
	for step := range equivSteps {
		x, y := equivData(step)
		x, y = x[rank*n*1500:(rank+1)*n*1500], y[rank*n:(rank+1)*n]
		s := torch.NewScope()
		if err := opt.ZeroGrad(); err != nil {
			return err
		}
		if err := ddpStep(ddp, func() *torch.Tensor {
			return m.Forward(torch.FromSlice(s, x, []int64{int64(n), 1, 1500}, torch.CPU)).CrossEntropy(torch.FromSlice(s, y, []int64{int64(n)}, torch.CPU))
		}); err != nil {
			return err
		}
		if err := opt.Step(); err != nil {
			return err
		}
		s.Close()
	}
	named := map[string]*torch.Tensor{}
	for _, v := range m.Store().Vars() {
		if !v.Buffer {
			named[v.Name] = v.Tensor
		}
	}
	return torch.SaveTensors(out, named)
}

// TestTwoRanksEqualOneProcess: two ranks with batch b for 50 SGD steps,
// their gradients averaged (torch.DDP), end with the parameters
// of one process with batch 2b over the same samples, within 1e-6, on the
// small reference CNN (dropout off: eval mode).
func TestTwoRanksEqualOneProcess(t *testing.T) {
	fixture := testenv.Shared(t, "fixtures/cnn_small.ckpt")
	t.Setenv("DEEPPACKET_DIST_FIXTURE", fixture)
	dir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	var children [2]*exec.Cmd
	var outs [2]strings.Builder
	for r := range children {
		children[r] = exec.Command(os.Args[0], "-test.run=^$")
		children[r].Env = append(os.Environ(), childEnv+"=steps:"+filepath.Join(dir, fmt.Sprintf("rank%d.pt", r)),
			"MASTER_ADDR=127.0.0.1", "MASTER_PORT="+port, "RANK="+strconv.Itoa(r), "WORLD_SIZE=2")
		children[r].Stdout, children[r].Stderr = &outs[r], &outs[r]
		if err := children[r].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for r, c := range children {
		if err := c.Wait(); err != nil {
			t.Fatalf("rank %d: %v\n%s", r, err, outs[r].String())
		}
	}
	alone := filepath.Join(dir, "alone.pt")
	if err := trainSteps(nil, alone); err != nil {
		t.Fatal(err)
	}
	want, err := ckpt.ReadTensors(alone)
	if err != nil {
		t.Fatal(err)
	}
	for r := range 2 {
		got, err := ckpt.ReadTensors(filepath.Join(dir, fmt.Sprintf("rank%d.pt", r)))
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for name, w := range want {
			a, errA := got[name].Float32s()
			b, errB := w.Float32s()
			if errA != nil || errB != nil || len(a) != len(b) {
				t.Fatalf("%s: %v %v", name, errA, errB)
			}
			for i := range a {
				worst = max(worst, math.Abs(float64(a[i]-b[i])))
			}
		}
		t.Logf("rank %d after %d steps: largest difference from one process %.2g", r, equivSteps, worst)
		if worst > 1e-6 {
			t.Errorf("rank %d's parameters differ from one process's by %g (want ≤ 1e-6)", r, worst)
		}
	}
}
