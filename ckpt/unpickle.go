package ckpt

import (
	"archive/zip"
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"strconv"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"

	"github.com/deeppacket/deeppacket/torch"
)

// This file reads torch.save's zip format (what PyTorch Lightning writes as
// .ckpt) without Python and, like torch.load(weights_only=True), without
// resolving any Python global outside a short allow-list: a pickle can name
// any callable (os.system, eval, …) and Python would call it while loading.
// Here nothing is ever called: an allowed global becomes a Go value that
// builds plain data, and any other global refuses the whole file with an
// error naming it.

// ErrUnsafe marks a checkpoint refused because its pickle names a Python
// global outside the allow-list.
var ErrUnsafe = errors.New("pickle names a global outside the allow-list")

// storageTypes are the torch.*Storage classes that name a storage's element
// type, by their Python name.
var storageTypes = map[string]storageType{
	"FloatStorage":  {torch.Float32, 4},
	"DoubleStorage": {torch.Float64, 8},
	"HalfStorage":   {torch.Float32, 2}, // widened to float32
	"LongStorage":   {torch.Int64, 8},
	"IntStorage":    {torch.Int32, 4},
	"ShortStorage":  {torch.Int32, 2}, // widened to int32
	"CharStorage":   {torch.Int32, 1}, // int8, widened to int32
	"ByteStorage":   {torch.Uint8, 1},
	"BoolStorage":   {torch.Bool, 1},
}

type storageType struct {
	dtype torch.DType
	size  int // bytes per element in the file
}

// findClass resolves a GLOBAL: only the allow-list, never an import.
func findClass(module, name string) (any, error) {
	switch module + "." + name {
	case "torch._utils._rebuild_tensor_v2":
		return rebuildTensor{}, nil
	case "torch._utils._rebuild_parameter":
		return rebuildParameter{}, nil
	case "torch.jit._pickle.restore_type_tag", "torch.jit._pickle.build_intlist",
		"torch.jit._pickle.build_tensorlist", "torch.jit._pickle.build_doublelist",
		"torch.jit._pickle.build_boollist":
		// libtorch's pickler (torch.SavePickle) tags typed containers with
		// these; in Python they return their first argument.
		return identity{}, nil
	case "pytorch_lightning.utilities.parsing.AttributeDict",
		"lightning_fabric.utilities.data.AttributeDict",
		"lightning.fabric.utilities.data.AttributeDict":
		return plainDictClass{}, nil
	}
	if module == "torch" {
		if st, ok := storageTypes[name]; ok {
			return st, nil
		}
	}
	return nil, fmt.Errorf("%w: %s.%s", ErrUnsafe, module, name)
}

// storageRef is a storage named by the pickle, read from the archive only
// when a tensor over it is materialised.
type storageRef struct {
	typ   storageType
	key   string
	numel int
}

// tensorRef is _rebuild_tensor_v2's result before it becomes a tensor.
type tensorRef struct {
	storage      *storageRef
	offset       int
	size, stride []int
}

type rebuildTensor struct{}

// Call is _rebuild_tensor_v2(storage, storage_offset, size, stride,
// requires_grad, backward_hooks[, metadata]).
func (rebuildTensor) Call(args ...any) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("_rebuild_tensor_v2: %d arguments, want at least 4", len(args))
	}
	st, ok := args[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2: storage is a %T", args[0])
	}
	offset, ok := args[1].(int)
	if !ok || offset < 0 {
		return nil, fmt.Errorf("_rebuild_tensor_v2: bad storage offset %v", args[1])
	}
	size, err := intTuple(args[2])
	if err != nil {
		return nil, fmt.Errorf("_rebuild_tensor_v2: size: %w", err)
	}
	stride, err := intTuple(args[3])
	if err != nil {
		return nil, fmt.Errorf("_rebuild_tensor_v2: stride: %w", err)
	}
	if len(size) != len(stride) {
		return nil, fmt.Errorf("_rebuild_tensor_v2: size %v and stride %v differ in rank", size, stride)
	}
	// The last element the view reads must lie inside the storage.
	last := offset
	for i := range size {
		if size[i] < 0 || stride[i] < 0 {
			return nil, fmt.Errorf("_rebuild_tensor_v2: negative size %v or stride %v", size, stride)
		}
		if size[i] == 0 {
			last = -1
			break
		}
		last += (size[i] - 1) * stride[i]
	}
	if last >= st.numel {
		return nil, fmt.Errorf("_rebuild_tensor_v2: view of size %v stride %v offset %d exceeds its storage of %d elements", size, stride, offset, st.numel)
	}
	return &tensorRef{storage: st, offset: offset, size: size, stride: stride}, nil
}

