# deeppacket build. `make test` is the project's test command; `make build`
# puts the CLI at bin/deeppacket.
#
# libtorch: by default Debian's libtorch-dev (headers in /usr/include). Point
# LIBTORCH at another one (the official zip's include/ and lib/ layout, CPU or
# CUDA, cxx11 ABI) to build against it; third_party/libtorch, when present
# (a folder or a link), is used before the system one.

LIBTORCH ?= $(if $(wildcard third_party/libtorch/include),$(CURDIR)/third_party/libtorch,)
BUILD    := build
SHIM     := $(BUILD)/libdptorch.so
GO       ?= go
CXX      ?= g++
PYTHON   ?= /usr/bin/python3

ifeq ($(LIBTORCH),)
TORCH_CFLAGS  := -I/usr/include/torch/csrc/api/include
TORCH_LDFLAGS :=
TORCH_LIBS    := -ltorch -ltorch_cpu -lc10
else
TORCH_CFLAGS  := -I$(LIBTORCH)/include -I$(LIBTORCH)/include/torch/csrc/api/include
TORCH_LDFLAGS := -L$(LIBTORCH)/lib -Wl,-rpath,$(LIBTORCH)/lib
# A CUDA libtorch keeps its kernels in libtorch_cuda; link it even though the
# shim names none of its symbols, so that CUDA registers at load time.
TORCH_LIBS    := -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 \
                 $(if $(wildcard $(LIBTORCH)/lib/libtorch_cuda.so),-ltorch_cuda -lc10_cuda) -Wl,--as-needed
endif

CXXFLAGS ?= -O2
SHIM_FLAGS := -std=c++17 -fPIC -shared -Wall -Wno-unused-parameter $(TORCH_CFLAGS)

.PHONY: all build shim test test-short vet fmt bench bench-train bench-train-epoch bench-preprocess bench-split bench-predict demo clean

all: build

shim: $(SHIM)

$(SHIM): torch/shim/dptorch.cpp torch/shim/dptorch.h
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) $(SHIM_FLAGS) $< -o $@ $(TORCH_LDFLAGS) $(TORCH_LIBS)

build: $(SHIM)
	$(GO) build -o bin/deeppacket ./cmd/deeppacket

vet: $(SHIM)
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }

test: $(SHIM) vet
	DEEPPACKET_PYTHON=$(PYTHON) $(GO) test -timeout 20m ./...

test-short: $(SHIM)
	$(GO) test -short ./...

bench-train: build
	PYTHON=$(PYTHON) scripts/bench-train.sh

bench-train-epoch: build
	PYTHON=$(PYTHON) scripts/bench-train-epoch.sh

bench-preprocess: build
	PYTHON=$(PYTHON) scripts/bench-preprocess.sh

bench-split: build
	scripts/bench-split.sh

bench-predict: build
	PYTHON=$(PYTHON) scripts/bench-predict.sh

demo:
	scripts/demo.sh

clean:
	rm -rf $(BUILD) bin
