package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/train"
)

// TestTorchrun: the README's launch, PyTorch's torchrun (the .venv's) with
// c10d rendezvous starting two `deeppacket train` processes on this
// machine: they train as ranks 0 and 1 of one group (torchrun's agent
// hosting the store, TORCHELASTIC_USE_AGENT_STORE), end with the same
// weights (the trainer checks), and rank 0 alone writes the run folder.
func TestTorchrun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI and trains two processes")
	}
	torchrun := venvTorchrun(t)
	dir := t.TempDir()
	bin, config := buildCLI(t), ddpConfig(t, dir, 2)
	run := filepath.Join(dir, "run")
	cmd := torchrunCmd(t, torchrun, 2, 0, bin, "train", "--quiet", "--config", config, "-o", run)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("torchrun: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"rank=0 world_size=2", "rank=1 world_size=2", "every rank ends with rank 0's weights", "trained 2 epochs"} {
		if !strings.Contains(text, want) {
			t.Errorf("torchrun's output lacks %q:\n%s", want, text)
		}
	}
	if strings.Count(text, "run folder:") != 1 {
		t.Errorf("want one rank to print the run folder:\n%s", text)
	}
	ck, err := ckpt.ReadCheckpoint(filepath.Join(run, train.CheckpointDir, train.LastCheckpoint))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Epoch != 1 {
		t.Errorf("last checkpoint at epoch %d, want 1", ck.Epoch)
	}
	ck.Close()
}

// TestTorchrunRestart: torchrun --max-restarts 1, one of its two ranks
// killed (SIGKILL) once the run has a checkpoint: the others fail, torchrun
// restarts the group, which resumes from the run's last checkpoint and ends
// with the weights of a run never interrupted, bit for bit.
func TestTorchrunRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI and trains two groups")
	}
	torchrun := venvTorchrun(t)
	dir := t.TempDir()
	bin, config := buildCLI(t), ddpConfig(t, dir, 4)
	launch := func(run string, restarts int) *exec.Cmd {
		return torchrunCmd(t, torchrun, 2, restarts, bin, "train", "--quiet", "--config", config, "-o", run)
	}
	whole, broken := filepath.Join(dir, "whole"), filepath.Join(dir, "broken")
	if out, err := launch(whole, 0).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}

	cmd := launch(broken, 1)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	last := filepath.Join(broken, train.CheckpointDir, train.LastCheckpoint)
	killed := false
	for !killed {
		select {
		case err := <-done:
			t.Fatalf("the run ended before a rank could be killed: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := os.Stat(last); err != nil {
			continue
		}
		kids, _ := exec.Command("pgrep", "-P", strconv.Itoa(cmd.Process.Pid)).Output()
		if f := strings.Fields(string(kids)); len(f) > 0 {
			pid, _ := strconv.Atoi(f[len(f)-1])
			killed = syscall.Kill(pid, syscall.SIGKILL) == nil
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("torchrun after the kill: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "torchrun restarted the group") {
		t.Errorf("the restarted group did not say it resumed:\n%s", out.String())
	}
	a, err := ckpt.ReadCheckpoint(filepath.Join(whole, train.CheckpointDir, train.LastCheckpoint))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ckpt.ReadCheckpoint(last)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Epoch != 3 || b.Epoch != 3 {
		t.Fatalf("last checkpoints at epochs %d and %d, want 3", a.Epoch, b.Epoch)
	}
	for name, w := range a.StateDict {
		if eq, err := w.Equal(b.StateDict[name]); err != nil || !eq {
			t.Errorf("%s differs between the restarted run and the uninterrupted one (%v)", name, err)
		}
	}
}

// TestTorchrunMatchesOneProcess: the README's launch, 2 ranks at batch
// size 8, ends with the weights of one process at batch size 16 over the
// same samples (DistributedSampler's shares of one permutation: the two
// ranks' step i together hold the one process's batch i), within 1e-6.
// SGD with momentum and dropout 0: each rank draws its own dropout masks,
// as in PyTorch's DDP, so dropout would make the runs differ. drop_last:
// the set has an odd number of rows, which DistributedSampler would pad
// with a repeated one, and the last batches would differ by that row.
func TestTorchrunMatchesOneProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI and trains twice")
	}
	torchrun := venvTorchrun(t)
	dir := t.TempDir()
	bin, config := buildCLI(t), ddpConfig(t, dir, 2)
	runs := map[int]string{}
	for _, world := range []int{2, 1} {
		runs[world] = filepath.Join(dir, fmt.Sprint("world", world))
		cmd := torchrunCmd(t, torchrun, world, 0, bin, "train", "--quiet", "--config", config, "-o", runs[world],
			"--set", "model.dropout=0", "--set", "optimizer.name=sgd", "--set", "optimizer.lr=0.02", "--set", "optimizer.momentum=0.9", "--set", "loader.drop_last=true",
			"--set", fmt.Sprint("batch_size=", 16/world))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("torchrun, %d ranks: %v\n%s", world, err, out)
		}
	}
	two, err := ckpt.ReadCheckpoint(filepath.Join(runs[2], train.CheckpointDir, train.LastCheckpoint))
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()
	one, err := ckpt.ReadCheckpoint(filepath.Join(runs[1], train.CheckpointDir, train.LastCheckpoint))
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if two.Epoch != 1 || one.Epoch != 1 || two.GlobalStep != one.GlobalStep || one.GlobalStep < 50 {
		t.Fatalf("epochs %d and %d, steps %d and %d: want epoch 1 and the same steps, at least 50", two.Epoch, one.Epoch, two.GlobalStep, one.GlobalStep)
	}
	worst := 0.0
	for name, w := range one.StateDict {
		a, errA := w.Float32s()
		b, errB := two.StateDict[name].Float32s()
		if errA != nil || errB != nil {
			t.Fatalf("%s: %v %v", name, errA, errB)
		}
		worst = max(worst, maxDiff(a, b))
	}
	t.Logf("%d steps: largest difference between 2 ranks × 8 and 1 process × 16: %.3g", one.GlobalStep, worst)
	if worst > 1e-6 {
		t.Errorf("2 ranks × batch 8 differ from 1 process × batch 16 by %.3g, want at most 1e-6", worst)
	}
}

