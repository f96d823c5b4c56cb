package deeppacket

import (
	"fmt"

	"github.com/deeppacket/deeppacket/torch"
)

// MoveTo moves m's parameters and buffers to device. Use it rather than
// m.Store().To: torch.Store.To replaces each variable's *torch.Tensor (and
// frees the old one) while the layers keep pointers to the old ones, so
// MoveTo points every layer at the moved tensors afterwards.
func MoveTo(m Model, device torch.Device) error {
	f, ok := m.(interface{ fields() []**torch.Tensor })
	if !ok {
		return fmt.Errorf("move a %T: unknown model type", m)
	}
	return moveStore(m.Store(), f.fields(), device)
}

// moveStore moves store to device and repoints fields, the addresses of
// the layers' tensor fields, at the moved tensors.
func moveStore(store *torch.Store, fields []**torch.Tensor, device torch.Device) error {
	if store.Device() == device {
		return nil
	}
	names := map[*torch.Tensor]string{}
	for _, v := range store.Vars() {
		names[v.Tensor] = v.Name
	}
	if err := store.To(device); err != nil {
		return err
	}
	for _, p := range fields {
		if *p == nil {
			continue
		}
		name, ok := names[*p]
		if !ok {
			return fmt.Errorf("move to %s: a layer's tensor is not in the store", device)
		}
		v, _ := store.Lookup(name)
		*p = v.Tensor
	}
	return nil
}

func linearFields(l *torch.Linear) []**torch.Tensor { return []**torch.Tensor{&l.Weight, &l.Bias} }
func convFields(c *torch.Conv1d) []**torch.Tensor   { return []**torch.Tensor{&c.Weight, &c.Bias} }
func bnFields(b *torch.BatchNorm1d) []**torch.Tensor {
	return []**torch.Tensor{&b.Weight, &b.Bias, &b.RunningMean, &b.RunningVar, &b.NumBatchesTracked}
}

// seqFields lists the tensors of a Sequential's Linear and Conv1d layers.
func seqFields(s *torch.Sequential) []**torch.Tensor {
	var out []**torch.Tensor
	for _, m := range s.Modules {
		switch l := m.(type) {
		case *torch.Linear:
			out = append(out, linearFields(l)...)
		case *torch.Conv1d:
			out = append(out, convFields(l)...)
		}
	}
	return out
}

func (h *head) fields() []**torch.Tensor {
	var out []**torch.Tensor
	for _, fc := range h.fc {
		out = append(out, seqFields(fc)...)
	}
	return append(out, linearFields(h.out)...)
}

func (m *CNN) fields() []**torch.Tensor {
	return append(append(seqFields(m.conv1), seqFields(m.conv2)...), m.head.fields()...)
}

func (m *ResNet) fields() []**torch.Tensor {
	r := m.net
	out := append(convFields(r.firstConv.conv), bnFields(r.firstBN)...)
	for _, b := range r.blocks {
		out = append(out, bnFields(b.bn1)...)
		out = append(out, convFields(b.conv1.conv)...)
		out = append(out, bnFields(b.bn2)...)
		out = append(out, convFields(b.conv2.conv)...)
	}
	out = append(out, bnFields(r.final)...)
	out = append(out, linearFields(r.dense)...)
	return append(out, m.head.fields()...)
}

func (m *SAE) fields() []**torch.Tensor {
	var out []**torch.Tensor
	for _, fc := range m.fc {
		out = append(out, seqFields(fc)...)
	}
	return append(out, linearFields(m.out)...)
}
