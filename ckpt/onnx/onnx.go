// Package onnx owns the ONNX export: a model.Model written as an ONNX
// ModelProto (opset 17) that onnxruntime and other ONNX runtimes run with
// no Deep Packet code. The graph is the model's inference forward
// (model.InferenceOps, the same steps the TorchScript export compiles):
// dropout off, batch norm on the running statistics. Input "input" float32
// [batch, 1, signal_length] (bytes/255 in the model's preprocessing
// layout), output "logits" float32 [batch, output_dim]; batch is a
// symbolic dimension, so any batch size runs. Weights are initializers
// named by their state_dict keys (raw little-endian float32).
//
// Imports: model, torch, internal/atomicfile, ckpt/onnx/onnxpb (the
// generated protobuf types) and google.golang.org/protobuf; never ckpt
// (only its tests do, to read the fixtures' checkpoints), train or cmd.
package onnx

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/deeppacket/deeppacket/ckpt/onnx/onnxpb"
	"github.com/deeppacket/deeppacket/internal/atomicfile"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// The versions written: opset 18 of the default domain (Pad with axes), in
// IR version 8 (the IR that opset 18 came with), which onnxruntime 1.14
// and later run.
const (
	Opset     = 18
	IRVersion = 8
)

// The graph's input and output names, and the symbolic batch dimension.
const (
	InputName  = "input"
	OutputName = "logits"
	BatchDim   = "batch"
)

// Export writes m as an ONNX model file at path (atomically).
func Export(m model.Model, path string) error {
	mp, err := Build(m)
	if err != nil {
		return fmt.Errorf("export %s: %w", path, err)
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		return fmt.Errorf("export %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, b); err != nil {
		return fmt.Errorf("export %s: %w", path, err)
	}
	return nil
}

// Build is m as an ONNX ModelProto (see the package comment). A step of
// m's forward that ONNX cannot express is an error naming it.
func Build(m model.Model) (*onnxpb.ModelProto, error) {
	ops, err := model.InferenceOps(m)
	if err != nil {
		return nil, err
	}
	g := &graph{
		state: m.Store().StateDict(),
		value: map[string]string{"x": InputName},
		rank:  map[string]int{InputName: 3},
		inits: map[string]bool{},
	}
	for i, op := range ops {
		if err := g.step(i, op); err != nil {
			return nil, fmt.Errorf("%s model, step %d: %w", m.Kind(), i, err)
		}
	}
	last := g.value["x"]
	if last == InputName || g.rank[last] != 2 {
		return nil, fmt.Errorf("%s model: its forward ends in a rank-%d value, want logits [batch, classes]", m.Kind(), g.rank[last])
	}
	for _, n := range g.g.Node {
		for j, out := range n.Output {
			if out == last {
				n.Output[j] = OutputName
			}
		}
	}
	signal := int64(m.Preprocessing().SignalLength)
	g.g.Name = proto.String("deeppacket_" + string(m.Kind()))
	g.g.Input = []*onnxpb.ValueInfoProto{valueInfo(InputName,
		"packets: [batch, 1, signal_length] float32, each byte of the feature vector divided by 255", 1, signal)}
	g.g.Output = []*onnxpb.ValueInfoProto{valueInfo(OutputName, "logits: [batch, output_dim] float32", int64(m.OutputDim()))}
	task := m.Task()
	classes := make([]string, m.OutputDim())
	for i := range classes {
		classes[i] = task.ClassName(i)
	}
	names, err := json.Marshal(classes)
	if err != nil {
		return nil, err
	}
	return &onnxpb.ModelProto{
		IrVersion:    proto.Int64(IRVersion),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(Opset)}},
		ProducerName: proto.String("deeppacket"),
		DocString:    proto.String("Deep Packet " + string(m.Kind()) + " classifier (github.com/deeppacket/deeppacket)"),
		Graph:        &g.g,
		MetadataProps: []*onnxpb.StringStringEntryProto{
			{Key: proto.String("deeppacket.kind"), Value: proto.String(string(m.Kind()))},
			{Key: proto.String("deeppacket.task"), Value: proto.String(task.Name)},
			{Key: proto.String("deeppacket.classes"), Value: proto.String(string(names))},
			{Key: proto.String("deeppacket.signal_length"), Value: proto.String(fmt.Sprint(signal))},
		},
	}, nil
}

// valueInfo is a float32 tensor [batch, dims...].
func valueInfo(name, doc string, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
		{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: BatchDim}},
	}}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{
		Name:      proto.String(name),
		DocString: proto.String(doc),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
			Shape:    shape,
		}}},
	}
}

// graph builds the GraphProto of a forward: value maps the forward's
// variables ("x", "identity") to the ONNX values holding them, rank gives
// each ONNX value's rank, inits the initializers already added.
type graph struct {
	g     onnxpb.GraphProto
	state map[string]*torch.Tensor
	value map[string]string
	rank  map[string]int
	inits map[string]bool
	n     int
}

// node adds a node of opType reading inputs and returns its output's name.
func (g *graph) node(opType string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	g.n++
	out := fmt.Sprintf("%s_%d", opType, g.n)
	g.g.Node = append(g.g.Node, &onnxpb.NodeProto{
		Name:      proto.String(out),
		OpType:    proto.String(opType),
		Input:     inputs,
		Output:    []string{out},
		Attribute: attrs,
	})
	return out
}

