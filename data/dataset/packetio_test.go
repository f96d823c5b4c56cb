package dataset

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestPacketRoundTrip writes rows through one reused feature buffer, more
// than a batch and a row group of them, and reads every field back.
func TestPacketRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pcap.parquet")
	w, err := CreatePackets(path)
	if err != nil {
		t.Fatal(err)
	}
	w.SetMetadata("deeppacket.layout", "reference")
	app, traffic := int64(3), int64(7)
	const n = packetRowGroupRows + packetBatch + 5
	buf := make([]byte, 1500)
	for i := range n {
		feature := buf[:i%1501]
		for j := range feature {
			feature[j] = byte(i + j)
		}
		p := Packet{Feature: feature, Source: "x.pcap", Index: int64(2 * i), TimestampNS: int64(i) * 1000, Flow: int64(i % 7)}
		if i%3 == 0 {
			p.AppLabel = &app
		}
		if i%5 == 0 {
			p.TrafficLabel = &traffic
		}
		if err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the file exists before Commit")
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	rows, err := ReadAllPackets(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != n {
		t.Fatalf("%d rows, want %d", len(rows), n)
	}
	for i, p := range rows {
		want := make([]byte, i%1501)
		for j := range want {
			want[j] = byte(i + j)
		}
		if !bytes.Equal(p.Feature, want) || p.Index != int64(2*i) || p.TimestampNS != int64(i)*1000 || p.Source != "x.pcap" || p.Flow != int64(i%7) {
			t.Fatalf("row %d differs: %+v", i, p)
		}
		if (p.AppLabel != nil) != (i%3 == 0) || p.AppLabel != nil && *p.AppLabel != 3 {
			t.Fatalf("row %d: app label %v", i, p.AppLabel)
		}
		if (p.TrafficLabel != nil) != (i%5 == 0) || p.TrafficLabel != nil && *p.TrafficLabel != 7 {
			t.Fatalf("row %d: traffic label %v", i, p.TrafficLabel)
		}
	}
	md, err := ReadPacketMetadata(path)
	if err != nil || md["deeppacket.layout"] != "reference" {
		t.Errorf("metadata %v, %v", md, err)
	}
}

func TestPacketAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	w, err := CreatePackets(filepath.Join(dir, "y.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(Packet{Feature: []byte{1}})
	w.Abort()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %v behind", entries)
	}
	if _, err := ReadAllPackets(filepath.Join(dir, "y.parquet")); err == nil {
		t.Error("reading a missing file should fail")
	}
}
