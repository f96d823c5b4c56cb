package train

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"text/tabwriter"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/data/loader"
	"github.com/deeppacket/deeppacket/internal/atomicfile"
	"github.com/deeppacket/deeppacket/internal/progress"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// predictions are a model's verdicts on a set, in the set's row order.
type predictions struct {
	preds, labels []int64
	loss          float64 // mean cross-entropy
	outputs       int     // the model's number of outputs
}

func (p *predictions) accuracy() float64 {
	if len(p.labels) == 0 {
		return 0
	}
	right := 0
	for i, y := range p.labels {
		if p.preds[i] == y {
			right++
		}
	}
	return float64(right) / float64(len(p.labels))
}

// predict runs forward over every batch of l in order, in eval mode and
// without autograd. store is the model's (nil for a TorchScript module,
// which is in eval mode already).
func predict(ctx context.Context, l *loader.Loader, forward func(*torch.Tensor) *torch.Tensor, store *torch.Store, device torch.Device) (*predictions, error) {
	if store != nil {
		defer store.Train(store.Train(false))
	}
	p := &predictions{}
	var lossSum float64
	bar := progress.New(int64(l.Batches()), "evaluate", false)
	defer bar.Finish()
	err := torch.NoGrad(func() error {
		batches := l.Epoch(0)
		defer batches.Close()
		scope := torch.NewScope()
		defer scope.Close()
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			b, err := batches.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			x := torch.FromSlice(scope, b.Features, b.Shape[:], device)
			y := torch.FromSlice(scope, b.Labels[:b.Size], []int64{int64(b.Size)}, device)
			logits := forward(x)
			if err := logits.Err(); err != nil {
				return err
			}
			n := logits.Shape()
			if len(n) != 2 || n[0] != int64(b.Size) {
				return fmt.Errorf("model gave logits of shape %v for a batch of %d", n, b.Size)
			}
			p.outputs = int(n[1])
			for _, y := range b.Labels[:b.Size] {
				if y < 0 || y >= n[1] {
					return fmt.Errorf("label %d is outside the model's %d classes", y, n[1])
				}
			}
			loss, err := logits.CrossEntropyWith(y, nil, torch.ReductionSum, -100, 0).Item()
			if err != nil {
				return err
			}
			pred, err := logits.Argmax(1, false).Int64s()
			if err != nil {
				return err
			}
			lossSum += loss
			p.preds = append(p.preds, pred...)
			p.labels = append(p.labels, b.Labels[:b.Size]...)
			scope.Close()
			bar.Add(1)
		}
	})
	if err != nil {
		return nil, err
	}
	if len(p.labels) > 0 {
		p.loss = lossSum / float64(len(p.labels))
	}
	return p, nil
}

// Scores are precision, recall, F1 and support of one class or an average.
type Scores struct {
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	Support   int64   `json:"support"`
}

// ClassScores are one class's scores.
type ClassScores struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
	Scores
}

// Results are the scores of one level (packets, or flows).
type Results struct {
	Count    int64         `json:"count"`
	Accuracy float64       `json:"accuracy"`
	Classes  []ClassScores `json:"classes"`
	Macro    Scores        `json:"macro_avg"`
	Weighted Scores        `json:"weighted_avg"`
	// Confusion[i][j] counts class Classes[i] predicted as Classes[j].
	Confusion [][]int64 `json:"confusion"`
}

// Report is an evaluation: per packet, and per flow where the set has flows.
type Report struct {
	Model string  `json:"model"`
	Data  string  `json:"data"`
	Loss  float64 `json:"loss"`
	Results
	Flows *Results `json:"flows,omitempty"`
}

// newReport scores p. flows, when not nil, holds each row's flow key.
func newReport(p *predictions, flows []string, names []string) *Report {
	r := &Report{Loss: p.loss, Results: score(p.labels, p.preds, names)}
	if flows != nil && len(flows) == len(p.labels) {
		labels, preds := flowVotes(flows, p.labels, p.preds)
		fr := score(labels, preds, names)
		r.Flows = &fr
	}
	return r
}

// flowVotes gives each flow the label most of its packets have and the
// class the flow rule (model.FlowVote, as predict) gives it.
func flowVotes(flows []string, labels, preds []int64) (fl, fp []int64) {
	type votes struct{ label, pred model.FlowVote }
	byFlow := map[string]*votes{}
	var order []string
	for i, f := range flows {
		v := byFlow[f]
		if v == nil {
			v = &votes{}
			byFlow[f] = v
			order = append(order, f)
		}
		v.label.Add(labels[i])
		v.pred.Add(preds[i])
	}
	for _, f := range order {
		l, _ := byFlow[f].label.Winner()
		p, _ := byFlow[f].pred.Winner()
		fl, fp = append(fl, l), append(fp, p)
	}
	return fl, fp
}

