package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/parquet-go/parquet-go"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/data/capture"
	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/internal/atomicfile"
	"github.com/deeppacket/deeppacket/internal/progress"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

func init() { register(newPredictCmd) }

func newPredictCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "predict --model MODEL CAPTURE_OR_FOLDER...",
		Short: "Classify every packet of captures, and their flows, with a model",
		Long: `predict preprocesses each capture (files, or folders searched recursively as
preprocess searches them) in memory in the layout the model expects
(reference checkpoints: "reference"), classifies every kept packet in
batches, and writes one row per packet and one per flow:

  packet rows  the capture's absolute path, the packet's frame number (1 for
               the capture's first packet, as Wireshark numbers frames;
               omitted packets are counted), its timestamp, its flow (id and
               5-tuple), the class, its probability and, with --top-k K, the
               K most probable classes with their probabilities
  flow rows    the capture, the flow's first timestamp, id and 5-tuple, the
               flow's class by the flow rule, the mean probability of that
               class over the flow's packets and the flow's packet count

The flow rule, the same in evaluate: a flow's class is the class most of
its packets are classified as, ties going to the lower class id. Flows are
direction-independent 5-tuples (protocol, addresses, ports), identified by
a 64-bit hash printed as 16 hex digits; non-IP packets have no flow.

Rows go as CSV (a "row" column says packet or flow), JSON lines or Parquet
(timestamps as Parquet TIMESTAMP) to -o FILE (written atomically) or stdout.
A capture that cannot be read is reported and skipped, and the exit status
is then non-zero; --strict stops at the first.`,
		Args: cobra.MinimumNArgs(1),
		RunE: runPredict,
	}
	f := cmd.Flags()
	addModelFlags(f, defaultPredictBatch)
	f.Int("top-k", 1, "the most probable classes given per packet (1: the class alone)")
	f.String("format", "csv", "csv, jsonl or parquet")
	f.StringP("output", "o", "", "output file (default stdout; parquet needs a file)")
	f.Bool("overwrite", false, "replace the output file if it exists")
	f.Bool("strict", false, "stop at the first capture that cannot be read")
	return cmd
}

// defaultPredictBatch is how many packets predict gathers, across
// captures, before classifying them: the model runs them by length, 64 at a
// time, so a larger batch groups lengths more tightly (BENCHMARKS.md).
const defaultPredictBatch = 1024

func runPredict(cmd *cobra.Command, args []string) error {
	v, err := settings(cmd, nil)
	if err != nil {
		return err
	}
	o, err := predictOptionsOf(v)
	if err != nil {
		return err
	}
	files, err := listCaptureFiles(args)
	if err != nil {
		return err
	}
	device, err := torch.ParseDevice(v.GetString("device"))
	if err != nil {
		return err
	}
	workers := classifierThreads(device, o.threads)
	m, closeModel, err := loadClassifier(o.model, device, v.GetBool("allow_torchscript"), v.GetString("task"), v.GetInt("signal_length"), workers)
	if err != nil {
		return err
	}
	defer closeModel()
	if o.topK < 1 || o.topK > m.OutputDim() {
		return fmt.Errorf("predict: top_k %d: want 1 to %d, the model's classes", o.topK, m.OutputDim())
	}
	slog.Info("model", "path", o.model, "task", m.Task().Name, "layout", m.Preprocessing().Layout, "device", device,
		"threads", workers, "libtorch_threads", torch.NumThreads())

	out, err := openPredictOutput(cmd.OutOrStdout(), o.output, o.format)
	if err != nil {
		return err
	}
	defer out.abort()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bar := progress.New(-1, "predict: packets", false)
	p := &predictor{model: m, rows: out.rows, batchSize: o.batchSize, topK: o.topK, bar: bar, overlap: workers > 1}
	total, captures, failed, err := p.captures(ctx, files, v.GetBool("strict"))
	bar.Finish()
	if err != nil {
		return err
	}
	if err := out.commit(); err != nil {
		return err
	}
	slog.Info("predicted", "captures", captures, "packets", total.Read, "classified", total.Kept,
		"omitted", total.Read-total.Kept, "flows", p.flows, "failed", len(failed), "damaged", p.damaged)
	if len(failed) > 0 || p.damaged > 0 {
		return fmt.Errorf("predict: of %d captures, %d could not be read (%s) and %d were damaged (the packets before the damage were classified)",
			captures, len(failed), strings.Join(failed, ", "), p.damaged)
	}
	return nil
}

