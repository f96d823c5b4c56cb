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

// SaveTensors writes named tensors as a dict that torch.load returns.
func SaveTensors(path string, tensors map[string]*Tensor) error {
	d := &Dict{}
	for _, name := range slices.Sorted(maps.Keys(tensors)) {
		d.Set(name, tensors[name])
	}
	return SavePickle(path, d)
}
