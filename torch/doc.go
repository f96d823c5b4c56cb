// Package torch is deeppacket's thin binding to libtorch: tensors on CPU or
// CUDA, autograd, the nn layers and optimisers Deep Packet needs (one
// Optimizer interface with PyTorch's state_dict layout), c10d's Gloo process
// group and DistributedDataParallel's Reducer for data-parallel training
// (ProcessGroup, DDP), and serialisation
// that PyTorch reads (torch.save's pickle format, TorchScript). Reading
// torch.save files is package ckpt's (a safe unpickler), not this one's.
//
// The C++ lives in shim/ (a plain C API in shim/dptorch.h) and is
// built by the Makefile into build/libdptorch.so. This package does not link
// it: load.c opens it the first time a function needs it (DEEPPACKET_SHIM
// names another build of it), so that a program using the package pays
// libtorch's start-up time and memory only once it makes a tensor, and runs
// without libtorch installed until then (Load says why it cannot load). Go
// never sees a C++ type and no C++ exception crosses into Go: every failure
// becomes an error carrying libtorch's message.
//
// # Errors
//
// Operations return *Tensor and carry failures inside it, as bufio.Scanner
// does: an operation on a tensor that holds an error does nothing and passes
// the error on, so a forward pass reads like PyTorch and is checked once:
//
//	y := x.Conv1d(w, b, torch.Conv1dOptions{Stride: 3}).ReLU()
//	if err := y.Err(); err != nil { ... }
//
// Functions that return Go values (Float32s, Item, Save, ...) return an error.
//
// # Memory
//
// libtorch memory is invisible to Go's garbage collector, so tensors are freed
// deterministically, never by forcing runtime.GC:
//
//   - A Scope owns every tensor made in it. Tensors made from Go data with a
//     scope (Scope.FromFloat32 and friends) belong to it, and the result of an
//     operation belongs to the scope of its first operand that has one. A
//     training step opens a scope, runs forward, backward and the optimiser,
//     and closes it: every intermediate is freed at that moment.
//   - So the step's inputs must be made in the step's scope (a batch is copied
//     into it with FromSlice). An operation whose first scoped operand lives
//     in a long-lived scope puts its result there, not in the step's scope.
//   - Tidy runs a function in a scope of its own, as TensorFlow.js's tidy:
//     what it makes is freed when it returns, except its result, which joins
//     its input's scope. Chain applies modules in order (nn.Sequential),
//     freeing each intermediate once used. Model code so frees nothing by
//     hand.
//   - Tensors that outlive a step (parameters, optimiser state) have no scope
//     and are freed by their owner's Close (Store.Close, Adam.Close) or by
//     Tensor.Free. Scope.Keep takes a tensor out of its scope.
//   - Tensors of 128 kB or more are the shim's CPU allocator's
//     (shim/alloc.cpp): its own mappings in size classes, kept when freed
//     and given to the next tensor they hold (best fit), the kept ones never
//     more than the most in use at once (nor 256 MB), so that activations
//     and gradients neither fragment glibc's heap nor go back to the kernel
//     at every step. For smaller blocks the package sets glibc's allocator
//     as the program starts (load.c: a heap per core, no trimming); glibc's
//     MALLOC_* variables, where set, win.
//   - A finalizer on unscoped tensors is only a safety net for a forgotten
//     Free; correct code never depends on it.
//
// The benchmark BenchmarkTrainMemory trains the reference CNN for thousands
// of steps and reports resident memory at step 300 and at the end.
//
// # Goroutines
//
// A Tensor may be read by several goroutines at once (libtorch operations do
// not modify their inputs), but in-place operations (Store loading, optimiser
// steps, ZeroGrad) must not run while another goroutine uses the tensor. A
// Scope may be shared (it locks). Inference from several goroutines on one
// model in eval mode is safe: forward passes only read the parameters; run
// each inside NoGrad, which pins the goroutine to its OS thread because
// libtorch's grad mode is per thread. Store.Train switches and Load must not
// overlap a forward pass.
//
// Imports: internal/atomicfile only; it knows no model, dataset or
// checkpoint layout of ours.
package torch
