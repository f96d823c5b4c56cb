package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/live"
	"github.com/deeppacket/deeppacket/torch"
)

func init() { register(newLiveCmd) }

// defaultVerdictAfter is the smallest k whose flow accuracy on ISCX is
// within 1 point of the whole-flow vote (BENCHMARKS.md, "live: verdict
// after k").
const defaultVerdictAfter = 1

const (
	defaultMaxDelay      = 200 * time.Millisecond
	defaultIdleTimeout   = 30 * time.Second
	defaultActiveTimeout = 5 * time.Minute
	defaultStatsInterval = 10 * time.Second
)

func newLiveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "live (--interface IF | --read-file CAPTURE) --model MODEL",
		Short: "Classify traffic as it passes on a network interface, verdicts per flow",
		Long: `live captures packets from a network interface (libpcap: a memory-mapped
AF_PACKET ring, the --filter BPF expression run in the kernel; needs
CAP_NET_RAW), or replays a capture file at --replay-speed times its recorded
pace (0: as fast as possible, nothing dropped; no privileges needed), and
runs every packet through the preprocessing of "preprocess" in the model's
layout and the model of "predict", in batches of --batch-size, a partial
batch once its first packet has waited --max-delay.

Flows are direction-independent 5-tuples (predict's flow ids) in a table of
at most --max-flows (when full, the least recently active flow is evicted).
A flow's verdict is predict's flow rule (the class with the highest mean
probability over its packets): first after its --verdict-after k-th
classified packet (reason "first-k"), again when it ends: idle for
--idle-timeout, open longer than --active-timeout, evicted, the end of a
replayed file, or shutdown (SIGINT/SIGTERM: queued packets are classified,
every open flow gets its verdict, the counters are printed, exit status 0).

Output: JSON lines, one per verdict (time, flow, 5-tuple, label, probability,
packets, reason, and latency_ms for first-k verdicts), and with --packets one
per classified packet, to stdout or -o FILE (rotated at --rotate-size bytes,
keeping --rotate-keep older files FILE.1...). The counters (received, dropped
by the kernel, dropped by us for a full queue, classified, skipped by the
preprocessing, flows active, evicted, ended) are logged every
--stats-interval and at exit, and served for Prometheus at
http://--metrics-addr/metrics.`,
		Args: cobra.NoArgs,
		RunE: runLive,
	}
	f := cmd.Flags()
	f.String("interface", "", "network interface to capture on")
	f.String("read-file", "", "replay this capture file instead of capturing")
	f.Float64("replay-speed", 1, "with --read-file: times the recorded pace (0: as fast as possible)")
	f.String("filter", "", "BPF filter expression (tcpdump's syntax)")
	addModelFlags(f, 64) // a batch waits for at most --max-delay
	f.Duration("max-delay", defaultMaxDelay, "longest wait of a packet for its batch")
	f.Int("verdict-after", defaultVerdictAfter, "a flow's first verdict after this many classified packets")
	f.Duration("idle-timeout", defaultIdleTimeout, "a flow ends after this long without a packet")
	f.Duration("active-timeout", defaultActiveTimeout, "a flow ends after this long open")
	f.Int("max-flows", 65536, "flows in the table at most")
	f.Int("queue", 8192, "packets waiting for the model at most (more are dropped and counted)")
	f.Bool("packets", false, "a row per classified packet too")
	f.StringP("output", "o", "", "output file (default stdout)")
	f.Bool("overwrite", false, "replace the output file if it exists")
	f.Int64("rotate-size", 0, "rotate the output file at this many bytes (0: never)")
	f.Int("rotate-keep", 5, "rotated files kept")
	f.Duration("stats-interval", defaultStatsInterval, "log the counters this often (0: only at exit)")
	f.String("metrics-addr", "", "serve Prometheus metrics at this address (host:port)")
	f.Int("snaplen", 65535, "bytes captured per packet (libpcap sizes the ring's blocks by it)")
	f.Int("buffer-size", 64<<20, "bytes of the kernel capture ring")
	f.Bool("promisc", false, "put the interface in promiscuous mode")
	return cmd
}

