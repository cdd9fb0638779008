#!/usr/bin/env bash
# Installs every Debian package and npm package the build, the tests and the benchmarks need.
# Idempotent: packages already present are left alone.
# Usage: scripts/install-deps.sh [build|test|compose]
#   compose: what `make compose-test` needs (podman serving the Docker API, docker-compose,
#   debootstrap for the local base image, Node and the SDK); not the compilers, the image builds.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}

build_pkgs=(g++ cmake ninja-build ccache pkg-config
  libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev libboost-url1.81-dev
  libgrpc++-dev libabsl-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libssl-dev libnetfilter-queue-dev)
test_pkgs=(nodejs npm curl wrk nghttp2-client nginx-light nftables iproute2 procps clang-format git
  iptables)
compose_pkgs=(podman docker-compose debootstrap runc containernetworking-plugins slirp4netns uidmap
  fuse-overlayfs iptables nodejs npm)

case $what in
  build) pkgs=("${build_pkgs[@]}") ;;
  compose) pkgs=("${compose_pkgs[@]}") ;;
  *) pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm may come from outside Debian's packages; only ask apt when they are absent.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=()
  for p in "${missing[@]}"; do [[ "$p" = nodejs || "$p" = npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$what" != build ]; then
  # npm packages pinned by package-lock.json: the conformance suite, Node 22 for it, the SDK.
  stamp=node_modules/.install-stamp
  if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
    npm ci --no-audit --no-fund --loglevel=error
    touch "$stamp"
  fi
fi
