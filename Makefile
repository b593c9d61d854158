# annotate: build, test and run.
#
#   make            build/annotate and build/mock-model-server
#   make demo       install missing packages, build, annotate sample_images/ into out/results.csv
#   make test       install missing packages, build, run every test (unit, end to end, ASan+UBSan, TSan)
#   make sanitize   the test suite under AddressSanitizer + UBSan
#   make tsan       the threaded and curl-multi paths under ThreadSanitizer
#   make valgrind   the serial path and image preparation under valgrind memcheck (errors and leaks fail it)
#   make fuzz       each libFuzzer target for FUZZ_SECONDS
#   make alloc-sweep every allocation of a small run made to fail in turn (a sample is in make check)
#   make bench-capacity  per-stage limits, fixed against auto, against a GPU-like mock
#   make bench-auto  --concurrency auto against fixed numbers where they win: nginx, a server slowing with time, one worker
#   make bench-memory  --max-memory with endless answers and 30 MB images in worker processes: peak RSS
#   make bench-cost  CPU per request against nginx, beside wrk and a Python aiohttp client
#   make bench-s3   images from s3rver against the same images in a folder; listing 1,000,000 keys
#   make bench-cache-store  the --cache answer store at 10 million entries, and its hash's candidates
#   make bench-cache  a run with --cache: a first run's CPU against one without, the fully cached re-run
#   make bench-prepare  image preparation (libvips) against Pillow: CPU, bytes, peak RSS
#   make bench-start  a process's start with libvips in its plugin, against libvips linked
#
# Each variant builds into its own directory (BUILD=build, build-asan, build-tsan) so that they
# never mix objects.

# GNU make's built-in CC is cc; gcc is what the project is tested with, so it is the default
# unless CC comes from the command line or the environment (make CC=clang).
ifeq ($(origin CC),default)
CC       := gcc
endif
BUILD    ?= build
PKGS     := libcurl libcjson libxml-2.0 sqlite3
SAN      ?=
OPT      ?= -O2
# The project's own flags. A user's CPPFLAGS, CFLAGS, LDFLAGS and LDLIBS are added after them
# (make CFLAGS=-O0 turns optimisation off) instead of replacing -std=c11 and the include path.
# -MMD -MP write a .d file beside each object: an object depends on the headers it includes.
# The project's headers, and BLAKE3's (src/common/hash.h includes it): every compile line has them.
ANN_INCLUDES := -Isrc -Ithird_party/blake3
ANN_CPPFLAGS := -D_GNU_SOURCE $(ANN_INCLUDES) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
ANN_CFLAGS   := -std=c11 $(OPT) -g -Wall -Wextra -Werror -pthread $(SAN)
ANN_LDFLAGS  := $(SAN) -pthread
ANN_LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lb64 -lcsv -ljq -lpthread -lm
# libvips (image preparation; libwebpmux takes metadata out of its WebP files) is linked into the
# plugin $(BUILD)/annotate-vips.so only (src/prepare/plugin.h), which annotate dlopen()s when a
# pipeline prepares images: a run that prepares none, --help and --version do not load libvips and
# its hundred libraries (a start 2-3x as long: make bench-start). The unit tests link it too: they
# read prepared pixels back with it.
VIPS_CFLAGS := $(shell pkg-config --cflags vips libwebpmux 2>/dev/null)
VIPS_LIBS   := $(shell pkg-config --libs vips libwebpmux 2>/dev/null)
# make install's prefix; the plugin goes to $(PREFIX)/lib/annotate, where annotate looks for it.
PREFIX ?= /usr/local
COMPILE  = $(CC) $(ANN_CPPFLAGS) $(CPPFLAGS) $(ANN_CFLAGS) $(CFLAGS)
LINK     = $(CC) $(ANN_LDFLAGS) $(LDFLAGS)
LIBS     = $(ANN_LDLIBS) $(LDLIBS)

