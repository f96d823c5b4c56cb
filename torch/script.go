package torch

// #include "dptorch.h"
import "C"

import (
	"fmt"
	"runtime"
)

// ScriptModule is a TorchScript module (torch.jit.ScriptModule): built here
// from parameters and TorchScript source, or loaded from a .pt file.
type ScriptModule struct{ h C.dpt_module }

// NewScriptModule starts an empty module whose class is named name.
func NewScriptModule(name string) (*ScriptModule, error) {
	n := cString(name)
	defer freeC(n)
	m := &ScriptModule{}
	if err := check(C.dpt_module_new(n, &m.h)); err != nil {
		return nil, err
	}
	runtime.SetFinalizer(m, (*ScriptModule).Close)
	return m, nil
}

// Register adds a parameter (or a buffer) that the source reads as
// self.<name>. TorchScript attribute names cannot contain dots.
func (m *ScriptModule) Register(name string, t *Tensor, buffer bool) error {
	if err := t.Err(); err != nil {
		return fmt.Errorf("register %s: %w", name, err)
	}
	n := cString(name)
	defer freeC(n)
	if err := check(C.dpt_module_register(m.h, n, t.h, cBool(buffer))); err != nil {
		return fmt.Errorf("register %s: %w", name, err)
	}
	return nil
}

// Define compiles TorchScript source (methods such as forward) into the module.
func (m *ScriptModule) Define(source string) error {
	s := cString(source)
	defer freeC(s)
	if err := check(C.dpt_module_define(m.h, s)); err != nil {
		return fmt.Errorf("define TorchScript: %w", err)
	}
	return nil
}

// Save writes the module as a .pt that torch.jit.load reads, atomically.
func (m *ScriptModule) Save(path string) error {
	return saveAtomically(path, func(tmp *C.char) C.dpt_error { return C.dpt_module_save(m.h, tmp) })
}

// LoadScriptModule loads a TorchScript .pt onto device, in eval mode.
func LoadScriptModule(path string, device Device) (*ScriptModule, error) {
	p := cString(path)
	defer freeC(p)
	d := cString(device.String())
	defer freeC(d)
	m := &ScriptModule{}
	if err := check(C.dpt_module_load(p, d, &m.h)); err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	runtime.SetFinalizer(m, (*ScriptModule).Close)
	if err := check(C.dpt_module_eval(m.h)); err != nil {
		m.Close()
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return m, nil
}

// Forward runs the module's forward on inputs; the result joins the scope of
// the first scoped input.
func (m *ScriptModule) Forward(inputs ...*Tensor) *Tensor {
	hs := handles(inputs)
	return apply(func(out *C.dpt_tensor) C.dpt_error {
		return C.dpt_module_forward(m.h, first(hs), C.int(len(hs)), out)
	}, inputs...)
}

// Close frees the module.
func (m *ScriptModule) Close() {
	if m.h != nil {
		C.dpt_module_free(m.h)
		m.h = nil
	}
}
