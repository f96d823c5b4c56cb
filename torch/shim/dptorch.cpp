// dptorch.cpp: the libtorch side of deeppacket's binding (see dptorch.h).
//
// Compatibility: builds against PyTorch 2.x (the default, C++20) and Debian's
// libtorch 1.13 (C++17), using only API both offer unchanged: at:: operators
// (conv1d, max_pool1d, linear, batch_norm, dropout, constant_pad_nd,
// cross_entropy_loss, mse_loss, softmax, log_softmax, argmax), c10::GradMode,
// torch::cuda::is_available / device_count / manual_seed_all, jit::Pickler,
// PyTorchStreamWriter and torch::pickle_load, torch::jit::Module
// (register_parameter, register_buffer, define, save) and torch::jit::load.
// Where the two versions' Python optimisers differ (Adam's first moment),
// TORCH_VERSION_MAJOR picks the formula of the version built against.
// Rebuilding this one file against a CUDA libtorch (make LIBTORCH=... or
// PyPI's CUDA torch, the default) needs no change in the Go code.
#include "shim.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/serialize.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

struct dpt_ivalue_s { c10::IValue v; };
struct dpt_module_s { torch::jit::Module m; };

namespace {

using dpt::guarded;

dpt_tensor wrap(at::Tensor t) { return new dpt_tensor_s{std::move(t)}; }

at::ScalarType scalar_type(int dtype) {
  switch (dtype) {
    case DPT_FLOAT32: return at::kFloat;
    case DPT_FLOAT64: return at::kDouble;
    case DPT_INT64: return at::kLong;
    case DPT_UINT8: return at::kByte;
    case DPT_BOOL: return at::kBool;
    case DPT_INT32: return at::kInt;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(dtype));
}

int dtype_code(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return DPT_FLOAT32;
    case at::kDouble: return DPT_FLOAT64;
    case at::kLong: return DPT_INT64;
    case at::kByte: return DPT_UINT8;
    case at::kBool: return DPT_BOOL;
    case at::kInt: return DPT_INT32;
    default: return -1;
  }
}

at::TensorOptions options(int dtype, const char *device) {
  return at::TensorOptions().dtype(scalar_type(dtype)).device(c10::Device(std::string(device)));
}

at::IntArrayRef dims(const int64_t *shape, int ndim) { return at::IntArrayRef(shape, static_cast<size_t>(ndim)); }

const at::Tensor &ref(dpt_tensor t) {
  if (t == nullptr) throw std::invalid_argument("tensor is nil (freed or never created)");
  return t->t;
}

c10::optional<at::Tensor> optional(dpt_tensor t) {
  if (t == nullptr) return c10::nullopt;
  return t->t;
}

// write_file writes n bytes to path, or throws saying why (a full disk, say):
// every save goes through memory first, so that no libtorch writer meets a
// failing file, whose destructor would throw and abort the process.
void write_file(const char *path, const char *data, size_t n) {
  std::FILE *f = std::fopen(path, "wb");
  if (f == nullptr) throw std::runtime_error(std::string("cannot create ") + path + ": " + std::strerror(errno));
  // In pieces of 1 MB: one write(2) of a whole checkpoint (120 MB for the
  // application CNN with Adam's state) cost the kernel 0.9-1.5 s of system
  // time here, against 0.02 s in pieces.
  bool ok = true;
  for (size_t at = 0, piece; ok && at < n; at += piece) {
    piece = std::min<size_t>(n - at, 1 << 20);
    ok = std::fwrite(data + at, 1, piece, f) == piece;
  }
  int err = errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) throw std::runtime_error(std::string("cannot write ") + path + ": " + std::strerror(err));
}

// libtorch_cuda (a CUDA libtorch's kernels, and the CUDA, cuDNN and NCCL
// libraries it needs: half a gigabyte of mappings and a third of the start-up
// time) is not linked: it is loaded, from beside libtorch_cpu, the first time
// anything asks about CUDA, and only where an NVIDIA driver is installed, as
// tch-rs does. Loaded, it registers CUDA with libtorch as if linked. A CPU-only
// run on a CUDA build so starts as fast, and stays as small, as on a CPU build.
std::string cuda_library() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&at::set_num_threads), &info) == 0 || info.dli_fname == nullptr) return "";
  std::string dir(info.dli_fname);
  dir = dir.substr(0, dir.find_last_of('/') + 1);
  std::string path = dir + "libtorch_cuda.so";
  return access(path.c_str(), F_OK) == 0 ? path : "";
}

void load_cuda() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (access("/proc/driver/nvidia/version", F_OK) != 0) return;  // no driver: no GPU to use
    std::string path = cuda_library();
    if (!path.empty()) dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  });
}

}  // namespace

