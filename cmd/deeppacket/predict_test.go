package main

import (
	"bufio"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/model"
)

// goldenKept reads a golden file (see ../shared/README.md) and returns the
// feature bytes of the kept packets by packet index, in capture order.
func goldenKept(t *testing.T, path string) ([]int64, [][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != "DPGOLD1\n" {
		t.Fatalf("%s: bad magic %q (%v)", path, magic, err)
	}
	var idx []int64
	var feats [][]byte
	for {
		var hdr [7]byte
		if _, err := io.ReadFull(r, hdr[:]); err == io.EOF {
			return idx, feats
		} else if err != nil {
			t.Fatal(err)
		}
		n := binary.LittleEndian.Uint16(hdr[5:])
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		if hdr[4] == 0 {
			idx = append(idx, int64(binary.LittleEndian.Uint32(hdr[:4])))
			feats = append(feats, b)
		}
	}
}

// TestPredictResNet runs predict with the reference's published ResNet over
// an ISCX capture: one packet row per packet the reference keeps (its
// golden file), each labelled as the model labels the reference's own
// feature bytes, and flow rows that account for every packet.
func TestPredictResNet(t *testing.T) {
	modelPath := testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt")
	pcap := testenv.Shared(t, "pcaps/iscx/vpn_sftp.pcap")
	wantIdx, feats := goldenKept(t, testenv.Shared(t, "golden/iscx/vpn_sftp.pcap.golden"))

	// What the model says of the reference's own bytes.
	m, err := ckpt.Load(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := model.NewBatch(1500)
	for _, f := range feats {
		b.Add(f)
	}
	probs, err := model.Probabilities(model.AsClassifier(m, 1), b)
	if err != nil {
		t.Fatal(err)
	}
	k := m.OutputDim()

	dir := t.TempDir()
	out := filepath.Join(dir, "pred.csv")
	// Batches of 50 on two threads: the model classifies each while the
	// next is read, and the rows still come out in order.
	if msg, err := runCLI(t, "predict", "--model", modelPath, "--batch-size", "50", "--threads", "2", "--top-k", "3", "-o", out, pcap); err != nil {
		t.Fatalf("predict: %v\n%s", err, msg)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rows[0], ",") != strings.Join(predictColumns, ",") {
		t.Fatalf("header %v", rows[0])
	}
	var packets, flowPackets int
	flowsSeen := map[string]int{}
	for _, r := range rows[1:] {
		switch r[0] {
		case "packet":
			if packets >= len(wantIdx) {
				t.Fatalf("more packet rows than the reference keeps (%d)", len(wantIdx))
			}
			frame, _ := strconv.ParseInt(r[2], 10, 64)
			idx := frame - 1 // Wireshark's frame numbers start at 1
			if idx != wantIdx[packets] {
				t.Fatalf("packet row %d: frame %d, the reference keeps packet %d (0-based)", packets, frame, wantIdx[packets])
			}
			if !filepath.IsAbs(r[1]) || (r[4] != "") != strings.HasPrefix(r[5], "tcp ") && (r[4] != "") != strings.HasPrefix(r[5], "udp ") {
				t.Fatalf("packet row %d: capture %q flow %q tuple %q: want an absolute path and a 5-tuple beside each flow", packets, r[1], r[4], r[5])
			}
			if tops := strings.Split(r[10], "|"); len(tops) != 3 || tops[0] != r[7] || len(strings.Split(r[11], "|")) != 3 {
				t.Fatalf("packet row %d: top-3 %q %q, want 3 classes led by %q", packets, r[10], r[11], r[7])
			}
			row := probs[packets*k : (packets+1)*k]
			best := 0
			for c := range row {
				if row[c] > row[best] {
					best = c
				}
			}
			id, _ := strconv.Atoi(r[6])
			p, _ := strconv.ParseFloat(r[8], 64)
			if id != best || r[7] != m.Task().ClassName(best) || abs(p-float64(row[best])) > 1e-5 {
				t.Errorf("packet %d: label %s %q p=%s, want %d %q p=%g", idx, r[6], r[7], r[8], best, m.Task().ClassName(best), row[best])
			}
			if r[4] != "" {
				flowsSeen[r[4]]++
			}
			packets++
		case "flow":
			n, _ := strconv.Atoi(r[9])
			if n != flowsSeen[r[4]] {
				t.Errorf("flow %s: %d packets, %d packet rows", r[4], n, flowsSeen[r[4]])
			}
			flowPackets += n
		default:
			t.Fatalf("row kind %q", r[0])
		}
	}
	if packets != len(wantIdx) || packets == 0 {
		t.Fatalf("%d packet rows, the reference keeps %d", packets, len(wantIdx))
	}
	if len(flowsSeen) == 0 || flowPackets != packets {
		t.Errorf("%d flows account for %d of %d packets", len(flowsSeen), flowPackets, packets)
	}

	// JSON lines carry the same packet rows.
	jl := filepath.Join(dir, "pred.jsonl")
	if msg, err := runCLI(t, "predict", "--model", modelPath, "--format", "jsonl", "-o", jl, pcap); err != nil {
		t.Fatalf("predict jsonl: %v\n%s", err, msg)
	}
	data, err := os.ReadFile(jl)
	if err != nil {
		t.Fatal(err)
	}
	var jsonPackets int
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r struct {
			Row string `json:"row"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		if r.Row == "packet" {
			jsonPackets++
		}
	}
	if jsonPackets != packets {
		t.Errorf("jsonl has %d packet rows, csv %d", jsonPackets, packets)
	}

	// Parquet: the same rows, timestamps a Parquet TIMESTAMP.
	pq := filepath.Join(dir, "pred.parquet")
	if msg, err := runCLI(t, "predict", "--model", modelPath, "--format", "parquet", "-o", pq, pcap); err != nil {
		t.Fatalf("predict parquet: %v\n%s", err, msg)
	}
	pf, err := os.Open(pq)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	info, _ := pf.Stat()
	file, err := parquet.OpenFile(pf, info.Size())
	if err != nil {
		t.Fatal(err)
	}
	ts, ok := file.Schema().Lookup("timestamp")
	if !ok || ts.Node.Type().LogicalType() == nil || !strings.HasPrefix(ts.Node.Type().LogicalType().String(), "TIMESTAMP") {
		t.Errorf("parquet timestamp column is not a TIMESTAMP: %v", file.Schema())
	}
	if got := file.NumRows(); got != int64(len(rows)-1) {
		t.Errorf("parquet has %d rows, csv %d", got, len(rows)-1)
	}
}

// TestPredictFoldersAndBadCaptures: predict takes folders as preprocess does
// (files that are not captures left out), reports a capture it cannot read
// and goes on, exiting non-zero at the end, or stops at once with --strict;
// an output that is a folder is refused before any work.
func TestPredictFoldersAndBadCaptures(t *testing.T) {
	model := testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt")
	iscx := testenv.Shared(t, "pcaps/iscx")
	in := t.TempDir()
	for _, name := range []string{"vpn_sftp.pcap", "aim_chat.pcap", "labels.tsv"} {
		data, err := os.ReadFile(filepath.Join(iscx, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(in, name), data, 0o644)
	}
	out := filepath.Join(t.TempDir(), "pred.csv")
	if msg, err := runCLI(t, "predict", "--model", model, "-o", out, in); err != nil {
		t.Fatalf("predict on a folder: %v\n%s", err, msg)
	}
	data, _ := os.ReadFile(out)
	for _, name := range []string{"vpn_sftp.pcap", "aim_chat.pcap"} {
		if !strings.Contains(string(data), filepath.Join(in, name)) {
			t.Errorf("no rows for %s", name)
		}
	}
	// A file named on the command line that is not a capture.
	notes := filepath.Join(in, "labels.tsv")
	out2 := filepath.Join(t.TempDir(), "pred.csv")
	_, err := runCLI(t, "predict", "--model", model, "-o", out2, notes, filepath.Join(in, "vpn_sftp.pcap"))
	if err == nil || !strings.Contains(err.Error(), "1 could not be read") {
		t.Errorf("an unreadable capture among good ones: error %v", err)
	}
	if data, _ := os.ReadFile(out2); !strings.Contains(string(data), "vpn_sftp.pcap") {
		t.Error("the good capture after the bad one was not classified")
	}
	if _, err := runCLI(t, "predict", "--model", model, "--strict", "-o", filepath.Join(t.TempDir(), "p.csv"), notes, filepath.Join(in, "vpn_sftp.pcap")); err == nil || !strings.Contains(err.Error(), "labels.tsv") {
		t.Errorf("--strict: error %v, want the bad capture's", err)
	}
	if _, err := runCLI(t, "predict", "--model", model, "-o", in, notes); err == nil || !strings.Contains(err.Error(), "is a folder") {
		t.Errorf("-o a folder: error %v", err)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestExportInspectCommands: export writes both formats, which read back
// (the PyTorch side is checked in package ckpt), and inspect shows
// the model.
func TestExportInspectCommands(t *testing.T) {
	modelPath := testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt")
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "m.ckpt")
	if msg, err := runCLI(t, "export", modelPath, "--format", "lightning", "-o", ckpt); err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	if msg, err := runCLI(t, "export", modelPath, "--format", "torchscript", "-o", filepath.Join(dir, "m.pt")); err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	if _, err := os.Stat(filepath.Join(dir, "m.pt")); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "export", modelPath, "--format", "tflite", "-o", filepath.Join(dir, "m.tflite")); err == nil ||
		!strings.Contains(err.Error(), "want torchscript, lightning, safetensors or onnx") {
		t.Errorf("export --format tflite: error %v, want the formats listed", err)
	}
	out, err := runCLI(t, "inspect", ckpt)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind               resnet", "traffic (12 outputs)", "reference", "global step        17592",
		"parameters         38618", "c1_n_block", "conv1.0.basicblock_list.3.conv2.conv.weight"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if _, err := runCLI(t, "inspect", testenv.Shared(t, "fixtures/malicious_reduce.ckpt")); err == nil || !strings.Contains(err.Error(), "posix.system") {
		t.Errorf("inspect of the malicious file: %v", err)
	}
}
