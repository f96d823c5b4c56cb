package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/train"
)

// TestTrainSmallISCX runs the pipeline a user runs: preprocess the ISCX
// captures with their labels, split by flow, train configs/small.yaml, then
// evaluate the best checkpoint and the TorchScript export. The loss must
// fall and the test macro-F1 be well above chance.
func TestTrainSmallISCX(t *testing.T) {
	if testing.Short() {
		t.Skip("trains for about a minute")
	}
	dir := t.TempDir()
	app := iscxSets(t, dir)
	run := filepath.Join(dir, "run")
	trainSmall(t, app, run)
	epochs := readJSONLines[train.EpochMetrics](t, filepath.Join(run, train.MetricsJSONL))
	if len(epochs) < 5 {
		t.Fatalf("%d epochs in metrics.jsonl, want at least 5", len(epochs))
	}
	first, last := epochs[0].TrainLoss, epochs[len(epochs)-1].TrainLoss
	if !(last < 0.7*first) {
		t.Errorf("train loss went from %.4f to %.4f: want a fall of 30%% or more", first, last)
	}
	var report train.Report
	readJSON(t, filepath.Join(run, train.TestReportDir, train.ReportJSON), &report)
	chance := 1 / float64(len(report.Classes))
	t.Logf("loss %.3f → %.3f; test accuracy %.3f, macro-F1 %.3f (chance %.3f)", first, last, report.Accuracy, report.Macro.F1, chance)
	if report.Macro.F1 < 2.5*chance {
		t.Errorf("test macro-F1 %.3f is not clearly above chance (%.3f)", report.Macro.F1, chance)
	}
	if report.Flows == nil || report.Flows.Count == 0 {
		t.Error("no per-flow results for a set that records flows")
	}
	for _, name := range []string{train.ConfigFile, train.MetricsCSV, train.LossCurvePNG, train.TorchScriptPT,
		filepath.Join(train.CheckpointDir, train.LastCheckpoint), filepath.Join(train.CheckpointDir, train.BestCheckpoint),
		filepath.Join(train.TestReportDir, train.ConfusionPNG), filepath.Join(train.TestReportDir, train.ReportCSV)} {
		if info, err := os.Stat(filepath.Join(run, name)); err != nil || info.Size() == 0 {
			t.Errorf("run folder lacks %s: %v", name, err)
		}
	}

	// evaluate gives the same numbers from the checkpoint and from the
	// TorchScript export of the same weights.
	var fromCkpt, fromScript train.Report
	for _, c := range []struct {
		model  string
		report *train.Report
	}{{filepath.Join(run, train.CheckpointDir, train.BestCheckpoint), &fromCkpt}, {filepath.Join(run, train.TorchScriptPT), &fromScript}} {
		evalDir := filepath.Join(dir, "eval-"+filepath.Ext(c.model)[1:])
		out, err := runCLI(t, "evaluate", "--model", c.model, "--allow-torchscript", "--format", "json", "-o", evalDir, filepath.Join(app, "test.parquet"))
		if err != nil {
			t.Fatalf("evaluate %s: %v\n%s", c.model, err, out)
		}
		if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), c.report); err != nil {
			t.Fatalf("evaluate --format json: %v\n%s", err, out)
		}
		if _, err := os.Stat(filepath.Join(evalDir, train.ConfusionPNG)); err != nil {
			t.Error(err)
		}
	}
	if fromCkpt.Accuracy != report.Accuracy || fromScript.Accuracy != report.Accuracy || fromCkpt.Macro.F1 != fromScript.Macro.F1 {
		t.Errorf("accuracy: train's test %v, evaluate checkpoint %v, TorchScript %v", report.Accuracy, fromCkpt.Accuracy, fromScript.Accuracy)
	}
	table, err := runCLI(t, "evaluate", "--model", filepath.Join(run, train.TorchScriptPT), "--allow-torchscript", filepath.Join(app, "test.parquet"))
	if err != nil || !strings.Contains(table, "macro avg") || !strings.Contains(table, report.Classes[0].Name) {
		t.Errorf("evaluate table (%v):\n%s", err, table)
	}

	// TorchScript is code: without the opt-in it is refused, saying how to
	// opt in, by evaluate and predict alike; a task the checkpoint does not
	// have is an error, not a relabelling.
	script, best := filepath.Join(run, train.TorchScriptPT), filepath.Join(run, train.CheckpointDir, train.BestCheckpoint)
	capture := testenv.Shared(t, "pcaps/iscx/netflix.pcap")
	for _, args := range [][]string{
		{"evaluate", "--model", script, filepath.Join(app, "test.parquet")},
		{"predict", "--model", script, capture},
	} {
		if out, err := runCLI(t, args...); err == nil || !strings.Contains(err.Error(), "--allow-torchscript") || !strings.Contains(err.Error(), "TorchScript") {
			t.Errorf("%s of TorchScript without --allow-torchscript: %v\n%s", args[0], err, out)
		}
	}
	if _, err := runCLI(t, "evaluate", "--model", best, "--task", "traffic", filepath.Join(app, "test.parquet")); err == nil || !strings.Contains(err.Error(), "is a model of the application task") {
		t.Errorf("evaluate --task traffic of an application checkpoint: %v", err)
	}
	// predict gives the same rows from the checkpoint and from its
	// TorchScript export (allowed): the same packets, flows and classes, and
	// probabilities within float32 rounding (the checkpoint runs the forward
	// that skips zero padding, the TorchScript module the whole signal).
	var rows [2][]byte
	for i, args := range [][]string{{"--model", best}, {"--model", script, "--allow-torchscript"}} {
		out := filepath.Join(dir, fmt.Sprintf("predict%d.csv", i))
		if o, err := runCLI(t, append(append([]string{"predict", "-o", out}, args...), capture)...); err != nil {
			t.Fatalf("predict %v: %v\n%s", args, err, o)
		}
		if rows[i], err = os.ReadFile(out); err != nil {
			t.Fatal(err)
		}
	}
	a, b := strings.Split(string(rows[0]), "\n"), strings.Split(string(rows[1]), "\n")
	if len(a) != len(b) || len(a) < 3 {
		t.Fatalf("predict: the checkpoint gives %d lines, its TorchScript %d", len(a), len(b))
	}
	for i := range a {
		fa, fb := strings.Split(a[i], ","), strings.Split(b[i], ",")
		if len(fa) != len(fb) {
			t.Fatalf("line %d: %q and %q", i+1, a[i], b[i])
		}
		for j := range fa {
			if j == 8 && i > 0 { // probability
				pa, errA := strconv.ParseFloat(fa[j], 64)
				pb, errB := strconv.ParseFloat(fb[j], 64)
				if errA != nil || errB != nil || math.Abs(pa-pb) > 1e-5 {
					t.Errorf("line %d: probability %s and %s", i+1, fa[j], fb[j])
				}
			} else if fa[j] != fb[j] {
				t.Errorf("line %d, field %d: %q from the checkpoint, %q from its TorchScript", i+1, j+1, fa[j], fb[j])
			}
		}
	}
}

