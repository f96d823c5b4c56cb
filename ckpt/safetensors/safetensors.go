// Package safetensors reads and writes the safetensors format, in which
// Hugging Face users share weights: an 8-byte little-endian header length,
// a JSON header naming each tensor's dtype, shape and byte range, an
// optional "__metadata__" map of strings, then the tensors' bytes, packed
// in header order. It owns the format only (names, dtypes, shapes, bytes,
// metadata); turning tensors into models is the caller's job. It imports
// only the standard library and internal/atomicfile.
//
// Files are data from anywhere: every size is checked against the file's
// own before anything is allocated, and a header that names a range outside
// the data, overlapping ranges, a hole, or a byte count that does not match
// the dtype and shape is an error naming the tensor.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/deeppacket/deeppacket/internal/atomicfile"
)

// MaxHeader bounds the JSON header, as the reference implementation does
// (100 MB).
const MaxHeader = 100 << 20

// DTypes are the element types this package reads, with their sizes in bytes.
var DTypes = map[string]int64{"F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}

// Tensor is one named tensor: its dtype (a key of DTypes), shape and
// little-endian bytes in row-major order.
type Tensor struct {
	DType string
	Shape []int64
	Data  []byte
}

// File is a safetensors file's content: the tensors in file order and the
// metadata.
type File struct {
	Names    []string
	Tensors  map[string]Tensor
	Metadata map[string]string
}

// ErrFormat marks a file that is not valid safetensors.
var ErrFormat = errors.New("not a valid safetensors file")

type entry struct {
	DType   string   `json:"dtype"`
	Shape   []int64  `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// Sniff reports whether head, a file's first bytes (9 or more), begin as a
// safetensors file does: a header length, then the header's '{'.
func Sniff(head []byte) bool {
	return len(head) >= 9 && head[8] == '{' && binary.LittleEndian.Uint64(head) >= 2
}

// Read reads a safetensors file.
func Read(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	out, err := read(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

func read(r io.Reader, size int64) (*File, error) {
	var n uint64
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
		return nil, fmt.Errorf("%w: header length: %v", ErrFormat, err)
	}
	if n > MaxHeader || int64(n) > size-8 {
		return nil, fmt.Errorf("%w: header of %d bytes in a file of %d", ErrFormat, n, size)
	}
	head := make([]byte, n)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(head))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	dataSize := size - 8 - int64(n)
	out := &File{Tensors: map[string]Tensor{}, Metadata: map[string]string{}}
	entries := map[string]entry{}
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &out.Metadata); err != nil {
				return nil, fmt.Errorf("%w: __metadata__ is not a map of strings: %v", ErrFormat, err)
			}
			continue
		}
		var e entry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
		}
		if err := e.check(name, dataSize); err != nil {
			return nil, err
		}
		entries[name] = e
		out.Names = append(out.Names, name)
	}
	// Tensors lie in the data in offset order, with no gap or overlap.
	slices.SortFunc(out.Names, func(a, b string) int { return int(entries[a].Offsets[0] - entries[b].Offsets[0]) })
	var end int64
	for _, name := range out.Names {
		e := entries[name]
		if e.Offsets[0] != end {
			return nil, fmt.Errorf("%w: tensor %q starts at byte %d of the data, want %d (a hole or an overlap)", ErrFormat, name, e.Offsets[0], end)
		}
		end = e.Offsets[1]
	}
	if end != dataSize {
		return nil, fmt.Errorf("%w: tensors cover %d bytes of data, the file holds %d", ErrFormat, end, dataSize)
	}
	for _, name := range out.Names {
		e := entries[name]
		data := make([]byte, e.Offsets[1]-e.Offsets[0])
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
		}
		out.Tensors[name] = Tensor{DType: e.DType, Shape: e.Shape, Data: data}
	}
	return out, nil
}

// check verifies an entry against the data's size before anything is
// allocated for it.
func (e entry) check(name string, dataSize int64) error {
	size, ok := DTypes[e.DType]
	if !ok {
		return fmt.Errorf("%w: tensor %q: dtype %q (this reader knows %s)", ErrFormat, name, e.DType, strings.Join(slices.Sorted(maps.Keys(DTypes)), ", "))
	}
	if e.Offsets[0] < 0 || e.Offsets[1] < e.Offsets[0] || e.Offsets[1] > dataSize {
		return fmt.Errorf("%w: tensor %q: bytes %d to %d outside the data's %d", ErrFormat, name, e.Offsets[0], e.Offsets[1], dataSize)
	}
	n := size
	for _, d := range e.Shape {
		if d < 0 || (d > 0 && n > math.MaxInt64/d) {
			return fmt.Errorf("%w: tensor %q: shape %v is out of range", ErrFormat, name, e.Shape)
		}
		n *= d
	}
	if e.Offsets[1]-e.Offsets[0] != n {
		return fmt.Errorf("%w: tensor %q: %d bytes for %s%v, want %d", ErrFormat, name, e.Offsets[1]-e.Offsets[0], e.DType, e.Shape, n)
	}
	return nil
}

// Write writes f atomically: tensors in f.Names order, metadata as given.
func Write(path string, f *File) error {
	header := map[string]any{}
	if len(f.Metadata) > 0 {
		header["__metadata__"] = f.Metadata
	}
	var offset int64
	for _, name := range f.Names {
		t, ok := f.Tensors[name]
		if !ok {
			return fmt.Errorf("write %s: tensor %q is named but missing", path, name)
		}
		e := entry{DType: t.DType, Shape: t.Shape, Offsets: [2]int64{offset, offset + int64(len(t.Data))}}
		if err := e.check(name, e.Offsets[1]); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if e.Shape == nil {
			e.Shape = []int64{}
		}
		header[name] = e
		offset = e.Offsets[1]
	}
	head, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The data starts 8-byte aligned, as the reference writer pads it.
	for len(head)%8 != 0 {
		head = append(head, ' ')
	}
	out, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	defer out.Abort()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(head)))
	if _, err := out.Write(append(n[:], head...)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	for _, name := range f.Names {
		if _, err := out.Write(f.Tensors[name].Data); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return out.Commit()
}