// score computes what sklearn's classification_report and confusion_matrix
// give: over the classes that occur as a label or a prediction, in id order.
func score(labels, preds []int64, names []string) Results {
	seen := map[int64]bool{}
	for i := range labels {
		seen[labels[i]], seen[preds[i]] = true, true
	}
	ids := make([]int64, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	index := map[int64]int{}
	for i, id := range ids {
		index[id] = i
	}
	n := len(ids)
	conf := make([][]int64, n)
	for i := range conf {
		conf[i] = make([]int64, n)
	}
	right := int64(0)
	for i := range labels {
		conf[index[labels[i]]][index[preds[i]]]++
		if labels[i] == preds[i] {
			right++
		}
	}
	res := Results{Count: int64(len(labels)), Confusion: conf}
	if len(labels) > 0 {
		res.Accuracy = float64(right) / float64(len(labels))
	}
	for i, id := range ids {
		var predicted, support int64
		for j := range n {
			predicted += conf[j][i]
			support += conf[i][j]
		}
		tp := conf[i][i]
		s := Scores{Support: support}
		if predicted > 0 {
			s.Precision = float64(tp) / float64(predicted)
		}
		if support > 0 {
			s.Recall = float64(tp) / float64(support)
		}
		if s.Precision+s.Recall > 0 {
			s.F1 = 2 * s.Precision * s.Recall / (s.Precision + s.Recall)
		}
		res.Classes = append(res.Classes, ClassScores{ID: int(id), Name: className(names, int(id)), Scores: s})
		res.Macro.Precision += s.Precision / float64(n)
		res.Macro.Recall += s.Recall / float64(n)
		res.Macro.F1 += s.F1 / float64(n)
		if res.Count > 0 {
			w := float64(support) / float64(res.Count)
			res.Weighted.Precision += w * s.Precision
			res.Weighted.Recall += w * s.Recall
			res.Weighted.F1 += w * s.F1
		}
	}
	res.Macro.Support, res.Weighted.Support = res.Count, res.Count
	return res
}

func className(names []string, id int) string {
	if id >= 0 && id < len(names) && names[id] != "" {
		return names[id]
	}
	return strconv.Itoa(id)
}

// normalised is the confusion matrix with each row divided by its sum.
func (r *Results) normalised() [][]float64 {
	out := make([][]float64, len(r.Confusion))
	for i, row := range r.Confusion {
		out[i] = make([]float64, len(row))
		var sum int64
		for _, v := range row {
			sum += v
		}
		for j, v := range row {
			if sum > 0 {
				out[i][j] = float64(v) / float64(sum)
			}
		}
	}
	return out
}

func (r *Results) names() []string {
	out := make([]string, len(r.Classes))
	for i, c := range r.Classes {
		out[i] = c.Name
	}
	return out
}

// Report files inside the folder WriteFiles fills.
const (
	ReportJSON       = "report.json"
	ReportCSV        = "report.csv"
	ConfusionCSV     = "confusion.csv"
	ConfusionPNG     = "confusion.png"
	FlowReportCSV    = "flows_report.csv"
	FlowConfusionPNG = "flows_confusion.png"
)

// WriteFiles writes report.json, report.csv (per class and averages),
// confusion.csv and the normalised confusion heat map confusion.png into
// dir, and the flow-level CSV and heat map when there are flows.
func (r *Report) WriteFiles(dir string) error {
	doc, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, ReportJSON), append(doc, '\n')); err != nil {
		return err
	}
	levels := []struct {
		res       *Results
		csv, png  string
		title     string
		confusion string
	}{{&r.Results, ReportCSV, ConfusionPNG, "Confusion matrix (packets, normalised by true class)", ConfusionCSV}}
	if r.Flows != nil {
		levels = append(levels, struct {
			res       *Results
			csv, png  string
			title     string
			confusion string
		}{r.Flows, FlowReportCSV, FlowConfusionPNG, "Confusion matrix (flows, normalised by true class)", ""})
	}
	for _, l := range levels {
		if err := atomicfile.WriteFile(filepath.Join(dir, l.csv), l.res.ClassCSV()); err != nil {
			return err
		}
		if l.confusion != "" {
			if err := atomicfile.WriteFile(filepath.Join(dir, l.confusion), l.res.confusionCSV()); err != nil {
				return err
			}
		}
		if err := heatmap(filepath.Join(dir, l.png), l.title, l.res.names(), l.res.normalised()); err != nil {
			return err
		}
	}
	return nil
}

// ClassCSV is the per-class table as CSV, then accuracy and the averages.
func (r *Results) ClassCSV() []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }
	w.Write([]string{"id", "class", "precision", "recall", "f1", "support"})
	for _, c := range r.Classes {
		w.Write([]string{strconv.Itoa(c.ID), c.Name, f(c.Precision), f(c.Recall), f(c.F1), strconv.FormatInt(c.Support, 10)})
	}
	w.Write([]string{"", "accuracy", "", "", f(r.Accuracy), strconv.FormatInt(r.Count, 10)})
	for _, a := range []struct {
		name string
		s    Scores
	}{{"macro avg", r.Macro}, {"weighted avg", r.Weighted}} {
		w.Write([]string{"", a.name, f(a.s.Precision), f(a.s.Recall), f(a.s.F1), strconv.FormatInt(a.s.Support, 10)})
	}
	w.Flush()
	return buf.Bytes()
}

