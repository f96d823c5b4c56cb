package ckpt

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/deeppacket/deeppacket/ckpt/safetensors"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// A model as safetensors: the state_dict's tensors under their names, and
// in the metadata (strings, as the format has them) what a Lightning
// checkpoint keeps beside them: "hyper_parameters" (JSON, the reference's
// names), "deeppacket" (JSON: kind, task, layout, mask_ports), "epoch" and
// "global_step". A file written in Python with
// safetensors.torch.save_file(model.state_dict(), path,
// metadata={"hyper_parameters": json.dumps(hparams)}) loads as well.

var safetensorsDTypes = map[torch.DType]string{torch.Float32: "F32", torch.Float64: "F64", torch.Int64: "I64", torch.Int32: "I32", torch.Uint8: "U8", torch.Bool: "BOOL"}

// isSafetensors tells a safetensors file from a torch.save zip by its
// first bytes.
func isSafetensors(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 9)
	if _, err := io.ReadFull(f, head); err != nil {
		return false
	}
	return safetensors.Sniff(head)
}

// readSafetensors reads a model's safetensors file as a Checkpoint.
func readSafetensors(path string) (*Checkpoint, error) {
	f, err := safetensors.Read(path)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{Path: path, StateDict: map[string]*torch.Tensor{}, Extra: &torch.Dict{}}
	for _, name := range f.Names {
		t := f.Tensors[name]
		dtype := torch.DType(-1)
		for d, s := range safetensorsDTypes {
			if s == t.DType {
				dtype = d
			}
		}
		tensor := torch.FromBytes(nil, t.Data, dtype, t.Shape, torch.CPU)
		if err := tensor.Err(); err != nil {
			c.Close()
			return nil, fmt.Errorf("read %s: tensor %s: %w", path, name, err)
		}
		c.Names = append(c.Names, name)
		c.StateDict[name] = tensor
	}
	if err := c.readSafetensorsMeta(f.Metadata); err != nil {
		c.Close()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return c, nil
}

func (c *Checkpoint) readSafetensorsMeta(md map[string]string) error {
	raw, ok := md["hyper_parameters"]
	if !ok {
		return fmt.Errorf("no hyper_parameters in the metadata: cannot tell the model's sizes (save with metadata={\"hyper_parameters\": json.dumps(hparams)})")
	}
	var hp map[string]any
	if err := json.Unmarshal([]byte(raw), &hp); err != nil {
		return fmt.Errorf("metadata hyper_parameters: %w", err)
	}
	h := model.HParams{}
	for k, v := range hp {
		switch x := v.(type) {
		case float64: // JSON numbers; the models' sizes are integers
			if x == float64(int64(x)) {
				h[k] = int64(x)
			} else {
				h[k] = x
			}
		case []any:
			ints := make([]any, len(x))
			for i, e := range x {
				f, _ := e.(float64)
				ints[i] = int64(f)
			}
			h[k] = ints
		default:
			h[k] = x
		}
	}
	meta := &torch.Dict{}
	if raw, ok := md[metaKey]; ok {
		var m map[string]any
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return fmt.Errorf("metadata %s: %w", metaKey, err)
		}
		for k, v := range m {
			meta.Set(k, v)
		}
	}
	for key, dst := range map[string]*int64{"epoch": &c.Epoch, "global_step": &c.GlobalStep} {
		if s, ok := md[key]; ok {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return fmt.Errorf("metadata %s %q: %w", key, s, err)
			}
			*dst = n
		}
	}
	spec, err := specFrom(c.Names, h, meta)
	if err != nil {
		return err
	}
	c.Spec = spec
	return nil
}

// SaveSafetensors writes m's state_dict and what loading it needs as
// safetensors, atomically.
func SaveSafetensors(path string, m model.Model, meta Meta) error {
	f := &safetensors.File{Tensors: map[string]safetensors.Tensor{}, Metadata: map[string]string{}}
	for _, v := range m.Store().Vars() {
		data, err := v.Tensor.Bytes()
		if err != nil {
			return fmt.Errorf("save %s: %s: %w", path, v.Name, err)
		}
		dtype, ok := safetensorsDTypes[v.Tensor.DType()]
		if !ok {
			return fmt.Errorf("save %s: %s: dtype %s has no safetensors name", path, v.Name, v.Tensor.DType())
		}
		f.Names = append(f.Names, v.Name)
		f.Tensors[v.Name] = safetensors.Tensor{DType: dtype, Shape: v.Tensor.Shape(), Data: data}
	}
	hp, err := json.Marshal(map[string]any(m.HParams()))
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	spec := model.Spec{Kind: m.Kind(), Task: m.Task(), Preprocessing: m.Preprocessing()}
	sm := specMeta(spec)
	mm := map[string]any{}
	for i, k := range sm.Keys {
		mm[k.(string)] = sm.Values[i]
	}
	ours, err := json.Marshal(mm)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	f.Metadata["hyper_parameters"] = string(hp)
	f.Metadata[metaKey] = string(ours)
	f.Metadata["epoch"] = strconv.FormatInt(meta.Epoch, 10)
	f.Metadata["global_step"] = strconv.FormatInt(meta.GlobalStep, 10)
	return safetensors.Write(path, f)
}