// param adds the state_dict tensor name as an initializer (once) and
// returns its name.
func (g *graph) param(name string) (string, error) {
	if g.inits[name] {
		return name, nil
	}
	t, ok := g.state[name]
	if !ok {
		return "", fmt.Errorf("the model has no tensor %s", name)
	}
	v, err := t.Float32s()
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	raw := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	g.g.Initializer = append(g.g.Initializer, &onnxpb.TensorProto{
		Name:     proto.String(name),
		Dims:     t.Shape(),
		DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
		RawData:  raw,
	})
	g.inits[name] = true
	return name, nil
}

// params adds prefix.suffix for each suffix.
func (g *graph) params(prefix string, suffixes ...string) ([]string, error) {
	out := make([]string, len(suffixes))
	for i, s := range suffixes {
		var err error
		if out[i], err = g.param(prefix + "." + s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// constant adds an int64 or float32 constant initializer and returns its
// name.
func (g *graph) constant(name string, ints []int64, float *float32) string {
	if g.inits[name] {
		return name
	}
	t := &onnxpb.TensorProto{Name: proto.String(name)}
	if float != nil {
		t.DataType = proto.Int32(int32(onnxpb.TensorProto_FLOAT))
		t.FloatData = []float32{*float}
	} else {
		t.DataType = proto.Int32(int32(onnxpb.TensorProto_INT64))
		t.Dims = []int64{int64(len(ints))}
		t.Int64Data = ints
	}
	g.g.Initializer = append(g.g.Initializer, t)
	g.inits[name] = true
	return name
}

func intsAttr(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func floatAttr(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

func stringAttr(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

// step adds the nodes of op, the i-th step of the forward.
func (g *graph) step(i int, op model.Op) error {
	in, ok := g.value[op.In]
	if !ok {
		return fmt.Errorf("reads %q before it is written", op.In)
	}
	rank := g.rank[in]
	var out string
	switch op.Kind {
	case model.OpCopy:
		out = in
	case model.OpConv1d:
		p, err := g.params(op.Param, "weight", "bias")
		if err != nil {
			return err
		}
		attrs := []*onnxpb.AttributeProto{intsAttr("kernel_shape", op.Kernel), intsAttr("strides", op.Stride),
			intsAttr("dilations", 1), intAttr("group", op.Groups)}
		if op.Same {
			// SAME_UPPER is the reference's rule: the odd zero goes last.
			attrs = append(attrs, stringAttr("auto_pad", "SAME_UPPER"))
		} else {
			attrs = append(attrs, intsAttr("pads", 0, 0))
		}
		out = g.node("Conv", append([]string{in}, p...), attrs...)
	case model.OpBatchNorm:
		p, err := g.params(op.Param, "weight", "bias", "running_mean", "running_var")
		if err != nil {
			return err
		}
		out = g.node("BatchNormalization", append([]string{in}, p...), floatAttr("epsilon", 1e-5))
	case model.OpReLU:
		out = g.node("Relu", []string{in})
	case model.OpPad:
		if len(op.Pads)%2 != 0 || len(op.Pads)/2 > rank {
			return fmt.Errorf("pads %v for a rank-%d value", op.Pads, rank)
		}
		// torch's (before, after) pairs from the last axis backwards, as
		// ONNX's befores, then afters, of axes -1, -2, …. The axes input
		// also keeps onnxruntime's Pad_Fusion away: it folds a zero Pad
		// into a following MaxPool's pads, which pad with -inf, not zeros
		// (the ResNet's shortcut pools negative values), and it leaves a
		// Pad with axes alone.
		n := len(op.Pads) / 2
		pads, axes := make([]int64, 2*n), make([]int64, n)
		for j := range n {
			axes[j] = int64(-1 - j)
			pads[j], pads[n+j] = op.Pads[2*j], op.Pads[2*j+1]
		}
		zero := float32(0)
		out = g.node("Pad", []string{in, g.constant(fmt.Sprintf("pads_%d", i), pads, nil), g.constant("zero", nil, &zero),
			g.constant(fmt.Sprintf("pad_axes_%d", n), axes, nil)}, stringAttr("mode", "constant"))
	case model.OpMaxPool1d:
		pool := func(x string) string {
			return g.node("MaxPool", []string{x}, intsAttr("kernel_shape", op.Kernel), intsAttr("strides", op.Kernel))
		}
		switch {
		case op.Unbatched && rank == 2:
			// PyTorch reads [batch, features] as one signal of batch
			// channels: [1, batch, features] here.
			axes := g.constant("axes_0", []int64{0}, nil)
			out = g.node("Squeeze", []string{pool(g.node("Unsqueeze", []string{in, axes})), axes})
		case !op.Unbatched && rank == 3:
			out = pool(in)
		default:
			return fmt.Errorf("max_pool1d (unbatched %t) of a rank-%d value", op.Unbatched, rank)
		}
	case model.OpMean:
		out = g.node("ReduceMean", []string{in, g.constant("axes_last", []int64{-1}, nil)}, intAttr("keepdims", 0))
		rank--
	case model.OpAdd:
		in2, ok := g.value[op.In2]
		if !ok {
			return fmt.Errorf("reads %q before it is written", op.In2)
		}
		out = g.node("Add", []string{in, in2})
	case model.OpFlatten:
		out = g.node("Flatten", []string{in}, intAttr("axis", 1))
		rank = 2
	case model.OpLinear:
		if rank != 2 {
			return fmt.Errorf("linear %s of a rank-%d value", op.Param, rank)
		}
		p, err := g.params(op.Param, "weight", "bias")
		if err != nil {
			return err
		}
		out = g.node("Gemm", append([]string{in}, p...), intAttr("transB", 1))
	default:
		return fmt.Errorf("step kind %d has no ONNX form", op.Kind)
	}
	g.value[op.Out] = out
	g.rank[out] = rank
	return nil
}
