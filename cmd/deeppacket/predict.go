package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/deeppacket/deeppacket/data/capture"
	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/deeppacket"
	"github.com/deeppacket/deeppacket/internal/atomicfile"
	"github.com/deeppacket/deeppacket/internal/progress"
	"github.com/deeppacket/deeppacket/torch"
)

func init() { register(newPredictCmd) }

func newPredictCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "predict --model MODEL CAPTURE...",
		Short: "Classify every packet of captures, and their flows, with a model",
		Long: `predict preprocesses each capture in memory in the layout the model expects
(reference checkpoints: "reference"), classifies every kept packet in
batches, and writes one row per packet and one per flow:

  packet rows  capture, index (in the capture, omitted packets counted),
               timestamp, flow, label id, label name, probability
  flow rows    capture, flow, first timestamp, the label with the highest
               mean probability over the flow's packets, that mean, and the
               flow's packet count

as CSV (a "row" column says packet or flow) or JSON lines, to -o FILE
(written atomically) or stdout. Flows are direction-independent 5-tuples,
printed as 16 hex digits; non-IP packets have no flow.`,
		Args: cobra.MinimumNArgs(1),
		RunE: runPredict,
	}
	f := cmd.Flags()
	f.String("model", "", "model: a checkpoint (.ckpt, .model) or safetensors; TorchScript (.pt) with --allow-torchscript (required)")
	f.Bool("allow-torchscript", false, "let --model be TorchScript, such as train's model.pt: TorchScript is code, which runs when loaded and can read and write files, so use it only from a source you trust")
	f.String("task", "", "class names of a TorchScript model: application or traffic (default: from its output size)")
	f.Int("signal-length", 1500, "input length of a TorchScript model (checkpoints record theirs)")
	f.Int("batch-size", 1024, "packets per forward pass")
	f.String("device", "auto", "cpu, cuda, cuda:N or auto")
	f.String("format", "csv", "csv or jsonl")
	f.StringP("output", "o", "", "output file (default stdout)")
	f.Bool("overwrite", false, "replace the output file if it exists")
	return cmd
}

