# deeppacket build. `make test` is the project's test command; `make build`
# puts the CLI at bin/deeppacket.
#
# libtorch: by default the PyTorch 2.x that scripts/install-deps.sh installs
# from PyPI into .venv (the torch package ships include/ and lib/, as
# tch-rs's LIBTORCH_USE_PYTORCH uses it). One variable points the build at
# another:
#   make PYTHON=/path/to/python     a Python with PyTorch installed: its torch
#                                   package is built against, and the parity
#                                   tests compare with it
#   make LIBTORCH=/opt/libtorch     the official libtorch zip (CPU or CUDA)
#   make LIBTORCH=system            Debian's libtorch-dev 1.13 (/usr)
# third_party/libtorch, when present (a folder or a link), comes first.
# `make test-torch113` runs the parity and checkpoint tests against Debian's
# libtorch 1.13 and its python3-torch, with a shim of their own in build/debian.

VENV     := $(CURDIR)/.venv
PYTHON   ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,/usr/bin/python3)
# The torch package folder of PYTHON, found without importing torch.
TORCH_PKG = $(shell $(PYTHON) -c 'import importlib.util as u; s = u.find_spec("torch"); print(s.submodule_search_locations[0] if s else "")' 2>/dev/null)
LIBTORCH ?= $(or $(if $(wildcard third_party/libtorch/include),$(CURDIR)/third_party/libtorch),$(if $(wildcard $(TORCH_PKG)/include/torch/script.h),$(TORCH_PKG)),system)
BUILD    := build
SHIM     ?= $(BUILD)/libdptorch.so
GO       ?= go
CXX      ?= g++

ifeq ($(LIBTORCH),system)
# torch/shim/debian113: a header Debian's package leaves out (see there).
TORCH_CFLAGS  := -I/usr/include/torch/csrc/api/include -Itorch/shim/debian113
TORCH_LDFLAGS :=
TORCH_LIBS    := -ltorch -ltorch_cpu -lc10
CXXSTD        := c++17
else
TORCH_CFLAGS  := -I$(LIBTORCH)/include -I$(LIBTORCH)/include/torch/csrc/api/include
TORCH_LDFLAGS := -L$(LIBTORCH)/lib -Wl,-rpath,$(LIBTORCH)/lib
# Only libtorch_cpu and c10: a CUDA libtorch's libtorch_cuda (and libtorch.so,
# which pulls it in) is loaded by the shim when CUDA is first asked about and
# an NVIDIA driver is present (dptorch.cpp, load_cuda), so that CPU runs do
# not map half a gigabyte of CUDA libraries.
TORCH_LIBS    := -Wl,--no-as-needed -ltorch_cpu -lc10 -Wl,--as-needed -ldl
# PyTorch's headers need C++20 from 2.10 on (17 before).
CXXSTD        := c++20
endif

CXXFLAGS ?= -O3
# c10d's Gloo process group (dist.cpp): PyTorch's libtorch_cpu has it built in;
# its headers need USE_C10D_GLOO and Gloo's (Debian's libgloo-dev). Without
# Gloo's headers the shim still builds, and distributed training says why it
# cannot run.
GLOO_CFLAGS := $(if $(wildcard /usr/include/gloo/algorithm.h),-DUSE_C10D_GLOO,-DDPT_NO_GLOO)
SHIM_FLAGS := -std=$(CXXSTD) -ffp-contract=off -fPIC -Wall -Wno-unused-parameter $(GLOO_CFLAGS) $(TORCH_CFLAGS)

.PHONY: FORCE all build shim test test-torch113 test-cpu-variants test-short vet fmt bench bench-train bench-train-epoch bench-ddp bench-preprocess bench-split bench-predict bench-live demo clean

all: build

shim: $(SHIM)

# The shim is rebuilt when its sources change or LIBTORCH does: the file
# beside it names the libtorch it was built against.
$(SHIM).libtorch: FORCE
	@mkdir -p $(dir $@)
	@echo '$(LIBTORCH)' | cmp -s - $@ || echo '$(LIBTORCH)' > $@

