// alloc.cpp: libtorch's CPU allocator, which keeps freed blocks of 128 kB
// or more for the next requests.
//
// A tensor's memory from glibc costs page faults wherever glibc gets it from
// the kernel anew: a block of 32 MB or more (its largest mmap threshold)
// comes with a fresh mmap every time, and the application CNN's fc1 gradient
// (40 MB), made at every training step, was 10% of an epoch's CPU time on one
// thread. Kept in glibc's heap instead (load.c's thresholds), the blocks of
// predict's length groups ([64, 16, 128..1536] activations, each size a
// little different) were freed in an order that left the heap fragmented:
// after the ISCX run it held 265 MB, of which 65 were in use. PyTorch's own
// answer on GPUs is its caching allocator; on the CPU it leaves this to the
// C library.
//
// Here every block of kLarge bytes or more is a mapping of the shim's own,
// its size rounded up to a size class (eight per power of two, whole pages).
// A freed block is kept, and a request takes the smallest kept block that
// holds it (best fit, as the CUDA caching allocator does): the same sizes
// step after step find their blocks, and a group of shorter packets reuses
// the blocks of a longer one. Kept blocks never add up to more than the most
// the process has had in use at once (nor kCacheBytes): what a step or a
// batch frees is there for the next one, and no more; past that bound the
// smallest kept blocks are unmapped first, as a larger block serves any
// request a smaller one could. Smaller blocks go to c10's alloc_cpu and
// free_cpu (glibc's heap).
//
// One deleter serves every block, and data pointer and context are the same
// pointer, as libtorch's raw_allocate and raw_deallocate need (oneDNN's
// scratch memory goes through them): the deleter tells a block of ours by
// the table of blocks, and frees any other as c10 does.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <torch/version.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

// c10::Allocator's allocate lost its const and gained copy_data in
// PyTorch 2.3.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define DPT_ALLOCATE_CONST
#define DPT_COPY_DATA 1
#else
#define DPT_ALLOCATE_CONST const
#define DPT_COPY_DATA 0
#endif

namespace {

constexpr size_t kLarge = 128 << 10;
constexpr size_t kCacheBytes = 256 << 20;
constexpr size_t kPage = 4096;

// sizeClass is n rounded up to one of eight sizes per power of two, and to
// whole pages.
size_t sizeClass(size_t n) {
  int log2 = 63 - __builtin_clzll(n);
  size_t step = std::max(size_t(1) << (log2 - 3), kPage);
  return (n + step - 1) / step * step;
}

using Block = std::pair<void *, size_t>;  // a mapping of ours and its size

// The allocator's state, made once and never destroyed, so that tensors
// freed while the process exits (libtorch's statics outlive this file's)
// still find it.
struct State {
  std::mutex mu;
  std::unordered_map<void *, size_t> blocks;  // every block of ours, by address: its size
  std::map<size_t, std::vector<void *>> kept;  // the kept ones, by size
  size_t keptBytes = 0, usedBytes = 0, peakUsed = 0;
};
State &st = *new State;

// take takes the latest kept block of the size at it out of kept. mu is
// held.
void *take(std::map<size_t, std::vector<void *>>::iterator it) {
  void *data = it->second.back();
  it->second.pop_back();
  st.keptBytes -= it->first;
  if (it->second.empty()) st.kept.erase(it);
  return data;
}

// smallest takes a kept block of the smallest size out of kept, and out of
// the table, to be unmapped (a larger one can serve any request a smaller
// one can). mu is held.
Block smallest() {
  size_t size = st.kept.begin()->first;
  void *data = take(st.kept.begin());
  st.blocks.erase(data);
  return {data, size};
}

// used counts a block of size bytes as in use. mu is held.
void used(size_t size) {
  st.usedBytes += size;
  st.peakUsed = std::max(st.peakUsed, st.usedBytes);
}

void unmap(const std::vector<Block> &gone) {
  for (auto [data, size] : gone) munmap(data, size);
}

// keep takes back data, a block of ours (false if it is not), adding to gone
// what is to be unmapped. mu is held.
bool keep(void *data, std::vector<Block> &gone) {
  auto it = st.blocks.find(data);
  if (it == st.blocks.end()) return false;
  size_t size = it->second;
  st.usedBytes -= size;
  size_t limit = std::min(kCacheBytes, st.peakUsed);
  if (size > limit) {
    st.blocks.erase(it);
    gone.push_back({data, size});
    return true;
  }
  while (st.keptBytes + size > limit) gone.push_back(smallest());
  st.kept[size].push_back(data);
  st.keptBytes += size;
  return true;
}

void release(void *data) {
  if (data == nullptr) return;
  std::vector<Block> gone;
  bool ours;
  {
    std::lock_guard<std::mutex> lock(st.mu);
    ours = keep(data, gone);
  }
  if (!ours) c10::free_cpu(data);
  unmap(gone);
}

// large is a block for n bytes: the smallest kept one that holds them, or a
// new mapping.
void *large(size_t n) {
  size_t size = sizeClass(n);
  {
    std::lock_guard<std::mutex> lock(st.mu);
    auto it = st.kept.lower_bound(size);
    if (it != st.kept.end()) {
      used(it->first);
      return take(it);
    }
  }
  void *data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (data == MAP_FAILED) {
    // Give back what is kept, and try once more.
    std::vector<Block> gone;
    {
      std::lock_guard<std::mutex> lock(st.mu);
      while (!st.kept.empty()) gone.push_back(smallest());
    }
    unmap(gone);
    data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TORCH_CHECK(data != MAP_FAILED, "DefaultCPUAllocator: can't allocate memory: you tried to allocate ", n,
                " bytes: ", std::strerror(errno));
  }
  std::lock_guard<std::mutex> lock(st.mu);
  st.blocks[data] = size;
  used(size);
  return data;
}

struct BlockCache final : c10::Allocator {
  c10::DataPtr allocate(size_t n) DPT_ALLOCATE_CONST override {
    void *data = n >= kLarge ? large(n) : c10::alloc_cpu(n);
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
#if DPT_COPY_DATA
  void copy_data(void *dest, const void *src, std::size_t count) const override { default_copy_data(dest, src, count); }
#endif
};

// Installed when the shim is loaded, before any tensor of ours exists
// (tensors made before keep their own deleter); never destroyed, as State.
const bool installed = [] {
  c10::SetCPUAllocator(new BlockCache, /*priority=*/1);
  return true;
}();

}  // namespace
