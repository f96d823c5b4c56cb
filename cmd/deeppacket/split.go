package main

import (
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/data/dataset"
	"github.com/deeppacket/deeppacket/data/split"
	"github.com/deeppacket/deeppacket/labels"
)

func init() { register(newSplitCmd) }

func newSplitCmd() *cobra.Command {
	d := split.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "split -o TARGET PREPROCESSED_FOLDER",
		Short: "Make the training and test sets of both tasks from preprocessed captures",
		Long: `split reads the Parquet files 'deeppacket preprocess' wrote and writes, as the
reference lays them out,
  TARGET/application_classification/{train,test}.parquet
  TARGET/traffic_classification/{train,test}.parquet
each a folder of part files holding the rows that have a label for that task.

As the reference: each label's rows are split with test_size going to the
test set, then the training set is undersampled to its smallest class. The
rows chosen depend only on the input and the seed, never on -j.

--split-by flow keeps every packet of a flow on one side. Packets of one
connection look alike (same headers, often the same payload patterns), so a
packet-level split tests the model on near copies of packets it trained on
and overstates its accuracy; a flow-level split measures how it does on
connections it has never seen.

--test-under-sampling also undersamples the test set to its smallest class:
the reference's test set is far larger and more skewed than its training set.

--format reference writes the reference Spark job's schema (feature: list of
doubles divided by 255, zero-padded to signal_length; label: int64), which
the reference's own PyTorch code reads unchanged; compact (the default)
keeps the feature bytes and the provenance columns, a third of the size or
less, and the loader reads both.`,
		Args: cobra.ExactArgs(1),
		RunE: runSplit,
	}
	f := cmd.Flags()
	f.StringP("output", "o", "", "target folder (required)")
	f.Float64("test-size", d.TestSize, "fraction of each class that goes to the test set")
	f.String("split-by", d.SplitBy.String(), "what stays on one side: packet or flow")
	f.String("format", d.Format.String(), "output format: compact or reference")
	f.Uint64("seed", d.Seed, "seed of the split")
	f.Bool("under-sampling", d.UnderSampling, "undersample the training set to its smallest class")
	f.Bool("test-under-sampling", d.TestUnderSampling, "undersample the test set to its smallest class")
	f.Int("signal-length", d.SignalLength, "longest feature; the reference format pads to it")
	f.IntP("jobs", "j", runtime.NumCPU(), "files read in parallel")
	return cmd
}

func runSplit(cmd *cobra.Command, args []string) error {
	v, err := settings(cmd, nil)
	if err != nil {
		return err
	}
	target := v.GetString("output")
	if target == "" {
		return errors.New("split: -o TARGET is required")
	}
	opts := split.DefaultOptions()
	opts.TestSize = v.GetFloat64("test_size")
	if opts.SplitBy, err = split.ParseUnit(v.GetString("split_by")); err != nil {
		return err
	}
	if opts.Format, err = dataset.ParseFormat(v.GetString("format")); err != nil {
		return err
	}
	opts.Seed = v.GetUint64("seed")
	opts.UnderSampling = v.GetBool("under_sampling")
	opts.TestUnderSampling = v.GetBool("test_under_sampling")
	opts.SignalLength = v.GetInt("signal_length")
	opts.Jobs = v.GetInt("jobs")
	if opts.Jobs <= 0 {
		opts.Jobs = runtime.NumCPU()
	}
	opts.ClassName = className
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	defer stop()
	report, err := split.Run(ctx, args[0], target, opts)
	if err != nil {
		return err
	}
	slog.Debug("split", "input_rows", report.InputRows, "held_rows", report.HeldRows)
	for _, a := range report.Tasks {
		switch {
		case a.Train+a.Test == 0:
			slog.Warn("no rows for a task: its sets are empty", "task", a.Task, "unlabelled_rows", a.Unlabelled)
		case len(a.EmptyClasses) > 0:
			slog.Warn("classes with no rows in a set", "task", a.Task, "classes", strings.Join(a.EmptyClasses, ", "))
		}
	}
	return report.Print(cmd.OutOrStdout())
}

// className names a label with the reference's class names.
func className(task string, label int64) string {
	if task == split.TaskNames[0] {
		return labels.AppName(int(label))
	}
	return labels.TrafficName(int(label))
}