// predictOptions are predict's settings checked before any work.
type predictOptions struct {
	model, format, output    string
	batchSize, topK, threads int
}

func predictOptionsOf(v *viper.Viper) (predictOptions, error) {
	o := predictOptions{model: v.GetString("model"), format: v.GetString("format"), output: v.GetString("output"),
		batchSize: v.GetInt("batch_size"), topK: v.GetInt("top_k")}
	if o.model == "" {
		return o, errors.New("predict: --model MODEL is required")
	}
	if o.batchSize <= 0 {
		return o, fmt.Errorf("predict: batch_size %d: want a positive number", o.batchSize)
	}
	if o.format != "csv" && o.format != "jsonl" && o.format != "parquet" {
		return o, fmt.Errorf("predict: --format %q: want csv, jsonl or parquet", o.format)
	}
	if o.format == "parquet" && (o.output == "" || o.output == "-") {
		return o, errors.New("predict: --format parquet needs -o FILE")
	}
	if err := checkOutputFile(o.output, v.GetBool("overwrite")); err != nil {
		return o, fmt.Errorf("predict: %w", err)
	}
	threads, err := classifierThreadsFlag(v)
	if err != nil {
		return o, fmt.Errorf("predict: %w", err)
	}
	o.threads = threads
	return o, nil
}

// predictOutput is where the rows go: stdout, or a file that appears only
// once complete (commit; abort discards it).
type predictOutput struct {
	rows *rowWriter
	buf  *bufio.Writer
	file *atomicfile.File
}

func openPredictOutput(stdout io.Writer, path, format string) (*predictOutput, error) {
	o := &predictOutput{}
	w := stdout
	if path != "" && path != "-" {
		var err error
		if o.file, err = atomicfile.Create(path); err != nil {
			return nil, err
		}
		w = o.file
	}
	o.buf = bufio.NewWriterSize(w, 1<<16)
	var err error
	if o.rows, err = newRowWriter(o.buf, format); err != nil {
		o.abort()
		return nil, err
	}
	return o, nil
}

func (o *predictOutput) commit() error {
	if err := o.rows.close(); err != nil {
		return err
	}
	if err := o.buf.Flush(); err != nil {
		return err
	}
	if o.file != nil {
		return o.file.Commit()
	}
	return nil
}

func (o *predictOutput) abort() {
	if o.file != nil {
		o.file.Abort()
	}
}

// captures classifies each file in turn. A capture that cannot be read is
// skipped with a warning (and listed in failed), unless strict; a file of
// unknown format inside a folder (notes, label files) is passed over.
func (p *predictor) captures(ctx context.Context, files []preprocessJob, strict bool) (total features.Stats, captures int, failed []string, err error) {
	defer p.settle()
	for _, f := range files {
		stats, err := p.capture(ctx, f.path)
		total.Add(stats)
		unknown := errors.Is(err, capture.ErrUnknownFormat) && !f.explicit
		if !unknown {
			captures++
		}
		switch {
		case err == nil || unknown:
		case ctx.Err() != nil || strict:
			return total, captures, failed, err
		default:
			slog.Warn("capture skipped", "capture", f.path, "err", err)
			failed = append(failed, f.path)
		}
	}
	return total, captures, failed, p.finish()
}

// checkOutputFile refuses, before any work, an output path that is a
// folder, or an existing file unless overwrite.
func checkOutputFile(out string, overwrite bool) error {
	if out == "" || out == "-" {
		return nil
	}
	info, err := os.Stat(out)
	switch {
	case err != nil:
		return nil
	case info.IsDir():
		return fmt.Errorf("-o %s is a folder: name the file to write", out)
	case !overwrite:
		return fmt.Errorf("-o %s exists: pass --overwrite to replace it", out)
	}
	return nil
}

// addModelFlags declares the flags of the commands that classify packets
// with a model (predict, live); classifierThreads and loadClassifier read them.
func addModelFlags(f *pflag.FlagSet, batch int) {
	f.String("model", "", "model: a checkpoint (.ckpt, .model) or safetensors; TorchScript (.pt) with --allow-torchscript (required)")
	f.Bool("allow-torchscript", false, "let --model be TorchScript, such as train's model.pt: TorchScript is code, which runs when loaded and can read and write files, so use it only from a source you trust")
	f.String("task", "", "class names of a TorchScript model: application or traffic (default: from its output size)")
	f.Int("signal-length", 1500, "input length of a TorchScript model (checkpoints record theirs)")
	f.Int("batch-size", batch, "packets gathered before classifying them (the model runs them 64 at a time, grouped by length)")
	f.Int("threads", 0, "threads classifying packets (0: the machine's cores)")
	f.String("device", "auto", "cpu, cuda, cuda:N or auto")
}

