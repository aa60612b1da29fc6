# cnnc — an ahead-of-time compiler for convolutional networks.
#
#   make            build/cnnc, build/libcnnrt.a, build/libcnnrt.so
#   make deps       install the Debian packages the build, tests and demo need
#   make check      unit + end-to-end tests (installs what it needs first)
#   make asan       the test suite under AddressSanitizer + UBSan
#   make demo       compile examples/lenet5.cnn and train it on Fashion-MNIST
#   make examples   compile every example into generated/
#   make bench      measure speed beside PyTorch and write BENCHMARKS.md
#   make fuzz       fuzz the front end with libFuzzer for FUZZ_SECONDS
#   make install    PREFIX=/usr/local
#   make TARGET=aarch64-linux-gnu
#                   the runtime for another machine, cross-compiled into
#                   build/aarch64-linux-gnu/, where `cnnc --target` finds it
#   make deps-cross install the AArch64 cross toolchain, arm64 jansson and
#                   zlib, and qemu-user (part of deps-check)
#
# `check`, `demo`, `examples` and `bench` first run `make deps`, then call
# make again, so that flags computed from llvm-config and pkg-config are
# evaluated after the packages exist: each works as the only command on a
# fresh Debian 12 machine.

CC          ?= cc
LLVM_CONFIG ?= llvm-config-19
# TARGET: a GNU triple to cross-compile the runtime for, with $(TARGET)-gcc,
# into build/$(TARGET)/ (the compiler itself is a host program).
TARGET      ?=
ifneq ($(TARGET),)
ifeq ($(origin CC),default)
CC          = $(TARGET)-gcc
endif
BUILD       ?= build/$(TARGET)
endif
BUILD       ?= build
PREFIX      ?= /usr/local
OPT         ?= -O2 -g
SANITIZE    ?=
TEST_ENV    ?=

# Packages: the build, the tests, the demo, the benchmark.
DEPS_BUILD = gcc make flex bison llvm-19-dev check pkg-config zlib1g-dev libzstd-dev \
             libjansson-dev
# Cross-compiling for AArch64 and running the result under qemu (tests/test_cross.c);
# the :arm64 libraries need the arm64 architecture in dpkg (deps-cross adds it).
CROSS      = aarch64-linux-gnu
DEPS_CROSS = gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user \
             zlib1g-dev:arm64 libjansson-dev:arm64
DEPS_CHECK = $(DEPS_BUILD) python3-torch python3-numpy
DEPS_DEMO  = $(DEPS_BUILD) dataset-fashion-mnist
DEPS_BENCH = $(DEPS_DEMO) python3-torch python3-numpy

WARN     = -Wall -Wextra
CSTD     = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
CFLAGS  ?=
ALL_CFLAGS = $(CSTD) $(WARN) $(OPT) $(SANITIZE) $(CFLAGS)

LLVM_CFLAGS := $(shell $(LLVM_CONFIG) --cflags 2>/dev/null | sed 's/-D_GNU_SOURCE//')
LLVM_LIBS   := $(shell $(LLVM_CONFIG) --ldflags --libs 2>/dev/null) \
               -Wl,-rpath,$(shell $(LLVM_CONFIG) --libdir 2>/dev/null)
# cnnc itself links LLVM's static libraries (llvm-19-dev ships them), only
# the components it uses: it then starts in 20 ms instead of 60-70 (the
# relocations and static constructors of all of libLLVM.so, every target's
# included), a tenth of LeNet-5's compile time.  Where the static libraries
# or libzstd's development link are missing it links libLLVM.so; so does
# LLVM_SHARED=1.  The test programs always link libLLVM.so (faster to link).
LLVM_COMPONENTS = core analysis passes target codegen \
                  x86codegen x86desc x86info aarch64codegen aarch64desc aarch64info
LLVM_SHARED ?=
ifeq ($(LLVM_SHARED)$(filter /%,$(shell $(CC) -print-file-name=libzstd.so 2>/dev/null)),)
LLVM_SHARED = 1
endif
ifeq ($(LLVM_SHARED),)
CNNC_LLVM_LIBS := $(shell $(LLVM_CONFIG) --link-static --ldflags --libs $(LLVM_COMPONENTS) 2>/dev/null)
endif
ifneq ($(CNNC_LLVM_LIBS),)
CNNC_LLVM_LIBS += -lz -lzstd -lstdc++ -lpthread
else
CNNC_LLVM_LIBS = $(LLVM_LIBS)
endif
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)
RT_LIBS      = -ljansson -lz -lm -lpthread -ldl

