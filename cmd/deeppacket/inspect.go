package main

import (
	"fmt"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/ckpt"
)

func init() { register(newInspectCmd) }

func newInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect MODEL",
		Short: "Show a model checkpoint: kind, hyperparameters, parameters, tensors and expected preprocessing",
		Args:  cobra.ExactArgs(1),
		RunE:  runInspect,
	}
}

func runInspect(cmd *cobra.Command, args []string) error {
	c, m, err := ckpt.ReadModel(args[0])
	if err != nil {
		return err
	}
	defer c.Close()
	defer m.Close()
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	task := c.Spec.Task.Name
	if task == "" {
		task = "unknown"
	}
	prep := m.Preprocessing()
	fmt.Fprintf(w, "file\t%s\n", c.Path)
	fmt.Fprintf(w, "kind\t%s\n", m.Kind())
	fmt.Fprintf(w, "task\t%s (%d outputs)\n", task, m.OutputDim())
	fmt.Fprintf(w, "layout\t%s (mask ports: %v, signal length: %d)\n", prep.Layout, prep.MaskPorts, prep.SignalLength)
	fmt.Fprintf(w, "epoch\t%d\n", c.Epoch)
	fmt.Fprintf(w, "global step\t%d\n", c.GlobalStep)
	if c.LightningVersion != "" {
		fmt.Fprintf(w, "lightning version\t%s\n", c.LightningVersion)
	}
	fmt.Fprintf(w, "parameters\t%d\n", m.Store().NumParameters())
	fmt.Fprintln(w, "\nhyperparameters")
	hp := c.Spec.HParams
	for _, k := range slices.Sorted(maps.Keys(hp)) {
		fmt.Fprintf(w, "  %s\t%v\n", k, hp[k])
	}
	fmt.Fprintln(w, "\ntensors")
	for _, v := range m.Store().Vars() {
		role := "parameter"
		if v.Buffer {
			role = "buffer"
		}
		fmt.Fprintf(w, "  %s\t%v\t%s\n", v.Name, v.Tensor.Shape(), role)
	}
	if c.Extra.Keys != nil {
		fmt.Fprintln(w, "\nother entries")
		for _, k := range c.Extra.Keys {
			fmt.Fprintf(w, "  %v\n", k)
		}
	}
	return w.Flush()
}