// torchrunCmd is the README's torchrun launch of nproc processes of bin
// with args on this machine (c10d rendezvous on a free port), restarting
// the group up to restarts times.
func torchrunCmd(t *testing.T, torchrun string, nproc, restarts int, bin string, args ...string) *exec.Cmd {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := l.Addr().String()
	l.Close()
	return exec.Command(torchrun, append([]string{"--no-python", "--nnodes", "1", "--nproc-per-node", fmt.Sprint(nproc),
		"--max-restarts", fmt.Sprint(restarts), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, bin}, args...)...)
}

// venvTorchrun is the .venv's torchrun (Debian's crashes on Python 3.11
// before it starts a worker): a skip with the reason without it, a failure
// under CI.
func venvTorchrun(t *testing.T) string {
	t.Helper()
	torchrun := filepath.Join(filepath.Dir(testenv.Python(t)), "torchrun")
	if _, err := os.Stat(torchrun); err != nil || !strings.Contains(torchrun, ".venv") {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no torchrun beside the .venv's Python (%s): %v", torchrun, err)
		}
		t.Skipf("no .venv torchrun (%s): run scripts/install-deps.sh", torchrun)
	}
	return torchrun
}

// ddpConfig writes, in dir, the config of a small CNN trained for epochs on
// the ISCX application set (iscxSets), on the CPU, one thread a rank, with
// early stopping off, and returns its path.
func ddpConfig(t *testing.T, dir string, epochs int) string {
	t.Helper()
	app := iscxSets(t, dir)
	doc := fmt.Sprintf(`data:
  train: %s
task: application
model:
  kind: cnn
  c1_output_dim: 8
  c2_output_dim: 8
epochs: %d
batch_size: 16
device: cpu
threads: 1
early_stopping:
  enabled: false
checkpoint:
  torchscript: false
distributed:
  timeout_s: 120
`, filepath.Join(app, "train.parquet"), epochs)
	config := filepath.Join(dir, "ddp.yaml")
	if err := os.WriteFile(config, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return config
}
