// shim.hpp: what the shim's C++ files share and Go never sees: the handle
// types behind dptorch.h's opaque pointers, and guarded, which keeps every
// C++ exception on this side of the C API.
#ifndef DPTORCH_SHIM_HPP
#define DPTORCH_SHIM_HPP

#include "dptorch.h"

#include <ATen/ATen.h>

#include <cstring>
#include <exception>

struct dpt_tensor_s {
  at::Tensor t;
};

namespace dpt {

// guarded runs body and turns any exception into an error message (a
// malloc'd copy the caller frees with dpt_free_error).
template <typename F>
dpt_error guarded(F &&body) {
  try {
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
