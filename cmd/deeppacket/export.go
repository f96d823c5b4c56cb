package main

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/ckpt/onnx"
)

func init() { register(newExportCmd) }

func newExportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export MODEL --format torchscript|lightning|safetensors|onnx -o OUT",
		Short: "Write a model as TorchScript, a PyTorch Lightning checkpoint, safetensors or ONNX",
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
               model reads it back.
  onnx         an ONNX model (opset 18) that onnxruntime and other ONNX
               runtimes run with no Deep Packet code: input "input"
               [batch, 1, signal_length] float32 bytes/255, output "logits"
               [batch, classes]; batch is dynamic. Inference only, as
               torchscript. Weights are initializers named by their
               state_dict keys; kind, task and class names are in its
               metadata_props.`,
		Args: cobra.ExactArgs(1),
		RunE: runExport,
	}
	f := cmd.Flags()
	f.String("format", "torchscript", "torchscript, lightning, safetensors or onnx")
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
	if !slices.Contains([]string{"torchscript", "lightning", "safetensors", "onnx"}, format) {
		return fmt.Errorf("export: --format %q: want torchscript, lightning, safetensors or onnx", format)
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
	case "onnx":
		err = onnx.Export(m, out)
	default:
		err = ckpt.SaveSafetensors(out, m, meta)
	}
	if err != nil {
		return err
	}
	slog.Info("exported", "model", args[0], "kind", m.Kind(), "format", format, "output", out)
	return nil
}