// classifierThreadsFlag reads --threads, which classifierThreads takes.
func classifierThreadsFlag(v *viper.Viper) (int, error) {
	n := v.GetInt("threads")
	if n < 0 {
		return 0, fmt.Errorf("threads %d: want 0 (the machine's cores) or more", n)
	}
	return n, nil
}

// classifierThreads is how many threads predict and live classify on: on
// the CPU, threads (0: the machine's cores) each running its own groups of
// packets, libtorch's own threads set to 1; on a GPU, one, with libtorch's
// threads as threads says.
func classifierThreads(device torch.Device, threads int) int {
	if device.CUDA {
		if threads > 0 {
			torch.SetNumThreads(threads)
		}
		return 1
	}
	torch.SetNumThreads(1)
	if threads == 0 {
		return runtime.NumCPU()
	}
	return threads
}

// loadClassifier loads the model at path onto device: a checkpoint or
// safetensors, which are data, or, when the user allowed it, TorchScript,
// which is code (with task and signalLength, which it does not record).
func loadClassifier(path string, device torch.Device, allowScript bool, task string, signalLength, workers int) (model.Classifier, func(), error) {
	m, err := ckpt.Load(path)
	if errors.Is(err, ckpt.ErrTorchScript) {
		if !allowScript {
			return nil, nil, fmt.Errorf("%w: pass --allow-torchscript to run it, if you trust where it comes from (a checkpoint, such as train's checkpoints/best.ckpt, needs no such trust)", err)
		}
		sc, err := ckpt.LoadScriptClassifier(path, device, task, signalLength)
		if err != nil {
			return nil, nil, err
		}
		return sc, sc.Close, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if task != "" && task != m.Task().Name {
		m.Close()
		return nil, nil, fmt.Errorf("--task %s: %s is a model of the %s task", task, path, m.Task().Name)
	}
	if err := m.Store().To(device); err != nil {
		m.Close()
		return nil, nil, err
	}
	reserveProcs(workers)
	c := model.AsClassifier(m, workers)
	return c, func() { c.Close(); m.Close() }, nil
}

// reserveProcs raises GOMAXPROCS to workers + 2 where it is lower: Go counts
// a goroutine in a libtorch call as running, on a P of its own, and when
// every P is so taken, its monitor takes them back from each call longer
// than 20 µs and polls every 20 µs, a thread switch each time on a busy
// core (on two cores, predict spent 12% of its CPU time in the kernel and
// 18% more in all). The workers, the goroutine that reads captures and one
// spare P leave an idle P for the monitor to see.
func reserveProcs(workers int) {
	if n := workers + 2; runtime.GOMAXPROCS(0) < n {
		runtime.GOMAXPROCS(n)
	}
}

// predictor classifies the packets of captures in batches.
type predictor struct {
	model     model.Classifier
	rows      *rowWriter
	batchSize int
	topK      int
	bar       *progress.Bar
	flows     int
	damaged   int

	// A batch may hold the packets of several captures (the last ones of
	// one, the first of the next): the model then sees full batches, whose
	// rows it groups by length, however small the captures. Rows still come
	// out capture by capture, each capture's packets then its flows.
	batch   *model.Batch
	pending []packetInfo
	open    []*captureFlows // captures with packets pending, oldest first
	top     []int           // reused: a packet's classes by probability
	// With overlap, the model classifies one batch while the next is
	// read: flight is the batch it has, spare the batch that comes back
	// with its rows written. Without (one classifying thread: one core,
	// which reading beside it would share), each batch is read, then
	// classified.
	overlap      bool
	flight       *inFlight
	spare        *model.Batch
	sparePending []packetInfo
}

// inFlight is a batch the model is classifying, its packets, and then its
// probabilities (or the error) once done is closed.
type inFlight struct {
	batch   *model.Batch
	pending []packetInfo
	probs   []float32
	err     error
	done    chan struct{}
}

// captureFlows is one capture's flows, in order of their first packet.
type captureFlows struct {
	path   string
	byFlow map[int64]*flowAgg
	order  []int64
	done   bool // read to its end: its flows are written once its packets are
}

type packetInfo struct {
	capture         *captureFlows
	index, ts, flow int64
	tuple           features.FiveTuple
}

type flowAgg struct {
	firstTS int64
	tuple   features.FiveTuple
	score   model.FlowScore
}

func (p *predictor) capture(ctx context.Context, path string) (features.Stats, error) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	tr := features.New(p.model.Preprocessing())
	if p.batch == nil {
		p.batch, p.spare = model.NewBatch(tr.Options().SignalLength), model.NewBatch(tr.Options().SignalLength)
	}
	c := &captureFlows{path: path, byFlow: map[int64]*flowAgg{}}
	p.open = append(p.open, c)
	before := len(p.pending) // this capture's packets come after
	stats, err := features.Each(ctx, path, tr, nil, func(pk *features.Packet) error {
		p.bar.Add(1)
		if pk.Verdict != features.Kept {
			return nil
		}
		p.batch.Add(pk.Feature)
		p.pending = append(p.pending, packetInfo{capture: c, index: pk.Index, ts: pk.TimestampNS, flow: pk.Flow, tuple: pk.Tuple})
		if p.batch.Len() >= p.batchSize {
			before = 0
			return p.classify()
		}
		return nil
	})
	var damage *capture.DamageError
	if errors.As(err, &damage) {
		// The packets before the damage are classified; the run reports
		// the damage at the end.
		slog.Warn("damaged capture: classifying the packets before the damage", "capture", path, "err", err)
		p.damaged++
	} else if err != nil {
		// A capture that cannot be read is skipped whole: its packets not
		// yet classified are dropped (those the model has are written
		// first, as they would have been had it been done with them).
		if err := p.drain(); err != nil {
			return stats, err
		}
		p.batch.Truncate(before)
		p.pending = p.pending[:before]
		c.done, c.order = true, nil
		return stats, fmt.Errorf("predict %s: %w", path, err)
	}
	c.done = true
	return stats, nil
}

