package main

import (
	"math"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/deeppacket/deeppacket/internal/testenv"
)

// TestExportOnnxCommand: export --format onnx writes the published ResNet
// as an ONNX file that onnxruntime runs at two batch sizes (the model and
// the comparison with libtorch are checked in package ckpt/onnx), with the
// reference PyTorch code's logits.
func TestExportOnnxCommand(t *testing.T) {
	python := testenv.PythonWith(t, "onnx", "onnxruntime")
	modelPath := testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt")
	inputs := testenv.Shared(t, "fixtures/reference_traffic_resnet.inputs.f32")
	want := testenv.ReadFloat32s(t, testenv.Shared(t, "fixtures/reference_traffic_resnet.logits.f32"))
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	if msg, err := runCLI(t, "export", modelPath, "--format", "onnx", "-o", out); err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	script := filepath.Join(testenv.RepoRoot(t), "ckpt", "onnx", "testdata", "run_onnx.py")
	msg, err := exec.Command(python, script, out, inputs, dir, "64", "5").CombinedOutput()
	t.Logf("run_onnx.py:\n%s", msg)
	if err != nil {
		t.Fatal(err)
	}
	// As in package ckpt/onnx: the logits reach 33, so 1e-6 of the largest
	// (8 float32 ulps) when that is over 1e-5.
	tol := 1e-5
	for _, w := range want {
		tol = max(tol, 1e-6*math.Abs(float64(w)))
	}
	for _, b := range []string{"64", "5"} {
		got := testenv.ReadFloat32s(t, filepath.Join(dir, "logits_"+b+".f32"))
		for i, g := range got {
			if d := math.Abs(float64(g) - float64(want[i])); d > tol {
				t.Fatalf("batch %s, logit %d: onnxruntime %g, reference PyTorch %g", b, i, g, want[i])
			}
		}
	}
}
