# mcpmesh: make run | make test | make bench | make format
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
HTTP ?= 127.0.0.1:8080
APP ?= demo

.PHONY: all deps deps-test configure build run test bench bench-cluster format tidy clean

all: build

deps:
	scripts/install-deps.sh build

deps-test:
	scripts/install-deps.sh test

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then cmake --preset release; fi

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/bin/mcpmesh-node --http $(HTTP) --app $(APP)

test: deps-test configure
	cmake --build $(BUILD_DIR) -j $(JOBS)
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 900

bench: deps-test build
	bench/run.sh

bench-cluster: build
	bench/cluster_bench.sh

format:
	find mcp transport registry node cluster ctl bench tests -name '*.cpp' -o -name '*.hpp' | xargs clang-format -i

tidy: configure
	run-clang-tidy -p $(BUILD_DIR) -quiet 'mcp/|transport/|registry/|node/|cluster/'

clean:
	rm -rf $(BUILD_DIR)
