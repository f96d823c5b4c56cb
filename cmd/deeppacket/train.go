package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/dist"
	"github.com/deeppacket/deeppacket/train"
)

func init() { register(newTrainCmd) }

func newTrainCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "train --config FILE [--set key=value]... [-o RUN_DIR] [--resume CKPT]",
		Short: "Train a model as the reference's Lightning setup does, from a config file",
		Long: `train runs one experiment: the model, data, optimiser, seed and early
stopping of a YAML file (see configs/), with any key overridden by
--set key=value, a DEEPPACKET_* variable (DEEPPACKET_EARLY_STOPPING_PATIENCE)
or a flag. An unknown key is an error naming the nearest known one.

The run folder (-o, default runs/<config>-<time>) receives config.yaml (the
effective configuration), metrics.csv (per step), metrics.jsonl (per epoch),
loss.png, checkpoints/last.ckpt and checkpoints/best.ckpt (Lightning's
layout, written atomically every epoch), model.pt (TorchScript of the best
model) and, when data.test is set, test/ with the evaluation of the best
model. --resume RUN_DIR/checkpoints/last.ckpt continues an interrupted run
(its config.yaml is used unless --config is given) and ends with the
weights an uninterrupted run would have.`,
		Args: cobra.NoArgs,
		RunE: runTrain,
	}
	f := cmd.Flags()
	f.StringP("output", "o", "", "run folder (default runs/<config name>-<time>)")
	f.String("resume", "", "checkpoint to continue from (a run's checkpoints/last.ckpt)")
	f.Bool("overwrite", false, "replace the run folder if it exists and is not empty (its files are deleted first)")
	def := train.DefaultConfig()
	f.String("device", def.Device, "auto, cpu, cuda or cuda:N")
	f.Int("threads", def.Threads, "libtorch threads (0: libtorch's default)")
	f.Int("epochs", def.Epochs, "maximum number of epochs")
	f.Int("batch-size", def.BatchSize, "samples per step")
	f.Uint64("seed", def.Seed, "seed of the model's initialisation, dropout and shuffling")
	return cmd
}

func runTrain(cmd *cobra.Command, _ []string) error {
	resume, _ := cmd.Flags().GetString("resume")
	out, _ := cmd.Flags().GetString("output")
	configPath, _ := cmd.Flags().GetString("config")
	if resume != "" {
		if _, err := os.Stat(resume); err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if out == "" {
			// RUN_DIR/checkpoints/last.ckpt
			out = filepath.Dir(filepath.Dir(resume))
		}
		if configPath == "" {
			configPath = filepath.Join(out, train.ConfigFile)
			if err := cmd.Flags().Set("config", configPath); err != nil {
				return err
			}
		}
	}
	if configPath == "" {
		return fmt.Errorf("train: --config FILE is required (see configs/)")
	}
	cfg, err := trainConfig(cmd)
	if err != nil {
		return err
	}
	if out == "" {
		name := strings.TrimSuffix(filepath.Base(configPath), filepath.Ext(configPath))
		out = filepath.Join("runs", name+"-"+time.Now().Format("20060102-150405"))
	}
	// In a distributed run (torchrun, env://) only rank 0 writes the run
	// folder and prints; the other ranks train beside it.
	env, err := dist.FromEnv()
	if err != nil {
		return err
	}
	primary := env == nil || env.Rank == 0
	if last := filepath.Join(out, train.CheckpointDir, train.LastCheckpoint); env != nil && env.RestartCount > 0 && resume == "" {
		// torchrun restarted the group after a failure: carry on from the
		// last epoch the run finished (its folder must be the same, -o).
		if _, err := os.Stat(last); err == nil {
			resume = last
			slog.Warn("torchrun restarted the group: resuming", "restart_count", env.RestartCount, "checkpoint", last)
		} else if primary {
			// Failed before its first checkpoint: the folder is that
			// attempt's (the first attempt refused one in use); start over.
			slog.Warn("torchrun restarted the group before a checkpoint: starting over", "restart_count", env.RestartCount, "run", out)
			if err := os.RemoveAll(out); err != nil {
				return err
			}
		}
	}
	if primary {
		if err := checkRunDir(cmd, out, resume); err != nil {
			return err
		}
	}
	doc, err := cfg.YAML()
	if err != nil {
		return err
	}
	switch {
	case !primary:
	case jsonLogs:
		slog.Info("effective configuration", "saved_as", filepath.Join(out, train.ConfigFile), "config", cfg.Map())
	default:
		fmt.Fprintf(cmd.ErrOrStderr(), "# effective configuration (saved as %s)\n%s\n", filepath.Join(out, train.ConfigFile), doc)
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := train.Train(ctx, cfg, train.Options{RunDir: out, Resume: resume})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("train interrupted: %w; resume with --resume %s", err, filepath.Join(out, train.CheckpointDir, train.LastCheckpoint))
		}
		return err
	}
	if !primary {
		return nil
	}
	w := cmd.OutOrStdout()
	last := res.Epochs[len(res.Epochs)-1]
	fmt.Fprintf(w, "trained %d epochs (%d steps), final train_loss %.4f", len(res.Epochs), res.GlobalStep, last.TrainLoss)
	if res.Stopped {
		fmt.Fprint(w, ", stopped early")
	}
	fmt.Fprintf(w, "\nrun folder: %s\n", out)
	if res.Best != "" {
		fmt.Fprintf(w, "best checkpoint: %s\n", res.Best)
	}
	if res.TorchScript != "" {
		fmt.Fprintf(w, "TorchScript: %s\n", res.TorchScript)
	}
	if res.Test != nil {
		fmt.Fprintf(w, "\ntest set %s:\n", res.Test.Data)
		return res.Test.WriteTable(w)
	}
	return nil
}

// trainConfig reads the experiment's settings into a Config.
// checkRunDir refuses a run folder that holds another run, before any work,
// unless the run is resumed there or --overwrite says to replace it.
func checkRunDir(cmd *cobra.Command, out, resume string) error {
	entries, err := os.ReadDir(out)
	if err != nil || len(entries) == 0 || resume != "" {
		return nil
	}
	if overwrite, _ := cmd.Flags().GetBool("overwrite"); !overwrite {
		return fmt.Errorf("train: run folder %s exists and is not empty: choose another -o, continue that run with --resume %s, or replace it with --overwrite",
			out, filepath.Join(out, train.CheckpointDir, train.LastCheckpoint))
	}
	slog.Warn("replacing the run folder", "run", out)
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("train: --overwrite: %w", err)
	}
	return nil
}

func init() { settingDefaults = train.DefaultConfig().Map() }

func trainConfig(cmd *cobra.Command) (train.Config, error) {
	v, err := settings(cmd, train.DefaultConfig().Map())
	if err != nil {
		return train.Config{}, err
	}
	var cfg train.Config
	if err := v.Unmarshal(&cfg); err != nil {
		return train.Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, cfg.Validate()
}