extern "C" {


int dpt_cuda_is_available(void) {
  load_cuda();
  return torch::cuda::is_available() ? 1 : 0;
}

int dpt_cuda_device_count(void) {
  load_cuda();
  return static_cast<int>(torch::cuda::device_count());
}

int dpt_cuda_library(void) { return cuda_library().empty() ? 0 : 1; }

char *dpt_torch_version(void) { return strdup(TORCH_VERSION); }

int dpt_cuda_runtime_version(void) {
  load_cuda();
  // Without libtorch_cuda the CUDA hooks are a stub that throws.
  try {
    return static_cast<int>(at::detail::getCUDAHooks().versionCUDART());
  } catch (...) {
    return 0;
  }
}
dpt_error dpt_randperm(int64_t n, uint64_t seed, dpt_tensor *out) {
  return guarded([&] { *out = wrap(at::randperm(n, at::detail::createCPUGenerator(seed), at::kLong)); });
}

dpt_error dpt_manual_seed(uint64_t seed) {
  load_cuda();  // so that CUDA's generators are seeded too, when there are GPUs
  return guarded([&] { torch::manual_seed(seed); });
}
void dpt_set_num_threads(int n) {
  dpt::threads.store(n, std::memory_order_relaxed);
  at::set_num_threads(n);
}
int dpt_get_num_threads(void) {
  dpt::apply_threads();
  return at::get_num_threads();
}
void dpt_set_grad_enabled(int enabled) { c10::GradMode::set_enabled(enabled != 0); }
int dpt_is_grad_enabled(void) { return c10::GradMode::is_enabled() ? 1 : 0; }
struct dpt_inference_s {
  c10::InferenceMode guard;
};
dpt_error dpt_inference_mode_enter(dpt_inference *out) {
  return guarded([&] { *out = new dpt_inference_s; });
}
void dpt_inference_mode_exit(dpt_inference g) { delete g; }

void dpt_free(dpt_tensor t) { delete t; }

dpt_error dpt_from_data(const void *data, const int64_t *shape, int ndim, int dtype, const char *device, dpt_tensor *out) {
  return guarded([&] {
    auto cpu = at::empty(dims(shape, ndim), options(dtype, "cpu"));
    std::memcpy(cpu.data_ptr(), data, cpu.nbytes());
    *out = wrap(std::string(device) == "cpu" ? cpu : cpu.to(c10::Device(std::string(device))));
  });
}

dpt_error dpt_copy_out(dpt_tensor t, void *dst, int64_t nbytes, int dtype) {
  return guarded([&] {
    auto src = ref(t).detach().to(at::kCPU, scalar_type(dtype)).contiguous();
    if (static_cast<int64_t>(src.nbytes()) != nbytes)
      throw std::invalid_argument("copy out: tensor has " + std::to_string(src.nbytes()) + " bytes, buffer " +
                                  std::to_string(nbytes));
    std::memcpy(dst, src.data_ptr(), nbytes);
  });
}

dpt_error dpt_full(const int64_t *shape, int ndim, double value, int dtype, const char *device, dpt_tensor *out) {
  return guarded([&] { *out = wrap(at::full(dims(shape, ndim), value, options(dtype, device))); });
}

dpt_error dpt_rand(const int64_t *shape, int ndim, int dtype, const char *device, dpt_tensor *out) {
  return guarded([&] { *out = wrap(at::rand(dims(shape, ndim), options(dtype, device))); });
}

dpt_error dpt_randn(const int64_t *shape, int ndim, int dtype, const char *device, dpt_tensor *out) {
  return guarded([&] { *out = wrap(at::randn(dims(shape, ndim), options(dtype, device))); });
}

int dpt_dim(dpt_tensor t) { return static_cast<int>(t->t.dim()); }

void dpt_shape(dpt_tensor t, int64_t *out) {
  auto sizes = t->t.sizes();
  std::copy(sizes.begin(), sizes.end(), out);
}

void dpt_stride(dpt_tensor t, int64_t *out) {
  auto strides = t->t.strides();
  std::copy(strides.begin(), strides.end(), out);
}

int dpt_dtype(dpt_tensor t) { return dtype_code(t->t.scalar_type()); }

dpt_error dpt_device(dpt_tensor t, char **out) {
  return guarded([&] { *out = strdup(ref(t).device().str().c_str()); });
}

dpt_error dpt_to(dpt_tensor t, const char *device, int dtype, dpt_tensor *out) {
  return guarded([&] {
    auto st = dtype < 0 ? ref(t).scalar_type() : scalar_type(dtype);
    *out = wrap(ref(t).to(c10::Device(std::string(device)), st));
  });
}

dpt_error dpt_item(dpt_tensor t, double *out) {
  return guarded([&] { *out = ref(t).item<double>(); });
}

dpt_error dpt_to_string(dpt_tensor t, char **out) {
  return guarded([&] {
    std::ostringstream s;
    s << ref(t);
    *out = strdup(s.str().c_str());
  });
}

dpt_error dpt_clone(dpt_tensor t, dpt_tensor *out) {
  return guarded([&] { *out = wrap(ref(t).clone()); });
}

dpt_error dpt_contiguous(dpt_tensor t, dpt_tensor *out) {
  return guarded([&] { *out = wrap(ref(t).contiguous()); });
}

dpt_error dpt_detach(dpt_tensor t, dpt_tensor *out) {
  return guarded([&] { *out = wrap(ref(t).detach()); });
}

dpt_error dpt_equal(dpt_tensor a, dpt_tensor b, int *out) {
  return guarded([&] { *out = at::equal(ref(a), ref(b)) ? 1 : 0; });
}

dpt_error dpt_set_requires_grad(dpt_tensor t, int on) {
  return guarded([&] { t->t.set_requires_grad(on != 0); });
}

int dpt_requires_grad(dpt_tensor t) { return t->t.requires_grad() ? 1 : 0; }

dpt_error dpt_backward(dpt_tensor t) {
  return guarded([&] { ref(t).backward(); });
}

dpt_error dpt_grad(dpt_tensor t, dpt_tensor *out) {
  return guarded([&] {
    const auto &g = ref(t).grad();
    *out = g.defined() ? wrap(g) : nullptr;
  });
}

dpt_error dpt_zero_grad(dpt_tensor t, int set_to_none) {
  return guarded([&] {
    auto &g = t->t.mutable_grad();
    if (!g.defined()) return;
    if (set_to_none) {
      g.reset();
      return;
    }
    // As torch.optim.Optimizer.zero_grad(set_to_none=False).
    if (g.grad_fn()) {
      g.detach_();
    } else {
      g.requires_grad_(false);
    }
    g.zero_();
  });
}

dpt_error dpt_uniform_(dpt_tensor t, double from, double to) {
  return guarded([&] {
    at::NoGradGuard no_grad;
    ref(t).uniform_(from, to);
  });
}

dpt_error dpt_normal_(dpt_tensor t, double mean, double std) {
  return guarded([&] {
    at::NoGradGuard no_grad;
    ref(t).normal_(mean, std);
  });
}

dpt_error dpt_fill_(dpt_tensor t, double value) {
  return guarded([&] {
    at::NoGradGuard no_grad;
    ref(t).fill_(value);
  });
}

dpt_error dpt_copy_(dpt_tensor dst, dpt_tensor src) {
  return guarded([&] {
    at::NoGradGuard no_grad;
    if (!ref(dst).sizes().equals(ref(src).sizes())) {
      std::ostringstream s;
      s << "copy: shape " << ref(src).sizes() << " into " << ref(dst).sizes();
      throw std::invalid_argument(s.str());
    }
    ref(dst).copy_(ref(src));
  });
}

// channels_last_1d tells a [N, C, L] tensor whose channels are innermost in
// memory (strides [C*L, 1, C], as a transposed [N, L, C] has), which
// conv1d, max_pool1d, batch_norm and cat along the length (any of its
// inputs so) answer in the same layout: conv1d as oneDNN's 2-D
// channels-last convolution over [N, C, 1, L]. PyTorch has no channels-last
// layout for 3-D tensors: its conv1d reorders such an input for oneDNN and
// back at every call. On 16 channels oneDNN's channels-last convolution is
// 1.3-4x faster than on [N, C, L] (BENCHMARKS.md, issue 16).
static bool channels_last_1d(const at::Tensor &x) { return x.dim() == 3 && x.stride(1) == 1 && x.stride(2) == x.size(1); }

dpt_error dpt_conv1d(dpt_tensor x, dpt_tensor w, dpt_tensor b, int64_t stride, int64_t padding, int64_t dilation, int64_t groups,
                     dpt_tensor *out) {
  return guarded([&] {
    const at::Tensor &in = ref(x), &weight = ref(w);
    if (channels_last_1d(in) && weight.dim() == 3) {
      auto w4 = weight.unsqueeze(2).contiguous(at::MemoryFormat::ChannelsLast);
      std::vector<int64_t> strides{1, stride}, pads{0, padding}, dilations{1, dilation};
      auto y = at::conv2d(in.unsqueeze(2), w4, optional(b), strides, pads, dilations, groups);
      *out = wrap(y.contiguous(at::MemoryFormat::ChannelsLast).squeeze(2));
      return;
    }
    *out = wrap(at::conv1d(in, weight, optional(b), {stride}, {padding}, {dilation}, groups));
  });
}

dpt_error dpt_max_pool1d(dpt_tensor x, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation, int ceil_mode,
                         dpt_tensor *out) {
  return guarded([&] {
    const at::Tensor &in = ref(x);
    if (channels_last_1d(in) && padding == 0 && dilation == 1 && ceil_mode == 0 && kernel <= in.size(2)) {
      // The maximum of the kernel's strided slices: elementwise, in the
      // input's layout (max_pool2d's channels-last kernel is 5x slower on
      // 16 channels).
      int64_t n = (in.size(2) - kernel) / stride + 1;
      auto y = in.slice(2, 0, (n - 1) * stride + 1, stride);
      for (int64_t j = 1; j < kernel; j++) y = at::maximum(y, in.slice(2, j, j + (n - 1) * stride + 1, stride));
      *out = wrap(y);
      return;
    }
    *out = wrap(at::max_pool1d(in, {kernel}, {stride}, {padding}, {dilation}, ceil_mode != 0));
  });
}

dpt_error dpt_linear(dpt_tensor x, dpt_tensor w, dpt_tensor b, dpt_tensor *out) {
  return guarded([&] { *out = wrap(at::linear(ref(x), ref(w), optional(b))); });
}

dpt_error dpt_batch_norm(dpt_tensor x, dpt_tensor w, dpt_tensor b, dpt_tensor mean, dpt_tensor var, int training, double momentum,
                         double eps, dpt_tensor *out) {
  return guarded([&] {
    const at::Tensor &in = ref(x);
    if (channels_last_1d(in) && training == 0 && w != nullptr && b != nullptr && mean != nullptr && var != nullptr) {
      // Inference: x * alpha + beta, alpha and beta per channel as
      // PyTorch's CPU batch norm makes them, in the input's layout
      // (batch_norm's channels-last kernel is 2x slower on 16 channels).
      auto alpha = ref(w) * at::reciprocal(at::sqrt(ref(var) + eps));
      auto beta = ref(b) - ref(mean) * alpha;
      *out = wrap(at::addcmul(beta.view({1, -1, 1}), in, alpha.view({1, -1, 1})));
      return;
    }
    *out = wrap(at::batch_norm(in, optional(w), optional(b), optional(mean), optional(var), training != 0, momentum, eps,
                               at::globalContext().userEnabledCuDNN()));
  });
}

dpt_error dpt_dropout(dpt_tensor x, double p, int training, dpt_tensor *out) {
  return guarded([&] { *out = wrap(at::dropout(ref(x), p, training != 0)); });
}

dpt_error dpt_unary(int op, dpt_tensor x, dpt_tensor *out) {
  return guarded([&] {
    const auto &t = ref(x);
    switch (op) {
      case DPT_RELU: *out = wrap(at::relu(t)); return;
      case DPT_SIGMOID: *out = wrap(at::sigmoid(t)); return;
      case DPT_NEG: *out = wrap(at::neg(t)); return;
      case DPT_SQRT: *out = wrap(at::sqrt(t)); return;
      case DPT_EXP: *out = wrap(at::exp(t)); return;
      case DPT_LOG: *out = wrap(at::log(t)); return;
      case DPT_TANH: *out = wrap(at::tanh(t)); return;
      case DPT_ABS: *out = wrap(at::abs(t)); return;
    }
    throw std::invalid_argument("unknown unary op " + std::to_string(op));
  });
}

dpt_error dpt_new_empty(dpt_tensor x, const int64_t *shape, int ndim, dpt_tensor *out) {
  return guarded([&] { *out = wrap(ref(x).new_empty(dims(shape, ndim))); });
}

namespace {

// affine_relu_body is relu(x * a + b) over [n, l, c] float32 data whose
// channels are contiguous (row (i, j) at i*s0 + j*s2), rounded as
// x.mul(a).add(b) then relu (a product, then a sum: the shim is built with
// -ffp-contract=off; ATen's addcmul fuses them where it has FMA), NaN kept.
// C > 0 is c known when compiled (a and b then stay in registers), 0 any.
extern "C++" {
template <int C, bool Affine>
__attribute__((always_inline)) inline void affine_relu_body(const float *__restrict x, float *__restrict y,
                                                            const float *__restrict a, const float *__restrict b,
                                                            int64_t n, int64_t l, int64_t c, int64_t xs0, int64_t xs2,
                                                            int64_t ys0, int64_t ys2) {
  const int64_t cc = C > 0 ? C : c;
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < l; j++) {
      const float *__restrict xr = x + i * xs0 + j * xs2;
      float *__restrict yr = y + i * ys0 + j * ys2;
      for (int64_t k = 0; k < cc; k++) {
        float v = Affine ? xr[k] * a[k] + b[k] : xr[k];
        yr[k] = v < 0.0f ? 0.0f : v;
      }
    }
  }
}

template <bool Affine>
__attribute__((always_inline)) inline void affine_relu_any(const float *x, float *y, const float *a, const float *b,
                                                           int64_t n, int64_t l, int64_t c, int64_t xs0, int64_t xs2,
                                                           int64_t ys0, int64_t ys2) {
  switch (c) {
    case 16: return affine_relu_body<16, Affine>(x, y, a, b, n, l, c, xs0, xs2, ys0, ys2);
    case 32: return affine_relu_body<32, Affine>(x, y, a, b, n, l, c, xs0, xs2, ys0, ys2);
    case 64: return affine_relu_body<64, Affine>(x, y, a, b, n, l, c, xs0, xs2, ys0, ys2);
    default: return affine_relu_body<0, Affine>(x, y, a, b, n, l, c, xs0, xs2, ys0, ys2);
  }
}
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void affine_relu_rows(
    const float *x, float *y, const float *a, const float *b, int64_t n, int64_t l, int64_t c, int64_t xs0, int64_t xs2,
    int64_t ys0, int64_t ys2) {
  if (a != nullptr) {
    affine_relu_any<true>(x, y, a, b, n, l, c, xs0, xs2, ys0, ys2);
  } else {
    affine_relu_any<false>(x, y, a, b, n, l, c, xs0, xs2, ys0, ys2);
  }
}

}  // namespace

