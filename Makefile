# strata -- what a user types. CMake does the building; see README.md.
#   make            release build in build/
#   make test       install deps, ASan+UBSan build (-Werror), every test
#   make tsan       TSan build, the threaded unit tests
#   make run        install deps, build, run the demo
#   make bench      release build, every benchmark (results: docs/benchmarks.md)
#   make install    install binary, libraries, header, strata.pc (PREFIX=/usr/local)
PREFIX ?= /usr/local
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE  ?= cmake
DEPS    = scripts/install-deps

.PHONY: all build test tsan run bench install deps clean format

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
	./build/strata-demo

bench: deps build
	./bench/run-all.sh build

install: build
	$(CMAKE) --install build

format:
	clang-format -i include/*.h src/*/*.c src/*/*.h tests/unit/*.c bench/*/*.c examples/*.c

clean:
	rm -rf build build-asan build-tsan build-fuzz