# ---- sources ---------------------------------------------------------------

DSL_SRCS  = dsl/source.c dsl/ast.c dsl/parse.c
DSL_GEN   = $(BUILD)/dsl/parser.c $(BUILD)/dsl/lexer.c
COMP_SRCS = $(filter-out compiler/main.c,$(wildcard compiler/*.c))
RT_SRCS   = $(wildcard runtime/*.c)

DSL_OBJS  = $(DSL_SRCS:%.c=$(BUILD)/%.o) $(DSL_GEN:.c=.o)
COMP_OBJS = $(COMP_SRCS:%.c=$(BUILD)/%.o)
RT_OBJS   = $(RT_SRCS:%.c=$(BUILD)/%.o)

INCLUDES  = -Idsl -I$(BUILD)/dsl -Icompiler -Iruntime

.PHONY: all runtime deps deps-check deps-cross deps-demo deps-bench check check-run cross-runtime \
        asan demo demo-run examples examples-run bench bench-run fuzz fuzz-run install clean
.DELETE_ON_ERROR:

ifeq ($(TARGET),)
all: $(BUILD)/cnnc runtime
else
all: runtime
endif

runtime: $(BUILD)/libcnnrt.a $(BUILD)/libcnnrt.so

# ---- dependencies ------------------------------------------------------------

# Install whatever of $(1) is missing (apt-get, as root or through sudo).
define install_deps
	@native=$$(dpkg --print-architecture); missing=""; for p in $(1); do \
	  case $$p in *:*) arch=$${p#*:};; *) arch=$$native;; esac; \
	  dpkg-query -W -f='$${Status} $${Architecture}\n' $$p 2>/dev/null | \
	    grep -Eq "ok installed ($$arch|all)$$" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing || \
	  { $$SUDO apt-get update -q && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; }; \
	fi
endef

deps: deps-cross
	$(call install_deps,$(sort $(DEPS_CHECK) $(DEPS_DEMO) $(DEPS_BENCH)))

deps-check: deps-cross
	$(call install_deps,$(DEPS_CHECK))

# Debian multiarch: the arm64 jansson and zlib come from the same mirror
# once dpkg knows the architecture (install_deps runs apt-get update when
# an install fails, which it does right after the architecture is added).
deps-cross:
	@dpkg --print-foreign-architectures | grep -qx arm64 || { \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "dpkg --add-architecture arm64"; $$SUDO dpkg --add-architecture arm64; }
	$(call install_deps,$(DEPS_CROSS))
deps-demo:
	$(call install_deps,$(DEPS_DEMO))
deps-bench:
	$(call install_deps,$(DEPS_BENCH))

# ---- the compiler ------------------------------------------------------------

$(BUILD)/dsl/parser.c $(BUILD)/dsl/parser.h: dsl/parser.y
	@mkdir -p $(BUILD)/dsl
	bison -Wall -d -o $(BUILD)/dsl/parser.c $<

$(BUILD)/dsl/lexer.c $(BUILD)/dsl/lexer.h: dsl/lexer.l $(BUILD)/dsl/parser.h
	@mkdir -p $(BUILD)/dsl
	flex --header-file=$(BUILD)/dsl/lexer.h -o $(BUILD)/dsl/lexer.c $<

$(BUILD)/dsl/%.o: $(BUILD)/dsl/%.c
	$(CC) $(ALL_CFLAGS) $(INCLUDES) -c $< -o $@

$(BUILD)/dsl/parse.o: dsl/parse.c $(BUILD)/dsl/parser.h $(BUILD)/dsl/lexer.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(INCLUDES) -c $< -o $@

$(BUILD)/dsl/%.o: dsl/%.c dsl/*.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(INCLUDES) -c $< -o $@

$(BUILD)/compiler/%.o: compiler/%.c compiler/*.h compiler/*.def dsl/*.h runtime/cnn_model.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LLVM_CFLAGS) $(INCLUDES) -c $< -o $@

$(BUILD)/libcnnc.a: $(DSL_OBJS) $(COMP_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/cnnc: $(BUILD)/compiler/main.o $(BUILD)/libcnnc.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(CNNC_LLVM_LIBS) -ljansson -lm

# ---- the runtime -------------------------------------------------------------

# One set of position-independent objects serves both libraries and the
# training executables (Debian links executables as PIE).
$(BUILD)/runtime/%.o: runtime/%.c runtime/*.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -Iruntime -c $< -o $@

# The optimizer updates are loops over every parameter: sqrt without errno
# and GCC's cheap vector cost model let GCC vectorize them (IEEE sqrt and
# division, so the same results as the scalar loops).
$(BUILD)/runtime/optim.o: ALL_CFLAGS += -fno-math-errno -fno-trapping-math -fvect-cost-model=cheap

$(BUILD)/libcnnrt.a: $(RT_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/libcnnrt.so: $(RT_OBJS)
	$(CC) $(ALL_CFLAGS) -shared -o $@ $^ $(RT_LIBS)

# ---- tests -------------------------------------------------------------------

TEST_SRCS = $(wildcard tests/test_*.c)
TEST_BINS = $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
# Support code linked into the compiler-side tests (the reference
# interpreter and helpers); tests/rt_*.c belong to the runtime tests only.
TEST_SUPPORT = $(filter-out $(TEST_SRCS) tests/rt_%.c,$(wildcard tests/*.c))

# The runtime's own tests link the runtime alone, with a hand-written model.
$(BUILD)/tests/test_runtime: tests/test_runtime.c $(wildcard tests/rt_*.c) tests/*.h $(BUILD)/libcnnrt.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Iruntime -Itests -o $@ \
	  $< $(wildcard tests/rt_*.c) $(BUILD)/libcnnrt.a $(CHECK_LIBS) $(RT_LIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) tests/*.h $(BUILD)/libcnnc.a $(BUILD)/libcnnrt.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) $(LLVM_CFLAGS) $(INCLUDES) -Itests -o $@ \
	  $< $(TEST_SUPPORT) $(BUILD)/libcnnc.a $(BUILD)/libcnnrt.a \
	  $(CHECK_LIBS) $(LLVM_LIBS) $(RT_LIBS)

check: deps-check
	@$(MAKE) --no-print-directory check-run

check-run: all cross-runtime $(TEST_BINS)
	@set -e; for t in $(TEST_BINS); do \
	  echo "== $$t"; $(TEST_ENV) CNNC=$(BUILD)/cnnc $$t; done
	@echo "make check: all tests passed"

# The runtime for $(CROSS) that tests/test_cross.c links, in $(BUILD)/$(CROSS)
# beside the cnnc it tests; never sanitized (it runs under qemu).  Without
# the cross toolchain the test says SKIP.
cross-runtime:
	@if command -v $(CROSS)-gcc >/dev/null && \
	    [ -f "$$($(CROSS)-gcc -print-file-name=libjansson.a)" ] && \
	    [ -f "$$($(CROSS)-gcc -print-file-name=libz.a)" ]; then \
	  $(MAKE) --no-print-directory TARGET=$(CROSS) CC=$(CROSS)-gcc BUILD=$(BUILD)/$(CROSS) \
	    SANITIZE= OPT="-O2 -g" runtime; \
	else \
	  echo "SKIP: no $(CROSS)-gcc with arm64 jansson and zlib: the $(CROSS) runtime is not" \
	       "built and test_cross skips its AArch64 tests (make deps-cross installs them)"; \
	fi

# The training executables that tests build with cnnc link the sanitized
# runtime, so they need the sanitizer runtimes too (CNNC_LDFLAGS).  Tests
# run in one process (CK_FORK=no) so that LeakSanitizer sees every test.
asan: deps-check
	@CNNC_LDFLAGS="-fsanitize=address,undefined" $(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g" \
	  TEST_ENV="CK_FORK=no" \
	  SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  check-run

# ---- fuzzing (not part of check: it runs for a fixed time) -------------------

FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang-19

fuzz: deps-check
	$(call install_deps,clang-19 libclang-rt-19-dev)
	@$(MAKE) --no-print-directory fuzz-run

fuzz-run:
	@mkdir -p build-fuzz/corpus
	bison -Wall -d -o build-fuzz/parser.c dsl/parser.y
	flex --header-file=build-fuzz/lexer.h -o build-fuzz/lexer.c dsl/lexer.l
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined $(CSTD) $(LLVM_CFLAGS) \
	  -Idsl -Ibuild-fuzz -Icompiler -Iruntime -o build-fuzz/fuzz_frontend \
	  tests/fuzz/fuzz_frontend.c $(DSL_SRCS) build-fuzz/parser.c build-fuzz/lexer.c \
	  $(COMP_SRCS) $(LLVM_LIBS) -ljansson -lm
	cp examples/*.cnn tests/diagnostics/*.cnn build-fuzz/corpus/
	build-fuzz/fuzz_frontend -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build-fuzz/corpus

# ---- examples, demo, benchmark -----------------------------------------------

EXAMPLES = $(wildcard examples/*.cnn)

examples: deps-check
	@$(MAKE) --no-print-directory examples-run

examples-run: all
	@set -e; for f in $(EXAMPLES); do \
	  n=$$(basename $$f .cnn); echo "cnnc $$f -> generated/$$n.{so,h,ll,dot,ir,loops}"; \
	  $(BUILD)/cnnc $$f -o generated/$$n.so; \
	  $(BUILD)/cnnc $$f --emit llvm -o generated/$$n.ll; \
	  $(BUILD)/cnnc $$f --emit dot -o generated/$$n.dot; \
	  $(BUILD)/cnnc $$f --emit ir -o generated/$$n.ir; \
	  $(BUILD)/cnnc $$f --emit loops -o generated/$$n.loops; \
	done
	$(CC) $(CSTD) $(WARN) -O2 -Igenerated -Iruntime examples/train_lenet5.c generated/lenet5.so \
	  $(BUILD)/libcnnrt.a $(RT_LIBS) -Wl,-rpath,'$$ORIGIN' -o generated/train_lenet5
	@echo "built generated/train_lenet5 (run: generated/train_lenet5 [DATA_DIR [EPOCHS]])"

DEMO_EPOCHS ?= 5
demo: deps-demo
	@$(MAKE) --no-print-directory demo-run

demo-run: all
	$(BUILD)/cnnc examples/lenet5.cnn --emit exe -o $(BUILD)/lenet5-train
	$(BUILD)/lenet5-train --data /usr/share/datasets/fashion-mnist --epochs $(DEMO_EPOCHS)

bench: deps-bench
	@$(MAKE) --no-print-directory bench-run

# The FMA peak loop is built for this machine (-march=native), the rest as
# usual.  BENCH_ARGS: e.g. --quick (a smoke run), --threads N, --out FILE.
BENCH_ARGS ?=
$(BUILD)/bench-peak.o: tests/bench/peak.c tests/bench/peak.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -O2 -march=native $(CFLAGS) -c $< -o $@

$(BUILD)/bench: tests/bench/bench.c tests/bench/peak.h $(BUILD)/bench-peak.o $(BUILD)/libcnnrt.a
	$(CC) $(ALL_CFLAGS) -Iruntime -o $@ $< $(BUILD)/bench-peak.o $(BUILD)/libcnnrt.a $(RT_LIBS)

bench-run: all $(BUILD)/bench
	/usr/bin/python3 tests/bench/bench.py $(BUILD) $(BENCH_ARGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/cnnc $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BUILD)/cnnc $(DESTDIR)$(PREFIX)/bin/cnnc
	install -m 644 $(BUILD)/libcnnrt.a $(BUILD)/libcnnrt.so $(DESTDIR)$(PREFIX)/lib/cnnc/
	install -m 644 runtime/cnn_model.h runtime/cnnrt.h $(DESTDIR)$(PREFIX)/include/
	@if [ -f $(BUILD)/$(CROSS)/libcnnrt.a ]; then \
	  echo "install the $(CROSS) runtime"; \
	  install -d $(DESTDIR)$(PREFIX)/lib/cnnc/$(CROSS) && \
	  install -m 644 $(BUILD)/$(CROSS)/libcnnrt.a $(DESTDIR)$(PREFIX)/lib/cnnc/$(CROSS)/; fi

clean:
	rm -rf build build-asan
