// dist.cpp: libtorch's c10d for the Go side, behind the plain C API of
// dptorch.h: a TCPStore rendezvous and a Gloo process group, with the
// collectives data-parallel training uses (all-reduce, broadcast).
// No protocol of our own: the store and the group are the ones PyTorch's
// torch.distributed makes for init_process_group("gloo", "env://"), with the
// same key prefixes, so that Go and Python ranks can share one group.
#include "shim.hpp"

#ifdef DPT_NO_GLOO
// Built without Gloo's headers (libgloo-dev): every call says so.

struct dpt_pg_s {};

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

}  // extern "C"

#else

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

struct dpt_pg_s {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
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
    store = c10::make_intrusive<c10d::PrefixStore>("cpu/", store);
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->timeout = timeout;
    opts->devices = devices();
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
    *out = new dpt_pg_s{store, pg};
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

}  // extern "C"

#endif  // DPT_NO_GLOO