// iscxSets preprocesses the ISCX captures with their labels into dir and
// splits them by flow; it returns the application task's set folder.
func iscxSets(t *testing.T, dir string) string {
	t.Helper()
	iscx := testenv.Shared(t, "pcaps/iscx")
	pre, sets := filepath.Join(dir, "pre"), filepath.Join(dir, "sets")
	if out, err := runCLI(t, "preprocess", "--labels", filepath.Join(iscx, "labels.tsv"), "-o", pre, iscx); err != nil {
		t.Fatalf("preprocess: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "split", "--split-by", "flow", "-o", sets, pre); err != nil {
		t.Fatalf("split: %v\n%s", err, out)
	}
	return filepath.Join(sets, "application_classification")
}

// trainSmall trains configs/small.yaml on the sets in app into run, with
// more settings (--set key=value) after the test's.
func trainSmall(t *testing.T, app, run string, settings ...string) {
	t.Helper()
	config := filepath.Join(testenv.RepoRoot(t), "configs", "small.yaml")
	args := []string{"train", "--config", config, "--threads", "2",
		"--set", "data.train=" + filepath.Join(app, "train.parquet"), "--set", "data.test=" + filepath.Join(app, "test.parquet"), "-o", run}
	for _, kv := range settings {
		args = append(args, "--set", kv)
	}
	if out, err := runCLI(t, args...); err != nil {
		t.Fatalf("train: %v\n%s", err, out)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readJSONLines[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	return out
}

// TestTrainConfigErrors: a typo or a bad value is refused before training.
func TestTrainConfigErrors(t *testing.T) {
	config := filepath.Join(testenv.RepoRoot(t), "configs", "small.yaml")
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("model:\n  c1_kernal_size: 4\n"), 0o644)
	// A run folder holding another run's files.
	used := filepath.Join(dir, "used")
	os.MkdirAll(used, 0o755)
	os.WriteFile(filepath.Join(used, "metrics.csv"), []byte("x"), 0o644)
	trainSet := filepath.Join(dir, "train.parquet")
	os.MkdirAll(trainSet, 0o755)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"huge batch", []string{"--config", config, "--set", "batch_size=100000000"}, "batch_size 100000000: one batch of 1500-value inputs would take 572204 MB"},
		{"negative threads", []string{"--config", config, "--set", "threads=-4"}, "threads -4: want 0"},
		{"beta out of range", []string{"--config", config, "--set", "optimizer.beta1=1.5"}, "optimizer.beta1 1.5: want a number in [0, 1)"},
		{"dropout out of range", []string{"--config", config, "--set", "model.dropout=1"}, "model.dropout 1: want -1 (the reference's) or a probability in [0, 1)"},
		{"negative workers", []string{"--config", config, "--set", "loader.workers=-1"}, "loader.workers -1"},
		{"missing test set", []string{"--config", config, "--set", "data.train=" + trainSet, "--set", "data.test=" + filepath.Join(dir, "gone")}, "test set (data.test)"},
		{"used run folder", []string{"--config", config, "-o", used}, "exists and is not empty: choose another -o, continue that run with --resume"},
		{"typo in --set", []string{"--config", config, "--set", "early_stoping.patience=5"}, `did you mean "early_stopping.patience"?`},
		{"typo in file", []string{"--config", typo}, `did you mean "model.c1_kernel_size"?`},
		{"bad kind", []string{"--config", config, "--set", "model.kind=rnn"}, `model.kind "rnn"`},
		{"val monitor without validation", []string{"--config", config, "--set", "early_stopping.monitor=val_loss"}, "needs validation_fraction"},
		{"missing data", []string{"--config", config, "--set", "data.train=" + filepath.Join(dir, "nope")}, "nope"},
		{"no config", nil, "--config FILE is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCLI(t, append([]string{"train", "-o", filepath.Join(dir, "run")}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q\n%s", err, tc.want, out)
			}
		})
	}
}

