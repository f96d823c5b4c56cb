package capture

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/deeppacket/deeppacket/internal/testenv"
)

// shared returns a path under ../shared, skipping (failing under CI=true)
// when it is missing.
func shared(t testing.TB, parts ...string) string {
	t.Helper()
	return testenv.Shared(t, filepath.Join(parts...))
}

type copied struct {
	data   []byte
	lt     layers.LinkType
	ts     time.Time
	offset int64
}

func readAll(t testing.TB, r *Reader) ([]copied, error) {
	var out []copied
	var rec Record
	for {
		err := r.Next(&rec)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if rec.Index != int64(len(out)) {
			t.Fatalf("record %d has index %d", len(out), rec.Index)
		}
		out = append(out, copied{bytes.Clone(rec.Data), rec.LinkType, rec.Timestamp, rec.Offset})
	}
}

func readFile(t testing.TB, path string) ([]copied, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readAll(t, r)
}

// TestRobustnessCorpus reads every awkward capture of the shared corpus:
// each must be read to its end or refused with an error naming the file,
// and a few are pinned to what they hold.
func TestRobustnessCorpus(t *testing.T) {
	dir := shared(t, "pcaps", "robustness")
	pinned := map[string]struct {
		packets int
		lt      layers.LinkType
	}{
		"filesamples/simple_http_sll2.pcap":       {24, 276},
		"gopacket/pcap_test_loopback.pcap":        {24, layers.LinkTypeNull},
		"gopacket/pcapgo_tests_be_test001.pcapng": {4, layers.LinkTypeEthernet},
		"gopacket/pcapgo_tests_le_test202.pcapng": {8, layers.LinkTypeEthernet},
		"tcpdump/LINKTYPE_RAW_ipv6.pcap":          {1, layers.LinkTypeRaw},
		"tcpdump/LINKTYPE_IPV4.pcap":              {1, 228},
		"tcpdump/802.1ad_QinQ.pcap":               {2, layers.LinkTypeEthernet},
		"tcpdump/nflog.pcap":                      {1, 239},
		"tcpdump/tcp-handshake-nano.pcap":         {3, layers.LinkTypeLinuxSLL},
		"filesamples/simple_http_tzsp.pcapng":     {5, layers.LinkTypeEthernet},
		"filesamples/200722_tcp_anon.pcapng":      {35, layers.LinkTypeEthernet},
		"tcpdump/hdlc_slarp.pcapng":               {1, 104},
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	if len(files) < 50 {
		t.Fatalf("%d files in %s, want the whole corpus", len(files), dir)
	}
	for _, f := range files {
		name := filepath.Base(filepath.Dir(f)) + "/" + filepath.Base(f)
		recs, err := readFile(t, f)
		if err != nil && !strings.Contains(err.Error(), filepath.Base(f)) {
			var d *DamageError
			if !errors.As(err, &d) {
				t.Errorf("%s: error %q does not name the file", name, err)
			}
		}
		if want, ok := pinned[name]; ok {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if len(recs) < want.packets || len(recs) > 0 && recs[0].lt != want.lt {
				t.Errorf("%s: %d packets, want %d of link type %d", name, len(recs), want.packets, want.lt)
			}
			delete(pinned, name)
		}
	}
	for name := range pinned {
		t.Errorf("%s: not in the corpus", name)
	}
}

// TestNanosecondTimestamps: a nanosecond pcap keeps its nanoseconds.
func TestNanosecondTimestamps(t *testing.T) {
	recs, err := readFile(t, shared(t, "pcaps", "robustness", "tcpdump", "tcp-handshake-nano.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	sub := false
	for _, r := range recs {
		sub = sub || r.ts.Nanosecond()%1000 != 0
	}
	if !sub {
		t.Error("no timestamp has sub-microsecond digits")
	}
}

// TestFormatByMagic writes the same packets as micro- and nanosecond pcap
// and pcapng, plain and gzip'd (in two members), under names whose
// extension lies, and reads them all back alike.
func TestFormatByMagic(t *testing.T) {
	src, err := readFile(t, shared(t, "pcaps", "iscx", "skype_chat.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, ng, nano, gz bool) string {
		var buf bytes.Buffer
		if ng {
			w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeRaw)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range src {
				ci := gopacket.CaptureInfo{Timestamp: r.ts, CaptureLength: len(r.data), Length: len(r.data)}
				if err := w.WritePacket(ci, r.data); err != nil {
					t.Fatal(err)
				}
			}
			w.Flush()
		} else {
			var w *pcapgo.Writer
			if nano {
				w = pcapgo.NewWriterNanos(&buf)
			} else {
				w = pcapgo.NewWriter(&buf)
			}
			w.WriteFileHeader(65535, layers.LinkTypeRaw)
			for _, r := range src {
				ci := gopacket.CaptureInfo{Timestamp: r.ts, CaptureLength: len(r.data), Length: len(r.data)}
				if err := w.WritePacket(ci, r.data); err != nil {
					t.Fatal(err)
				}
			}
		}
		data := buf.Bytes()
		if gz {
			// Two gzip members, as `cat a.gz b.gz` makes and `gzip -d`
			// reads whole: the capture is cut in the middle of a packet.
			var z bytes.Buffer
			for _, part := range [][]byte{data[:len(data)/2], data[len(data)/2:]} {
				zw := gzip.NewWriter(&z)
				zw.Write(part)
				zw.Close()
			}
			data = z.Bytes()
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name         string
		ng, nano, gz bool
		format       Format
	}{
		{"micro.pcapng", false, false, false, FormatPcap},
		{"nano.txt", false, true, false, FormatPcap},
		{"ng.pcap", true, false, false, FormatPcapNG},
		{"gz.pcap", false, true, true, FormatPcap},
		{"nggz", true, false, true, FormatPcapNG},
	}
	for _, tc := range tests {
		p := write(tc.name, tc.ng, tc.nano, tc.gz)
		r, err := Open(p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := readAll(t, r)
		r.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r.Format() != tc.format || r.Compressed != tc.gz {
			t.Errorf("%s: format %s compressed %t", tc.name, r.Format(), r.Compressed)
		}
		if len(got) != len(src) {
			t.Fatalf("%s: %d packets, want %d", tc.name, len(got), len(src))
		}
		for i := range got {
			if !bytes.Equal(got[i].data, src[i].data) || !got[i].ts.Equal(src[i].ts) || got[i].lt != layers.LinkTypeRaw {
				t.Fatalf("%s: packet %d differs", tc.name, i)
			}
		}
	}
	if _, err := Open(filepath.Join(shared(t, "pcaps", "iscx"), "labels.tsv")); !errors.Is(err, ErrUnknownFormat) || !strings.Contains(err.Error(), "labels.tsv") {
		t.Errorf("a text file: error %v, want ErrUnknownFormat naming it", err)
	}
}

// TestDamage cuts captures in the middle of a record: the records before
// are read, and the error gives the damaged record's offset.
func TestDamage(t *testing.T) {
	tests := []struct {
		path string
		gz   bool
	}{
		{shared(t, "pcaps", "iscx", "aim_chat.pcap"), false},
		{shared(t, "pcaps", "iscx", "aim_chat.pcap"), true},
		{shared(t, "pcaps", "real", "ndpi", "jabber.pcap"), false}, // pcapng
	}
	dir := t.TempDir()
	for _, tc := range tests {
		full, err := readFile(t, tc.path)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		k := len(full) / 2
		cut := data[:full[k].offset+10]
		if tc.gz {
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(data)
			zw.Close()
			// A gzip stream cut off: the decompressed bytes end mid-record.
			cut = z.Bytes()[:z.Len()/2]
		}
		p := filepath.Join(dir, "cut")
		os.WriteFile(p, cut, 0o644)
		got, err := readFile(t, p)
		var d *DamageError
		if !errors.As(err, &d) {
			t.Fatalf("%s (gzip %t): error %v, want a DamageError", tc.path, tc.gz, err)
		}
		if d.Packets != int64(len(got)) || d.Offset != full[len(got)].offset {
			t.Errorf("%s (gzip %t): damage at %d after %d packets, read %d, record %d starts at %d",
				tc.path, tc.gz, d.Offset, d.Packets, len(got), len(got), full[len(got)].offset)
		}
		if !tc.gz && len(got) != k {
			t.Errorf("%s: %d packets before the damage, want %d", tc.path, len(got), k)
		}
		for i := range got {
			if !bytes.Equal(got[i].data, full[i].data) {
				t.Fatalf("%s: packet %d differs", tc.path, i)
			}
		}
		if !strings.Contains(d.Error(), "byte offset") {
			t.Errorf("damage error %q should give the byte offset", d)
		}
	}
}

// FuzzReader feeds arbitrary bytes to the reader, seeded with the
// robustness corpus: it must end (EOF or an error), never panic or hang.
func FuzzReader(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(shared(f, "pcaps", "robustness"), "*", "*"))
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		var rec Record
		for i := 0; i < 1<<16; i++ {
			if err := r.Next(&rec); err != nil {
				return
			}
			if rec.Offset > int64(len(data))*64 {
				t.Fatalf("offset %d beyond any decompressed size", rec.Offset)
			}
		}
	})
}
