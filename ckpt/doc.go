// Package ckpt owns the files a model is read from and written to: PyTorch
// Lightning checkpoints (torch.save's zip of a pickle, read by a safe
// unpickler that builds tensors and plain data only), safetensors (the
// model-level layout over package ckpt/safetensors), TorchScript modules
// (export, and loading one as a classifier on explicit opt-in), and the
// optimiser state a checkpoint carries for resuming. The ONNX export is
// package ckpt/onnx's.
//
// Imports: model, labels, torch, data/features, ckpt/safetensors; never
// train or cmd.
package ckpt
