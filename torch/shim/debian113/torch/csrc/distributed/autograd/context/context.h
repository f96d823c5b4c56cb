// Debian's libtorch-dev 1.13 ships c10d's reducer.hpp but not the
// distributed-autograd header it includes (the package leaves out
// torch/csrc/distributed/autograd). The Reducer's declarations need only two
// names from it, declared here: an incomplete DistAutogradContext with its
// gradient callback type (reducer.hpp static_asserts it equals its own), and
// the shared pointer it holds. Nothing here is defined or called: the shim
// never uses distributed autograd (RPC). Included only by the build against
// Debian's 1.13 (Makefile, LIBTORCH=system).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor &)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
