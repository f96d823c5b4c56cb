package onnx_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/ckpt/onnx"
	"github.com/deeppacket/deeppacket/ckpt/onnx/onnxpb"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
)

// Build gives the graph of the reference's CNN for the traffic task, its
// batch dimension symbolic; Export writes the same proto to a file.
func ExampleBuild() {
	hp, err := model.DefaultHParams(model.KindCNN, labels.Traffic)
	if err != nil {
		panic(err)
	}
	m, err := model.New(model.Spec{Kind: model.KindCNN, HParams: hp})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	mp, err := onnx.Build(m)
	if err != nil {
		panic(err)
	}
	g := mp.GetGraph()
	fmt.Println("opset", mp.GetOpsetImport()[0].GetVersion())
	fmt.Println(g.GetInput()[0].GetName(), dims(g.GetInput()[0]), "->", g.GetOutput()[0].GetName(), dims(g.GetOutput()[0]))
	var ops []string
	for _, n := range g.GetNode() {
		ops = append(ops, n.GetOpType())
	}
	fmt.Println(strings.Join(ops, " "))
	// Output:
	// opset 18
	// input [batch 1 1500] -> logits [batch 12]
	// Conv Relu Conv Relu MaxPool Flatten Gemm Relu Gemm Relu Gemm Relu Gemm
}

// dims is a value's shape, symbolic dimensions by name.
func dims(v *onnxpb.ValueInfoProto) []string {
	var out []string
	for _, d := range v.GetType().GetTensorType().GetShape().GetDim() {
		if p := d.GetDimParam(); p != "" {
			out = append(out, p)
		} else {
			out = append(out, fmt.Sprint(d.GetDimValue()))
		}
	}
	return out
}

// foreign is a model.Model of a type the export does not know.
type foreign struct{ model.Model }

// TestBuildUnknownModel: a model whose forward has no steps is an error
// naming its type, not a partial graph.
func TestBuildUnknownModel(t *testing.T) {
	hp, err := model.DefaultHParams(model.KindSAE, labels.Traffic)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(model.Spec{Kind: model.KindSAE, HParams: hp})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := onnx.Build(foreign{m}); err == nil || !strings.Contains(err.Error(), "onnx_test.foreign") {
		t.Errorf("Build of a foreign model: error %v, want one naming its type", err)
	}
	if err := onnx.Export(foreign{m}, t.TempDir()+"/m.onnx"); err == nil || !strings.Contains(err.Error(), "export ") {
		t.Errorf("Export of a foreign model: error %v, want one naming the file", err)
	}
}
