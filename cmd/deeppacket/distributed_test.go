package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
	torchrun := filepath.Join(filepath.Dir(testenv.Python(t)), "torchrun")
	if _, err := os.Stat(torchrun); err != nil || !strings.Contains(torchrun, ".venv") {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no torchrun beside the .venv's Python (%s): %v", torchrun, err)
		}
		t.Skipf("no .venv torchrun (%s; Debian's crashes on Python 3.11): run scripts/install-deps.sh", torchrun)
	}
	dir := t.TempDir()
	app := iscxSets(t, dir)
	bin := buildCLI(t)
	config := filepath.Join(dir, "ddp.yaml")
	doc := fmt.Sprintf(`data:
  train: %s
task: application
model:
  kind: cnn
  c1_output_dim: 8
  c2_output_dim: 8
epochs: 2
batch_size: 16
device: cpu
threads: 1
checkpoint:
  torchscript: false
distributed:
  timeout_s: 120
`, filepath.Join(app, "train.parquet"))
	if err := os.WriteFile(config, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
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
