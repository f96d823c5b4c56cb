package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/data/capture"
	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/internal/progress"
)

func init() { register(newPreprocessCmd) }

func newPreprocessCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "preprocess -o OUT CAPTURE_OR_FOLDER...",
		Short: "Turn captures (pcap, pcapng, gzip'd) into Parquet files of packet feature vectors",
		Long: `preprocess reads captures, files or folders searched recursively, and
writes one Parquet file per capture under OUT: the feature bytes of every
kept packet with its application and traffic labels, the capture's name,
the packet's index and timestamp and its flow id.

Layout "reference" (the default) gives byte for byte what the PyTorch
reference's scapy preprocessing gives; "paper" does what the paper
describes. A capture whose output is complete and newer is skipped unless
--force. A damaged capture keeps the packets before the damage and makes the
exit status non-zero.`,
		Args: cobra.MinimumNArgs(1),
		RunE: runPreprocess,
	}
	f := cmd.Flags()
	f.StringP("output", "o", "", "output folder (required)")
	f.String("layout", "reference", "feature layout: reference or paper")
	f.String("labels", "", "TSV file mapping capture stems to app and traffic ids (replaces the built-in map)")
	f.IntP("jobs", "j", runtime.NumCPU(), "captures processed in parallel")
	f.Bool("force", false, "redo captures whose output is up to date")
	f.Bool("mask-ports", false, "zero TCP/UDP ports (paper layout)")
	f.Int("signal-length", features.DefaultSignalLength, "bytes kept per packet")
	return cmd
}

// preprocessJob is one capture to do.
type preprocessJob struct {
	path, out string
	size      int64
	labels    labels.Labels
	explicit  bool // named on the command line, not found in a folder
}

// preprocessResult is what became of one capture.
type preprocessResult struct {
	job    preprocessJob
	stats  features.Stats
	status string // done, up to date, no label, not a capture, damaged, failed
	err    error
}

func runPreprocess(cmd *cobra.Command, args []string) error {
	v, err := settings(cmd, nil)
	if err != nil {
		return err
	}
	out := v.GetString("output")
	if out == "" {
		return errors.New("preprocess: -o OUT is required")
	}
	layout, err := features.ParseLayout(v.GetString("layout"))
	if err != nil {
		return err
	}
	opts := features.Options{Layout: layout, MaskPorts: v.GetBool("mask_ports"), SignalLength: v.GetInt("signal_length")}
	if opts.SignalLength <= 0 {
		return fmt.Errorf("signal_length %d: want a positive number", opts.SignalLength)
	}
	if opts.MaskPorts && layout != features.LayoutPaper {
		return errors.New("mask_ports needs layout paper: the reference layout keeps the reference's bytes")
	}
	lmap := labels.Builtin()
	if path := v.GetString("labels"); path != "" {
		if lmap, err = labels.Load(path); err != nil {
			return err
		}
	}
	jobs := v.GetInt("jobs")
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	todo, err := findCaptures(args, out)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	defer stop()
	results := preprocessAll(ctx, todo, lmap, opts, v.GetBool("force"), jobs)
	failed := printSummary(cmd.OutOrStdout(), results)
	if err := ctx.Err(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("preprocess: %d of %d captures damaged or failed", failed, len(results))
	}
	return nil
}

// findCaptures lists the files named and those under the folders named.
// Outputs are named after the capture; captures of the same name in
// different folders get their folder path in the name.
func findCaptures(args []string, out string) ([]preprocessJob, error) {
	var todo []preprocessJob
	for _, arg := range args {
		info, err := os.Stat(arg)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", arg, err)
		}
		if !info.IsDir() {
			todo = append(todo, preprocessJob{path: arg, size: info.Size(), explicit: true})
			continue
		}
		err = filepath.WalkDir(arg, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() || !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return err
			}
			todo = append(todo, preprocessJob{path: p, size: fi.Size()})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", arg, err)
		}
	}
	byName := map[string]int{}
	for _, j := range todo {
		byName[filepath.Base(j.path)]++
	}
	for i, j := range todo {
		name := filepath.Base(j.path)
		if byName[name] > 1 {
			name = strings.Trim(strings.ReplaceAll(filepath.ToSlash(filepath.Clean(j.path)), "/", "__"), "_.")
		}
		todo[i].out = filepath.Join(out, name+".parquet")
	}
	return todo, nil
}

