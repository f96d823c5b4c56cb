// alloc.cpp: libtorch's CPU allocator, with freed large blocks kept for the
// next request of the same size.
//
// glibc serves a block of 32 MB or more (its largest mmap threshold) with a
// fresh mmap and returns it with munmap when freed, so a tensor of that size
// made anew at every step costs a page fault per 4 kB each time: the
// application CNN's fc1 gradient (40 MB), made at every training step, was
// 10% of an epoch's CPU time on one thread and 16% on two. PyTorch's own answer on GPUs is its caching
// allocator; on the CPU it leaves this to the C library. Here blocks of
// kLarge bytes or more are kept, up to kCacheBytes in all, and handed out
// again for a request of the same size; smaller blocks go to c10's
// alloc_cpu and free_cpu as before (glibc's heap, which load.c tunes).
//
// One deleter serves every block, and data pointer and context are the same
// pointer, as libtorch's raw_allocate and raw_deallocate need (oneDNN's
// scratch memory goes through them): the deleter tells a large block by
// the table of large blocks, and frees any other as c10 does.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/version.h>

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

constexpr size_t kLarge = 32 << 20;
constexpr size_t kCacheBytes = 256 << 20;

std::mutex mu;
std::unordered_map<void *, size_t> largeBlocks;              // every large block made, by address
std::unordered_map<size_t, std::vector<void *>> freeBlocks;  // the kept ones, by size
size_t cachedBytes = 0;

void release(void *data) {
  if (data == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = largeBlocks.find(data);
    if (it != largeBlocks.end()) {
      size_t size = it->second;
      if (cachedBytes + size <= kCacheBytes) {
        freeBlocks[size].push_back(data);
        cachedBytes += size;
        return;
      }
      largeBlocks.erase(it);
    }
  }
  c10::free_cpu(data);
}

// large is a block of size bytes: a kept one, or a new one.
void *large(size_t size) {
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = freeBlocks.find(size);
    if (it != freeBlocks.end() && !it->second.empty()) {
      void *data = it->second.back();
      it->second.pop_back();
      cachedBytes -= size;
      return data;
    }
  }
  void *data = c10::alloc_cpu(size);
  std::lock_guard<std::mutex> lock(mu);
  largeBlocks[data] = size;
  return data;
}

struct LargeBlockCache final : c10::Allocator {
  c10::DataPtr allocate(size_t n) DPT_ALLOCATE_CONST override {
    void *data = n >= kLarge ? large(n) : c10::alloc_cpu(n);
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
#if DPT_COPY_DATA
  void copy_data(void *dest, const void *src, std::size_t count) const override { default_copy_data(dest, src, count); }
#endif
};

LargeBlockCache cache;

// Installed when the shim is loaded, before any tensor of ours exists
// (tensors made before keep their own deleter).
const bool installed = [] {
  c10::SetCPUAllocator(&cache, /*priority=*/1);
  return true;
}();

}  // namespace