type identity struct{}

func (identity) Call(args ...any) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("type tag without a value")
	}
	return args[0], nil
}

type rebuildParameter struct{}

// Call is _rebuild_parameter(data, requires_grad, backward_hooks): a
// parameter is its data here.
func (rebuildParameter) Call(args ...any) (any, error) {
	if len(args) < 1 {
		return nil, errors.New("_rebuild_parameter: no data")
	}
	if _, ok := args[0].(*tensorRef); !ok {
		return nil, fmt.Errorf("_rebuild_parameter: data is a %T", args[0])
	}
	return args[0], nil
}

// plainDictClass stands for dict subclasses (Lightning's AttributeDict),
// which are read as plain dicts.
type plainDictClass struct{}

func (plainDictClass) Call(args ...any) (any, error)  { return newDictFrom(args) }
func (plainDictClass) PyNew(args ...any) (any, error) { return newDictFrom(args) }

func newDictFrom(args []any) (any, error) {
	d := types.NewDict()
	if len(args) == 0 {
		return d, nil
	}
	if src, ok := args[0].(*types.Dict); ok && len(args) == 1 {
		for _, e := range *src {
			d.Set(e.Key, e.Value)
		}
		return d, nil
	}
	return nil, fmt.Errorf("AttributeDict: unexpected arguments %v", args)
}

func intTuple(v any) ([]int, error) {
	t, ok := v.(*types.Tuple)
	if !ok {
		return nil, fmt.Errorf("want a tuple, got %T", v)
	}
	out := make([]int, t.Len())
	for i := range out {
		n, ok := t.Get(i).(int)
		if !ok {
			return nil, fmt.Errorf("element %d is a %T", i, t.Get(i))
		}
		out[i] = n
	}
	return out, nil
}

// ReadTensors reads a dict of named tensors, as torch.save writes one from
// Python and torch.SaveTensors from Go, with the same allow-list as a
// checkpoint. The tensors are unscoped: the caller frees them.
func ReadTensors(path string) (map[string]*torch.Tensor, error) {
	a, err := openArchive(path)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	v, err := a.unpickle()
	if err != nil {
		return nil, err
	}
	d, ok := v.(*torch.Dict)
	if !ok {
		torch.FreeTree(v)
		return nil, fmt.Errorf("read %s: want a dict of tensors, found %T", path, v)
	}
	out := make(map[string]*torch.Tensor, len(d.Keys))
	for i, k := range d.Keys {
		name, isString := k.(string)
		t, isTensor := d.Values[i].(*torch.Tensor)
		if !isString || !isTensor {
			torch.FreeTree(v)
			return nil, fmt.Errorf("read %s: entry %v is %T, want a tensor named by a string", path, k, d.Values[i])
		}
		out[name] = t
	}
	return out, nil
}

// archive is an open torch.save zip: its pickle and its storages.
type archive struct {
	path     string
	zr       *zip.ReadCloser
	prefix   string // "<name>/" in front of data.pkl and data/<key>
	storages map[string][]byte
	size     int64 // the file's
	budget   int64 // bytes the tensors may still take (see maxInflation)
}

// spend takes n bytes from the budget, or says why they are too many.
func (a *archive) spend(what string, n int64) error {
	if n < 0 || n > a.budget {
		return fmt.Errorf("%s would take %d bytes, more than a file of %d bytes can hold (the limit left is %d)", what, n, a.size, a.budget)
	}
	a.budget -= n
	return nil
}

// ErrTorchScript marks a file that is a TorchScript module, not a
// checkpoint: its code would run, so reading it is the caller's explicit
// choice (torch.LoadScriptModule), never a checkpoint reader's.
var ErrTorchScript = errors.New("a TorchScript module (code, which runs when loaded), not a checkpoint")

// The tensors one file may make are bounded by its size: every storage read
// and every view materialised spends from a budget of maxInflation times
// the file's size (plus a little), so a file that claims terabytes (a huge
// element count, a zero-stride view, a zip member that inflates without
// end) is refused before anything of that size is allocated. Storages in
// torch.save's zips are stored uncompressed, so real checkpoints spend
// little more than their size.
const (
	maxInflation = 64
	budgetSlack  = 64 << 20
)

