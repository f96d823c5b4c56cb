package live

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/data/capture"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/model"
)

func testConfig(m model.Model, out *Output) Config {
	return Config{
		Model: model.AsClassifier(m, 1), BatchSize: 64, MaxDelay: 50 * time.Millisecond, VerdictAfter: 3,
		IdleTimeout: time.Hour, ActiveTimeout: time.Hour, MaxFlows: 1 << 16, QueueLen: 1024,
		Output: out, Metrics: NewMetrics(),
	}
}

// readRows splits an output into flow and packet rows.
func readRows(t *testing.T, r io.Reader) (flows []FlowRow, packets []PacketRow) {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var probe struct{ Row string }
		if err := json.Unmarshal(sc.Bytes(), &probe); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		switch probe.Row {
		case "flow":
			var f FlowRow
			if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
				t.Fatal(err)
			}
			flows = append(flows, f)
		case "packet":
			var p PacketRow
			if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			packets = append(packets, p)
		default:
			t.Fatalf("output line %q: row %q", sc.Text(), probe.Row)
		}
	}
	return flows, packets
}

// metricValue reads one sample from Prometheus's text format.
func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("metric %s missing from:\n%s", name, text)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReplayFile replays an ISCX capture as fast as possible with the
// reference's published ResNet: every flow's final verdict is the vote of
// predict's flow rule over all its packets, its first verdict comes at its
// k-th packet, the counters add up, and the Prometheus metrics say the
// same as the counters.
func TestReplayFile(t *testing.T) {
	model := testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt")
	path := testenv.Shared(t, "pcaps/iscx/vpn_sftp.pcap")
	m, err := ckpt.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	src, err := OpenFile(path, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var buf strings.Builder
	cfg := testConfig(m, NewOutput(&buf))
	cfg.Packets = true
	e, err := New(src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	flows, packets := readRows(t, strings.NewReader(buf.String()))

	want := flowPrefixScores(t, m, path)
	c := &e.Counters
	if got := c.Classified.Load(); got != int64(len(packets)) || got == 0 {
		t.Errorf("classified %d, packet rows %d", got, len(packets))
	}
	if r, sum := c.Received.Load(), c.Classified.Load()+c.SkippedTotal()+c.Dropped.Load(); r != sum || c.Dropped.Load() != 0 {
		t.Errorf("received %d, classified+skipped+dropped %d (dropped %d)", r, sum, c.Dropped.Load())
	}
	final := map[string]FlowRow{}
	for _, f := range flows {
		if f.Reason == ReasonFirstK {
			if f.Packets != int64(cfg.VerdictAfter) || f.LatencyMS == nil {
				t.Errorf("first-k verdict %+v", f)
			}
			continue
		}
		if f.Reason != ReasonEnd {
			t.Errorf("verdict %+v: reason %q, want %q", f, f.Reason, ReasonEnd)
		}
		final[f.Flow] = f
	}
	if len(final) != len(want) {
		t.Fatalf("%d final verdicts, predict's rule gives %d flows", len(final), len(want))
	}
	for id, v := range want {
		f, ok := final[flowString(id)]
		label, prob := v[0].Verdict()
		if !ok || f.LabelID != label || f.Packets != v[0].Packets() || math.Abs(f.Probability-prob) > 1e-5 {
			t.Errorf("flow %s: live %+v, predict's rule: label %d, %.6f over %d packets", flowString(id), f, label, prob, v[0].Packets())
		}
	}

	rec := httptest.NewRecorder()
	cfg.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rec.Body.String()
	for name, v := range map[string]int64{
		"deeppacket_live_packets_received_total":   c.Received.Load(),
		"deeppacket_live_packets_classified_total": c.Classified.Load(),
		"deeppacket_live_packets_dropped_total":    0,
		"deeppacket_live_flows_ended_total":        int64(len(want)),
		"deeppacket_live_verdicts_total":           int64(len(flows)),
		"deeppacket_live_flows_active":             0,
	} {
		if got := metricValue(t, text, name); got != float64(v) {
			t.Errorf("metric %s = %v, want %d", name, got, v)
		}
	}
	skipped := 0.0
	for i := range numSkipReasons {
		skipped += metricValue(t, text, fmt.Sprintf("deeppacket_live_packets_skipped_total{reason=%q}", SkipReason(i)))
	}
	if skipped != float64(c.SkippedTotal()) || skipped == 0 {
		t.Errorf("skipped metrics sum to %v, counter %d", skipped, c.SkippedTotal())
	}
}

// TestReplayPace replays a capture at 20 times its recorded pace: it takes
// a twentieth of the capture's span, and the source's clock, which flow
// timeouts follow, runs at the capture's pace (a short idle timeout ends
// flows between sessions).
func TestReplayPace(t *testing.T) {
	model := testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt")
	path := testenv.Shared(t, "pcaps/iscx/vpn_skype_chat.pcap")
	first, last := captureSpan(t, path)
	m, err := ckpt.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const speed = 20
	src, err := OpenFile(path, speed, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var buf strings.Builder
	cfg := testConfig(m, NewOutput(&buf))
	cfg.IdleTimeout = 3 * time.Second // capture time: 0.15 s of replay
	e, err := New(src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if span := last.Sub(first) / speed; took < span {
		t.Errorf("replayed in %v, the capture's span at %dx is %v", took, speed, span)
	}
	flows, _ := readRows(t, strings.NewReader(buf.String()))
	idle := 0
	for _, f := range flows {
		if f.Reason == ReasonIdle {
			idle++
		}
		if !strings.HasPrefix(f.Tuple, "tcp ") {
			t.Errorf("the tcp filter let through %+v", f)
		}
	}
	if idle == 0 {
		t.Errorf("no flow ended by the idle timeout in %d verdicts", len(flows))
	}
	if c := &e.Counters; c.Received.Load() != c.Classified.Load()+c.SkippedTotal()+c.Dropped.Load() {
		t.Errorf("counters do not add up: %v", c.LogAttrs())
	}
}

func captureSpan(t *testing.T, path string) (first, last time.Time) {
	t.Helper()
	r, err := capture.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var rec capture.Record
	for {
		err := r.Next(&rec)
		if err == io.EOF {
			return first, last
		}
		if err != nil {
			t.Fatal(err)
		}
		if first.IsZero() {
			first = rec.Timestamp
		}
		last = rec.Timestamp
	}
}

// floodSource sends IPv4/UDP packets, each of a 5-tuple never seen
// before, as fast as the engine reads them.
type floodSource struct {
	n, sent int
	frame   []byte
	onEvery func(sent int)
}

func (s *floodSource) Read(ctx context.Context) ([]byte, gopacket.CaptureInfo, error) {
	if s.sent == s.n {
		return nil, gopacket.CaptureInfo{}, io.EOF
	}
	if s.frame == nil {
		s.frame = make([]byte, 20+8+100)
		s.frame[0], s.frame[9] = 0x45, 17 // IPv4, UDP
		binary.BigEndian.PutUint16(s.frame[2:], uint16(len(s.frame)))
		binary.BigEndian.PutUint16(s.frame[24:], 108)
	}
	binary.BigEndian.PutUint32(s.frame[12:], 0x0a000000|uint32(s.sent>>16)) // 10.0.x.x
	binary.BigEndian.PutUint32(s.frame[16:], 0x0a800001)
	binary.BigEndian.PutUint16(s.frame[20:], uint16(s.sent))
	binary.BigEndian.PutUint16(s.frame[22:], 443)
	s.sent++
	if s.sent%50000 == 0 {
		s.onEvery(s.sent)
	}
	return s.frame, gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(s.frame), Length: len(s.frame)}, nil
}

func (s *floodSource) LinkType() layers.LinkType   { return layers.LinkTypeRaw }
func (s *floodSource) KernelDrops() (int64, error) { return 0, nil }
func (s *floodSource) Now() time.Time              { return time.Now() }
func (s *floodSource) Lossless() bool              { return false }
func (s *floodSource) Close() error                { return nil }

// TestFloodBoundedMemory floods the engine with 400,000 packets of
// distinct 5-tuples, faster than the model takes them: the flow table
// never holds more than its maximum (the least recently active flows are
// evicted, and counted), the queue drops what does not fit (counted), and
// the heap stays flat from the first 50,000 packets to the last.
func TestFloodBoundedMemory(t *testing.T) {
	m, err := model.New(model.Spec{Kind: model.KindCNN, HParams: model.HParams{
		"c1_output_dim": 4, "c1_kernel_size": 4, "c1_stride": 3, "c2_output_dim": 4, "c2_kernel_size": 5,
		"c2_stride": 1, "output_dim": 12, "signal_length": 64,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Store().Train(false)
	const maxFlows = 100
	cfg := testConfig(m, NewOutput(io.Discard))
	cfg.MaxFlows, cfg.QueueLen, cfg.VerdictAfter = maxFlows, 256, 1
	var heap []uint64
	var e *Engine
	src := &floodSource{n: 400000, onEvery: func(int) {
		if active := e.Counters.FlowsActive.Load(); active > maxFlows {
			t.Errorf("%d flows in a table of %d", active, maxFlows)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = append(heap, ms.HeapAlloc)
	}}
	if e, err = New(src, cfg); err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := &e.Counters
	classified := c.Classified.Load()
	if c.Received.Load() != int64(src.n) || c.Received.Load() != classified+c.SkippedTotal()+c.Dropped.Load() {
		t.Errorf("counters do not add up: %v", c.LogAttrs())
	}
	if c.Dropped.Load() == 0 || classified <= maxFlows {
		t.Fatalf("the flood did not overrun the queue or fill the table: %v", c.LogAttrs())
	}
	// Every classified packet opened a flow; all but the last maxFlows
	// were evicted, those ended at the end.
	if c.FlowsEvicted.Load() != classified-maxFlows || c.FlowsEnded.Load() != classified {
		t.Errorf("evicted %d, ended %d; want %d and %d", c.FlowsEvicted.Load(), c.FlowsEnded.Load(), classified-maxFlows, classified)
	}
	t.Logf("%v; heap after each 50,000 packets (bytes): %v", c.LogAttrs(), heap)
	if last, first := heap[len(heap)-1], heap[0]; last > first+first/2+(4<<20) {
		t.Errorf("heap grew from %d to %d bytes over the flood", first, last)
	}
}

// TestOutputRotation fills a rotated output past its size three times: the
// newest lines are in the file, the older in FILE.1 and FILE.2, whole
// lines only, and nothing beyond --rotate-keep files remains.
func TestOutputRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "verdicts.jsonl")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateOutput(path, 1000, 2, false); err == nil {
		t.Fatal("an existing output was replaced without force")
	}
	o, err := CreateOutput(path, 1000, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		if err := o.write(PacketRow{Row: "packet", Flow: fmt.Sprintf("%016x", i), Label: "Chat"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	var rows []int
	for _, name := range []string{path + ".2", path + ".1", path} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 1000 {
			t.Errorf("%s: %d bytes, over the limit", name, len(b))
		}
		_, packets := readRows(t, strings.NewReader(string(b)))
		for _, p := range packets {
			id, _ := strconv.ParseInt(p.Flow, 16, 64)
			rows = append(rows, int(id))
		}
	}
	if _, err := os.Stat(path + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.3 exists: %v", path, err)
	}
	if len(rows) == 0 || rows[len(rows)-1] != n-1 {
		t.Fatalf("rows %v", rows)
	}
	for i := 1; i < len(rows); i++ {
		if rows[i] != rows[i-1]+1 {
			t.Errorf("rows not consecutive across files: %v", rows)
		}
	}
}

// TestOpenInterfaceErrors: a missing interface, and capturing without
// CAP_NET_RAW, are refused with errors that say so.
func TestOpenInterfaceErrors(t *testing.T) {
	_, err := OpenInterface("dp-no-such0", InterfaceOptions{SnapLen: 65535, BufferSize: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "no such interface") {
		t.Errorf("missing interface: %v", err)
	}
	// Capabilities are per thread: drop CAP_NET_RAW from this goroutine's
	// locked thread, which ends with the goroutine.
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		data[0].Effective &^= 1 << unix.CAP_NET_RAW
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		src, err := OpenInterface("lo", InterfaceOptions{SnapLen: 65535, BufferSize: 1 << 20})
		if err == nil {
			src.Close()
			err = errors.New("opened")
		}
		done <- err
	}()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "CAP_NET_RAW") {
		t.Errorf("without CAP_NET_RAW: %v", err)
	}
}
