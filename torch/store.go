package torch

import (
	"fmt"
	"slices"
	"strings"
)

// Var is one named tensor of a model: a parameter or a buffer.
type Var struct {
	Name   string // PyTorch's dotted state_dict name, e.g. "conv1.0.weight"
	Tensor *Tensor
	Buffer bool // running statistics and counters: saved, not trained
}

// Store holds a model's parameters and buffers under explicit dotted paths,
// in registration order (which is PyTorch's state_dict order when modules are
// built in the order their __init__ assigns them). Modeled on tch-rs's
// VarStore. It also holds the model's train/eval mode.
type Store struct {
	vars     []*Var
	byName   map[string]*Var
	training bool
	device   Device
}

// NewStore makes an empty store in training mode on the CPU. Parameters are
// created and initialised on the CPU, so that a seed gives PyTorch's values;
// To moves them.
func NewStore() *Store { return &Store{byName: map[string]*Var{}, training: true} }

// Root is the path of the model itself.
func (s *Store) Root() Path { return Path{store: s} }

// Vars lists every parameter and buffer in order.
func (s *Store) Vars() []*Var { return s.vars }

// Parameters lists the trainable tensors in order.
func (s *Store) Parameters() []*Tensor { return s.tensors(false) }

// Buffers lists the other tensors (batch norm's statistics) in order.
func (s *Store) Buffers() []*Tensor { return s.tensors(true) }

// tensors lists the buffers, or the parameters, in order.
func (s *Store) tensors(buffers bool) []*Tensor {
	var ts []*Tensor
	for _, v := range s.vars {
		if v.Buffer == buffers {
			ts = append(ts, v.Tensor)
		}
	}
	return ts
}

// Lookup finds a variable by its dotted name.
func (s *Store) Lookup(name string) (*Var, bool) {
	v, ok := s.byName[name]
	return v, ok
}

// NumParameters is the number of trainable scalars.
func (s *Store) NumParameters() int64 {
	var n int64
	for _, p := range s.Parameters() {
		n += p.Numel()
	}
	return n
}

// Train sets the behaviour of dropout and batch norm, training (true) or
// inference (false), as module.train(mode) does, and returns the mode it
// replaces, so that the caller who changes the mode restores it:
//
//	defer store.Train(store.Train(false))
func (s *Store) Train(mode bool) (previous bool) {
	previous, s.training = s.training, mode
	return previous
}

// Training reports the mode.
func (s *Store) Training() bool { return s.training }

// Device is where the variables live.
func (s *Store) Device() Device { return s.device }

// To moves every variable to device, keeping names and requires_grad. Each
// *Tensor stays the same Go value (layers hold them), only its storage moves.
func (s *Store) To(device Device) error {
	if device == s.device {
		return nil
	}
	for _, v := range s.vars {
		moved := v.Tensor.To(device).Detach()
		if err := moved.Err(); err != nil {
			return fmt.Errorf("move %s to %s: %w", v.Name, device, err)
		}
		if !v.Buffer {
			if err := moved.SetRequiresGrad(true); err != nil {
				return fmt.Errorf("move %s: %w", v.Name, err)
			}
		}
		v.Tensor.swap(moved)
	}
	s.device = device
	return nil
}

// Close frees every variable.
func (s *Store) Close() {
	for _, v := range s.vars {
		v.Tensor.Free()
	}
}

func (s *Store) register(name string, t *Tensor, buffer bool) (*Tensor, error) {
	if err := t.Err(); err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	if _, dup := s.byName[name]; dup {
		return nil, fmt.Errorf("create %s: name already registered", name)
	}
	if !buffer {
		if err := t.SetRequiresGrad(true); err != nil {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
	}
	v := &Var{Name: name, Tensor: t, Buffer: buffer}
	s.vars = append(s.vars, v)
	s.byName[name] = v
	return t, nil
}

// StateDict returns the variables by name (model.state_dict()).
func (s *Store) StateDict() map[string]*Tensor {
	out := make(map[string]*Tensor, len(s.vars))
	for _, v := range s.vars {
		out[v.Name] = v.Tensor
	}
	return out
}

// LoadStateDict copies tensors into the store's variables, strictly as
// load_state_dict(strict=True): every variable must be present with its
// exact shape, and no other name may appear. Values are converted to each
// variable's dtype and device.
func (s *Store) LoadStateDict(state map[string]*Tensor) error {
	var missing, unexpected []string
	for _, v := range s.vars {
		if _, ok := state[v.Name]; !ok {
			missing = append(missing, v.Name)
		}
	}
	for name := range state {
		if _, ok := s.byName[name]; !ok {
			unexpected = append(unexpected, name)
		}
	}
	if len(missing) > 0 || len(unexpected) > 0 {
		slices.Sort(unexpected)
		return fmt.Errorf("load state dict: missing keys [%s], unexpected keys [%s]",
			strings.Join(missing, ", "), strings.Join(unexpected, ", "))
	}
	for _, v := range s.vars {
		src := state[v.Name]
		if err := src.Err(); err != nil {
			return fmt.Errorf("load state dict: %s: %w", v.Name, err)
		}
		if want, got := v.Tensor.Shape(), src.Shape(); !slices.Equal(want, got) {
			return fmt.Errorf("load state dict: %s has shape %v in the model but %v in the file", v.Name, want, got)
		}
		converted := src.ToType(s.device, v.Tensor.DType())
		err := v.Tensor.Copy_(converted)
		converted.Free()
		if err != nil {
			return fmt.Errorf("load state dict: %s: %w", v.Name, err)
		}
	}
	return nil
}

// Path is a position in a store's namespace, as a module's attribute path.
type Path struct {
	store  *Store
	prefix string
}

// Sub is the path of a child module named name.
func (p Path) Sub(name string) Path {
	if p.prefix == "" {
		return Path{store: p.store, prefix: name}
	}
	return Path{store: p.store, prefix: p.prefix + "." + name}
}

// Store is the store the path belongs to.
func (p Path) Store() *Store { return p.store }

// Name is the dotted name of a variable at this path.
func (p Path) Name(name string) string { return p.Sub(name).prefix }

// Param creates a float32 parameter filled with zeros, for an initialiser
// to fill (as torch.empty followed by reset_parameters).
func (p Path) Param(name string, shape ...int64) (*Tensor, error) {
	return p.store.register(p.Name(name), Zeros(nil, shape, Float32, CPU), false)
}

// Buffer registers a buffer (saved in the state dict, not trained).
func (p Path) Buffer(name string, t *Tensor) (*Tensor, error) {
	return p.store.register(p.Name(name), t, true)
}
