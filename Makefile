# Thin wrappers over CMake: `make run` and `make test` are the README's two commands.
#   make run                 build, then start the service with the embedded defaults
#   make test                build, then run every test (ctest)
#   make test SANITIZE=1     the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test CTEST_ARGS="-LE slow"   skip the 4-minute delivery chaos run
#   make bench               benchmarks against nginx and Node.js (tests/bench/README.md);
#                            BENCH_ARGS="--only eval" etc. are passed to tests/bench/bench.py
BUILD_DIR ?= build
ifeq ($(SANITIZE),1)
BUILD_DIR := build-asan
CMAKE_FLAGS += -DTH_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug
# The minutes-long chaos run (label "slow") proves delivery, not memory safety: once is enough.
CTEST_ARGS += -LE slow
endif
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all build run test bench clean deps

all: build

deps:
	@.ci/deps test

build:
	@.ci/deps build
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	./$(BUILD_DIR)/trailhook serve $(ARGS)

test: deps build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# Benchmarks measure a Release build (the default is RelWithDebInfo); build/ stays Release.
bench:
	@.ci/deps bench
	@$(MAKE) --no-print-directory build CMAKE_FLAGS="$(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=Release"
	python3 tests/bench/bench.py --trailhook ./$(BUILD_DIR)/trailhook $(BENCH_ARGS)

clean:
	rm -rf build build-asan
