// dist.cpp: libtorch's c10d for the Go side, behind the plain C API of
// dptorch.h: a TCPStore rendezvous and a Gloo process group, with the
// collectives data-parallel training uses (all-reduce, broadcast), and
// DistributedDataParallel's engine, c10d's Reducer, driven as
// torch/nn/parallel/distributed.py drives it.
// No protocol of our own: the store and the group are the ones PyTorch's
// torch.distributed makes for init_process_group("gloo", "env://"), with the
// same key prefixes, so that Go and Python ranks can share one group.
#include "shim.hpp"

#ifdef DPT_NO_GLOO
// Built without Gloo's headers (libgloo-dev): every call says so.

struct dpt_pg_s {};
struct dpt_ddp_s {};

extern "C" {

static dpt_error no_gloo() {
  return strdup("this shim was built without Gloo's headers: install libgloo-dev (scripts/install-deps.sh) and rebuild (make shim)");
}

dpt_error dpt_pg_new(const char *, int, int, int, int, int64_t, const char *, dpt_pg *) { return no_gloo(); }
void dpt_pg_free(dpt_pg pg) { delete pg; }
dpt_error dpt_pg_allreduce_sum(dpt_pg, const dpt_tensor *, int) { return no_gloo(); }
dpt_error dpt_pg_broadcast(dpt_pg, const dpt_tensor *, int, int) { return no_gloo(); }
dpt_error dpt_pg_store_set(dpt_pg, const char *, const char *) { return no_gloo(); }
dpt_error dpt_pg_store_check(dpt_pg, const char *, int *) { return no_gloo(); }
dpt_error dpt_ddp_new(dpt_pg, const dpt_tensor *, int, const dpt_tensor *, int, int, dpt_ddp *) { return no_gloo(); }
void dpt_ddp_free(dpt_ddp d) { delete d; }
dpt_error dpt_ddp_pre_forward(dpt_ddp) { return no_gloo(); }
dpt_error dpt_ddp_post_forward(dpt_ddp, const dpt_tensor *, int) { return no_gloo(); }

}  // extern "C"

#else

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

struct dpt_pg_s {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  // group is the ProcessGroup over pg that torch.distributed hands to
  // DistributedDataParallel (in libtorch 2, a ProcessGroup holds backends;
  // in 1.13, Gloo's group is one).
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};

// dpt_ddp_s is what DistributedDataParallel holds besides the module: the
// Reducer, and the buffers it broadcasts from rank 0 before each forward.
struct dpt_ddp_s {
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  std::shared_ptr<c10d::Reducer> reducer;
  std::vector<at::Tensor> buffers;
  bool find_unused;
};

namespace {

using dpt::guarded;

std::vector<at::Tensor> tensors(const dpt_tensor *ts, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; i++) out.push_back(ts[i]->t);
  return out;
}

// device is the Gloo transport torch.distributed picks: the interfaces of
// GLOO_SOCKET_IFNAME (comma-separated), else the address this host's name
// resolves to.
std::vector<std::shared_ptr<::gloo::transport::Device>> devices() {
  std::vector<std::shared_ptr<::gloo::transport::Device>> out;
  if (const char *names = std::getenv("GLOO_SOCKET_IFNAME"); names != nullptr && names[0] != '\0') {
    std::string all(names);
    size_t start = 0;
    while (start <= all.size()) {
      size_t end = all.find(',', start);
      if (end == std::string::npos) end = all.size();
      if (end > start) out.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(all.substr(start, end - start)));
      start = end + 1;
    }
    return out;
  }
  out.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  return out;
}

}  // namespace

extern "C" {

dpt_error dpt_pg_new(const char *host, int port, int rank, int world, int host_store, int64_t timeout_ms, const char *prefix,
                     dpt_pg *out) {
  return guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(port);
    o.isServer = host_store != 0;
    o.numWorkers = world;
    o.waitWorkers = true;
    o.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(host, o);
    // A store that outlives a group (torchrun's agent's, across restarts)
    // keeps the keys of the group before: each attempt takes its own prefix.
    if (prefix != nullptr && prefix[0] != '\0') store = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
    // torch.distributed's keys: PrefixStore("default_pg") in
    // init_process_group, "<group name>/" (the default group is "0") and
    // "<device>/" in _new_process_group_helper.
    store = c10::make_intrusive<c10d::PrefixStore>("default_pg", store);
    store = c10::make_intrusive<c10d::PrefixStore>("0/", store);
    auto groupStore = store;
    store = c10::make_intrusive<c10d::PrefixStore>("cpu/", store);
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->timeout = timeout;
    opts->devices = devices();
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
#if TORCH_VERSION_MAJOR >= 2
    // As _new_process_group_helper: the group over the "<group>/" store,
    // Gloo its default backend and the CPU's.
    auto group = c10::make_intrusive<c10d::ProcessGroup>(groupStore, rank, world);
    group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, pg);
#else
    c10::intrusive_ptr<c10d::ProcessGroup> group = pg;
#endif
    *out = new dpt_pg_s{store, pg, group};
  });
}

void dpt_pg_free(dpt_pg pg) { delete pg; }