// finish classifies what is pending and writes the last rows and flows.
func (p *predictor) finish() error {
	if err := p.classify(); err != nil {
		return err
	}
	if err := p.drain(); err != nil {
		return err
	}
	return p.closeCaptures(nil)
}

// settle waits for the batch in flight, if any, and drops it: after an
// interruption or an error, the model must be idle before it is closed.
func (p *predictor) settle() {
	if p.flight != nil {
		<-p.flight.done
		p.flight = nil
	}
}

// closeCaptures writes the flows of the open captures before next (all of
// them when next is nil), which are done and have no packet pending.
func (p *predictor) closeCaptures(next *captureFlows) error {
	task := p.model.Task()
	for len(p.open) > 0 && p.open[0] != next && p.open[0].done {
		c := p.open[0]
		for _, f := range c.order {
			agg := c.byFlow[f]
			class, prob := agg.score.Verdict()
			r := flowRow{Row: "flow", Capture: c.path, Timestamp: time.Unix(0, agg.firstTS).UTC(), Flow: flowString(f), Tuple: agg.tuple.String(),
				LabelID: class, Label: task.ClassName(class), Probability: prob, Packets: agg.score.Packets()}
			if err := p.rows.write(r); err != nil {
				return err
			}
		}
		p.flows += len(c.order)
		p.open = p.open[1:]
	}
	return nil
}

// classify hands the pending batch to the model, once the batch handed
// before is done and its rows written; with overlap, the model classifies
// it while the next one is read, so that neither waits on the other.
func (p *predictor) classify() error {
	if err := p.drain(); err != nil || p.batch.Len() == 0 {
		return err
	}
	f := &inFlight{batch: p.batch, pending: p.pending, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.probs, f.err = model.Probabilities(p.model, f.batch)
	}()
	p.flight = f
	p.batch, p.pending, p.spare, p.sparePending = p.spare, p.sparePending, nil, nil
	if !p.overlap {
		return p.drain()
	}
	return nil
}