// TestConfigs reads every file under configs/ as train does and checks the
// reference's settings in them.
func TestConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(t), "configs", "*.yaml"))
	if err != nil || len(files) < 7 {
		t.Fatalf("configs: %v (%d files)", err, len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cmd := newTrainCmd()
			cmd.Flags().String("config", "", "")
			cmd.Flags().StringArray("set", nil, "")
			if err := cmd.ParseFlags([]string{"--config", path}); err != nil {
				t.Fatal(err)
			}
			cfg, err := trainConfig(cmd)
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Base(path)
			wantEpochs := map[string]int{"cnn": 20, "resnet": 40, "sae": 20}[cfg.Model.Kind]
			if name == "small.yaml" {
				wantEpochs = cfg.Epochs
			}
			es := cfg.EarlyStopping
			if cfg.Epochs != wantEpochs || cfg.BatchSize != 16 || cfg.Seed != 9876 || cfg.Optimizer.Name != "adam" || cfg.Optimizer.LR != 1e-3 ||
				!es.Enabled || es.Monitor != "train_loss" || es.Patience != 3 || es.MinDelta != 0 || es.Mode != "min" {
				t.Errorf("not the reference's settings: %+v", cfg)
			}
			wantTask := map[bool]string{true: "traffic", false: "application"}[strings.HasPrefix(name, "traffic")]
			wantOut := map[string]int64{"application": 17, "traffic": 12}[wantTask]
			if cfg.Task != wantTask || cfg.Model.OutputDim != wantOut {
				t.Errorf("task %s output_dim %d, want %s and %d", cfg.Task, cfg.Model.OutputDim, wantTask, wantOut)
			}
		})
	}
}