func runLive(cmd *cobra.Command, _ []string) error {
	v, err := settings(cmd, nil)
	if err != nil {
		return err
	}
	// From here on SIGINT and SIGTERM end the run normally (a signal while
	// the model loads ends it as soon as it starts).
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	iface, file := v.GetString("interface"), v.GetString("read_file")
	if (iface == "") == (file == "") {
		return errors.New("live: give one of --interface IF or --read-file CAPTURE")
	}
	modelPath := v.GetString("model")
	if modelPath == "" {
		return errors.New("live: --model MODEL is required")
	}
	threads, err := classifierThreadsFlag(v)
	if err != nil {
		return fmt.Errorf("live: %w", err)
	}
	device, err := torch.ParseDevice(v.GetString("device"))
	if err != nil {
		return err
	}
	// The source first: a missing interface or privilege fails at once.
	var src live.Source
	if iface != "" {
		src, err = live.OpenInterface(iface, live.InterfaceOptions{
			Filter: v.GetString("filter"), SnapLen: v.GetInt("snaplen"),
			BufferSize: v.GetInt("buffer_size"), Promisc: v.GetBool("promisc"),
		})
	} else {
		src, err = live.OpenFile(file, v.GetFloat64("replay_speed"), v.GetString("filter"))
	}
	if err != nil {
		return fmt.Errorf("live: %w", err)
	}
	defer src.Close()

	var out *live.Output
	if path := v.GetString("output"); path != "" && path != "-" {
		if err := checkOutputFile(path, v.GetBool("overwrite")); err != nil {
			return fmt.Errorf("live: %w", err)
		}
		if out, err = live.CreateOutput(path, v.GetInt64("rotate_size"), v.GetInt("rotate_keep"), v.GetBool("overwrite")); err != nil {
			return fmt.Errorf("live: %w", err)
		}
	} else {
		out = live.NewOutput(cmd.OutOrStdout())
	}
	defer out.Close()

	// As predict: libtorch's own threads at 1 on a CPU, and a batch's
	// groups of 64 on the workers. A batch of live's default 64 is one
	// group, on one thread: with libtorch's threads at the cores instead,
	// OpenMP's threads slept and woke around every small convolution
	// (the three ISCX passes from a file: 31 s wall and 22% system time,
	// against 13 s and 5%).
	workers := classifierThreads(device, threads)
	m, closeModel, err := loadClassifier(modelPath, device, v.GetBool("allow_torchscript"), v.GetString("task"), v.GetInt("signal_length"), workers)
	if err != nil {
		return err
	}
	defer closeModel()
	metrics := live.NewMetrics()
	e, err := live.New(src, live.Config{
		Model: m, BatchSize: v.GetInt("batch_size"), MaxDelay: v.GetDuration("max_delay"),
		VerdictAfter: v.GetInt("verdict_after"), IdleTimeout: v.GetDuration("idle_timeout"),
		ActiveTimeout: v.GetDuration("active_timeout"), MaxFlows: v.GetInt("max_flows"),
		QueueLen: v.GetInt("queue"), Packets: v.GetBool("packets"), Output: out,
		StatsInterval: v.GetDuration("stats_interval"), Metrics: metrics,
	})
	if err != nil {
		return err
	}
	if addr := v.GetString("metrics_addr"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("live: metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler())
		srv := &http.Server{Handler: mux}
		go srv.Serve(ln)
		defer srv.Close()
		slog.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	}
	slog.Info("capturing", "interface", iface, "file", file, "model", modelPath,
		"task", m.Task().Name, "layout", m.Preprocessing().Layout, "device", device, "threads", workers, "libtorch_threads", torch.NumThreads())
	runErr := e.Run(ctx)
	slog.Info("live: final counters", e.Counters.LogAttrs()...)
	if runErr != nil {
		return runErr
	}
	return out.Close()
}