// dpt_affine_relu_into is one pass where ATen takes four (mul, add, relu,
// then a copy into place): the prefix forward's batch norm and ReLU,
// written straight into the next convolution's input. Float32 CPU tensors
// with their channels innermost take the loop above; others ATen's ops.
dpt_error dpt_affine_relu_into(dpt_tensor x, dpt_tensor scale, dpt_tensor shift, dpt_tensor out) {
  return guarded([&] {
    const at::Tensor &in = ref(x), &y = ref(out);
    if (!in.sizes().equals(y.sizes())) {
      std::ostringstream s;
      s << "affine_relu_into: input " << in.sizes() << ", output " << y.sizes();
      throw std::invalid_argument(s.str());
    }
    if ((scale == nullptr) != (shift == nullptr)) throw std::invalid_argument("affine_relu_into: scale and shift go together");
    bool affine = scale != nullptr;
    auto fast = [&](const at::Tensor &t) { return t.is_cpu() && t.scalar_type() == at::kFloat && t.dim() == 3 && t.stride(1) == 1; };
    auto channel = [&](dpt_tensor t) {
      const at::Tensor &v = ref(t);
      return v.is_cpu() && v.scalar_type() == at::kFloat && v.dim() == 1 && v.is_contiguous() && v.numel() == in.size(1);
    };
    bool params = !affine || (channel(scale) && channel(shift));
    if (fast(in) && fast(y) && params) {
      affine_relu_rows(in.data_ptr<float>(), y.data_ptr<float>(), affine ? ref(scale).data_ptr<float>() : nullptr,
                       affine ? ref(shift).data_ptr<float>() : nullptr, in.size(0), in.size(2), in.size(1), in.stride(0),
                       in.stride(2), y.stride(0), y.stride(2));
      return;
    }
    auto v = affine ? at::add(at::mul(in, ref(scale).view({1, -1, 1})), ref(shift).view({1, -1, 1})) : in;
    at::clamp_min_out(const_cast<at::Tensor &>(y), v, 0);
  });
}

