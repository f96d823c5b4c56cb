package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/torch"
)

func init() { register(newVersionCmd) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print deeppacket's version, the libtorch it runs on and whether that has CUDA",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "deeppacket %s\n", ownVersion())
			if err := torch.Load(); err != nil {
				fmt.Fprintf(out, "libtorch: not loaded: %v\n", err)
				return nil
			}
			cuda := "no CUDA (CPU only)"
			if torch.CUDALibrary() {
				cuda = "CUDA libraries not loaded: no NVIDIA driver"
			}
			if v := torch.CUDAVersion(); v != "" {
				cuda = fmt.Sprintf("CUDA %s, %d GPU(s) visible", v, torch.CUDADeviceCount())
			}
			fmt.Fprintf(out, "libtorch %s, %s, %d threads\n", torch.Version(), cuda, torch.NumThreads())
			return nil
		},
	}
}

// ownVersion is the module version the binary was built at, with the VCS
// revision when `go build` recorded one.
func ownVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " (" + rev + modified + ")"
	}
	return v
}
