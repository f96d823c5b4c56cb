package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/torch"
	"github.com/deeppacket/deeppacket/train"
)

func init() { register(newEvaluateCmd) }

func newEvaluateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evaluate --model MODEL [--format table|json|csv] [-o DIR] DATA",
		Short: "Score a model on a test set: accuracy, per-class P/R/F1, confusion matrix, per-flow results",
		Long: `evaluate classifies every row of DATA (a set written by split, or the
reference's own Parquet) with MODEL (a checkpoint of ours, a reference or
Lightning 2.x checkpoint, safetensors, or with --allow-torchscript a
TorchScript .pt) and prints accuracy, precision,
recall, F1 and support per class with the class names, their macro and
weighted averages, and, when the set records flows, the same per flow (the
class most of a flow's packets get).

With -o DIR it also writes report.json, report.csv, confusion.csv and
confusion.png (the confusion matrix normalised by true class, as the
reference's notebook draws it), and flows_report.csv and
flows_confusion.png.`,
		Args: cobra.ExactArgs(1),
		RunE: runEvaluate,
	}
	f := cmd.Flags()
	f.String("model", "", "checkpoint (.ckpt, .model) or safetensors; TorchScript (.pt) with --allow-torchscript (required)")
	f.Bool("allow-torchscript", false, "let --model be TorchScript, such as train's model.pt: TorchScript is code, which runs when loaded and can read and write files, so use it only from a source you trust")
	f.String("format", "table", "what goes to stdout: table, json or csv")
	f.StringP("output", "o", "", "folder for report.json, report.csv, confusion.csv and the heat maps")
	f.String("device", "auto", "auto, cpu, cuda or cuda:N")
	f.Int("batch-size", 1024, "rows per forward pass")
	f.String("task", "", "class names of a TorchScript model: application or traffic (default: from its output size); a checkpoint's task must match")
	f.Int("signal-length", 1500, "input length of a TorchScript model (checkpoints record theirs)")
	f.Int("threads", 0, "libtorch threads (0: libtorch's default)")
	return cmd
}

func runEvaluate(cmd *cobra.Command, args []string) error {
	v, err := settings(cmd, nil)
	if err != nil {
		return err
	}
	model := v.GetString("model")
	if model == "" {
		return fmt.Errorf("evaluate: --model is required")
	}
	format := v.GetString("format")
	if format != "table" && format != "json" && format != "csv" {
		return fmt.Errorf("--format %q: want table, json or csv", format)
	}
	device, err := torch.ParseDevice(v.GetString("device"))
	if err != nil {
		return err
	}
	if n := v.GetInt("threads"); n > 0 {
		torch.SetNumThreads(n)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := train.Evaluate(ctx, model, args[0], train.EvalOptions{
		Device: device, BatchSize: v.GetInt("batch_size"), Task: v.GetString("task"), SignalLength: v.GetInt("signal_length"),
		AllowTorchScript: v.GetBool("allow_torchscript"),
	})
	if err != nil {
		return err
	}
	if dir := v.GetString("output"); dir != "" {
		if err := r.WriteFiles(dir); err != nil {
			return err
		}
		defer fmt.Fprintf(cmd.ErrOrStderr(), "reports written to %s\n", filepath.Clean(dir))
	}
	w := cmd.OutOrStdout()
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "csv":
		_, err := w.Write(r.ClassCSV())
		return err
	}
	return r.WriteTable(w)
}