# Debian packages this project builds, tests and demos with. `make deps` installs what is missing.
# The tests fail, rather than skip, when a tool they drive is missing; the tools and their tests:
# parallel (GNU parallel: the shard test runs the README's command), bsdutils (/usr/bin/script on
# Debian 12: the progress line on a terminal), python3 (its csv module reads our CSV), valgrind
# (make valgrind), clang and libclang-rt-dev (make fuzz), python3-fastapi, python3-uvicorn and
# python3-multipart (an independent server of each dialect, tests/servers/dialects.py); libjq-dev
# runs the pipelines' jq expressions (Debian has no pkg-config file for it: -ljq); nginx and
# openssl (suite "bench", tests/e2e/test_bench.c: annotate bench over TLS through nginx with a private
# CA and a token made with openssl(1), and nginx's 1m body limit giving 413). libxml2-dev reads S3's
# listings (src/sources); python3-botocore checks the S3 client's signatures (tests/servers/s3sig.py),
# and s3rver, from the npm registry, is the S3 server the tests run (make s3rver; Node.js and npm
# from Debian's nodejs and npm when the machine has no npm); libsqlite3-dev (the answer store of
# --cache; its keys' hash, BLAKE3, is built from third_party/); libvips-dev prepares images
# (src/prepare/), python3-pil makes the test images of suite "prepare" (and Pillow is what make
# bench-prepare measures against), libheif-examples' heif-enc makes its HEIC.
DEB_PKGS := build-essential pkg-config libcurl4-openssl-dev libb64-dev libcjson-dev libcsv-dev \
            libcunit1-dev libevent-dev libjq-dev parallel clang libclang-rt-dev valgrind bsdutils python3 \
            python3-fastapi python3-uvicorn python3-multipart nginx openssl libxml2-dev python3-botocore \
            libsqlite3-dev libvips-dev libwebp-dev python3-pil libheif-examples

