package features

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/deeppacket/deeppacket/data/capture"
	"github.com/deeppacket/deeppacket/data/dataset"
	"github.com/deeppacket/deeppacket/labels"
)

// Packet is one frame of a capture after the transform.
type Packet struct {
	Result
	Index       int64 // 0-based position in the capture, omitted packets counted
	TimestampNS int64
}

// Stats count what happened to a capture's packets.
type Stats struct {
	Read    int64
	Kept    int64
	Omitted [NumVerdicts]int64 // by verdict; the Kept slot stays 0
	// Damaged is the number of damaged records (reading stops at the first)
	// and DamageOffset the byte offset of that record.
	Damaged      int64
	DamageOffset int64
}

// Add accumulates o into s, for totals.
func (s *Stats) Add(o Stats) {
	s.Read += o.Read
	s.Kept += o.Kept
	for i := range s.Omitted {
		s.Omitted[i] += o.Omitted[i]
	}
	s.Damaged += o.Damaged
}

// progressEvery is how many packets pass between progress reports and
// checks for cancellation.
const progressEvery = 4096

// Each reads the capture at path and calls fn for every packet, kept or
// omitted, in capture order; fn must not keep p.Feature. progress (may be
// nil) receives the number of file bytes read since its last call. The
// error is a *capture.DamageError when the capture is damaged (fn has then
// seen every packet before the damage), a refusal when the capture is not
// one or has a link type the transform does not read, or fn's error.
func Each(ctx context.Context, path string, t *Transformer, progress func(int64), fn func(p *Packet) error) (Stats, error) {
	var st Stats
	r, err := capture.Open(path)
	if err != nil {
		return st, err
	}
	defer r.Close()
	var (
		rec      capture.Record
		p        Packet
		reported int64
	)
	report := func() {
		if progress != nil {
			n := r.BytesRead()
			progress(n - reported)
			reported = n
		}
	}
	defer report()
	for {
		err := r.Next(&rec)
		if err == io.EOF {
			return st, nil
		}
		var damage *capture.DamageError
		if errors.As(err, &damage) {
			st.Damaged, st.DamageOffset = 1, damage.Offset
			return st, fmt.Errorf("read %s: %w", path, err)
		}
		if err != nil {
			return st, fmt.Errorf("read %s: %w", path, err)
		}
		if p.Result, err = t.Transform(rec.Data, rec.LinkType); err != nil {
			return st, fmt.Errorf("read %s: packet %d: %w", path, rec.Index, err)
		}
		st.Read++
		if p.Verdict == Kept {
			st.Kept++
		} else {
			st.Omitted[p.Verdict]++
		}
		p.Index, p.TimestampNS = rec.Index, rec.Timestamp.UnixNano()
		if err := fn(&p); err != nil {
			return st, err
		}
		if st.Read%progressEvery == 0 {
			report()
			if err := ctx.Err(); err != nil {
				return st, err
			}
		}
	}
}

// Metadata keys of a packet file's footer.
const (
	metaSettings = "deeppacket.settings"
	metaDamage   = "deeppacket.damage"
)

// Settings is a text form of everything that decides a capture's output
// besides the capture itself, stored in the output so that a rerun with
// other settings redoes it.
func Settings(opts Options, lab labels.Labels) string {
	if opts.SignalLength <= 0 {
		opts.SignalLength = DefaultSignalLength
	}
	id := func(p *int64) string {
		if p == nil {
			return "none"
		}
		return strconv.FormatInt(*p, 10)
	}
	return fmt.Sprintf("layout=%s signal_length=%d mask_ports=%t app_label=%s traffic_label=%s",
		opts.Layout, opts.SignalLength, opts.MaskPorts, id(lab.App), id(lab.Traffic))
}

// UpToDate reports whether out is a complete output of the capture at path
// made with these settings, newer than the capture and not marked damaged:
// a rerun can skip it.
func UpToDate(path, out, settings string) bool {
	ci, err := os.Stat(path)
	if err != nil {
		return false
	}
	oi, err := os.Stat(out)
	if err != nil || oi.ModTime().Before(ci.ModTime()) {
		return false
	}
	md, err := dataset.ReadPacketMetadata(out)
	if err != nil {
		return false // an unreadable footer: not complete
	}
	_, damaged := md[metaDamage]
	return md[metaSettings] == settings && !damaged
}

// Preprocess writes the kept packets of the capture at path to the Parquet
// file out, labelled with lab; the output appears only when complete. A
// damaged capture still gives an output holding the packets before the
// damage, and the damage as the error. A refused capture gives none.
func Preprocess(ctx context.Context, path, out string, opts Options, lab labels.Labels, progress func(int64)) (Stats, error) {
	w, err := dataset.CreatePackets(out)
	if err != nil {
		return Stats{}, err
	}
	defer w.Abort()
	w.SetMetadata(metaSettings, Settings(opts, lab))
	source := filepath.Base(path)
	t := New(opts)
	st, err := Each(ctx, path, t, progress, func(p *Packet) error {
		if p.Verdict != Kept {
			return nil
		}
		return w.Write(dataset.Packet{
			Feature:      p.Feature,
			AppLabel:     lab.App,
			TrafficLabel: lab.Traffic,
			Source:       source,
			Index:        p.Index,
			TimestampNS:  p.TimestampNS,
			Flow:         p.Flow,
		})
	})
	if err != nil && st.Damaged == 0 {
		return st, err
	}
	if st.Damaged > 0 {
		w.SetMetadata(metaDamage, err.Error())
	}
	if cerr := w.Commit(); cerr != nil {
		return st, cerr
	}
	return st, err
}
