// shim.hpp: what the shim's C++ files share and Go never sees: the handle
// types behind dptorch.h's opaque pointers, and guarded, which keeps every
// C++ exception on this side of the C API.
#ifndef DPTORCH_SHIM_HPP
#define DPTORCH_SHIM_HPP

#include "dptorch.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cstring>
#include <exception>

struct dpt_tensor_s {
  at::Tensor t;
};

namespace dpt {

// threads is libtorch's intra-op thread count as the program last set it
// (dpt_set_num_threads; 0: never set). OpenMP keeps that count per OS
// thread, and Go runs each call on whichever OS thread is free: without
// this, a call on another thread than the one that set the count would run
// with OMP_NUM_THREADS's (or the machine's) instead, and results that
// depend on the count (float sums split over threads) would change from
// call to call.
inline std::atomic<int> threads{0};

// apply_threads gives the calling OS thread the count the program set.
inline void apply_threads() {
  int n = threads.load(std::memory_order_relaxed);
  if (n > 0 && at::get_num_threads() != n) at::set_num_threads(n);
}

// guarded runs body, with the program's thread count, and turns any
// exception into an error message (a malloc'd copy the caller frees with
// dpt_free_error).
template <typename F>
dpt_error guarded(F &&body) {
  try {
    apply_threads();
    body();
    return nullptr;
  } catch (const c10::Error &e) {
    return strdup(e.what_without_backtrace());
  } catch (const std::exception &e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

}  // namespace dpt

#endif