dpt_error dpt_binary(int op, dpt_tensor a, dpt_tensor b, double alpha_value, dpt_tensor *out) {
  return guarded([&] {
    const auto &x = ref(a);
    const auto &y = ref(b);
    // PyTorch refuses a floating alpha for integer tensors; pass whole
    // numbers as integers, as Python's add(x, y, alpha=1) does.
    c10::Scalar alpha = alpha_value == std::floor(alpha_value) ? c10::Scalar(static_cast<int64_t>(alpha_value))
                                                               : c10::Scalar(alpha_value);
    switch (op) {
      case DPT_ADD: *out = wrap(at::add(x, y, alpha)); return;
      case DPT_SUB: *out = wrap(at::sub(x, y, alpha)); return;
      case DPT_MUL: *out = wrap(at::mul(x, y)); return;
      case DPT_DIV: *out = wrap(at::div(x, y)); return;
      case DPT_EQ: *out = wrap(at::eq(x, y)); return;
      case DPT_ADD_:
        a->t.add_(y, alpha);
        *out = nullptr;
        return;
    }
    throw std::invalid_argument("unknown binary op " + std::to_string(op));
  });
}

dpt_error dpt_scalar_op(int op, dpt_tensor a, double s, dpt_tensor *out) {
  return guarded([&] {
    const auto &x = ref(a);
    switch (op) {
      case DPT_ADD: *out = wrap(at::add(x, s)); return;
      case DPT_SUB: *out = wrap(at::sub(x, s)); return;
      case DPT_MUL: *out = wrap(at::mul(x, s)); return;
      case DPT_DIV: *out = wrap(at::div(x, s)); return;
    }
    throw std::invalid_argument("unknown scalar op " + std::to_string(op));
  });
}

