package features_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/deeppacket/deeppacket/data/capture"
	"github.com/deeppacket/deeppacket/data/dataset"
	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/labels"
)

// TestPreprocessAndResume writes a capture's Parquet file and checks its
// rows against the transform, then when a rerun may skip it.
func TestPreprocessAndResume(t *testing.T) {
	src := filepath.Join(testenv.Shared(t, "pcaps/iscx"), "vpn_email.pcap")
	dir := t.TempDir()
	path := filepath.Join(dir, "vpn_email.pcap")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, data, 0o644)
	out := filepath.Join(dir, "out", "vpn_email.pcap.parquet")
	traffic := int64(7)
	lab := labels.Labels{Traffic: &traffic}
	opts := features.Options{}
	var reported int64
	st, err := features.Preprocess(context.Background(), path, out, opts, lab, func(n int64) { reported += n })
	if err != nil {
		t.Fatal(err)
	}
	if reported != int64(len(data)) {
		t.Errorf("progress reported %d bytes of %d", reported, len(data))
	}
	rows, err := dataset.ReadAllPackets(out)
	if err != nil {
		t.Fatal(err)
	}
	var kept []features.Packet
	var feats [][]byte
	all, err := features.Each(context.Background(), path, features.New(opts), nil, func(p *features.Packet) error {
		if p.Verdict == features.Kept {
			kept = append(kept, *p)
			feats = append(feats, bytes.Clone(p.Feature))
		}
		return nil
	})
	if err != nil || all != st {
		t.Fatalf("Each: %+v %v, Preprocess: %+v", all, err, st)
	}
	if int64(len(rows)) != st.Kept || st.Kept+st.Omitted[features.OmitNoPayload]+st.Omitted[features.OmitDNS] != st.Read || st.Read == st.Kept {
		t.Fatalf("%d rows, stats %+v", len(rows), st)
	}
	for i, r := range rows {
		if !bytes.Equal(r.Feature, feats[i]) || r.Index != kept[i].Index || r.TimestampNS != kept[i].TimestampNS ||
			r.Flow != kept[i].Flow || r.Source != "vpn_email.pcap" || r.AppLabel != nil || r.TrafficLabel == nil || *r.TrafficLabel != 7 {
			t.Fatalf("row %d: %+v", i, r)
		}
	}
	settings := features.Settings(opts, lab)
	if !features.UpToDate(path, out, settings) {
		t.Error("a fresh output is not up to date")
	}
	if features.UpToDate(path, out, features.Settings(features.Options{Layout: features.LayoutPaper}, lab)) {
		t.Error("an output of other settings is up to date")
	}
	later := time.Now().Add(time.Hour)
	os.Chtimes(path, later, later)
	if features.UpToDate(path, out, settings) {
		t.Error("an output older than its capture is up to date")
	}
}

// TestPreprocessDamaged: a capture cut mid-record gives an output with the
// packets before the cut, the damage as the error, and no resume.
func TestPreprocessDamaged(t *testing.T) {
	src := filepath.Join(testenv.Shared(t, "pcaps/iscx"), "skype_chat.pcap")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "skype_chat.pcap")
	os.WriteFile(path, data[:len(data)*2/3], 0o644)
	out := filepath.Join(dir, "skype_chat.pcap.parquet")
	app := int64(10)
	lab := labels.Labels{App: &app}
	st, err := features.Preprocess(context.Background(), path, out, features.Options{}, lab, nil)
	var d *capture.DamageError
	if !errors.As(err, &d) || st.Damaged != 1 || st.DamageOffset != d.Offset || d.Offset <= 24 {
		t.Fatalf("stats %+v, error %v: want the damage and its offset", st, err)
	}
	rows, err := dataset.ReadAllPackets(out)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(rows)) != st.Kept || st.Read != d.Packets || st.Kept == 0 {
		t.Errorf("%d rows, stats %+v, damage after %d packets", len(rows), st, d.Packets)
	}
	if features.UpToDate(path, out, features.Settings(features.Options{}, lab)) {
		t.Error("the output of a damaged capture counts as up to date")
	}
}

