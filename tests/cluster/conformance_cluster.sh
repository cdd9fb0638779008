#!/usr/bin/env bash
# The official MCP conformance suite (tests/conformance/run.sh, suite "all" unless
# CONFORMANCE_SUITE/CONFORMANCE_SCENARIO say otherwise) through nginx in front of a 4-node
# cluster serving `--app conformance` (deploy/local/cluster.sh, fast profile). The cluster is
# always brought down, also when the suite fails or this script is interrupted.
#
# usage: tests/cluster/conformance_cluster.sh [PATH-TO-MCPMESH-NODE]   (default: $MCPMESH_NODE)
# env:   MCPMESH_NGINX (optional), MCPMESH_TEST_KEEP=1 keeps the cluster directory (logs);
#        the CONFORMANCE_* variables of run.sh.
# Exit status: 0 iff run.sh passed (no failed check) and every node still runs afterwards.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cluster_sh=$repo/deploy/local/cluster.sh
node_bin=${1:-${MCPMESH_NODE:-}}
[[ -n $node_bin && -x $node_bin ]] || {
  echo "conformance_cluster.sh: no mcpmesh-node (pass its path or set MCPMESH_NODE)" >&2
  exit 2
}
export MCPMESH_NODE=$node_bin
nodes=4

dir=$(mktemp -d "${TMPDIR:-/tmp}/mcpmesh-conformance-cluster.XXXXXX")
up=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((up)); then
    timeout 90 "$cluster_sh" down --dir "$dir" >/dev/null || {
      echo "conformance_cluster.sh: cluster.sh down failed" >&2
      rc=1
    }
  fi
  if [[ -n ${MCPMESH_TEST_KEEP:-} || $rc -ne 0 ]]; then
    echo "conformance_cluster.sh: cluster directory (logs) kept in $dir" >&2
  else
    rm -rf "$dir"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port=$(python3 "$repo/deploy/local/free-ports.py" 1)
up=1 # from here on `down` runs, whatever happens to `up` (it stops what it started itself)
timeout 120 "$cluster_sh" up --nodes "$nodes" --port "$port" --dir "$dir" --app conformance \
  --profile fast --detach >"$dir/up.out"
url=$(tail -n 1 "$dir/up.out")
[[ $url == "url http://127.0.0.1:$port/mcp" ]] || {
  echo "conformance_cluster.sh: unexpected last line of cluster.sh up: $url" >&2
  exit 1
}
url=${url#url }
echo "conformance_cluster.sh: $nodes nodes behind nginx at $url"

rc=0
CONFORMANCE_URL=$url "$repo/tests/conformance/run.sh" || rc=$?

# A node that died during the suite fails the run even when the suite passed.
while read -r id _; do
  pid=$(tr -dc 0-9 <"$dir/$id.pid")
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "conformance_cluster.sh: $id (pid $pid) exited during the suite; its log:" >&2
    tail -n 30 "$dir/$id.log" >&2
    rc=1
  fi
done <"$dir/nodes"
# Which nodes served the suite's requests (nginx's access log: the upstream address of each).
if [[ -f $dir/nginx/access.log ]]; then
  echo "conformance_cluster.sh: requests per node address:"
  grep -oE 'addr=[0-9.:]+' "$dir/nginx/access.log" | sort | uniq -c | sed 's/^/  /' || true
fi
exit "$rc"