dpt_error dpt_pad(dpt_tensor x, const int64_t *pad, int npad, double value, dpt_tensor *out) {
  return guarded([&] { *out = wrap(at::constant_pad_nd(ref(x), dims(pad, npad), value)); });
}

dpt_error dpt_transpose(dpt_tensor x, int64_t d0, int64_t d1, dpt_tensor *out) {
  return guarded([&] { *out = wrap(ref(x).transpose(d0, d1)); });
}

dpt_error dpt_reshape(dpt_tensor x, const int64_t *shape, int ndim, int view, dpt_tensor *out) {
  return guarded([&] { *out = wrap(view ? ref(x).view(dims(shape, ndim)) : ref(x).reshape(dims(shape, ndim))); });
}

dpt_error dpt_flatten(dpt_tensor x, int64_t start, int64_t end, dpt_tensor *out) {
  return guarded([&] { *out = wrap(ref(x).flatten(start, end)); });
}

dpt_error dpt_expand(dpt_tensor x, const int64_t *shape, int ndim, dpt_tensor *out) {
  return guarded([&] { *out = wrap(ref(x).expand(dims(shape, ndim))); });
}

dpt_error dpt_narrow(dpt_tensor x, int64_t dim, int64_t start, int64_t length, dpt_tensor *out) {
  return guarded([&] { *out = wrap(ref(x).narrow(dim, start, length)); });
}

dpt_error dpt_reduce(int op, dpt_tensor x, const int64_t *ds, int ndims, int keepdim, dpt_tensor *out) {
  return guarded([&] {
    const auto &t = ref(x);
    switch (op) {
      case DPT_MEAN: *out = wrap(ndims == 0 ? t.mean() : t.mean(dims(ds, ndims), keepdim != 0)); return;
      case DPT_SUM: *out = wrap(ndims == 0 ? t.sum() : t.sum(dims(ds, ndims), keepdim != 0)); return;
    }
    throw std::invalid_argument("unknown reduction " + std::to_string(op));
  });
}