func (r *Results) confusionCSV() []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(append([]string{"true\\predicted"}, r.names()...))
	for i, row := range r.Confusion {
		rec := []string{r.Classes[i].Name}
		for _, v := range row {
			rec = append(rec, strconv.FormatInt(v, 10))
		}
		w.Write(rec)
	}
	w.Flush()
	return buf.Bytes()
}

// WriteTable prints the report as sklearn's classification_report does,
// then the flow-level one.
func (r *Report) WriteTable(out io.Writer) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	level := func(title string, res *Results) {
		fmt.Fprintf(w, "%s\t\t\t\t\t\n", title)
		fmt.Fprintf(w, "class\tprecision\trecall\tf1-score\tsupport\t\n")
		for _, c := range res.Classes {
			fmt.Fprintf(w, "%s\t%.4f\t%.4f\t%.4f\t%d\t\n", c.Name, c.Precision, c.Recall, c.F1, c.Support)
		}
		fmt.Fprintf(w, "\t\t\t\t\t\n")
		fmt.Fprintf(w, "accuracy\t\t\t%.4f\t%d\t\n", res.Accuracy, res.Count)
		fmt.Fprintf(w, "macro avg\t%.4f\t%.4f\t%.4f\t%d\t\n", res.Macro.Precision, res.Macro.Recall, res.Macro.F1, res.Count)
		fmt.Fprintf(w, "weighted avg\t%.4f\t%.4f\t%.4f\t%d\t\n", res.Weighted.Precision, res.Weighted.Recall, res.Weighted.F1, res.Count)
	}
	level("packets", &r.Results)
	if r.Flows != nil {
		fmt.Fprintf(w, "\t\t\t\t\t\n")
		level("flows (majority of packets)", r.Flows)
	}
	return w.Flush()
}

// EvalOptions configure Evaluate.
type EvalOptions struct {
	Device       torch.Device
	BatchSize    int    // [1024]
	Task         string // names the classes of a TorchScript model ("" infers them from its output size); a checkpoint's must match
	SignalLength int    // a TorchScript model's input length [1500]; checkpoints record theirs
	// AllowTorchScript lets modelPath be TorchScript, which is code: it runs
	// when loaded (and can read and write files).
	AllowTorchScript bool
	Workers          int
}

// Evaluate scores the model at modelPath (our checkpoint, a reference or
// Lightning 2.x checkpoint, safetensors, or, allowed, TorchScript) on the
// set at dataPath.
func Evaluate(ctx context.Context, modelPath, dataPath string, o EvalOptions) (*Report, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = 1024
	}
	if o.SignalLength <= 0 {
		o.SignalLength = 1500
	}
	var (
		forward    func(*torch.Tensor) *torch.Tensor
		store      *torch.Store
		names      []string
		numClasses int
	)
	ck, m, err := ckpt.ReadModel(modelPath)
	switch {
	case errors.Is(err, ckpt.ErrTorchScript):
		if !o.AllowTorchScript {
			return nil, fmt.Errorf("%w: pass --allow-torchscript to run it, if you trust where it comes from (a checkpoint, such as train's checkpoints/best.ckpt, needs no such trust)", err)
		}
		sc, err := ckpt.LoadScriptClassifier(modelPath, o.Device, o.Task, o.SignalLength)
		if err != nil {
			return nil, err
		}
		defer sc.Close()
		forward, numClasses = sc.Forward, sc.OutputDim()
		names = ClassNames(sc.Task(), numClasses)
	case err != nil:
		return nil, err
	default:
		names = checkpointClassNames(ck, m)
		ck.Close()
		defer m.Close()
		if o.Task != "" && o.Task != m.Task().Name {
			return nil, fmt.Errorf("--task %s: %s is a model of the %s task", o.Task, modelPath, m.Task().Name)
		}
		if err := toDevice(m, o.Device); err != nil {
			return nil, err
		}
		forward, store, numClasses = m.Forward, m.Store(), m.OutputDim()
		o.SignalLength = m.Preprocessing().SignalLength
	}
	l, err := loader.Open(dataPath, loader.Options{BatchSize: o.BatchSize, SignalLength: o.SignalLength, NumClasses: numClasses, Workers: o.Workers})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	p, err := predict(ctx, l, forward, store, o.Device)
	if err != nil {
		return nil, fmt.Errorf("evaluate %s on %s: %w", modelPath, dataPath, err)
	}
	flows, err := readFlows(dataPath)
	if err != nil {
		return nil, err
	}
	r := newReport(p, flows, names)
	r.Model, r.Data = modelPath, dataPath
	return r, nil
}

// checkpointClassNames are the names a run recorded, else the task's.
func checkpointClassNames(ck *ckpt.Checkpoint, m model.Model) []string {
	if ck.Extra != nil {
		if run, ok := ck.Extra.Get(runKey); ok {
			if d, ok := run.(*torch.Dict); ok {
				if list, ok := get[[]any](d, "class_names"); ok && len(list) == m.OutputDim() {
					names := make([]string, len(list))
					for i, v := range list {
						names[i], _ = v.(string)
					}
					return names
				}
			}
		}
	}
	return ClassNames(m.Task(), m.OutputDim())
}
