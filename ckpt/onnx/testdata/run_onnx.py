"""Runs a deeppacket ONNX export in onnxruntime (from PyPI).

Usage: run_onnx.py MODEL.onnx INPUTS.f32 OUTDIR BATCH [BATCH ...]

Checks the model with onnx.checker.check_model(full_check=True), checks
that its input and output have the symbolic batch dimension "batch", then
runs one onnxruntime session (CPU) on the first BATCH rows of INPUTS
(float32 little-endian [n, 1, signal_length], signal_length read from the
model) for every BATCH, writing the logits to OUTDIR/logits_BATCH.f32.
Prints one line per step and exits non-zero on the first failure.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    path, inputs, outdir, batches = sys.argv[1], sys.argv[2], sys.argv[3], [int(b) for b in sys.argv[4:]]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    print(f"ok   onnx {onnx.__version__}: check_model(full_check=True)")
    for v in list(model.graph.input) + list(model.graph.output):
        dim0 = v.type.tensor_type.shape.dim[0]
        if dim0.dim_param != "batch":
            sys.exit(f"FAIL {v.name}: first dimension {dim0}, want the symbolic 'batch'")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    signal = inp.shape[2]
    x = np.fromfile(inputs, dtype="<f4").reshape(-1, 1, signal)
    for b in batches:
        (logits,) = sess.run(["logits"], {inp.name: x[:b]})
        if logits.dtype != np.float32 or logits.shape[0] != b:
            sys.exit(f"FAIL batch {b}: logits {logits.dtype} {logits.shape}")
        logits.astype("<f4").tofile(os.path.join(outdir, f"logits_{b}.f32"))
        print(f"ok   onnxruntime {ort.__version__}: batch {b} -> logits {list(logits.shape)}")


if __name__ == "__main__":
    main()
