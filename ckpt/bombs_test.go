package ckpt

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pickleStr is a BINUNICODE opcode.
func pickleStr(s string) []byte {
	return append(binary.LittleEndian.AppendUint32([]byte{'X'}, uint32(len(s))), s...)
}

// pickleInt is a LONG1 opcode (any int64).
func pickleInt(v int64) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(v))
	return append([]byte{0x8a, 8}, b[:]...)
}

func pickleTuple(vs ...int64) []byte {
	out := []byte{'('}
	for _, v := range vs {
		out = append(out, pickleInt(v)...)
	}
	return append(out, 't')
}

// hostileCheckpoint writes a torch.save zip holding {"w": tensor}: a float
// storage claiming numel elements, with data bytes as its zip member
// (deflated when compress), and a view of size and stride over it.
func hostileCheckpoint(t *testing.T, numel int64, data []byte, compress bool, size, stride []int64) string {
	t.Helper()
	var p bytes.Buffer
	p.Write([]byte{0x80, 2, '}'})
	p.Write(pickleStr("w"))
	p.WriteString("ctorch._utils\n_rebuild_tensor_v2\n(")
	p.WriteString("(")
	p.Write(pickleStr("storage"))
	p.WriteString("ctorch\nFloatStorage\n")
	p.Write(pickleStr("0"))
	p.Write(pickleStr("cpu"))
	p.Write(pickleInt(numel))
	p.WriteString("tQ")
	p.Write(pickleInt(0))
	p.Write(pickleTuple(size...))
	p.Write(pickleTuple(stride...))
	p.WriteString("\x89ccollections\nOrderedDict\n)RtRs.")
	path := filepath.Join(t.TempDir(), "hostile.ckpt")
	var z bytes.Buffer
	zw := zip.NewWriter(&z)
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: "archive/data.pkl", Method: zip.Store})
	w.Write(p.Bytes())
	method := zip.Store
	if compress {
		method = zip.Deflate
		zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) { return flate.NewWriter(out, flate.BestCompression) })
	}
	w, _ = zw.CreateHeader(&zip.FileHeader{Name: "archive/data/0", Method: method})
	w.Write(data)
	zw.Close()
	if err := os.WriteFile(path, z.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Checkpoints that claim far more memory than their size can hold are
// refused with an error naming the tensor, before the memory is taken.
func TestHostileSizesAreRefused(t *testing.T) {
	const big = 1 << 28 // 1 GiB of float32
	tests := []struct {
		name string
		path string
		want string
	}{
		{"storage of 2^40 elements", hostileCheckpoint(t, 1<<40, make([]byte, 16), false, []int64{4}, []int64{1}), "of 1099511627776 elements would take"},
		{"zero-stride view", hostileCheckpoint(t, 1, make([]byte, 4), false, []int64{1 << 15, 1 << 15}, []int64{0, 0}), "a view of size [32768 32768] stride [0 0] would take"},
		{"zip bomb member", hostileCheckpoint(t, big, make([]byte, big), true, []int64{big}, []int64{1}), "of 268435456 elements would take"},
		{"view past the int range", hostileCheckpoint(t, 1, make([]byte, 4), false, []int64{1 << 31, 1 << 31}, []int64{0, 0}), "more than 2147483647 elements"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, _ := os.Stat(tc.path)
			_, err := ReadCheckpoint(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "[w]") {
				t.Fatalf("file of %d bytes: error %v, want one naming tensor w and containing %q", info.Size(), err, tc.want)
			}
		})
	}
}
