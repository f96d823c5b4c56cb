package features_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/data/capture"
	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/internal/testenv"
)

// goldenPacket is one record of a .golden file.
type goldenPacket struct {
	index   uint32
	verdict features.Verdict
	feature []byte
}

func readGolden(path string) ([]goldenPacket, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	const magic = "DPGOLD1\n"
	if !bytes.HasPrefix(data, []byte(magic)) {
		return nil, fmt.Errorf("read %s: bad magic", path)
	}
	r := bufio.NewReader(bytes.NewReader(data[len(magic):]))
	var out []goldenPacket
	var hdr [7]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		p := goldenPacket{index: binary.LittleEndian.Uint32(hdr[:4]), verdict: features.Verdict(hdr[4])}
		p.feature = make([]byte, binary.LittleEndian.Uint16(hdr[5:7]))
		if _, err := io.ReadFull(r, p.feature); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		out = append(out, p)
	}
}

// captureFor finds the capture a golden file was made from.
func captureFor(pcaps, golden string) (string, error) {
	name := strings.TrimSuffix(filepath.Base(golden), ".golden")
	var found string
	err := filepath.WalkDir(pcaps, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && e.Name() == name && found == "" {
			found = p
		}
		return err
	})
	if found == "" && err == nil {
		err = fmt.Errorf("no capture %s under %s", name, pcaps)
	}
	return found, err
}

// transformAll runs the reference transform over every packet of a capture.
func transformAll(path string, tr *features.Transformer) ([]goldenPacket, error) {
	r, err := capture.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []goldenPacket
	var rec capture.Record
	for {
		err := r.Next(&rec)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		res, err := tr.Transform(rec.Data, rec.LinkType)
		if err != nil {
			return out, err
		}
		out = append(out, goldenPacket{index: uint32(rec.Index), verdict: res.Verdict, feature: bytes.Clone(res.Feature)})
	}
}

type difference struct {
	file  string
	index uint32
	want  goldenPacket
	got   goldenPacket
}

// cause names why a packet differs from the reference, from what differs.
func (d difference) cause() string {
	switch {
	case d.want.verdict != d.got.verdict:
		return fmt.Sprintf("verdict: reference %s, ours %s", d.want.verdict, d.got.verdict)
	case len(d.want.feature) != len(d.got.feature):
		return fmt.Sprintf("length: reference %+d bytes", len(d.want.feature)-len(d.got.feature))
	}
	return "bytes differ"
}

func TestGoldenReference(t *testing.T) {
	golden := testenv.Shared(t, "golden")
	pcaps := testenv.Shared(t, "pcaps")
	files, err := filepath.Glob(filepath.Join(golden, "*", "*.golden"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in %s: %v", golden, err)
	}
	tr := features.New(features.Options{Layout: features.LayoutReference})
	var total, agree int
	var diffs []difference
	for _, gf := range files {
		want, err := readGolden(gf)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := captureFor(filepath.Join(pcaps, filepath.Base(filepath.Dir(gf))), gf)
		if err != nil {
			t.Fatal(err)
		}
		got, err := transformAll(cp, tr)
		if err != nil {
			t.Errorf("%s: %v", cp, err)
		}
		name := filepath.Base(filepath.Dir(gf)) + "/" + strings.TrimSuffix(filepath.Base(gf), ".golden")
		fileAgree := 0
		for i, w := range want {
			total++
			var g goldenPacket
			if i < len(got) {
				g = got[i]
			} else {
				g = goldenPacket{verdict: 255}
			}
			if w.verdict == g.verdict && bytes.Equal(w.feature, g.feature) {
				agree++
				fileAgree++
				continue
			}
			diffs = append(diffs, difference{file: name, index: w.index, want: w, got: g})
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d packets, reference %d", name, len(got), len(want))
		}
		if strings.HasPrefix(name, "iscx/") && fileAgree != len(want) {
			t.Errorf("%s: %d of %d packets agree with the reference, want all", name, fileAgree, len(want))
		}
	}
	byCause := map[string][]difference{}
	for _, d := range diffs {
		byCause[d.cause()] = append(byCause[d.cause()], d)
	}
	causes := make([]string, 0, len(byCause))
	for c := range byCause {
		causes = append(causes, c)
	}
	sort.Strings(causes)
	for _, c := range causes {
		ds := byCause[c]
		files := map[string]int{}
		for _, d := range ds {
			files[d.file]++
		}
		t.Logf("%d packets differ, cause %q, in %v", len(ds), c, files)
		for _, d := range ds[:min(len(ds), 3)] {
			t.Logf("  %s #%d\n    reference %x\n    ours      %x", d.file, d.index, d.want.feature[:min(len(d.want.feature), 80)], d.got.feature[:min(len(d.got.feature), 80)])
		}
	}
	pct := 100 * float64(agree) / float64(total)
	t.Logf("%d of %d packets (%.3f%%) agree with the reference", agree, total, pct)
	if pct < 99 {
		t.Errorf("agreement %.3f%%, want at least 99%%", pct)
	}
}
