# strata -- what a user types. CMake does the building; see README.md.
#   make            release build in build/
#   make test       install deps, ASan+UBSan build (-Werror), every test
#   make tsan       TSan build, the threaded unit tests
#   make run        install deps, build, run the demo
#   make bench      release build, every benchmark (results: docs/benchmarks.md)
#   make install    install binary, libraries, header, strata.pc (PREFIX=/usr/local)
#   make fuzz       libFuzzer targets (clang-14), each run FUZZ_TIME seconds (300)
PREFIX ?= /usr/local
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE  ?= cmake
DEPS    = scripts/install-deps

.PHONY: all build test tsan run bench install deps clean format fuzz

all: build

deps:
	@$(DEPS)

build:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	$(CMAKE) --build build -j$(JOBS)

test: deps
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSTRATA_WERROR=ON \
	    -DSTRATA_SANITIZE=address,undefined -DSTRATA_BENCH=OFF >/dev/null
	$(CMAKE) --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j$(JOBS)

tsan: deps
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRATA_WERROR=ON \
	    -DSTRATA_SANITIZE=thread -DSTRATA_BENCH=OFF >/dev/null
	$(CMAKE) --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	    ctest --output-on-failure -L unit -j1

run: deps build
	./scripts/run-demo

bench: deps build
	./bench/run-all.sh build

install: build
	$(CMAKE) --install build

FUZZ_TIME ?= 300
FUZZ_CC   ?= clang-14
# Every target links the policy parsers, which need nothing else.
FUZZ_SRCS  = src/proxy/cachecontrol.c src/proxy/normalize.c src/proxy/range.c \
             src/proxy/tagheader.c
# The config target also needs the loader, the glob grammar and libyaml.
FUZZ_CONFIG = $(wildcard src/config/*.c) src/core/glob.c -lyaml
# The request target: llhttp compiled as CMake does (strict mode), and the
# rest of the library (serve.c, for proxy_target and proxy_url_tag, reaches
# all of it) with its libraries.
FUZZ_LLHTTP = /usr/share/llhttp
FUZZ_REQUEST = -DLLHTTP_STRICT_MODE=1 -I/usr/share/include/llhttp \
    $(FUZZ_LLHTTP)/llhttp.c $(FUZZ_LLHTTP)/api.c $(FUZZ_LLHTTP)/http.c \
    $(filter-out src/cli/% $(FUZZ_SRCS),$(wildcard src/*.c src/*/*.c)) \
    -lyaml -lzstd -llz4 -lz -lxxhash -luv -lcrypto -ljwt -ljansson -lpthread -lm

# Each target in tests/fuzz/ runs FUZZ_TIME seconds from its corpus in
# build-fuzz/corpus-NAME, seeded from tests/fuzz/corpus/NAME (without the
# fuzz_ prefix) when there is one; a crash, a leak or undefined behaviour
# stops make with the reproducer's path.
fuzz: deps
	mkdir -p build-fuzz
	set -e; for f in tests/fuzz/fuzz_*.c; do \
	    n=$$(basename $$f .c); extra=""; \
	    if [ $$n = fuzz_config ]; then extra="$(FUZZ_CONFIG)"; fi; \
	    if [ $$n = fuzz_request ]; then extra="$(FUZZ_REQUEST)"; fi; \
	    $(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude \
	        $$f $(FUZZ_SRCS) $$extra -o build-fuzz/$$n; \
	    mkdir -p build-fuzz/corpus-$$n; \
	    seeds=tests/fuzz/corpus/$${n#fuzz_}; [ -d $$seeds ] || seeds=""; \
	    echo "== $$n ($(FUZZ_TIME) s)"; \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    build-fuzz/$$n -max_total_time=$(FUZZ_TIME) -artifact_prefix=build-fuzz/$$n- \
	        build-fuzz/corpus-$$n $$seeds > build-fuzz/$$n.log 2>&1 \
	        || { tail -40 build-fuzz/$$n.log; echo "$$n: FAILED"; exit 1; }; \
	    grep -E '^Done' build-fuzz/$$n.log; \
	done

format:
	clang-format -i include/*.h src/*/*.c src/*/*.h tests/unit/*.c bench/*/*.c examples/*.c

clean:
	rm -rf build build-asan build-tsan build-fuzz