dpt_error dpt_pg_allreduce_sum(dpt_pg pg, const dpt_tensor *ts, int n) {
  return guarded([&] {
    auto t = tensors(ts, n);
    pg->pg->allreduce(t)->wait();
  });
}

dpt_error dpt_pg_broadcast(dpt_pg pg, const dpt_tensor *ts, int n, int root) {
  return guarded([&] {
    auto t = tensors(ts, n);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    pg->pg->broadcast(t, o)->wait();
  });
}

dpt_error dpt_pg_store_set(dpt_pg pg, const char *key, const char *value) {
  return guarded([&] {
    std::string v(value);
    pg->store->set(key, std::vector<uint8_t>(v.begin(), v.end()));
  });
}

dpt_error dpt_pg_store_check(dpt_pg pg, const char *key, int *present) {
  return guarded([&] { *present = pg->store->check({std::string(key)}) ? 1 : 0; });
}

// DistributedDataParallel's settings (its defaults): 25 MiB buckets, the
// first 1 MiB once buckets are rebuilt, 250 MiB for broadcasts.
constexpr int64_t kBucketBytes = 25 << 20;
constexpr int64_t kFirstBucketBytes = 1 << 20;
constexpr size_t kBroadcastBytes = 250 << 20;

// detached are ts without autograd history: the tensors DDP broadcasts.
static std::vector<at::Tensor> detached(const dpt_tensor *ts, int n) {
  std::vector<at::Tensor> out = tensors(ts, n);
  for (auto &t : out) t = t.detach();
  return out;
}

// dpt_ddp_new is DistributedDataParallel.__init__ with its defaults
// (buffers broadcast, no static graph) and find_unused_parameters as
// given: every rank's parameters checked against rank 0's, rank 0's
// parameters and buffers broadcast, and a Reducer over the parameters with,
// for the first iteration, one bucket (DDP's choice when no parameter can
// go unused) or buckets of 1 MiB then 25 MiB; they are rebuilt from the
// order gradients arrive in, then.
dpt_error dpt_ddp_new(dpt_pg pg, const dpt_tensor *params, int n_params, const dpt_tensor *buffers, int n_buffers,
                      int find_unused, dpt_ddp *out) {
  return guarded([&] {
    auto d = std::make_unique<dpt_ddp_s>();
    d->group = pg->group;
    d->find_unused = find_unused != 0;
    std::vector<at::Tensor> ps = tensors(params, n_params);
    c10d::verify_params_across_processes(d->group, ps, {});
    std::vector<at::Tensor> states = detached(params, n_params);
    d->buffers = detached(buffers, n_buffers);
    states.insert(states.end(), d->buffers.begin(), d->buffers.end());
    if (!states.empty()) c10d::broadcast_coalesced(d->group, states, kBroadcastBytes, 0);
    std::vector<bool> sparse(ps.size(), false);
    std::vector<size_t> caps = {static_cast<size_t>(std::numeric_limits<int64_t>::max())};
    if (d->find_unused) caps = {static_cast<size_t>(kFirstBucketBytes), static_cast<size_t>(kBucketBytes)};
    auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(ps, caps, sparse);
    std::reverse(buckets.begin(), buckets.end());
    std::reverse(limits.begin(), limits.end());
#if TORCH_VERSION_MAJOR >= 2
    d->reducer = std::make_shared<c10d::Reducer>(ps, buckets, d->group, sparse, kBucketBytes, d->find_unused, false,
                                                 std::unordered_map<size_t, std::string>{}, kFirstBucketBytes, false,
                                                 false, std::vector<int64_t>{});
#else
    d->reducer = std::make_shared<c10d::Reducer>(ps, buckets, limits, d->group, sparse, kBucketBytes, d->find_unused, false,
                                                 std::unordered_map<size_t, std::string>{}, kFirstBucketBytes);
#endif
    *out = d.release();
  });
}

void dpt_ddp_free(dpt_ddp d) {
  try {
    delete d;  // ~Reducer may throw: the hooks it removes may be gone
  } catch (...) {
  }
}

// dpt_ddp_pre_forward is DDP's _pre_forward for a training forward:
// prepare_for_forward, the bucket rebuild (once, at the second iteration),
// then rank 0's buffers.
dpt_error dpt_ddp_pre_forward(dpt_ddp d) {
  return guarded([&] {
    d->reducer->prepare_for_forward();
    d->reducer->rebuild_buckets();
    if (!d->buffers.empty()) c10d::broadcast_coalesced(d->group, d->buffers, kBroadcastBytes, 0);
  });
}

// dpt_ddp_post_forward is DDP's _post_forward: the Reducer expects a
// backward, whose gradient hooks all-reduce each bucket as it fills; when
// parameters can go unused, it finds them from the outputs' graph.
dpt_error dpt_ddp_post_forward(dpt_ddp d, const dpt_tensor *outputs, int n) {
  return guarded([&] {
    if (d->find_unused) {
      d->reducer->prepare_for_backward(tensors(outputs, n));
    } else {
      d->reducer->prepare_for_backward({});
    }
  });
}

}  // extern "C"

#endif  // DPT_NO_GLOO
