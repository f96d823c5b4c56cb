package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/ckpt"
)

func init() { register(newExportCmd) }

func newExportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export MODEL --format torchscript|lightning|safetensors -o OUT",
		Short: "Write a model as TorchScript, a PyTorch Lightning checkpoint or safetensors",
		Long: `export reads a model checkpoint (ours, or the reference's Lightning .ckpt or
.model) and writes it for PyTorch users:

  torchscript  a TorchScript module that torch.jit.load (Python) and
               torch::jit::load (C++) run with no Deep Packet code: input
               [batch, 1, signal_length] float32 bytes/255, output logits.
               Inference only (dropout off, batch norm on running stats).
               Tensors are named by their state_dict keys with dots as
               underscores (conv1.0.weight is conv1_0_weight).
  lightning    Lightning's checkpoint layout (state_dict, hyper_parameters,
               hparams_name, epoch, global_step, pytorch-lightning_version),
               which the reference's LightningModule loads strictly and
               torch.load(weights_only=True) reads.
  safetensors  the state_dict as safetensors (Hugging Face's format:
               safetensors.torch.load_file reads it), with the
               hyperparameters (JSON) and the model's kind, task and
               preprocessing in its metadata. Every command that reads a
               model reads it back.`,
		Args: cobra.ExactArgs(1),
		RunE: runExport,
	}
	f := cmd.Flags()
	f.String("format", "torchscript", "torchscript, lightning or safetensors")
	f.StringP("output", "o", "", "output file (required)")
	return cmd
}

func runExport(cmd *cobra.Command, args []string) error {
	v, err := settings(cmd, nil)
	if err != nil {
		return err
	}
	out := v.GetString("output")
	if out == "" {
		return errors.New("export: -o OUT is required")
	}
	format := v.GetString("format")
	if format != "torchscript" && format != "lightning" && format != "safetensors" {
		return fmt.Errorf("export: --format %q: want torchscript, lightning or safetensors", format)
	}
	c, m, err := ckpt.ReadModel(args[0])
	if err != nil {
		return err
	}
	defer c.Close()
	defer m.Close()
	meta := ckpt.Meta{Epoch: c.Epoch, GlobalStep: c.GlobalStep}
	switch format {
	case "torchscript":
		err = ckpt.ExportTorchScript(m, out)
	case "lightning":
		err = ckpt.SaveCheckpoint(out, m, meta)
	default:
		err = ckpt.SaveSafetensors(out, m, meta)
	}
	if err != nil {
		return err
	}
	slog.Info("exported", "model", args[0], "kind", m.Kind(), "format", format, "output", out)
	return nil
}
