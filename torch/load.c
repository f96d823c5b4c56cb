/* load.c: the shim's C API, forwarded to the shim library (libdptorch.so),
 * which is opened the first time a function is called rather than when the
 * program starts.
 *
 * Loading libtorch takes most of a second of static initialisation (operator
 * registration), and a third of the program's resident memory: the commands
 * that never touch a tensor (preprocess, split, synth) should not pay for
 * it, nor need libtorch installed at all. Each function of shim/dptorch.h
 * gets a forwarder here, from the list in dptorch_fns.h (go generate). When
 * the library cannot be opened, the functions that return a dpt_error
 * return the reason; the others return a zero value and are never reached,
 * since they need a tensor, value or module that only the library makes.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dptorch.h"
#include "load.h"

/* The library is DEEPPACKET_SHIM when that is set (a path: a shim built
 * against another libtorch, a CUDA one say), else libdptorch.so found as any
 * shared library is: LD_LIBRARY_PATH, then the program's run path (the
 * repository's build/, set by torch/cgo.go), then the system's. */
static const char *library = "libdptorch.so";

/* The library's functions, set by load. */
#define DPT_FN(ret, name, params, args, fail) static __typeof__(name) *p_##name;
#define DPT_VOID(name, params, args) static __typeof__(name) *p_##name;
#include "dptorch_fns.h"
#undef DPT_FN
#undef DPT_VOID

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_msg[1024];
static const char *load_err; /* NULL once loaded */

/* tune_malloc sets glibc's allocator for libtorch, from inside the process
 * as it starts (a constructor: before Go's runtime starts a thread, so before
 * any thread has a heap of its own and glibc fixes its heap limit on first
 * use, which makes mallopt from Go's init too late), unless the user set
 * the same thing with glibc's own variables:
 *   - a heap per core at most (M_ARENA_MAX, the online CPUs), not glibc's
 *     eight per core: spread over a heap per thread, libtorch's blocks
 *     fragmented and resident memory crept up 11-23% over 3,000 training
 *     steps (BenchmarkTrainMemory) while activations were glibc's. Now that
 *     blocks of 128 kB or more are the shim's (below), two heaps on two
 *     cores stay as flat as one (+0.49%), and predict's workers no longer
 *     queue on one heap's lock (oneDNN's scratch memory, small tensors):
 *     system time on both cores 0.265 s against 0.315 s;
 *   - no trimming, and the mmap threshold at its maximum (32 MB) from the
 *     start: a freed block stays in the heap for the next one, instead of
 *     going back to the kernel and costing a page fault per 4 kB when it is
 *     asked for again. Tensors of 128 kB or more do not reach glibc: the
 *     shim's CPU allocator (shim/alloc.cpp) maps and keeps them itself;
 *     what large blocks still come here are libraries' own (MKL's, oneDNN's). */
__attribute__((constructor)) static void tune_malloc(void) {
    if (getenv("MALLOC_ARENA_MAX") == NULL) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        mallopt(M_ARENA_MAX, cores > 0 ? (int)cores : 1);
    }
    if (getenv("MALLOC_MMAP_THRESHOLD_") == NULL) mallopt(M_MMAP_THRESHOLD, 32 << 20);
    if (getenv("MALLOC_TRIM_THRESHOLD_") == NULL) mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

static void load(void) {
    const char *path = getenv("DEEPPACKET_SHIM");
    if (path != NULL && path[0] != '\0') library = path;
    void *h = dlopen(library, RTLD_NOW | RTLD_GLOBAL);
    if (h == NULL) {
        snprintf(load_msg, sizeof load_msg,
                 "load %s: %s (build it with make shim, or add its folder to LD_LIBRARY_PATH)", library, dlerror());
        load_err = load_msg;
        return;
    }
    const char *missing = NULL;
#define DPT_FN(ret, name, params, args, fail) \
    if ((p_##name = (__typeof__(p_##name))dlsym(h, #name)) == NULL) missing = #name;
#define DPT_VOID(name, params, args) DPT_FN(void, name, params, args, )
#include "dptorch_fns.h"
#undef DPT_FN
#undef DPT_VOID
    if (missing != NULL) {
        snprintf(load_msg, sizeof load_msg,
                 "load %s: it has no function %s, so it is older than this program (run make shim)", library, missing);
        load_err = load_msg;
    }
}

static int loaded(void) {
    pthread_once(&once, load);
    return load_err == NULL;
}

const char *dpt_load_error(void) { return loaded() ? NULL : load_err; }

/* The error a failed load gives: a copy, freed like every dpt_error. */
static dpt_error dpt_load_failure(void) { return strdup(load_err); }

/* Strings from the shim are malloc'd: freeing them needs no library. */
void dpt_free_error(dpt_error err) { free(err); }
void dpt_free_string(char *s) { free(s); }

#define DPT_FN(ret, name, params, args, fail) \
    ret name params {                         \
        if (!loaded()) return fail;           \
        return p_##name args;                 \
    }
#define DPT_VOID(name, params, args) \
    void name params {               \
        if (loaded()) p_##name args; \
    }
#include "dptorch_fns.h"
#undef DPT_FN
#undef DPT_VOID