# src/ holds main, the command line and the run; each folder one place of the design (see
# docs/ARCHITECTURE.md). src/mock/ is the mock model server, a program of its own.
# The plugin: src/prepare/vips.c (everything that calls libvips) with its own position-independent
# copies of the pure code it uses (the spec, the boxes, the MIME names), symbols hidden but its table.
PLUGIN_MAIN := src/prepare/vips.c
PLUGIN_SRC  := $(PLUGIN_MAIN) src/prepare/spec.c src/prepare/box.c src/common/mime.c
PLUGIN_OBJ  := $(PLUGIN_SRC:src/%.c=$(BUILD)/obj/plugin/%.o)
LIB_SRC  := $(filter-out src/main.c src/mock/% $(PLUGIN_MAIN),$(wildcard src/*.c src/*/*.c))
# BLAKE3, the hash of the answer store's keys (src/common/hash.h says why): the BLAKE3 team's own C
# implementation, release 1.8.6, unchanged, in third_party/blake3 (Debian 12 has no package of it).
# It picks its fastest code for the processor at run time: on x86-64 its SSE2, SSE4.1, AVX2 and
# AVX-512 assembly, on 64-bit ARM its NEON C, elsewhere its portable C.
B3_DIR    := third_party/blake3
B3_TARGET := $(shell $(CC) -dumpmachine 2>/dev/null)
B3_SRC    := $(B3_DIR)/blake3.c $(B3_DIR)/blake3_dispatch.c $(B3_DIR)/blake3_portable.c
ifneq ($(filter x86_64-%,$(B3_TARGET)),)
B3_SRC    += $(foreach i,sse2 sse41 avx2 avx512,$(B3_DIR)/blake3_$(i)_x86-64_unix.S)
B3_DEFS   :=
else ifneq ($(filter aarch64-%,$(B3_TARGET)),)
B3_SRC    += $(B3_DIR)/blake3_neon.c
B3_DEFS   :=
else
B3_DEFS   := -DBLAKE3_NO_SSE2 -DBLAKE3_NO_SSE41 -DBLAKE3_NO_AVX2 -DBLAKE3_NO_AVX512 -DBLAKE3_USE_NEON=0
endif
B3_OBJ    := $(patsubst $(B3_DIR)/%,$(BUILD)/obj/blake3/%.o,$(B3_SRC))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o) $(B3_OBJ)
MOCK_SRC := $(wildcard src/mock/*.c)
MOCK_OBJ := $(MOCK_SRC:src/mock/%.c=$(BUILD)/obj/mock/%.o)
# tests/unit, tests/e2e and tests/servers hold the suites (test_NAME.c), tests/helpers what they
# share; tests/main.c runs them.
TEST_SRC := tests/main.c $(wildcard tests/unit/test_*.c tests/e2e/test_*.c tests/servers/test_*.c) \
            $(filter-out tests/helpers/failalloc.c,$(wildcard tests/helpers/*.c))
TEST_OBJ := $(TEST_SRC:tests/%.c=$(BUILD)/obj/tests/%.o)

ANNOTATE := $(BUILD)/annotate
PLUGIN   := $(BUILD)/annotate-vips.so
MOCK     := $(BUILD)/mock-model-server
UNIT     := $(BUILD)/unit-tests
# annotate with a counting allocator that fails the Nth allocation (tests/helpers/failalloc.c): the tests'
# allocation-failure sweep runs it (suite "hardening alloc"; make alloc-sweep for every N).
FAILALLOC := $(BUILD)/annotate-failalloc
FAILALLOC_WRAPS := malloc calloc realloc strdup strndup fdopendir

.PHONY: all deps s3rver demo test fuzz-test check check-flags check-suites sanitize tsan valgrind valgrind-vipshome valgrind-serial valgrind-prepare clean bench bench-micro bench-data bench-capacity bench-sweep bench-auto bench-memory bench-cost bench-s3list bench-s3 bench-cache-store bench-cache bench-prepare bench-start fuzz install alloc-sweep

all: $(ANNOTATE) $(PLUGIN) $(MOCK)

$(BUILD)/obj/%.o: src/%.c Makefile
	@mkdir -p $(dir $@)
	$(COMPILE) -MMD -MP -c -o $@ $<

# Its code is compiled as its authors build it, with the project's optimisation, debug
# information and sanitizers but not its warnings (-Werror is for the project's own code).
$(BUILD)/obj/blake3/%.o: $(B3_DIR)/% Makefile
	@mkdir -p $(dir $@)
	$(CC) $(B3_DEFS) $(OPT) -g $(SAN) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/mock/%.o: src/mock/%.c Makefile
	@mkdir -p $(dir $@)
	$(COMPILE) $(shell pkg-config --cflags libevent 2>/dev/null) -MMD -MP -c -o $@ $<

$(BUILD)/obj/tests/%.o: tests/%.c Makefile
	@mkdir -p $(dir $@)
	$(COMPILE) -Itests/helpers -MMD -MP -c -o $@ $<

$(BUILD)/obj/plugin/%.o: src/%.c Makefile
	@mkdir -p $(dir $@)
	$(COMPILE) $(VIPS_CFLAGS) -fPIC -fvisibility=hidden -MMD -MP -c -o $@ $<

$(BUILD)/obj/tests/unit/test_prepare.o: ANN_CPPFLAGS += $(VIPS_CFLAGS)
$(BUILD)/obj/prepare/prepare.o: ANN_CPPFLAGS += -DPREP_PLUGIN_LIBDIR='"$(PREFIX)/lib/annotate"'

# Objects also depend on this Makefile, so that a change of flags (or a build from before the
# .d files) rebuilds them.
-include $(patsubst %.o,%.d,$(LIB_OBJ) $(BUILD)/obj/main.o $(MOCK_OBJ) $(TEST_OBJ) $(BUILD)/obj/tests/helpers/failalloc.o $(PLUGIN_OBJ))

$(BUILD)/libannotate.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(ANNOTATE): $(BUILD)/obj/main.o $(BUILD)/libannotate.a
	$(LINK) -o $@ $^ $(LIBS)

# -z defs: every symbol the plugin uses is resolved at link time, none left to the program.
$(PLUGIN): $(PLUGIN_OBJ)
	$(LINK) -shared -Wl,-z,defs -o $@ $^ $(VIPS_LIBS) $(shell pkg-config --libs libcjson 2>/dev/null) -lm $(LDLIBS)

$(MOCK): $(MOCK_OBJ) $(BUILD)/libannotate.a
	$(LINK) -o $@ $^ $(LIBS) $(shell pkg-config --libs libevent 2>/dev/null)

$(FAILALLOC): $(BUILD)/obj/main.o $(BUILD)/libannotate.a $(BUILD)/obj/tests/helpers/failalloc.o
	$(LINK) $(foreach w,$(FAILALLOC_WRAPS),-Wl,--wrap=$(w)) -o $@ $^ $(LIBS) -ldl

# The unit tests link the mock's answer models (not its server) to predict every cell: the
# seed's five (answers.o) and the seven dialects' (dialects.o, which needs no libevent). Suite
# "prepare" reads prepared pixels back with libvips, and prepares through the plugin beside it.
$(UNIT): $(TEST_OBJ) $(BUILD)/obj/mock/answers.o $(BUILD)/obj/mock/dialects.o $(BUILD)/libannotate.a | $(PLUGIN)
	$(LINK) -o $@ $^ $(LIBS) $(VIPS_LIBS) -lcunit

# Installs the missing Debian packages (as root, or through sudo when there is one).
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
	    || { echo "could not install:$$missing (run: sudo apt-get install$$missing)"; exit 1; }; \
	fi
	@command -v npm >/dev/null || { echo "installing: nodejs npm"; if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null; }

# s3rver 3.7.1 from the npm registry into build/node (shared by every BUILD variant), for the tests
# of src/sources (tests/servers/test_s3servers.c; S3RVER_NODE_MODULES names another folder). make
# check installs it when it is missing.
S3RVER := build/node/node_modules/s3rver/package.json
s3rver: $(S3RVER)
$(S3RVER):
	npm install --prefix build/node --no-audit --no-fund --loglevel=error s3rver@3.7.1

demo: deps
	@$(MAKE) --no-print-directory all
	@sh tests/demo.sh $(BUILD)

# The README's test command: every test, plain and under the sanitizers, the serial path under
# valgrind, then each fuzzer for a short bounded time.
# The builds run on every core (-j); each suite still runs alone, after its build.
NPROC := $(shell nproc 2>/dev/null || echo 2)
# check and sanitize run side by side: their suites mostly wait on the servers and timeouts they
# set up (a make check keeps under one core busy), so the two fit on two cores. Each writes its
# own log (build/test-check.log, build/test-sanitize.log), shown whole once both are done.
# side_by_side: two make targets so, failing when either failed.
define side_by_side
@mkdir -p build; \
	  ( $(MAKE) -j$(NPROC) --no-print-directory $(1) >build/test-$(1).log 2>&1; echo $$? >build/test-$(1).rc ) & \
	  ( $(MAKE) -j$(NPROC) --no-print-directory $(2) >build/test-$(2).log 2>&1; echo $$? >build/test-$(2).rc ) & \
	  wait; \
	  for p in $(1) $(2); do echo "==== make $$p"; cat build/test-$$p.log; done; \
	  for p in $(1) $(2); do \
	    [ "$$(cat build/test-$$p.rc)" = 0 ] || { grep "^FAILED: " build/test-$$p.log; \
	      echo "make $$p FAILED (build/test-$$p.log)"; exit 1; }; \
	  done
endef

# valgrind (its two processes) and the fuzzers (a fixed time each) also go side by side.
test: deps
	@$(MAKE) --no-print-directory s3rver
	$(call side_by_side,check,sanitize)
	@$(MAKE) -j$(NPROC) --no-print-directory tsan
	$(call side_by_side,valgrind,fuzz-test)

fuzz-test:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

check: check-suites check-flags all $(UNIT) $(FAILALLOC) $(S3RVER)
	ANNOTATE_BIN=$(abspath $(ANNOTATE)) MOCK_BIN=$(abspath $(MOCK)) $(UNIT)

# tests/main.c's SUITES must list every register_NAME() of tests/*/test_*.c (see the script).
check-suites:
	@sh tests/helpers/check-suites.sh tests

# A user's CFLAGS add to the project's flags, never replace them (make CFLAGS=-O0 must build):
# the compile line make would run with CFLAGS=-O0 still carries -std=c11, -Isrc and -pthread.
check-flags:
	@line=$$($(MAKE) --no-print-directory -n -B BUILD=build-flagcheck CFLAGS=-O0 build-flagcheck/obj/common/b64.o); \
	  for f in -std=c11 -Isrc -pthread -O0 -MMD; do \
	    case " $$line " in *" $$f "*) ;; *) echo "check-flags: 'make CFLAGS=-O0' loses $$f: $$line"; exit 1;; esac; \
	  done

