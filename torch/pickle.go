package torch

// #include "dptorch.h"
import "C"

import (
	"fmt"
	"maps"
	"slices"

	"github.com/deeppacket/deeppacket/internal/atomicfile"
)

// Dict is an ordered Python dict (also what OrderedDict saves as). Keys are
// strings or int64.
type Dict struct {
	Keys   []any
	Values []any
}

// Set appends or replaces key's value.
func (d *Dict) Set(key, value any) {
	if i := slices.Index(d.Keys, key); i >= 0 {
		d.Values[i] = value
		return
	}
	d.Keys = append(d.Keys, key)
	d.Values = append(d.Values, value)
}

// Get returns key's value.
func (d *Dict) Get(key any) (any, bool) {
	if i := slices.Index(d.Keys, key); i >= 0 {
		return d.Values[i], true
	}
	return nil, false
}

// toIValue converts a Go tree (nil, bool, int, int64, float64, string,
// *Tensor, []any, *Dict, map[string]any) into a libtorch IValue the caller
// frees.
func toIValue(v any) (C.dpt_ivalue, error) {
	switch x := v.(type) {
	case nil:
		return C.dpt_ivalue_none(), nil
	case bool:
		return C.dpt_ivalue_bool(cBool(x)), nil
	case int:
		return C.dpt_ivalue_int(C.int64_t(x)), nil
	case int64:
		return C.dpt_ivalue_int(C.int64_t(x)), nil
	case float64:
		return C.dpt_ivalue_double(C.double(x)), nil
	case float32:
		return C.dpt_ivalue_double(C.double(x)), nil
	case string:
		s := cString(x)
		defer freeC(s)
		return C.dpt_ivalue_string(s), nil
	case *Tensor:
		if err := x.Err(); err != nil {
			return nil, err
		}
		return C.dpt_ivalue_tensor(x.h), nil
	case []any:
		list := C.dpt_ivalue_list()
		for i, item := range x {
			iv, err := toIValue(item)
			if err != nil {
				C.dpt_ivalue_free(list)
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			err = check(C.dpt_ivalue_list_append(list, iv))
			C.dpt_ivalue_free(iv)
			if err != nil {
				C.dpt_ivalue_free(list)
				return nil, err
			}
		}
		return list, nil
	case map[string]any:
		d := &Dict{}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			d.Set(k, x[k])
		}
		return toIValue(d)
	case *Dict:
		dict := C.dpt_ivalue_dict()
		for i, k := range x.Keys {
			key, err := toIValue(k)
			if err != nil {
				C.dpt_ivalue_free(dict)
				return nil, err
			}
			value, err := toIValue(x.Values[i])
			if err != nil {
				C.dpt_ivalue_free(key)
				C.dpt_ivalue_free(dict)
				return nil, fmt.Errorf("[%v]: %w", k, err)
			}
			err = check(C.dpt_ivalue_dict_insert(dict, key, value))
			C.dpt_ivalue_free(key)
			C.dpt_ivalue_free(value)
			if err != nil {
				C.dpt_ivalue_free(dict)
				return nil, err
			}
		}
		return dict, nil
	}
	return nil, fmt.Errorf("cannot pickle a %T", v)
}

// fromIValue converts an IValue into a Go tree; tensors are unscoped.
func fromIValue(iv C.dpt_ivalue) (any, error) {
	switch C.dpt_ivalue_kind(iv) {
	case C.DPT_IV_NONE:
		return nil, nil
	case C.DPT_IV_BOOL:
		return C.dpt_ivalue_to_int(iv) != 0, nil
	case C.DPT_IV_INT:
		return int64(C.dpt_ivalue_to_int(iv)), nil
	case C.DPT_IV_DOUBLE:
		return float64(C.dpt_ivalue_to_double(iv)), nil
	case C.DPT_IV_STRING:
		return goString(C.dpt_ivalue_to_string(iv)), nil
	case C.DPT_IV_TENSOR:
		var h C.dpt_tensor
		t := newTensor(h, C.dpt_ivalue_to_tensor(iv, &h), nil)
		return t, t.Err()
	case C.DPT_IV_LIST:
		n := int64(C.dpt_ivalue_len(iv))
		out := make([]any, 0, n)
		for i := range n {
			var item C.dpt_ivalue
			if err := check(C.dpt_ivalue_item(iv, C.int64_t(i), nil, &item)); err != nil {
				return nil, err
			}
			v, err := fromIValue(item)
			C.dpt_ivalue_free(item)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case C.DPT_IV_DICT:
		n := int64(C.dpt_ivalue_len(iv))
		d := &Dict{}
		for i := range n {
			var key, value C.dpt_ivalue
			if err := check(C.dpt_ivalue_item(iv, C.int64_t(i), &key, &value)); err != nil {
				return nil, err
			}
			k, err := fromIValue(key)
			C.dpt_ivalue_free(key)
			if err != nil {
				C.dpt_ivalue_free(value)
				return nil, err
			}
			v, err := fromIValue(value)
			C.dpt_ivalue_free(value)
			if err != nil {
				return nil, err
			}
			d.Set(k, v)
		}
		return d, nil
	}
	return nil, fmt.Errorf("unsupported value in pickle")
}

// SavePickle writes v (see Dict for the Go types) in torch.save's format,
// which Python's torch.load reads; the file appears only when complete.
func SavePickle(path string, v any) error {
	iv, err := toIValue(v)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	defer C.dpt_ivalue_free(iv)
	return saveAtomically(path, func(tmp *C.char) C.dpt_error { return C.dpt_pickle_save(iv, tmp) })
}

// saveAtomically has libtorch write a file under a temporary name beside
// path, then renames it into place: a failed save leaves no partial file.
func saveAtomically(path string, write func(tmp *C.char) C.dpt_error) error {
	f, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	tmp := cString(f.Name())
	defer freeC(tmp)
	if err := check(write(tmp)); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return f.Commit()
}

// LoadPickle reads a file torch.save wrote (or SavePickle) with libtorch's
// unpickler, which resolves only torch's own types. Tensors come back
// unscoped; the caller frees them.
func LoadPickle(path string) (any, error) {
	p := cString(path)
	defer freeC(p)
	var iv C.dpt_ivalue
	if err := check(C.dpt_pickle_load(p, &iv)); err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	defer C.dpt_ivalue_free(iv)
	v, err := fromIValue(iv)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return v, nil
}

// SaveTensors writes named tensors as a dict that torch.load returns.
func SaveTensors(path string, tensors map[string]*Tensor) error {
	d := &Dict{}
	for _, name := range slices.Sorted(maps.Keys(tensors)) {
		d.Set(name, tensors[name])
	}
	return SavePickle(path, d)
}

// LoadTensors reads a dict of named tensors saved by torch.save or SaveTensors.
func LoadTensors(path string) (map[string]*Tensor, error) {
	v, err := LoadPickle(path)
	if err != nil {
		return nil, err
	}
	d, ok := v.(*Dict)
	if !ok {
		return nil, fmt.Errorf("load %s: want a dict of tensors, found %T", path, v)
	}
	out := make(map[string]*Tensor, len(d.Keys))
	for i, k := range d.Keys {
		name, isString := k.(string)
		t, isTensor := d.Values[i].(*Tensor)
		if !isString || !isTensor {
			for _, t := range out {
				t.Free()
			}
			return nil, fmt.Errorf("load %s: entry %v is %T, want a tensor named by a string", path, k, d.Values[i])
		}
		out[name] = t
	}
	return out, nil
}
