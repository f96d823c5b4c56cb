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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := l.Addr().String()
	l.Close()
	run := filepath.Join(dir, "run")
	cmd := exec.Command(torchrun, "--no-python", "--nnodes", "1", "--nproc-per-node", "2",
		"--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
		bin, "train", "--quiet", "--config", config, "-o", run)
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
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		endpoint := l.Addr().String()
		l.Close()
		return exec.Command(torchrun, "--no-python", "--nnodes", "1", "--nproc-per-node", "2", "--max-restarts", fmt.Sprint(restarts),
			"--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, bin, "train", "--quiet", "--config", config, "-o", run)
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