// TestPreprocessRefused: a capture of a link type the transform does not
// read gives no output and an error naming the link type.
func TestPreprocessRefused(t *testing.T) {
	path := filepath.Join(testenv.Shared(t, "pcaps/robustness"), "tcpdump", "nflog.pcap")
	out := filepath.Join(t.TempDir(), "nflog.pcap.parquet")
	_, err := features.Preprocess(context.Background(), path, out, features.Options{}, labels.Labels{}, nil)
	if !errors.Is(err, features.ErrLinkType) {
		t.Fatalf("error %v, want ErrLinkType", err)
	}
	if _, serr := os.Stat(out); serr == nil {
		t.Error("a refused capture left an output")
	}
}

// BenchmarkPreprocess measures the whole path, read, transform and write
// Parquet, over the ISCX captures' packets repeated in one capture; it
// reports packets per second.
func BenchmarkPreprocess(b *testing.B) {
	iscx := testenv.Shared(b, "pcaps/iscx")
	files, _ := filepath.Glob(filepath.Join(iscx, "*.pcap"))
	dir := b.TempDir()
	path := filepath.Join(dir, "big.pcap")
	var body []byte
	var head []byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		head = data[:24]
		body = append(body, data[24:]...)
	}
	big := append(bytes.Clone(head), bytes.Repeat(body, 8)...)
	if err := os.WriteFile(path, big, 0o644); err != nil {
		b.Fatal(err)
	}
	app := int64(0)
	b.SetBytes(int64(len(big)))
	var packets int64
	cpu0 := cpuSeconds()
	for b.Loop() {
		st, err := features.Preprocess(context.Background(), path, filepath.Join(dir, "out.parquet"), features.Options{}, labels.Labels{App: &app}, nil)
		if err != nil {
			b.Fatal(err)
		}
		packets += st.Read
	}
	b.ReportMetric(float64(packets)/b.Elapsed().Seconds(), "packets/s")
	// Per CPU-second too: on a shared machine wall time says little.
	b.ReportMetric(float64(packets)/(cpuSeconds()-cpu0), "packets/cpu-s")
}

// cpuSeconds is the user and system CPU time this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkTransform measures the transform alone.
func BenchmarkTransform(b *testing.B) {
	frames, lts := captureFrames(b, filepath.Join(testenv.Shared(b, "pcaps/iscx"), "*.pcap"), 1000)
	tr := features.New(features.Options{})
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for i, f := range frames {
			tr.Transform(f, lts[i])
		}
		n += len(frames)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "packets/s")
}

// TestRobustnessCorpus runs both layouts over every awkward capture of the
// shared corpus: each is read to its end or refused, with an error that
// names the file, and never crashes.
func TestRobustnessCorpus(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testenv.Shared(t, "pcaps/robustness"), "*", "*"))
	if len(files) < 50 {
		t.Fatalf("%d files: want the whole corpus", len(files))
	}
	refused := 0
	for _, layout := range []features.Layout{features.LayoutReference, features.LayoutPaper} {
		tr := features.New(features.Options{Layout: layout, MaskPorts: layout == features.LayoutPaper})
		for _, f := range files {
			st, err := features.Each(context.Background(), f, tr, nil, func(p *features.Packet) error {
				if len(p.Feature) > features.DefaultSignalLength {
					t.Fatalf("%s: %d feature bytes", f, len(p.Feature))
				}
				return nil
			})
			if err == nil {
				continue
			}
			var d *capture.DamageError
			if !errors.Is(err, features.ErrLinkType) && !errors.As(err, &d) || !bytes.Contains([]byte(err.Error()), []byte(filepath.Base(f))) {
				t.Errorf("%s: %v (after %d packets)", f, err, st.Read)
			}
			refused++
		}
	}
	// nflog, PKTAP, C-HDLC, IPoIB, PPP and vsock captures, in both layouts.
	if refused != 12 {
		t.Errorf("%d captures refused, want 12", refused)
	}
}
