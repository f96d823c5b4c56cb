package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/deeppacket/deeppacket/internal/atomicfile"
)

const metricsHeader = "step,epoch,loss,lr,samples_per_s\n"

// metricsWriter keeps metrics.csv (one row per step) and metrics.jsonl (one
// line per epoch). Both are committed at the end of every epoch, so that
// they always match the last checkpoint: rows of an unfinished epoch live
// in a temporary file until then.
type metricsWriter struct {
	dir   string
	csv   *atomicfile.File
	w     *bufio.Writer
	curve lossSeries
}

// openMetrics starts the files, keeping the rows of a resumed run up to its
// checkpoint's step (a run killed mid-epoch wrote none past it, but a run
// resumed from an older checkpoint may have).
func openMetrics(dir string, globalStep int64, nextEpoch int) (*metricsWriter, error) {
	m := &metricsWriter{dir: dir}
	old, err := os.ReadFile(filepath.Join(dir, MetricsCSV))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if globalStep == 0 {
		old = nil
	}
	if err := m.start(old, globalStep); err != nil {
		return nil, err
	}
	return m, nil
}

// start opens a new temporary metrics.csv holding the rows of prev (a
// metrics.csv) up to step keep.
func (m *metricsWriter) start(prev []byte, keep int64) error {
	f, err := atomicfile.Create(filepath.Join(m.dir, MetricsCSV))
	if err != nil {
		return err
	}
	m.csv, m.w = f, bufio.NewWriterSize(f, 1<<16)
	m.curve = lossSeries{}
	if _, err := m.w.WriteString(metricsHeader); err != nil {
		return err
	}
	for i, line := range bytes.Split(prev, []byte("\n")) {
		if i == 0 || len(line) == 0 {
			continue
		}
		fields := strings.Split(string(line), ",")
		step, err1 := strconv.ParseInt(fields[0], 10, 64)
		if len(fields) < 3 || err1 != nil {
			return fmt.Errorf("read %s line %d: not a metrics row", filepath.Join(m.dir, MetricsCSV), i+1)
		}
		if step > keep {
			break
		}
		loss, err := strconv.ParseFloat(fields[2], 64)
		if err != nil {
			return fmt.Errorf("read %s line %d: %w", filepath.Join(m.dir, MetricsCSV), i+1, err)
		}
		m.curve.add(loss)
		m.w.Write(line)
		m.w.WriteByte('\n')
	}
	return nil
}

func (m *metricsWriter) step(step int64, epoch int, loss, lr, rate float64) error {
	m.curve.add(loss)
	_, err := fmt.Fprintf(m.w, "%d,%d,%s,%s,%.1f\n", step, epoch,
		strconv.FormatFloat(loss, 'g', -1, 64), strconv.FormatFloat(lr, 'g', -1, 64), rate)
	return err
}

// epoch commits metrics.csv and rewrites metrics.jsonl with history.
func (m *metricsWriter) epoch(history []EpochMetrics) error {
	if err := m.commit(); err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range history {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	if err := atomicfile.WriteFile(filepath.Join(m.dir, MetricsJSONL), buf.Bytes()); err != nil {
		return err
	}
	// Go on in a new temporary file that starts as the committed one.
	curve := m.curve
	prev, err := os.ReadFile(filepath.Join(m.dir, MetricsCSV))
	if err != nil {
		return err
	}
	if err := m.start(nil, 0); err != nil {
		return err
	}
	m.curve = curve
	_, err = m.w.Write(prev[len(metricsHeader):])
	return err
}

func (m *metricsWriter) commit() error {
	if err := m.w.Flush(); err != nil {
		return err
	}
	err := m.csv.Commit()
	m.csv = nil
	return err
}

// finish drops the temporary copy: everything is committed.
func (m *metricsWriter) finish() error {
	m.close()
	return nil
}

func (m *metricsWriter) close() {
	if m.csv != nil {
		m.csv.Abort()
		m.csv = nil
	}
}

// lossSeries keeps the step losses averaged over buckets of steps, at most
// maxPoints of them, for the loss curve: a run of millions of steps still
// plots quickly.
type lossSeries struct {
	points []float64 // mean loss of each full bucket
	bucket int64     // steps per point
	sum    float64
	n      int64
}

const maxPoints = 2000

func (s *lossSeries) add(loss float64) {
	if s.bucket == 0 {
		s.bucket = 1
	}
	s.sum += loss
	s.n++
	if s.n < s.bucket {
		return
	}
	s.points = append(s.points, s.sum/float64(s.n))
	s.sum, s.n = 0, 0
	if len(s.points) >= 2*maxPoints {
		for i := range maxPoints {
			s.points[i] = (s.points[2*i] + s.points[2*i+1]) / 2
		}
		s.points = s.points[:maxPoints]
		s.bucket *= 2
	}
}
