package live

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// FlowRow is one flow verdict as written: a JSON line.
type FlowRow struct {
	Row         string  `json:"row"` // "flow"
	Time        string  `json:"time"`
	Flow        string  `json:"flow"`  // the flow id of predict, 16 hex digits
	Tuple       string  `json:"tuple"` // "tcp 10.0.0.1:443 10.0.0.2:51000", as predict
	LabelID     int     `json:"label_id"`
	Label       string  `json:"label"`
	Probability float64 `json:"probability"`
	Packets     int64   `json:"packets"`
	Reason      string  `json:"reason"`
	// LatencyMS is the time from the arrival of the packet that completed
	// a first-k verdict to the verdict; absent for the other reasons.
	LatencyMS *float64 `json:"latency_ms,omitempty"`
}

// PacketRow is one classified packet (--packets).
type PacketRow struct {
	Row         string  `json:"row"` // "packet"
	Time        string  `json:"time"`
	Flow        string  `json:"flow"`
	LabelID     int     `json:"label_id"`
	Label       string  `json:"label"`
	Probability float64 `json:"probability"`
}

func timeString(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func flowString(f int64) string {
	if f == 0 {
		return ""
	}
	return fmt.Sprintf("%016x", uint64(f))
}

// Output writes JSON lines to a writer, or to a file that is rotated when
// it would grow past a size: FILE becomes FILE.1, FILE.1 becomes FILE.2,
// and so on up to FILE.<keep>, the oldest, which is dropped.
type Output struct {
	w     *bufio.Writer
	enc   *json.Encoder
	line  lineCounter
	path  string
	file  *os.File
	limit int64
	keep  int
	size  int64
}

type lineCounter struct {
	buf []byte
}

func (l *lineCounter) Write(p []byte) (int, error) { l.buf = append(l.buf, p...); return len(p), nil }

// NewOutput writes to w.
func NewOutput(w io.Writer) *Output {
	return &Output{w: bufio.NewWriterSize(w, 1<<16)}
}

// CreateOutput writes to a new file at path, rotated at limit bytes (0:
// never) keeping keep older files. An existing file is replaced only with
// force.
func CreateOutput(path string, limit int64, keep int, force bool) (*Output, error) {
	flag := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !force {
		flag |= os.O_EXCL
	}
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	return &Output{w: bufio.NewWriterSize(f, 1<<16), path: path, file: f, limit: limit, keep: max(keep, 1)}, nil
}

func (o *Output) write(v any) error {
	o.line.buf = o.line.buf[:0]
	if o.enc == nil {
		o.enc = json.NewEncoder(&o.line)
	}
	if err := o.enc.Encode(v); err != nil {
		return err
	}
	if o.file != nil && o.limit > 0 && o.size > 0 && o.size+int64(len(o.line.buf)) > o.limit {
		if err := o.rotate(); err != nil {
			return err
		}
	}
	o.size += int64(len(o.line.buf))
	_, err := o.w.Write(o.line.buf)
	return err
}

func (o *Output) rotate() error {
	if err := o.Close(); err != nil {
		return err
	}
	for i := o.keep - 1; i >= 1; i-- {
		older := o.path + "." + strconv.Itoa(i)
		if err := os.Rename(older, o.path+"."+strconv.Itoa(i+1)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate %s: %w", older, err)
		}
	}
	if err := os.Rename(o.path, o.path+".1"); err != nil {
		return fmt.Errorf("rotate %s: %w", o.path, err)
	}
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", o.path, err)
	}
	o.file, o.size = f, 0
	o.w.Reset(f)
	return nil
}

// Flush writes out what is buffered.
func (o *Output) Flush() error {
	if err := o.w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// Close flushes, and closes the file if the Output has one.
func (o *Output) Close() error {
	err := o.Flush()
	if o.file != nil {
		if cerr := o.file.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", o.path, cerr)
		}
	}
	return err
}