dpt_error dpt_cat(const dpt_tensor *ts, int n, int64_t dim, int stack, dpt_tensor *out) {
  return guarded([&] {
    std::vector<at::Tensor> list;
    list.reserve(n);
    bool cl = false;  // along the length of channels-last tensors: keep the layout
    for (int i = 0; i < n; i++) {
      list.push_back(ref(ts[i]));
      cl = cl || channels_last_1d(list.back());
    }
    if (!stack && cl && (dim == 2 || dim == -1)) {
      for (auto &t : list) t = t.transpose(1, 2);
      *out = wrap(at::cat(list, 1).transpose(1, 2));
      return;
    }
    *out = wrap(stack ? at::stack(list, dim) : at::cat(list, dim));
  });
}

dpt_error dpt_cross_entropy(dpt_tensor logits, dpt_tensor target, dpt_tensor weight, int64_t reduction, int64_t ignore_index,
                            double label_smoothing, dpt_tensor *out) {
  return guarded([&] {
    *out = wrap(at::cross_entropy_loss(ref(logits), ref(target), optional(weight), reduction, ignore_index, label_smoothing));
  });
}

dpt_error dpt_mse_loss(dpt_tensor x, dpt_tensor target, int64_t reduction, dpt_tensor *out) {
  return guarded([&] { *out = wrap(at::mse_loss(ref(x), ref(target), reduction)); });
}

dpt_error dpt_softmax(dpt_tensor x, int64_t dim, int log, dpt_tensor *out) {
  return guarded([&] { *out = wrap(log ? at::log_softmax(ref(x), dim) : at::softmax(ref(x), dim)); });
}

dpt_error dpt_argmax(dpt_tensor x, int64_t dim, int keepdim, dpt_tensor *out) {
  return guarded([&] { *out = wrap(at::argmax(ref(x), dim, keepdim != 0)); });
}