func preprocessAll(ctx context.Context, todo []preprocessJob, lmap *labels.Map, opts features.Options, force bool, jobs int) []preprocessResult {
	var total int64
	for _, j := range todo {
		total += j.size
	}
	bar := progress.New(total, "preprocess", true)
	defer bar.Finish()
	results := make([]preprocessResult, len(todo))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(jobs, max(len(todo), 1)) {
		wg.Go(func() {
			for i := range next {
				results[i] = preprocessOne(ctx, todo[i], lmap, opts, force, bar)
			}
		})
	}
	for i := range todo {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

func preprocessOne(ctx context.Context, job preprocessJob, lmap *labels.Map, opts features.Options, force bool, bar *progress.Bar) preprocessResult {
	res := preprocessResult{job: job}
	if !job.explicit {
		// A folder may hold label files and notes beside its captures.
		r, err := capture.Open(job.path)
		if errors.Is(err, capture.ErrUnknownFormat) {
			bar.Add(job.size)
			slog.Info("not a capture: skipped", "file", job.path)
			res.status = "not a capture"
			return res
		}
		if err == nil {
			r.Close()
		}
	}
	job.labels = lmap.Lookup(job.path)
	res.job = job
	if job.labels.None() {
		bar.Add(job.size)
		slog.Warn("no label for either task: skipped", "capture", job.path, "stem", labels.Stem(job.path))
		res.status = "no label"
		return res
	}
	if !force && features.UpToDate(job.path, job.out, features.Settings(opts, job.labels)) {
		bar.Add(job.size)
		res.status = "up to date"
		return res
	}
	var done int64
	res.stats, res.err = features.Preprocess(ctx, job.path, job.out, opts, job.labels, func(n int64) {
		done += n
		bar.Add(n)
	})
	bar.Add(job.size - done) // what a refused or damaged capture left unread
	switch {
	case res.err == nil:
		res.status = "done"
	case res.stats.Damaged > 0:
		res.status = "damaged"
		slog.Error("damaged capture: packets before the damage kept", "capture", job.path, "err", res.err)
	default:
		res.status = "failed"
		slog.Error("capture refused", "capture", job.path, "err", res.err)
	}
	return res
}

// printSummary writes one line per capture and the totals, and returns the
// number of captures that were damaged or failed.
func printSummary(w io.Writer, results []preprocessResult) int {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "capture\tread\tkept\tno payload\tdns\tnot ip\tdamaged\tstatus\t")
	var total features.Stats
	failed := 0
	counts := map[string]int{}
	sorted := append([]preprocessResult(nil), results...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].job.path < sorted[j].job.path })
	for _, r := range sorted {
		if r.status == "" {
			continue // cancelled before it started
		}
		s := r.stats
		total.Add(s)
		counts[r.status]++
		if r.err != nil {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", r.job.path, s.Read, s.Kept,
			s.Omitted[features.OmitNoPayload], s.Omitted[features.OmitDNS], s.Omitted[features.OmitNonIP], s.Damaged, r.status)
	}
	statuses := make([]string, 0, len(counts))
	for k, n := range counts {
		statuses = append(statuses, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(statuses)
	fmt.Fprintf(tw, "total (%d captures)\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", len(results), total.Read, total.Kept,
		total.Omitted[features.OmitNoPayload], total.Omitted[features.OmitDNS], total.Omitted[features.OmitNonIP], total.Damaged, strings.Join(statuses, ", "))
	tw.Flush()
	for _, r := range sorted {
		if r.err != nil {
			fmt.Fprintf(w, "%s: %v\n", r.job.path, r.err)
		}
	}
	return failed
}