func openArchive(path string) (*archive, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: not a complete PyTorch zip checkpoint (truncated or damaged?): %w", path, err)
	}
	for _, f := range zr.File {
		if strings.Count(f.Name, "/") >= 2 && strings.Contains(f.Name, "/code/") {
			zr.Close()
			return nil, fmt.Errorf("read %s: %w", path, ErrTorchScript)
		}
	}
	a := &archive{path: path, zr: zr, storages: map[string][]byte{}, size: info.Size(), budget: maxInflation*info.Size() + budgetSlack}
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/data.pkl") && strings.Count(f.Name, "/") == 1 {
			a.prefix = strings.TrimSuffix(f.Name, "data.pkl")
			return a, nil
		}
	}
	zr.Close()
	return nil, fmt.Errorf("read %s: no <name>/data.pkl in the zip: not a torch.save checkpoint", path)
}

func (a *archive) Close() error { return a.zr.Close() }

// unpickle reads data.pkl with the allow-list and converts the result to
// the Go tree torch.SavePickle writes (nil, bool, int64, float64, string,
// *torch.Tensor, []any, *torch.Dict). Tensors are unscoped: the caller frees
// them (torch.FreeTree).
func (a *archive) unpickle() (tree any, err error) {
	f, err := a.zr.Open(a.prefix + "data.pkl")
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", a.path, err)
	}
	defer f.Close()
	// Buffered: the unpickler reads an opcode at a time, and a stored zip
	// member reads each with a system call (14,000 for the traffic
	// ResNet's checkpoint).
	u := pickle.NewUnpickler(bufio.NewReader(f))
	u.FindClass = findClass
	u.PersistentLoad = a.persistentLoad
	// gopickle panics on a few malformed inputs (an unhashable dict key);
	// a damaged file is an error, not a crash.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("read %s: malformed pickle: %v", a.path, r)
		}
	}()
	raw, err := u.Load()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", a.path, err)
	}
	var made []*torch.Tensor
	tree, err = a.convert(raw, &made, 0)
	if err != nil {
		for _, t := range made {
			t.Free()
		}
		return nil, fmt.Errorf("read %s: %w", a.path, err)
	}
	return tree, nil
}

func (a *archive) persistentLoad(id any) (any, error) {
	t, ok := id.(*types.Tuple)
	if !ok || t.Len() < 5 {
		return nil, fmt.Errorf("persistent id %v: want ('storage', type, key, location, numel)", id)
	}
	if kind, _ := t.Get(0).(string); kind != "storage" {
		return nil, fmt.Errorf("persistent id of kind %v: only storages are read", t.Get(0))
	}
	typ, ok := t.Get(1).(storageType)
	if !ok {
		return nil, fmt.Errorf("persistent id: storage type is a %T", t.Get(1))
	}
	key, ok1 := t.Get(2).(string)
	numel, ok2 := t.Get(4).(int)
	if !ok1 || !ok2 || numel < 0 {
		return nil, fmt.Errorf("persistent id %v: bad key or size", id)
	}
	return &storageRef{typ: typ, key: key, numel: numel}, nil
}

// maxDepth bounds the nesting of the converted tree (a hostile pickle could
// nest containers deeply enough to exhaust the stack).
const maxDepth = 200

func (a *archive) convert(v any, made *[]*torch.Tensor, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("pickle nests deeper than 200 levels")
	}
	switch x := v.(type) {
	case nil, bool, string, float64:
		return x, nil
	case int:
		return int64(x), nil
	case *big.Int:
		if !x.IsInt64() {
			return nil, fmt.Errorf("integer %s does not fit 64 bits", x)
		}
		return x.Int64(), nil
	case *tensorRef:
		t, err := a.tensor(x)
		if err != nil {
			return nil, err
		}
		*made = append(*made, t)
		return t, nil
	case *types.List:
		return a.convertSeq(*x, made, depth)
	case *types.Tuple:
		return a.convertSeq(*x, made, depth)
	case *types.Dict:
		d := &torch.Dict{}
		for _, e := range *x {
			if err := a.setItem(d, e.Key, e.Value, made, depth); err != nil {
				return nil, err
			}
		}
		return d, nil
	case *types.OrderedDict:
		// Its __dict__ (PyDict: state_dict's _metadata of module versions)
		// is dropped: load_state_dict does not need it.
		d := &torch.Dict{}
		for e := x.List.Front(); e != nil; e = e.Next() {
			entry := e.Value.(*types.OrderedDictEntry)
			if err := a.setItem(d, entry.Key, entry.Value, made, depth); err != nil {
				return nil, err
			}
		}
		return d, nil
	}
	return nil, fmt.Errorf("%w: a value of Go type %T (a Python object of a class gopickle resolves itself)", ErrUnsafe, v)
}