namespace {

// first_moment is Adam's exp_avg update for one element: PyTorch 1.13's
// m * beta1 + (1 - beta1) * g, or PyTorch 2's m.lerp_(g, 1 - beta1), which
// ATen computes as one fused multiply-add from whichever end is nearer.
// madd is a * b + c as ATen's vectorised kernels compute it: one fused
// multiply-add where its kernels for the CPU have FMA (the AVX2 and AVX-512
// builds), two roundings in its baseline build.
__attribute__((always_inline)) inline float madd(float a, float b, float c, bool fma) { return fma ? std::fma(a, b, c) : a * b + c; }

// aten_uses_fma tells which of ATen's kernel builds runs: it picks AVX2 or
// better when the CPU has AVX2 and FMA, unless ATEN_CPU_CAPABILITY=default.
bool aten_uses_fma() {
  static const bool fma = [] {
    const char *cap = std::getenv("ATEN_CPU_CAPABILITY");
    if (cap != nullptr && std::strcmp(cap, "default") == 0) return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return fma;
}

__attribute__((always_inline)) inline float first_moment(float m, float g, float beta1, float w, bool fma) {
#if TORCH_VERSION_MAJOR >= 2
  return w < 0.5f ? madd(w, g - m, m, fma) : madd(w - 1.0f, g - m, g, fma);
#else
  return madd(g, w, m * beta1, fma);  // mul_(beta1).add_(g, alpha=1 - beta1)
#endif
}

// The fused Adam step makes three passes over a float32 parameter where the
// unfused step makes eight: adam_moments updates exp_avg and exp_avg_sq,
// ATen's own sqrt (PyTorch 2's vectorised sqrt is not IEEE-exact, so ours
// would differ) makes sqrt(exp_avg_sq), and adam_update moves the parameter.
// Each float operation rounds as ATen's vectorised kernels do, in their order
// (the shim is built with -ffp-contract=off, so a fused multiply-add appears
// only where ATen's kernels have one), so results agree with PyTorch's to the
// last bit on the machines we test. The loops are compiled twice, for AVX2
// with FMA and for the baseline, and chosen at run time (adam_fma).
struct adam_args {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, weight_decay, bias_correction2_sqrt, eps, neg_step_size;
  bool fma;  // ATen's kernels fuse multiply-adds (aten_uses_fma)
};

__attribute__((always_inline)) inline void adam_moments_body(const float *p, const float *g, float *m, float *v,
                                                             int64_t begin, int64_t end, const adam_args &a) {
  for (int64_t i = begin; i < end; i++) {
    float grad = a.weight_decay != 0 ? madd(p[i], a.weight_decay, g[i], a.fma) : g[i];
    m[i] = first_moment(m[i], grad, a.beta1, a.one_minus_beta1, a.fma);
    v[i] = madd(a.one_minus_beta2 * grad, grad, v[i] * a.beta2, a.fma);
  }
}

__attribute__((always_inline)) inline void adam_update_body(float *p, const float *m, const float *sqrt_v, int64_t begin,
                                                            int64_t end, const adam_args &a) {
  for (int64_t i = begin; i < end; i++) {
    float denom = sqrt_v[i] / a.bias_correction2_sqrt + a.eps;
    p[i] = p[i] + a.neg_step_size * m[i] / denom;
  }
}

__attribute__((target("avx2,fma"))) void adam_moments_avx2(const float *p, const float *g, float *m, float *v,
                                                           int64_t begin, int64_t end, const adam_args &a) {
  adam_moments_body(p, g, m, v, begin, end, a);
}
void adam_moments_base(const float *p, const float *g, float *m, float *v, int64_t begin, int64_t end,
                       const adam_args &a) {
  adam_moments_body(p, g, m, v, begin, end, a);
}
__attribute__((target("avx2,fma"))) void adam_update_avx2(float *p, const float *m, const float *sqrt_v, int64_t begin,
                                                          int64_t end, const adam_args &a) {
  adam_update_body(p, m, sqrt_v, begin, end, a);
}
void adam_update_base(float *p, const float *m, const float *sqrt_v, int64_t begin, int64_t end, const adam_args &a) {
  adam_update_body(p, m, sqrt_v, begin, end, a);
}

// cpu_has_fma: the CPU runs the AVX2+FMA build of the loops.
bool cpu_has_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

bool fusable(const at::Tensor &param, const at::Tensor &grad, const at::Tensor &m, const at::Tensor &v) {
  for (const auto *t : {&param, &grad, &m, &v}) {
    if (!t->is_cpu() || t->scalar_type() != at::kFloat || !t->is_contiguous()) return false;
  }
  return true;
}

}  // namespace

// dpt_adam_step is torch.optim.Adam.step() of the PyTorch built against
// (_single_tensor_adam, amsgrad off, maximize off; 2.x's first moment is a
// lerp_). Unfused, it runs the same tensor operations in the same order, so
// results are bit-identical; fused (like PyTorch 2's
// Adam(fused=True)), contiguous float32 CPU parameters take one pass each.
// State is created on a parameter's first gradient, as PyTorch does:
// exp_avg[i] and exp_avg_sq[i] may be NULL on entry and then receive new
// handles; steps[i] is incremented.
dpt_error dpt_adam_step(const dpt_tensor *params, dpt_tensor *exp_avg, dpt_tensor *exp_avg_sq, double *steps, int n, double lr,
                        double beta1, double beta2, double eps, double weight_decay, int fused) {
  return guarded([&] {
    at::NoGradGuard no_grad;
    for (int i = 0; i < n; i++) {
      auto &param = params[i]->t;
      const auto &g = param.grad();
      if (!g.defined()) continue;
      if (exp_avg[i] == nullptr) exp_avg[i] = wrap(at::zeros_like(param, at::MemoryFormat::Preserve));
      if (exp_avg_sq[i] == nullptr) exp_avg_sq[i] = wrap(at::zeros_like(param, at::MemoryFormat::Preserve));
      steps[i] += 1;
      auto &m = exp_avg[i]->t;
      auto &v = exp_avg_sq[i]->t;
      double bias_correction1 = 1 - std::pow(beta1, steps[i]);
      double bias_correction2 = 1 - std::pow(beta2, steps[i]);
      double step_size = lr / bias_correction1;
      if (fused && fusable(param, g, m, v)) {
        adam_args args{static_cast<float>(beta1), static_cast<float>(1 - beta1), static_cast<float>(beta2),
                       static_cast<float>(1 - beta2), static_cast<float>(weight_decay),
                       static_cast<float>(std::sqrt(bias_correction2)), static_cast<float>(eps),
                       static_cast<float>(-step_size), aten_uses_fma()};
        float *pp = param.data_ptr<float>();
        const float *gp = g.data_ptr<float>();
        float *mp = m.data_ptr<float>();
        float *vp = v.data_ptr<float>();
        bool avx2 = cpu_has_fma();
        at::parallel_for(0, param.numel(), 16384, [&](int64_t begin, int64_t end) {
          (avx2 ? adam_moments_avx2 : adam_moments_base)(pp, gp, mp, vp, begin, end, args);
        });
        // sqrt into a buffer kept between steps: a fresh one each step would
        // cost the kernel a page fault per 4 kB of every large parameter.
        thread_local at::Tensor scratch;
        if (!scratch.defined() || scratch.numel() < v.numel()) scratch = at::empty({v.numel()}, v.options());
        auto sqrt_v = scratch.narrow(0, 0, v.numel()).view(v.sizes());
        at::sqrt_out(sqrt_v, v);
        const float *sp = sqrt_v.data_ptr<float>();
        at::parallel_for(0, param.numel(), 16384, [&](int64_t begin, int64_t end) {
          (avx2 ? adam_update_avx2 : adam_update_base)(pp, mp, sp, begin, end, args);
        });
        continue;
      }
      auto grad = weight_decay != 0 ? g.add(param, weight_decay) : g;
#if TORCH_VERSION_MAJOR >= 2
      m.lerp_(grad, 1 - beta1);
#else
      m.mul_(beta1).add_(grad, 1 - beta1);
#endif
      v.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      auto denom = (v.sqrt() / std::sqrt(bias_correction2)).add_(eps);
      param.addcdiv_(m, denom, -step_size);
    }
  });
}

// dpt_sgd_step is torch.optim.SGD.step() of PyTorch 1.13 (_single_tensor_sgd,
// maximize off). A missing momentum buffer is created as PyTorch does, and
// its handle returned in momentum_buffer[i].
dpt_error dpt_sgd_step(const dpt_tensor *params, dpt_tensor *momentum_buffer, int n, double lr, double momentum, double dampening,
                       double weight_decay, int nesterov) {
  return guarded([&] {
    at::NoGradGuard no_grad;
    for (int i = 0; i < n; i++) {
      auto &param = params[i]->t;
      const auto &g = param.grad();
      if (!g.defined()) continue;
      auto d_p = weight_decay != 0 ? g.add(param, weight_decay) : g;
      if (momentum != 0) {
        if (momentum_buffer[i] == nullptr) {
          momentum_buffer[i] = wrap(d_p.clone().detach());
        } else {
          momentum_buffer[i]->t.mul_(momentum).add_(d_p, 1 - dampening);
        }
        const auto &buf = momentum_buffer[i]->t;
        d_p = nesterov ? d_p.add(buf, momentum) : buf;
      }
      param.add_(d_p, -lr);
    }
  });
}

void dpt_ivalue_free(dpt_ivalue v) { delete v; }
dpt_ivalue dpt_ivalue_none(void) { return new dpt_ivalue_s{c10::IValue()}; }
dpt_ivalue dpt_ivalue_bool(int b) { return new dpt_ivalue_s{c10::IValue(b != 0)}; }
dpt_ivalue dpt_ivalue_int(int64_t i) { return new dpt_ivalue_s{c10::IValue(i)}; }
dpt_ivalue dpt_ivalue_double(double d) { return new dpt_ivalue_s{c10::IValue(d)}; }
dpt_ivalue dpt_ivalue_string(const char *s) { return new dpt_ivalue_s{c10::IValue(std::string(s))}; }
dpt_ivalue dpt_ivalue_tensor(dpt_tensor t) { return new dpt_ivalue_s{c10::IValue(t->t)}; }
dpt_ivalue dpt_ivalue_list(void) { return new dpt_ivalue_s{c10::IValue(c10::impl::GenericList(c10::AnyType::get()))}; }

dpt_error dpt_ivalue_list_append(dpt_ivalue list, dpt_ivalue item) {
  return guarded([&] { list->v.toList().push_back(item->v); });
}

dpt_ivalue dpt_ivalue_dict(void) {
  return new dpt_ivalue_s{c10::IValue(c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get()))};
}