func runPredict(cmd *cobra.Command, args []string) error {
	v, err := settings(cmd, nil)
	if err != nil {
		return err
	}
	modelPath := v.GetString("model")
	if modelPath == "" {
		return errors.New("predict: --model MODEL is required")
	}
	batchSize := v.GetInt("batch_size")
	if batchSize <= 0 {
		return fmt.Errorf("predict: batch_size %d: want a positive number", batchSize)
	}
	format := v.GetString("format")
	if format != "csv" && format != "jsonl" {
		return fmt.Errorf("predict: --format %q: want csv or jsonl", format)
	}
	out := v.GetString("output")
	if err := checkOutputFile(out, v.GetBool("overwrite")); err != nil {
		return fmt.Errorf("predict: %w", err)
	}
	device, err := torch.ParseDevice(v.GetString("device"))
	if err != nil {
		return err
	}
	m, closeModel, err := loadClassifier(modelPath, device, v.GetBool("allow_torchscript"), v.GetString("task"), v.GetInt("signal_length"))
	if err != nil {
		return err
	}
	defer closeModel()
	slog.Info("model", "path", modelPath, "task", m.Task().Name, "layout", m.Preprocessing().Layout, "device", device)

	var w io.Writer = cmd.OutOrStdout()
	var file *atomicfile.File
	if out != "" && out != "-" {
		if file, err = atomicfile.Create(out); err != nil {
			return err
		}
		defer file.Abort()
		w = file
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	rw := newRowWriter(bw, format)
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	defer stop()
	p := &predictor{model: m, rows: rw, batchSize: batchSize}
	var total features.Stats
	for _, path := range args {
		stats, err := p.capture(ctx, path)
		total.Add(stats)
		if err != nil {
			return err
		}
	}
	if err := rw.flush(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if file != nil {
		if err := file.Commit(); err != nil {
			return err
		}
	}
	slog.Info("predicted", "captures", len(args), "packets", total.Read, "classified", total.Kept, "flows", p.flows)
	if p.damaged > 0 {
		return fmt.Errorf("predict: %d of %d captures damaged (the packets before the damage were classified)", p.damaged, len(args))
	}
	return nil
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

// loadClassifier loads the model at path onto device: a checkpoint or
// safetensors, which are data, or, when the user allowed it, TorchScript,
// which is code (with task and signalLength, which it does not record).
func loadClassifier(path string, device torch.Device, allowScript bool, task string, signalLength int) (deeppacket.Classifier, func(), error) {
	m, err := deeppacket.Load(path)
	if errors.Is(err, deeppacket.ErrTorchScript) {
		if !allowScript {
			return nil, nil, fmt.Errorf("%w: pass --allow-torchscript to run it, if you trust where it comes from (a checkpoint, such as train's checkpoints/best.ckpt, needs no such trust)", err)
		}
		sc, err := deeppacket.LoadScriptClassifier(path, device, task, signalLength)
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
	return deeppacket.AsClassifier(m), m.Close, nil
}

// predictor classifies the packets of captures in batches.
type predictor struct {
	model     deeppacket.Classifier
	rows      *rowWriter
	batchSize int
	flows     int
	damaged   int

	batch   *deeppacket.Batch
	pending []packetInfo
	byFlow  map[int64]*flowAgg
	order   []int64 // flows in order of first packet
}

type packetInfo struct {
	index, ts, flow int64
}

type flowAgg struct {
	firstTS int64
	packets int64
	sum     []float64 // summed probabilities per class
}

func (p *predictor) capture(ctx context.Context, path string) (features.Stats, error) {
	opts := p.model.Preprocessing()
	tr := features.New(opts)
	p.batch = deeppacket.NewBatch(tr.Options().SignalLength)
	p.pending = p.pending[:0]
	p.byFlow = map[int64]*flowAgg{}
	p.order = p.order[:0]
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	bar := progress.New(size, "predict "+path, true)
	defer bar.Finish()
	stats, err := features.Each(ctx, path, tr, bar.Add, func(pk *features.Packet) error {
		if pk.Verdict != features.Kept {
			return nil
		}
		p.batch.Add(pk.Feature)
		p.pending = append(p.pending, packetInfo{index: pk.Index, ts: pk.TimestampNS, flow: pk.Flow})
		if p.batch.Len() >= p.batchSize {
			return p.classify(path)
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
		return stats, fmt.Errorf("predict %s: %w", path, err)
	}
	if cerr := p.classify(path); cerr != nil {
		return stats, cerr
	}
	task := p.model.Task()
	for _, f := range p.order {
		agg := p.byFlow[f]
		best := 0
		for c := range agg.sum {
			if agg.sum[c] > agg.sum[best] {
				best = c
			}
		}
		if err := p.rows.flow(path, f, agg.firstTS, best, task.ClassName(best), agg.sum[best]/float64(agg.packets), agg.packets); err != nil {
			return stats, err
		}
	}
	p.flows += len(p.order)
	return stats, nil
}

// classify runs the pending batch and writes its packet rows.
func (p *predictor) classify(path string) error {
	if p.batch.Len() == 0 {
		return nil
	}
	probs, err := deeppacket.Probabilities(p.model, p.batch)
	if err != nil {
		return fmt.Errorf("predict %s: %w", path, err)
	}
	k := p.model.OutputDim()
	task := p.model.Task()
	for i, info := range p.pending {
		row := probs[i*k : (i+1)*k]
		best := 0
		for c := range row {
			if row[c] > row[best] {
				best = c
			}
		}
		if err := p.rows.packet(path, info, best, task.ClassName(best), row[best]); err != nil {
			return err
		}
		if info.flow == 0 {
			continue
		}
		agg := p.byFlow[info.flow]
		if agg == nil {
			agg = &flowAgg{firstTS: info.ts, sum: make([]float64, k)}
			p.byFlow[info.flow] = agg
			p.order = append(p.order, info.flow)
		}
		agg.packets++
		for c, v := range row {
			agg.sum[c] += float64(v)
		}
	}
	p.batch.Reset()
	p.pending = p.pending[:0]
	return nil
}

// rowWriter writes packet and flow rows as CSV or JSON lines.
type rowWriter struct {
	csv  *csv.Writer
	json *json.Encoder
	rec  []string
}

var predictColumns = []string{"row", "capture", "index", "timestamp", "flow", "label_id", "label", "probability", "packets"}

func newRowWriter(w io.Writer, format string) *rowWriter {
	if format == "jsonl" {
		return &rowWriter{json: json.NewEncoder(w)}
	}
	c := csv.NewWriter(w)
	c.Write(predictColumns)
	return &rowWriter{csv: c, rec: make([]string, len(predictColumns))}
}

func flowString(f int64) string {
	if f == 0 {
		return ""
	}
	return fmt.Sprintf("%016x", uint64(f))
}

func timeString(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

type packetRow struct {
	Row         string  `json:"row"`
	Capture     string  `json:"capture"`
	Index       int64   `json:"index"`
	Timestamp   string  `json:"timestamp"`
	Flow        string  `json:"flow"`
	LabelID     int     `json:"label_id"`
	Label       string  `json:"label"`
	Probability float64 `json:"probability"`
}

type flowRow struct {
	Row         string  `json:"row"`
	Capture     string  `json:"capture"`
	Timestamp   string  `json:"timestamp"`
	Flow        string  `json:"flow"`
	LabelID     int     `json:"label_id"`
	Label       string  `json:"label"`
	Probability float64 `json:"probability"`
	Packets     int64   `json:"packets"`
}

func (r *rowWriter) packet(capture string, p packetInfo, id int, name string, prob float32) error {
	if r.json != nil {
		return r.json.Encode(packetRow{"packet", capture, p.index, timeString(p.ts), flowString(p.flow), id, name, float64(prob)})
	}
	r.rec = append(r.rec[:0], "packet", capture, strconv.FormatInt(p.index, 10), timeString(p.ts), flowString(p.flow),
		strconv.Itoa(id), name, strconv.FormatFloat(float64(prob), 'g', 6, 32), "")
	return r.csv.Write(r.rec)
}

func (r *rowWriter) flow(capture string, f, ts int64, id int, name string, prob float64, packets int64) error {
	if r.json != nil {
		return r.json.Encode(flowRow{"flow", capture, timeString(ts), flowString(f), id, name, prob, packets})
	}
	r.rec = append(r.rec[:0], "flow", capture, "", timeString(ts), flowString(f),
		strconv.Itoa(id), name, strconv.FormatFloat(prob, 'g', 6, 64), strconv.FormatInt(packets, 10))
	return r.csv.Write(r.rec)
}

func (r *rowWriter) flush() error {
	if r.csv != nil {
		r.csv.Flush()
		return r.csv.Error()
	}
	return nil
}