func (a *archive) convertSeq(items []any, made *[]*torch.Tensor, depth int) (any, error) {
	out := make([]any, len(items))
	for i, item := range items {
		v, err := a.convert(item, made, depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (a *archive) setItem(d *torch.Dict, key, value any, made *[]*torch.Tensor, depth int) error {
	k, err := a.convert(key, made, depth+1)
	if err != nil {
		return err
	}
	switch k.(type) {
	case string, int64:
	default:
		return fmt.Errorf("dict key of type %T: only str and int keys are read", k)
	}
	v, err := a.convert(value, made, depth+1)
	if err != nil {
		return fmt.Errorf("[%v]: %w", k, err)
	}
	d.Set(k, v)
	return nil
}

// storage returns a storage's bytes, read once.
func (a *archive) storage(s *storageRef) ([]byte, error) {
	if b, ok := a.storages[s.key]; ok {
		return b, nil
	}
	name := a.prefix + "data/" + s.key
	f, err := a.zr.Open(name)
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", name, err)
	}
	defer f.Close()
	want := int64(s.numel) * int64(s.typ.size)
	if s.numel > math.MaxInt64/8 {
		want = -1
	}
	if err := a.spend("storage "+name+" of "+strconv.Itoa(s.numel)+" elements", want); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, want+1))
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", name, err)
	}
	if int64(len(b)) != want {
		return nil, fmt.Errorf("storage %s holds %d bytes, the pickle says %d", name, len(b), want)
	}
	a.storages[s.key] = b
	return b, nil
}

// tensor materialises a tensor view: the elements it reads, gathered in
// row-major order (views may be strided or offset into a shared storage).
func (a *archive) tensor(r *tensorRef) (*torch.Tensor, error) {
	raw, err := a.storage(r.storage)
	if err != nil {
		return nil, err
	}
	shape := make([]int64, len(r.size))
	n := 1
	for i, s := range r.size {
		shape[i] = int64(s)
		if s > 0 && n > math.MaxInt32/s {
			return nil, fmt.Errorf("a view of size %v has more than %d elements", r.size, math.MaxInt32)
		}
		n *= s
	}
	// The view's elements (and their indexes) are allocated: a zero-stride
	// view can make many of one stored element.
	if err := a.spend(fmt.Sprintf("a view of size %v stride %v", r.size, r.stride), int64(n)*int64(r.storage.typ.size+8)); err != nil {
		return nil, err
	}
	idx := make([]int, 0, n)
	var walk func(dim, at int)
	walk = func(dim, at int) {
		if dim == len(r.size) {
			idx = append(idx, at)
			return
		}
		for i := range r.size[dim] {
			walk(dim+1, at+i*r.stride[dim])
		}
	}
	if n > 0 {
		walk(0, r.offset)
	}
	le := binary.LittleEndian
	sz := r.storage.typ.size
	switch r.storage.typ.dtype {
	case torch.Float32:
		out := make([]float32, n)
		for i, j := range idx {
			if sz == 2 {
				out[i] = halfToFloat32(le.Uint16(raw[j*2:]))
			} else {
				out[i] = math.Float32frombits(le.Uint32(raw[j*4:]))
			}
		}
		return torch.FromSlice(nil, out, shape, torch.CPU), nil
	case torch.Float64:
		out := make([]float64, n)
		for i, j := range idx {
			out[i] = math.Float64frombits(le.Uint64(raw[j*8:]))
		}
		return torch.FromSlice(nil, out, shape, torch.CPU), nil
	case torch.Int64:
		out := make([]int64, n)
		for i, j := range idx {
			out[i] = int64(le.Uint64(raw[j*8:]))
		}
		return torch.FromSlice(nil, out, shape, torch.CPU), nil
	case torch.Int32:
		out := make([]int32, n)
		for i, j := range idx {
			switch sz {
			case 4:
				out[i] = int32(le.Uint32(raw[j*4:]))
			case 2:
				out[i] = int32(int16(le.Uint16(raw[j*2:])))
			default:
				out[i] = int32(int8(raw[j]))
			}
		}
		return torch.FromSlice(nil, out, shape, torch.CPU), nil
	default: // Uint8, Bool: one byte each
		out := make([]uint8, n)
		for i, j := range idx {
			out[i] = raw[j]
		}
		t := torch.FromSlice(nil, out, shape, torch.CPU)
		if r.storage.typ.dtype == torch.Bool {
			b := t.ToType(torch.CPU, torch.Bool)
			t.Free()
			t = b
		}
		return t, t.Err()
	}
}

// halfToFloat32 widens an IEEE 754 half-precision value.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		v := float32(math.Ldexp(float64(frac), -24))
		if sign != 0 {
			v = -v
		}
		return v
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}