# Under ASan+UBSan every suite runs but those that time something (bench, the --max-rps rate, the
# preparation bottleneck), test other programs (the mock, the Python and independent servers),
# repeat one small run hundreds of times (the allocation-failure sample), or measure peak memory
# in bytes (memory peaks: ASan's allocator holds memory of its own, so there they could only be
# shown; the answers' paths under --max-memory run under ASan in suite limits, the budget's in
# budget and budget_concurrent): they run plain in check.
SANITIZE_SKIP := bench,mock,pyserver,dialects independent,hardening alloc,prepare_bottleneck,faults rate,memory peaks
sanitize:
	@LSAN_OPTIONS=suppressions=$(abspath tests/fuzz/lsan-libjq.supp) ANNOTATE_TEST_SKIP="$(SANITIZE_SKIP)" \
	  $(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" check

tsan:
	@$(MAKE) --no-print-directory BUILD=build-tsan OPT=-O1 SAN="-fsanitize=thread" \
	  ANNOTATE_TEST_FILTER=concurrent check

# Under valgrind, libvips' ORC-compiled vector code and libjpeg-turbo's SIMD are switched off:
# valgrind cannot run the code ORC writes at run time, and memcheck takes libjpeg-turbo's SIMD
# Huffman and IDCT reads for uninitialised ones; the C paths are what it checks.
VALGRIND_RUNS := valgrind valgrind-vipshome valgrind-serial valgrind-prepare
$(VALGRIND_RUNS): export VIPS_NOVECTOR = 1
$(VALGRIND_RUNS): export JSIMD_FORCENONE = 1
# valgrind refuses RDTSCP on a CPU that does not advertise it (some virtual machines run it all
# the same), and libjxl's Highway runs it as soon as libvips loads its JPEG XL module: under
# valgrind libvips loads its modules from $(BUILD)/vipshome (VIPSHOME), which holds all of them
# but that one. annotate takes no JPEG XL files.
# (Expanded when used: only make valgrind asks pkg-config.)
VIPS_LIBDIR = $(shell pkg-config --variable=libdir vips 2>/dev/null)
VIPS_MODVER = $(shell pkg-config --modversion vips 2>/dev/null | cut -d. -f1,2)
$(VALGRIND_RUNS): export VIPSHOME = $(abspath $(BUILD))/vipshome
# The serial suites (annotate under valgrind) and the preparation suites (the test binary under
# valgrind) are two processes of about one core each: with make -j they run side by side, each
# to its own log, shown whole when it ends.
valgrind: valgrind-serial valgrind-prepare
valgrind-vipshome: all $(UNIT)
	rm -rf $(BUILD)/vipshome && d=$(BUILD)/vipshome/$$(basename $(VIPS_LIBDIR))/vips-modules-$(VIPS_MODVER) && \
	  mkdir -p $$d && for m in $(VIPS_LIBDIR)/vips-modules-$(VIPS_MODVER)/*.so; do \
	    case $$m in *jxl*) ;; *) ln -s $$m $$d/ ;; esac; done
valgrind-serial: valgrind-vipshome
	@ANNOTATE_BIN=$(abspath $(ANNOTATE)) MOCK_BIN=$(abspath $(MOCK)) ANNOTATE_TEST_FILTER=serial \
	  ANNOTATE_WRAP="valgrind --error-exitcode=99 --leak-check=full -q" $(UNIT) >$(BUILD)/valgrind-serial.log 2>&1; \
	  rc=$$?; cat $(BUILD)/valgrind-serial.log; exit $$rc
valgrind-prepare: valgrind-vipshome
	@ANNOTATE_TEST_FILTER=prepare ANNOTATE_TEST_SKIP=prepare_bottleneck valgrind --error-exitcode=99 --leak-check=full -q \
	  $(UNIT) >$(BUILD)/valgrind-prepare.log 2>&1; rc=$$?; cat $(BUILD)/valgrind-prepare.log; exit $$rc

# The allocation-failure sweep over every allocation of a small serial run, once and from each on
# (make check runs a sample of about 250; make alloc-sweep BUILD=build-asan SAN=... under ASan).
alloc-sweep: all $(UNIT) $(FAILALLOC)
	ANNOTATE_BIN=$(abspath $(ANNOTATE)) MOCK_BIN=$(abspath $(MOCK)) ANNOTATE_TEST_FILTER="hardening alloc" \
	  ANNOTATE_ALLOC_SWEEP=all $(UNIT)

# base64 micro-benchmark: bench/bench_b64.c against the library, at -O2.
BENCH_B64 := $(BUILD)/bench-b64

$(BENCH_B64): bench/bench_b64.c src/common/b64.h $(BUILD)/libannotate.a
	@mkdir -p $(dir $@)
	$(COMPILE) -O2 -o $@ bench/bench_b64.c $(BUILD)/libannotate.a $(ANN_LDFLAGS) $(LDFLAGS) $(LIBS)

bench-micro: $(BENCH_B64)
	taskset -c 1 $(BENCH_B64) 2>/dev/null || $(BENCH_B64)

# Benchmark tools, built against the library like the tests.
# gen-images shares the tests' PNG writer (tests/helpers/util.c, which needs only libc and src/common/fdio.c).
$(BUILD)/gen-images: bench/gen_images.c tests/helpers/util.c tests/helpers/util.h src/common/fdio.c src/common/fdio.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -pthread -Isrc -Itests/helpers -o $@ bench/gen_images.c \
	  tests/helpers/util.c src/common/fdio.c
$(BUILD)/bench-%: bench/bench_%.c $(BUILD)/libannotate.a
	$(COMPILE) -o $@ $< $(BUILD)/libannotate.a $(ANN_LDFLAGS) $(LDFLAGS) $(LIBS)

# make bench-data N=1000000 SIZE=2048 DIR=out/bench-1m: N valid, distinct PNG files.
N    ?= 100000
SIZE ?= 40960
DIR  ?= out/bench-data
bench-data: $(BUILD)/gen-images
	$(BUILD)/gen-images --size $(SIZE) $(N) $(DIR)

bench-scan: $(BUILD)/bench-scan
	$(BUILD)/bench-scan $(DIR)

bench-resume: $(BUILD)/bench-resume
	$(BUILD)/bench-resume 1000000

# Listing 1,000,000 keys from a synthetic S3 bucket (pages of 1000) with the S3 client: resident
# memory as the pages go by (bench/s3list.sh; S3_KEYS=N for another count).
S3_KEYS ?= 1000000
bench-s3list: $(BUILD)/bench-s3list
	sh bench/s3list.sh $(BUILD) $(S3_KEYS)

# The same images from a local folder and from s3rver, against the same model server: images/s of
# each (bench/s3run.sh; S3_IMAGES=N images of 40 KB); then a run listing 1,000,000 keys of a
# synthetic bucket, its peak RSS against a run listing 10,000.
S3_IMAGES ?= 6000
bench-s3: all $(BUILD)/gen-images $(S3RVER)
	sh bench/s3run.sh $(BUILD) $(S3_IMAGES)

# The concurrency limits against a GPU-like mock (capacity, bounded queue): fixed against auto.
bench-capacity: all $(BUILD)/gen-images
	sh bench/capacity.sh $(BUILD)

# --concurrency auto against fixed numbers, in one run (bench/auto.sh, bench/auto.py): nginx without
# latency (auto / 64, goal 95%) and at 20 ms (auto / (256 / 20 ms), goal 90%), the mock slowing with
# time (auto / 64, goal 80%), one worker with seconds of latency (auto's p99, goal <= 3 s). About
# 4 minutes; nginx's echo module is installed when missing.
bench-auto: all $(BUILD)/gen-images
	sh bench/auto.sh $(BUILD) | tee docs/bench/bench-auto.txt

# annotate bench --sweep against a mock of a capacity per endpoint, and its recommendation run.
bench-sweep: all $(BUILD)/gen-images
	sh bench/sweep.sh $(BUILD)

# The client's CPU per request against nginx (its echo module answering the five endpoints), in
# one run with wrk (the ceiling) and a Python asyncio + aiohttp client; then 20 ms of latency at
# 256 and 1024 in flight. Installs nginx, libnginx-mod-http-echo, wrk and python3-aiohttp when
# missing (they are not in make deps).
bench-cost: all $(BUILD)/gen-images
	sh bench/cost.sh $(BUILD) | tee docs/bench/bench-cost.txt

# The answer store of --cache at STORE_ENTRIES entries: inserts/s, lookup time, bytes per entry
# beyond the result; and the hash candidates' throughput (bench/bench_store.c). libb2-dev,
# libxxhash-dev and libssl-dev (libcrypto's SHA-256 and BLAKE2b) are the other candidates',
# installed here when missing (not in make deps). About
# 5 minutes and 1 GB of disk in $(BUILD)/bench-store/, removed after.
STORE_ENTRIES ?= 10000000
$(BUILD)/bench-store: bench/bench_store.c src/results/store.h src/results/store_db.h src/common/hash.h $(BUILD)/libannotate.a
	@$(MAKE) --no-print-directory deps DEB_PKGS="libb2-dev libxxhash-dev libssl-dev"
	$(COMPILE) -o $@ $< $(BUILD)/libannotate.a $(ANN_LDFLAGS) $(LDFLAGS) $(LIBS) -lb2 -lxxhash -lcrypto

bench-cache-store: $(BUILD)/bench-store
	$(BUILD)/bench-store --entries $(STORE_ENTRIES) --dir $(BUILD)/bench-store.d

# --cache in a run: a first run with a new store against one without (CPU), the fully cached
# re-run (images/s), over CACHE_IMAGES files of 40 KB (bench/cache.sh; 400 MB under out/),
# CACHE_RUNS of each (the CPU of one run moves by 10-20 % on the shared machine); then
# bench-cache-store's figures. About 2 minutes, plus bench-cache-store's.
CACHE_IMAGES ?= 10000
CACHE_RUNS ?= 7
bench-cache: all $(BUILD)/gen-images $(BUILD)/bench-store
	sh bench/cache.sh $(BUILD) $(CACHE_IMAGES) $(CACHE_RUNS)
	$(BUILD)/bench-store --entries $(STORE_ENTRIES) --dir $(BUILD)/bench-store.d

# Image preparation (src/prepare/) beside Pillow: CPU per 12 MP camera JPEG made 1024 px, bytes
# before and after, where the time goes (perf), each estimate of prep_peak_bytes against the peak
# RSS it bounds, and the peak RSS of 8000 x 6000 photos prepared under a 200 MB byte budget.
$(BUILD)/bench-prepare: private ANN_CPPFLAGS += $(VIPS_CFLAGS)
$(BUILD)/bench-prepare: private ANN_LDLIBS += $(VIPS_LIBS)
bench-prepare: $(BUILD)/bench-prepare $(ANNOTATE) $(PLUGIN)
	sh bench/prepare.sh $(BUILD) | tee docs/bench/bench-prepare.txt

# --max-memory in whole runs (bench/memory.py): the peak RSS of the parent and the workers' summed
# Pss, with and without a cap, for 16 endless chunked answers in flight and for 30 MB images
# (MEM_IMAGES of them, 480 MB under out/bench-memory) loaded by worker processes
# (load=processes) and under --strategy processes. About a minute.
MEM_IMAGES ?= 16
bench-memory: all
	/usr/bin/python3 bench/memory.py $(BUILD) $(MEM_IMAGES) | tee docs/bench/bench-memory.txt

# A process's start: annotate (libvips in the plugin) against the same objects with libvips linked,
# as before the plugin: --version, a run without and one with "image", --version under valgrind
# (bench/start.sh; about a minute).
$(BUILD)/annotate-vipslinked: $(BUILD)/obj/main.o $(BUILD)/libannotate.a
	$(LINK) -o $@ $^ $(LIBS) -Wl,--no-as-needed $(VIPS_LIBS)
bench-start: all $(BUILD)/annotate-vipslinked
	sh bench/start.sh $(BUILD) | tee docs/bench/bench-start.txt

# Every figure of docs/BENCHMARKS.md, in one go (about 20 minutes; needs ~10 GB of disk).
bench: all $(BUILD)/gen-images $(BUILD)/bench-scan $(BUILD)/bench-resume $(BENCH_B64) $(BUILD)/bench-s3list $(S3RVER)
	sh bench/run.sh $(BUILD)

# libFuzzer targets (clang): the answer parser, the pipeline-file parser, the resume reader, the
# JSON checker, answers read through expressions (plain paths and jq), the body template compiler,
# the S3 listing page reader, a stage's "image" spec and a crop stage's boxes (prepare_spec).
# The seed corpora live in tests/fuzz/corpus_*; what a run finds goes to build-fuzz/, not the repo.
FUZZ_SECONDS ?= 60
FUZZERS := answer pipeline resume json expr template s3list prepare_spec
fuzz:
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OPT=-O1 \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" build-fuzz/libannotate.a
	@set -e; for f in $(FUZZERS); do \
	  clang -std=c11 -D_GNU_SOURCE -O1 -g $(ANN_INCLUDES) $$(pkg-config --cflags $(PKGS)) \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -o build-fuzz/fuzz-$$f tests/fuzz/fuzz_$$f.c build-fuzz/libannotate.a $(LIBS); \
	  mkdir -p build-fuzz/corpus_$$f; cp -n tests/fuzz/corpus_$$f/* build-fuzz/corpus_$$f/ 2>/dev/null || true; \
	  echo "fuzz $$f: $(FUZZ_SECONDS) s"; \
	  if ! LSAN_OPTIONS=suppressions=$(abspath tests/fuzz/lsan-libjq.supp) build-fuzz/fuzz-$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 -close_fd_mask=3 \
	    -artifact_prefix=build-fuzz/crash-$$f- build-fuzz/corpus_$$f tests/fuzz/corpus_$$f >build-fuzz/fuzz-$$f.log 2>&1; then \
	    tail -40 build-fuzz/fuzz-$$f.log; echo "fuzz $$f FAILED: the input is in build-fuzz/crash-$$f-*"; exit 1; fi; \
	  tail -1 build-fuzz/fuzz-$$f.log; \
	done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/annotate $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(ANNOTATE) $(MOCK) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(PLUGIN) $(DESTDIR)$(PREFIX)/lib/annotate/
	install -m 644 docs/annotate.1 docs/mock-model-server.1 $(DESTDIR)$(PREFIX)/share/man/man1/

clean:
	rm -rf build build-asan build-tsan build-fuzz