dpt_error dpt_ivalue_dict_insert(dpt_ivalue dict, dpt_ivalue key, dpt_ivalue value) {
  return guarded([&] { dict->v.toGenericDict().insert_or_assign(key->v, value->v); });
}

// dpt_pickle_save writes torch.save's zip format, as torch::pickle_save does
// but with aggregates untagged: a tagged dict or list pickles a call to
// torch.jit._pickle.restore_type_tag, which torch.load(weights_only=True),
// PyTorch 2.6's default, refuses. Untagged, the file names only the globals
// of a plain torch.save (tensor rebuilding and storages).
dpt_error dpt_pickle_save(dpt_ivalue v, const char *path) {
  return guarded([&] {
    std::vector<char> pickle;
    torch::jit::Pickler pickler([&](const char *buf, size_t n) { pickle.insert(pickle.end(), buf, buf + n); }, nullptr,
                                nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
    pickler.protocol();
    pickler.pushIValue(v->v);
    pickler.stop();
    std::vector<char> zip;
    {
      caffe2::serialize::PyTorchStreamWriter writer([&](const void *buf, size_t n) {
        zip.insert(zip.end(), static_cast<const char *>(buf), static_cast<const char *>(buf) + n);
        return n;
      });
      torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(), writer);
      writer.writeEndOfFile();
    }
    write_file(path, zip.data(), zip.size());
  });
}

dpt_error dpt_module_new(const char *name, dpt_module *out) {
  return guarded([&] { *out = new dpt_module_s{torch::jit::Module(name)}; });
}

dpt_error dpt_module_register(dpt_module m, const char *name, dpt_tensor t, int is_buffer) {
  return guarded([&] {
    if (is_buffer) {
      m->m.register_buffer(name, ref(t).detach());
    } else {
      m->m.register_parameter(name, ref(t).detach(), false);
    }
  });
}

dpt_error dpt_module_define(dpt_module m, const char *source) {
  return guarded([&] { m->m.define(source); });
}

dpt_error dpt_module_save(dpt_module m, const char *path) {
  return guarded([&] {
    std::ostringstream out;
    m->m.save(out);
    auto bytes = out.str();
    write_file(path, bytes.data(), bytes.size());
  });
}

dpt_error dpt_module_load(const char *path, const char *device, dpt_module *out) {
  return guarded([&] { *out = new dpt_module_s{torch::jit::load(path, c10::Device(std::string(device)))}; });
}

dpt_error dpt_module_eval(dpt_module m) {
  return guarded([&] { m->m.eval(); });
}

dpt_error dpt_module_forward(dpt_module m, const dpt_tensor *inputs, int n, dpt_tensor *out) {
  return guarded([&] {
    std::vector<c10::IValue> args;
    for (int i = 0; i < n; i++) args.emplace_back(ref(inputs[i]));
    auto result = m->m.forward(args);
    if (!result.isTensor()) throw std::runtime_error("forward returned " + result.tagKind() + ", not a tensor");
    *out = wrap(result.toTensor());
  });
}

void dpt_module_free(dpt_module m) { delete m; }

}  // extern "C"
