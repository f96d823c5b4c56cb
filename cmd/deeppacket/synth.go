// Go 1.26 ignores the random source given to crypto key generation unless
// this is set; synth needs it for captures that are the same for a seed.
//go:debug cryptocustomrand=1

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/internal/progress"
	"github.com/deeppacket/deeppacket/synth"
)

func init() { register(newSynthCmd) }

func newSynthCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "synth [--seed N] [--scale S] -o DIR",
		Short: "Write synthetic labelled captures of every traffic class",
		Long: `synth writes a small labelled set of pcap files, one per application and
traffic class, named as the reference's label maps expect (netflix1.pcap,
skype_chat1a.pcap, vpn_bittorrent.pcap, ...), so that the whole pipeline can
run without the ISCX VPN-nonVPN data set.

The traffic is made of real protocols: TLS 1.2 and 1.3 sessions between
Go's crypto/tls client and server, as each service spoke it, SSH for sftp
and scp, SRTP calls, QUIC-like streaming, BitTorrent's peer protocol, and
VPN captures that carry the same traffic through a WireGuard-like encrypted
tunnel whose client reconnects now and then. Every class has several flows
(at least 16 across its captures), so a split by flow puts each class on
both sides. The same seed gives the same bytes. Scale 1 makes a few
thousand packets (about 400 that the reference keeps per traffic class);
--scale 1000 makes a few GB for benchmarks.`,
		Args: cobra.NoArgs,
		RunE: runSynth,
	}
	f := cmd.Flags()
	f.StringP("output", "o", "", "output folder (required)")
	f.Int64("seed", 1, "seed of every random choice; the same seed gives the same captures")
	f.Float64("scale", 1, "multiplies the packets of every capture")
	return cmd
}

func runSynth(cmd *cobra.Command, _ []string) error {
	v, err := settings(cmd, nil)
	if err != nil {
		return err
	}
	out := v.GetString("output")
	if out == "" {
		return errors.New("synth: -o DIR is required")
	}
	opt := synth.Options{Seed: v.GetInt64("seed"), Scale: v.GetFloat64("scale")}
	if opt.Scale <= 0 {
		return fmt.Errorf("synth: scale %v: want a positive number", opt.Scale)
	}
	captures := synth.Captures()
	bar := progress.New(int64(len(captures)), "synth", false)
	stats, err := synth.Generate(out, opt, func(s synth.Stats) {
		slog.Debug("wrote capture", "name", s.Name, "packets", s.Packets, "bytes", s.Bytes)
		bar.Add(1)
	})
	bar.Finish()
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "capture\ttraffic class\tapplication\tpackets\tkept\tbytes\t")
	var packets, kept int
	var size int64
	for i, s := range stats {
		c := captures[i]
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t\n", s.Name, c.Class, c.App, s.Packets, s.Kept, s.Bytes)
		packets, kept, size = packets+s.Packets, kept+s.Kept, size+s.Bytes
	}
	fmt.Fprintf(w, "total\t\t\t%d\t%d\t%d\t\n", packets, kept, size)
	if err := w.Flush(); err != nil {
		return err
	}
	slog.Info("synth: wrote captures", "dir", out, "captures", len(stats), "seed", opt.Seed, "scale", opt.Scale)
	return nil
}