// drain waits for the batch in flight, if any, and writes its packet rows.
func (p *predictor) drain() error {
	f := p.flight
	if f == nil {
		return nil
	}
	<-f.done
	p.flight = nil
	f.batch.Reset()
	p.spare, p.sparePending = f.batch, f.pending[:0]
	if f.err != nil {
		return fmt.Errorf("predict %s: %w", f.pending[0].capture.path, f.err)
	}
	probs := f.probs
	k := p.model.OutputDim()
	task := p.model.Task()
	for i, info := range f.pending {
		c := info.capture
		if err := p.closeCaptures(c); err != nil {
			return err
		}
		row := probs[i*k : (i+1)*k]
		p.top = model.TopClasses(p.top[:0], row, p.topK)
		best := p.top[0]
		r := flowRow{Row: "packet", Capture: c.path, Frame: info.index + 1, Timestamp: time.Unix(0, info.ts).UTC(), Flow: flowString(info.flow),
			Tuple: info.tuple.String(), LabelID: best, Label: task.ClassName(best), Probability: float64(row[best])}
		if p.topK > 1 {
			var labels, probsText []string
			for _, c := range p.top {
				labels = append(labels, task.ClassName(c))
				probsText = append(probsText, strconv.FormatFloat(float64(row[c]), 'g', 6, 32))
			}
			r.TopLabels, r.TopProbabilities = strings.Join(labels, "|"), strings.Join(probsText, "|")
		}
		if err := p.rows.write(r); err != nil {
			return err
		}
		if info.flow == 0 {
			continue
		}
		agg := c.byFlow[info.flow]
		if agg == nil {
			agg = &flowAgg{firstTS: info.ts, tuple: info.tuple}
			c.byFlow[info.flow] = agg
			c.order = append(c.order, info.flow)
		}
		agg.score.Add(best, row)
	}
	return nil
}

func flowString(f int64) string {
	if f == 0 {
		return ""
	}
	return fmt.Sprintf("%016x", uint64(f))
}

// flowRow is one output row, a packet's or a flow's (CSV, JSON lines and
// Parquet alike; fields a row kind lacks stay empty).
type flowRow struct {
	Row              string    `json:"row" parquet:"row,dict"`
	Capture          string    `json:"capture" parquet:"capture,dict"`
	Frame            int64     `json:"frame,omitempty" parquet:"frame,optional"`
	Timestamp        time.Time `json:"timestamp" parquet:"timestamp,timestamp(nanosecond)"`
	Flow             string    `json:"flow" parquet:"flow"`
	Tuple            string    `json:"tuple" parquet:"tuple"`
	LabelID          int       `json:"label_id" parquet:"label_id"`
	Label            string    `json:"label" parquet:"label,dict"`
	Probability      float64   `json:"probability" parquet:"probability"`
	Packets          int64     `json:"packets,omitempty" parquet:"packets,optional"`
	TopLabels        string    `json:"top_labels,omitempty" parquet:"top_labels,optional"`
	TopProbabilities string    `json:"top_probabilities,omitempty" parquet:"top_probabilities,optional"`
}

var predictColumns = []string{"row", "capture", "frame", "timestamp", "flow", "tuple", "label_id", "label", "probability", "packets", "top_labels", "top_probabilities"}

// rowWriter writes rows as CSV, JSON lines or Parquet.
type rowWriter struct {
	csv  *csv.Writer
	json *json.Encoder
	pq   *parquet.GenericWriter[flowRow]
	rec  []string
}

func newRowWriter(w io.Writer, format string) (*rowWriter, error) {
	switch format {
	case "jsonl":
		return &rowWriter{json: json.NewEncoder(w)}, nil
	case "parquet":
		return &rowWriter{pq: parquet.NewGenericWriter[flowRow](w, parquet.Compression(&parquet.Snappy))}, nil
	}
	c := csv.NewWriter(w)
	if err := c.Write(predictColumns); err != nil {
		return nil, err
	}
	return &rowWriter{csv: c, rec: make([]string, len(predictColumns))}, nil
}

func (r *rowWriter) write(row flowRow) error {
	switch {
	case r.json != nil:
		return r.json.Encode(row)
	case r.pq != nil:
		_, err := r.pq.Write([]flowRow{row})
		return err
	}
	optional := func(n int64) string {
		if n == 0 {
			return ""
		}
		return strconv.FormatInt(n, 10)
	}
	r.rec = append(r.rec[:0], row.Row, row.Capture, optional(row.Frame), row.Timestamp.Format(time.RFC3339Nano), row.Flow, row.Tuple,
		strconv.Itoa(row.LabelID), row.Label, strconv.FormatFloat(row.Probability, 'g', 6, 64), optional(row.Packets), row.TopLabels, row.TopProbabilities)
	return r.csv.Write(r.rec)
}

func (r *rowWriter) close() error {
	switch {
	case r.csv != nil:
		r.csv.Flush()
		return r.csv.Error()
	case r.pq != nil:
		return r.pq.Close()
	}
	return nil
}
