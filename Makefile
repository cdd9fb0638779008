# mcpmesh: make run | make test | make bench | make format
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
HTTP ?= 127.0.0.1:8080
APP ?= demo

.PHONY: all deps deps-test configure build node run cluster test compose-test chaos bench bench-cluster bench-scale bench-overload bench-memory lsan-drain format tidy clean

all: build

deps:
	scripts/install-deps.sh build

deps-test:
	scripts/install-deps.sh test

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then cmake --preset release; fi

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Builds only what it starts.
node: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target mcpmesh-node

run: node
	$(BUILD_DIR)/bin/mcpmesh-node --http $(HTTP) --app $(APP)

# 4 nodes + nginx on 127.0.0.1:$(CLUSTER_PORT), in the foreground (Ctrl-C stops all of it).
cluster: CLUSTER_PORT ?= 8080
cluster: CLUSTER_DIR ?= build/cluster
cluster: node
	deploy/local/cluster.sh up --nodes 4 --port $(CLUSTER_PORT) --dir $(CLUSTER_DIR) --bin $(BUILD_DIR)/bin/mcpmesh-node

test: deps-test configure
	cmake --build $(BUILD_DIR) -j $(JOBS)
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 900

# deploy/docker-compose.yml for real, without a Docker engine: podman serves the Docker API to
# docker-compose, the images are built from deploy/Dockerfile, an SDK client goes through nginx
# and survives the kill of its node's container (tests/compose/README.md). Needs root.
compose-test:
	scripts/install-deps.sh compose
	tests/compose/run.sh

# Fault injection (chaos/README.md): 4 nodes in network namespaces under an MCP workload,
# every nemesis for 10 minutes; needs root. The one-minute run is the ctest chaos_smoke.
chaos: deps-test build
	chaos/run --duration 600 --nemeses kill,pause,isolate,split,oneway,loss,delay \
	  --bin $(BUILD_DIR)/bin/mcpmesh-node --ctl $(BUILD_DIR)/bin/mcpmesh-ctl \
	  --delayer $(BUILD_DIR)/bin/mcpmesh-nfq-delay

bench: deps-test build
	bench/run.sh

# A drain leaks nothing: an AddressSanitizer build of the node in build-asan/ (not in
# `make test`: it builds the node a second time).
lsan-drain: deps-test
	tests/cluster/lsan_drain.sh

# Membership (simulator, real processes) and MCP over the cluster (forwarding hop, failover,
# notification fan-out; these need wrk, nginx and Node from deps-test). bench/README.md.
bench-cluster: deps-test build
	BUILD_DIR=$(BUILD_DIR) bench/cluster_bench.sh

# Scale (19,000 SSE streams on one node; 100,000 sessions over 6 nodes behind nginx), overload
# (ten times a node's capacity for 60 s) and memory (KB per idle session and per held stream at
# 10,000 of each), each beside the official TypeScript SDK where it can run the same workload.
# docs/BENCHMARKS.md.
bench-scale: deps-test build
	bench/scale_bench.sh streams sessions --sdk

bench-overload: deps-test build
	bench/overload_bench.sh

bench-memory: deps-test build
	bench/memory_bench.sh

format:
	find mcp transport registry node cluster ctl bench tests chaos -name '*.cpp' -o -name '*.hpp' | xargs clang-format -i

tidy: configure
	run-clang-tidy -p $(BUILD_DIR) -quiet 'mcp/|transport/|registry/|node/|cluster/'

clean:
	rm -rf $(BUILD_DIR)