# One object per C++ file beside the library (build/ or build/debian/), so
# that a change recompiles only its file (each takes 30-60 s).
SHIM_SRCS := $(wildcard torch/shim/*.cpp)
SHIM_OBJS  = $(patsubst torch/shim/%.cpp,$(dir $(SHIM))%.o,$(SHIM_SRCS))

$(dir $(SHIM))%.o: torch/shim/%.cpp torch/shim/dptorch.h torch/shim/shim.hpp $(SHIM).libtorch
	@echo "shim: compiling $< against libtorch $(LIBTORCH)"
	$(CXX) $(CXXFLAGS) $(SHIM_FLAGS) -c $< -o $@

$(SHIM): $(SHIM_OBJS)
	$(CXX) -shared $^ -o $@ $(TORCH_LDFLAGS) $(TORCH_LIBS)

FORCE:

build: $(SHIM)
	$(GO) build -o bin/deeppacket ./cmd/deeppacket

vet: $(SHIM)
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }

test: $(SHIM) vet
	DEEPPACKET_PYTHON=$(PYTHON) $(GO) test -timeout 20m ./...

# The second libtorch: Debian's 1.13, with its own shim, against Debian's
# python3-torch 1.13: the binding's parity tests and the model and checkpoint
# packages' tests (PyTorch interop included); then DDP's Reducer on 1.13
# between Go ranks (a Python peer would need 1.13's own store layout and
# start-up barrier: the mixed group is 2.x's test). The ONNX export's test
# runs in make test: onnxruntime is in .venv, not in Debian's Python.
TORCH113_SHIM := $(BUILD)/debian/libdptorch.so
TORCH113_PKGS ?= ./torch/... ./model/...
test-torch113:
	$(MAKE) --no-print-directory shim SHIM=$(TORCH113_SHIM) LIBTORCH=system
	DEEPPACKET_SHIM=$(CURDIR)/$(TORCH113_SHIM) DEEPPACKET_PYTHON=/usr/bin/python3 $(GO) test -count=1 -timeout 20m $(TORCH113_PKGS) ./ckpt/ ./ckpt/safetensors/
	DEEPPACKET_SHIM=$(CURDIR)/$(TORCH113_SHIM) $(GO) test -count=1 -run 'TestTwoRanksEqualOneProcess|TestLostRank' ./dist/

# The parity tests as on other CPUs and thread counts: libtorch's baseline and
# AVX2 kernels (ATEN_CPU_CAPABILITY; this machine's own, AVX-512 here, in
# make test) on 1 and 2 threads, both sides alike.
test-cpu-variants: $(SHIM)
	@for cap in default avx2; do for n in 1 2; do \
		echo "== ATEN_CPU_CAPABILITY=$$cap OMP_NUM_THREADS=$$n"; \
		ATEN_CPU_CAPABILITY=$$cap OMP_NUM_THREADS=$$n DEEPPACKET_PYTHON=$(PYTHON) \
			$(GO) test -count=1 -run 'Parity|Adam' ./torch/ ./model/ ./ckpt/ || exit 1; \
	done; done

test-short: $(SHIM)
	$(GO) test -short ./...

bench-train: build
	PYTHON=$(PYTHON) scripts/bench-train.sh

bench-train-epoch: build
	PYTHON=$(PYTHON) scripts/bench-train-epoch.sh

bench-ddp: build
	PYTHON=$(PYTHON) scripts/bench-ddp.sh

bench-preprocess: build
	PYTHON=$(PYTHON) scripts/bench-preprocess.sh

bench-split: build
	scripts/bench-split.sh

bench-predict: build
	PYTHON=$(PYTHON) scripts/bench-predict.sh

# Needs root: network namespaces, a veth pair and tcpreplay.
bench-live: build
	scripts/bench-live.sh

demo:
	scripts/demo.sh

clean:
	rm -rf $(BUILD) bin
