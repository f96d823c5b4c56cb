package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/data/capture"
	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/internal/progress"
	"github.com/deeppacket/deeppacket/labels"
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
exit status non-zero. Symbolic links are followed.

Labels come from capture names: the built-in map knows the ISCX
VPN-nonVPN files (aim_chat_3a.pcap, vpn_netflix_A.pcap, ...). Other captures
are written with null labels, as the reference does, and split leaves their
rows out; --labels FILE labels them: a tab-separated line per capture, its
stem (the file name, lower-cased, up to its first dot), its application id
and its traffic id, either empty for none (the README lists the ids).`,
		Args: cobra.MinimumNArgs(1),
		RunE: runPreprocess,
	}
	f := cmd.Flags()
	f.StringP("output", "o", "", "output folder (required)")
	f.String("layout", "reference", "feature layout: reference or paper")
	f.String("labels", "", "TSV file of capture stem, application id, traffic id (empty: none for that task), one capture a line; replaces the built-in ISCX map")
	f.IntP("jobs", "j", runtime.NumCPU(), "captures processed in parallel")
	f.Bool("force", false, "redo captures whose output is up to date")
	f.Bool("mask-ports", false, "zero TCP/UDP ports (paper layout)")
	f.Int("signal-length", features.DefaultSignalLength, "bytes kept per packet")
	f.String("shard", "", "I/N: do only this worker's share (worker I of N, from 0) of the captures, balanced by size, into the same output folder as the other workers (a Slurm array, a PyTorchJob): split then reads it as if one process had written it")
	return cmd
}

// shardOf parses --shard "I/N"; "" is the whole (0/1).
func shardOf(s string) (i, n int, err error) {
	if s == "" {
		return 0, 1, nil
	}
	if _, err := fmt.Sscanf(s, "%d/%d", &i, &n); err != nil || n < 1 || i < 0 || i >= n || fmt.Sprintf("%d/%d", i, n) != s {
		return 0, 0, fmt.Errorf("--shard %q: want I/N with 0 ≤ I < N, such as 0/4", s)
	}
	return i, n, nil
}

// shard keeps worker i's share of n of the captures: each capture, largest
// first, goes to the worker with the fewest bytes so far (ties to the lower
// number), so that every worker, given the same captures, makes the same
// shares, and shares of about equal size.
func shard(todo []preprocessJob, i, n int) []preprocessJob {
	if n == 1 {
		return todo
	}
	order := make([]int, len(todo))
	for k := range order {
		order[k] = k
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(todo[b].size, todo[a].size), strings.Compare(todo[a].path, todo[b].path))
	})
	load := make([]int64, n)
	mine := make([]bool, len(todo))
	for _, k := range order {
		w := 0
		for j := range load {
			if load[j] < load[w] {
				w = j
			}
		}
		load[w] += todo[k].size
		mine[k] = w == i
	}
	var out []preprocessJob
	for k, j := range todo {
		if mine[k] {
			out = append(out, j)
		}
	}
	return out
}

// preprocessJob is one capture to do.
type preprocessJob struct {
	path, out  string
	size       int64
	labels     labels.Labels
	explicit   bool  // named on the command line, not found in a folder
	unreadable error // found in a folder but not readable (a dangling link, say)
}

// preprocessResult is what became of one capture.
type preprocessResult struct {
	job    preprocessJob
	stats  features.Stats
	status string // done, up to date, not a capture, unreadable, damaged, failed
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
	shardI, shardN, err := shardOf(v.GetString("shard"))
	if err != nil {
		return err
	}
	todo, err := findCaptures(args, out)
	if err != nil {
		return err
	}
	todo = shard(todo, shardI, shardN)
	if shardN > 1 {
		slog.Info("preprocess shard", "shard", v.GetString("shard"), "captures", len(todo))
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	defer stop()
	results := preprocessAll(ctx, todo, lmap, opts, v.GetBool("force"), jobs)
	failed, captures := printSummary(cmd.OutOrStdout(), results)
	if err := ctx.Err(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("preprocess: %d of %d captures damaged or failed", failed, captures)
	}
	return nil
}

// findCaptures lists the captures to preprocess (listCaptureFiles) with
// their outputs, named after the capture; captures of the same name in
// different folders get their folder path in the name, and two captures
// that would still share an output are refused.
func findCaptures(args []string, out string) ([]preprocessJob, error) {
	todo, err := listCaptureFiles(args)
	if err != nil {
		return nil, err
	}
	byName := map[string]int{}
	for _, j := range todo {
		byName[filepath.Base(j.path)]++
	}
	byOut := map[string]string{}
	for i, j := range todo {
		name := filepath.Base(j.path)
		if byName[name] > 1 {
			name = strings.Trim(strings.ReplaceAll(filepath.ToSlash(filepath.Clean(j.path)), "/", "__"), "_.")
		}
		todo[i].out = filepath.Join(out, name+".parquet")
		if other, ok := byOut[todo[i].out]; ok {
			return nil, fmt.Errorf("preprocess: %s and %s would both be written to %s: rename one, or preprocess them into different folders", other, j.path, todo[i].out)
		}
		byOut[todo[i].out] = j.path
	}
	return todo, nil
}

// listCaptureFiles lists the files named and those under the folders named
// (preprocess and predict alike), following symbolic links: each real
// folder is walked once, so a link loop ends; names starting with a dot are
// left out.
func listCaptureFiles(args []string) ([]preprocessJob, error) {
	var todo []preprocessJob
	seen := map[string]bool{} // real paths of the folders walked
	var walk func(dir string) error
	walk = func(dir string) error {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return err
		}
		if seen[real] {
			return nil
		}
		seen[real] = true
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			info, err := os.Stat(p) // follows a link
			if err != nil {
				slog.Warn("unreadable entry: skipped", "path", p, "err", err)
				todo = append(todo, preprocessJob{path: p, unreadable: err})
				continue
			}
			switch {
			case info.IsDir():
				if err := walk(p); err != nil {
					return err
				}
			case info.Mode().IsRegular():
				todo = append(todo, preprocessJob{path: p, size: info.Size()})
			}
		}
		return nil
	}
	for _, arg := range args {
		info, err := os.Stat(arg)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", arg, err)
		}
		if !info.IsDir() {
			todo = append(todo, preprocessJob{path: arg, size: info.Size(), explicit: true})
			continue
		}
		if err := walk(arg); err != nil {
			return nil, fmt.Errorf("read %s: %w", arg, err)
		}
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
	if job.unreadable != nil {
		res.status = "unreadable"
		return res
	}
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
		// As the reference: the rows are written with null labels, which
		// split leaves out of both tasks; the summary says how to label them.
		slog.Warn("no label for either task: rows written with null labels", "capture", job.path, "stem", labels.Stem(job.path))
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

// summaryWidth is the width the summary's table keeps within.
const summaryWidth = 100

// printSummary writes one line per capture and the totals, then what was
// not a capture and which captures had no label, and returns the number of
// captures that were damaged or failed and the number of captures.
func printSummary(w io.Writer, results []preprocessResult) (failed, captures int) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "capture\tread\tkept\tno payload\tdns\tnot ip\tdamaged\tlabels\tstatus\t")
	var total, unlabelled features.Stats
	noLabel := 0
	counts := map[string]int{}
	var skipped []string
	sorted := append([]preprocessResult(nil), results...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].job.path < sorted[j].job.path })
	for _, r := range sorted {
		if r.err != nil {
			failed++
		}
		switch r.status {
		case "":
			continue // cancelled before it started
		case "not a capture", "unreadable":
			skipped = append(skipped, fmt.Sprintf("%s (%s)", r.job.path, r.status))
			continue
		}
		s := r.stats
		total.Add(s)
		captures++
		counts[r.status]++
		label := labelColumn(r.job.labels)
		if r.job.labels.None() {
			noLabel++
			unlabelled.Add(s)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", shorten(filepath.Base(r.job.path), 30), s.Read, s.Kept,
			s.Omitted[features.OmitNoPayload], s.Omitted[features.OmitDNS], s.Omitted[features.OmitNonIP], s.Damaged, label, r.status)
	}
	statuses := make([]string, 0, len(counts))
	for k, n := range counts {
		statuses = append(statuses, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(statuses)
	fmt.Fprintf(tw, "total: %d captures\t%d\t%d\t%d\t%d\t%d\t%d\t\t\t\n", captures, total.Read, total.Kept,
		total.Omitted[features.OmitNoPayload], total.Omitted[features.OmitDNS], total.Omitted[features.OmitNonIP], total.Damaged)
	tw.Flush()
	fmt.Fprintf(w, "captures: %s\n", strings.Join(statuses, ", "))
	if noLabel > 0 {
		fmt.Fprintf(w, "%d captures (%d packets, %d kept) have no label: their rows have null labels, which split leaves out.\n"+
			"Label them with --labels FILE, a TSV of capture stem, application id, traffic id (see --help).\n",
			noLabel, unlabelled.Read, unlabelled.Kept)
	}
	if len(skipped) > 0 {
		fmt.Fprintf(w, "skipped, not captures: %s\n", strings.Join(skipped, ", "))
	}
	for _, r := range sorted {
		if r.err != nil {
			fmt.Fprintf(w, "%s: %v\n", r.job.path, r.err)
		}
	}
	return failed, captures
}

// labelColumn is a capture's labels as "app/traffic" ids, "-" for none.
func labelColumn(l labels.Labels) string {
	id := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatInt(*p, 10)
	}
	return id(l.App) + "/" + id(l.Traffic)
}

// shorten cuts a name to n runes, keeping its end (the part that differs).
func shorten(name string, n int) string {
	r := []rune(name)
	if len(r) <= n {
		return name
	}
	return "…" + string(r[len(r)-n+1:])
}
