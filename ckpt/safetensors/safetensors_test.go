package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	in := &File{
		Names: []string{"b", "a.weight", "empty"},
		Tensors: map[string]Tensor{
			"b":        {DType: "F32", Shape: []int64{2}, Data: []byte{0, 0, 128, 63, 0, 0, 0, 64}},
			"a.weight": {DType: "I64", Shape: []int64{1, 1}, Data: []byte{7, 0, 0, 0, 0, 0, 0, 0}},
			"empty":    {DType: "U8", Shape: []int64{0}, Data: []byte{}},
		},
		Metadata: map[string]string{"hyper_parameters": `{"output_dim": 17}`},
	}
	if err := Write(path, in); err != nil {
		t.Fatal(err)
	}
	head, _ := os.ReadFile(path)
	if !Sniff(head) || (8+binary.LittleEndian.Uint64(head))%8 != 0 {
		t.Errorf("header not sniffed or data not 8-byte aligned")
	}
	out, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out.Names, in.Names) || !reflect.DeepEqual(out.Metadata, in.Metadata) {
		t.Errorf("names %v metadata %v, want %v %v", out.Names, out.Metadata, in.Names, in.Metadata)
	}
	for name, want := range in.Tensors {
		if got := out.Tensors[name]; got.DType != want.DType || !reflect.DeepEqual(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}
}

// Hostile or broken files are refused with an error naming what is wrong,
// before anything of the claimed size is allocated.
func TestReadRefuses(t *testing.T) {
	file := func(header string, data int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
		return append(append(b, header...), make([]byte, data)...)
	}
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"short", []byte{1, 2, 3}, "header length"},
		{"header past the end", binary.LittleEndian.AppendUint64(nil, 1<<40), "header of 1099511627776 bytes"},
		{"not JSON", file("{nope", 0), "header"},
		{"huge shape", file(`{"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}}`, 8), `"w": shape [1099511627776 1099511627776] is out of range`},
		{"range past the data", file(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 8), `"w": bytes 0 to 16`},
		{"size mismatch", file(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), `"w": 8 bytes for F32[3], want 12`},
		{"unknown dtype", file(`{"w":{"dtype":"F8_E5M2","shape":[8],"data_offsets":[0,8]}}`, 8), `dtype "F8_E5M2"`},
		{"overlap", file(`{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}`, 8), "a hole or an overlap"},
		{"hole", file(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}`, 8), "a hole or an overlap"},
		{"trailing data", file(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, 8), "cover 4 bytes of data, the file holds 8"},
		{"metadata not strings", file(`{"__metadata__":{"a":1}}`, 0), "__metadata__"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.safetensors")
			if err := os.WriteFile(path, tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Read(path)
			if err == nil || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v, want ErrFormat naming %s and containing %q", err, path, tc.want)
			}
		})
	}
}
