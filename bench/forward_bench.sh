#!/usr/bin/env bash
# The forwarding hop (make bench-cluster, section "Forwarding hop"): what it costs to reach a
# session through a node that does not hold it. Two mcpmesh-node processes on loopback (n1, n2;
# --threads 1 each, fast profile, one cluster); one session, owned by n1. wrk sends the same
# static tools/call echo (bench/tools_call.lua) either to n1 directly or to n2, which relays
# every exchange to n1 over its one batched relay link and relays the answer back.
#
# Cells, each run once per round, rounds interleaved, medians reported:
#   variant  cross   the OS schedules n1, n2 and wrk over both cores (wake-ups cross cores)
#            pinned  n1, n2 (every thread: taskset -a -p) and wrk on CPU 0: the work itself,
#                    without cross-core wake-ups
#   load     c1      one connection: latency (p50, p99; the hop's added p50)
#            c32     32 connections: throughput (req/s; forwarded/direct ratio)
#   target   direct  wrk -> n1
#            fwd     wrk -> n2 -> n1
# Per run: req/s, p50, p99; CPU time per request of n1 and of n2 (utime+stime of every thread,
# /proc/PID/stat) and of wrk (/usr/bin/time); context switches per request of n1 and n2
# (voluntary + nonvoluntary over /proc/PID/task/*/status); for forwarded runs the exchanges per
# relay batch (n2's mcpmesh_cluster_forward_calls_total / _batches_total deltas).
#
# Correctness: before the first round, every (variant, target) pair gets a checked warm-up run
# (bench/tools_call_check.lua: status and echoed body of every answer); any wrong answer, any
# non-2xx answer or socket error in any run fails the bench. Forwarded runs must move n2's
# forward_calls counter by at least the answers wrk counted; direct runs must not move it.
#
# env:
#   MCPMESH_NODE     path to mcpmesh-node (default <repo>/build/bin/mcpmesh-node)
#   FWD_ROUNDS       interleaved rounds (default 3)
#   FWD_DURATION     wrk -d per run (default 5s)
#   FWD_CONNS        connections of the throughput runs (default 32)
#   FWD_CHECK        length of each checked warm-up run (default 3s)
#   FWD_SKIP_PINNED  1 = no pinned variant
#   FWD_CPU          the CPU of the pinned variant (default 0)
#   BENCH_QUICK=1    smoke-test defaults: 1 round of 1 s runs, 1 s checks (figures mean nothing)
#   FWD_KEEP=1       keep the work directory (logs, wrk outputs)
# Output: the runs, a Markdown table of medians, and `BENCH <name> <value>` lines.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
MCPMESH_NODE=${MCPMESH_NODE:-$REPO_ROOT/build/bin/mcpmesh-node}
if [[ -n ${BENCH_QUICK:-} ]]; then
  ROUNDS=${FWD_ROUNDS:-1} DURATION=${FWD_DURATION:-1s} CHECK=${FWD_CHECK:-1s}
else
  ROUNDS=${FWD_ROUNDS:-3} DURATION=${FWD_DURATION:-5s} CHECK=${FWD_CHECK:-3s}
fi
CONNS=${FWD_CONNS:-32}
CPU=${FWD_CPU:-0}
PROTO=2025-11-25
START_DEADLINE=20
HZ=$(getconf CLK_TCK)
ALL_CPUS=0-$(($(nproc --all) - 1))
VARIANTS=(cross)
[[ -n ${FWD_SKIP_PINNED:-} ]] || VARIANTS+=(pinned)

for tool in wrk curl taskset python3; do
  command -v "$tool" >/dev/null || { echo "forward_bench: '$tool' not found" >&2; exit 2; }
done
[[ -x /usr/bin/time ]] || { echo "forward_bench: /usr/bin/time not found (apt-get install time)" >&2; exit 2; }
[[ -x "$MCPMESH_NODE" ]] || { echo "forward_bench: no mcpmesh-node at $MCPMESH_NODE (set MCPMESH_NODE)" >&2; exit 2; }

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
bench_init forward_bench FWD_KEEP
die() { echo "forward_bench: $*" >&2; exit 1; }

(umask 077 && head -c 32 /dev/urandom >"$WORK/cluster.secret")

declare -A PID HTTP CLUSTER
# start_node <id> [seed]: port 0 for HTTP and cluster; waits for both listening lines
start_node() {
  local id=$1 seed=${2:-} log="$WORK/$1.log" deadline line
  local -a args=(--node-id "$id" --app demo --http 127.0.0.1:0 --cluster 127.0.0.1:0
    --cluster-secret-file "$WORK/cluster.secret" --cluster-profile fast --threads 1
    --client-rate-limit 0)  # wrk is one client: its rate is what is measured
  [[ -z $seed ]] || args+=(--seeds "$seed")
  "$MCPMESH_NODE" "${args[@]}" </dev/null >"$log" 2>&1 &
  PID[$id]=$!
  PIDS+=("$!")
  deadline=$((SECONDS + START_DEADLINE))
  while :; do
    if grep -q '^cluster listening on ' "$log" && line=$(grep -m1 -oE '^listening on http://[^ ]+/mcp' "$log"); then
      HTTP[$id]=$(sed -E 's#^listening on http://([^/]+)/mcp$#\1#' <<<"$line")
      CLUSTER[$id]=$(grep -m1 '^cluster listening on ' "$log" | awk '{print $4}')
      return 0
    fi
    kill -0 "${PID[$id]}" 2>/dev/null || { cat "$log" >&2; die "$id exited during start"; }
    [[ $SECONDS -lt $deadline ]] || { cat "$log" >&2; die "$id did not start within ${START_DEADLINE}s"; }
    sleep 0.05
  done
}

# metric <id> <name>: one unlabelled sample of node <id>'s /metrics
metric() {
  curl -sS --max-time 5 "http://${HTTP[$1]}/metrics" | awk -v n="$2" '$1 == n {v = $2} END {print v}'
}

# ctx_switches <pid>: voluntary + nonvoluntary context switches summed over its threads
ctx_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ {s += $2} END {print s + 0}'
}

# post <url> <sid-or-empty> <json> <outfile>: prints the HTTP status
post() {
  local url=$1 sid=$2 body=$3 out=$4
  local -a h=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')
  [[ -z $sid ]] || h+=(-H "Mcp-Session-Id: $sid" -H "MCP-Protocol-Version: $PROTO")
  curl -sS --max-time 10 -o "$out" -D "$out.h" -w '%{http_code}' "${h[@]}" --data-binary "$body" "$url"
}

# pin <cpus>: every thread of both nodes onto <cpus>
pin() {
  local id
  for id in n1 n2; do taskset -a -p -c "$1" "${PID[$id]}" >/dev/null || die "taskset -a -p -c $1 ${PID[$id]} failed"; done
}

start_node n1
start_node n2 "${CLUSTER[n1]}"
URL_DIRECT="http://${HTTP[n1]}/mcp"
URL_FWD="http://${HTTP[n2]}/mcp"

# Both see two live members.
deadline=$((SECONDS + START_DEADLINE))
until [[ $(metric n1 'mcpmesh_cluster_members{state="alive"}') == 2 && $(metric n2 'mcpmesh_cluster_members{state="alive"}') == 2 ]]; do
  [[ $SECONDS -lt $deadline ]] || die "n1 and n2 did not see each other within ${START_DEADLINE}s"
  sleep 0.1
done

# One session on n1; initialized through n2, and one echo checked on each path.
status=$(post "$URL_DIRECT" "" '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"'$PROTO'","capabilities":{},"clientInfo":{"name":"forward-bench","version":"1.0.0"}}}' "$WORK/init")
[[ $status == 200 ]] || die "initialize on n1 -> HTTP $status: $(cat "$WORK/init")"
SID=$(grep -i '^mcp-session-id:' "$WORK/init.h" | head -n1 | cut -d: -f2- | tr -d ' \r\n')
[[ $SID == n1.* ]] || die "session id '$SID' is not n1's"
status=$(post "$URL_FWD" "$SID" '{"jsonrpc":"2.0","method":"notifications/initialized"}' "$WORK/inited")
[[ $status == 202 || $status == 200 ]] || die "notifications/initialized through n2 -> HTTP $status"
for target in direct fwd; do
  url=$URL_DIRECT; [[ $target == fwd ]] && url=$URL_FWD
  status=$(post "$url" "$SID" '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"bench-payload"}}}' "$WORK/call.$target")
  [[ $status == 200 ]] || die "tools/call ($target) -> HTTP $status: $(cat "$WORK/call.$target")"
  if ! grep -q '"text":"bench-payload"' "$WORK/call.$target" || grep -q '"error"\|"isError":true' "$WORK/call.$target"; then
    die "tools/call ($target) answered wrongly: $(cat "$WORK/call.$target")"
  fi
done
calls=$(metric n2 mcpmesh_cluster_forward_calls_total)
[[ ${calls:-0} -ge 2 ]] || die "n2 did not relay (forward_calls_total ${calls:-none})"
echo "forward_bench: session $SID on n1 (${HTTP[n1]}), relayed by n2 (${HTTP[n2]}); both --threads 1, fast profile"
echo "forward_bench: wrk -t1, -c1 and -c$CONNS, $DURATION per run, $ROUNDS interleaved rounds; variants ${VARIANTS[*]} (pinned: CPU $CPU)"

# wrk_prefix <variant>: sets PRE, the command wrk runs under (taskset for the pinned variant)
wrk_prefix() { PRE=(); if [[ $1 == pinned ]]; then PRE=(taskset -c "$CPU"); fi; }

# check <variant> <target>: the checked warm-up (every answer's status and body)
check() {
  local variant=$1 target=$2 url=$URL_DIRECT out="$WORK/check.$1.$2.wrk" non200 badbody answers
  [[ $target == fwd ]] && url=$URL_FWD
  wrk_prefix "$variant"
  "${PRE[@]}" wrk -t1 -c"$CONNS" -d"$CHECK" -s "$SCRIPT_DIR/tools_call_check.lua" "$url" -- "$SID" "$PROTO" >"$out"
  non200=$(awk '/^mcp-non200:/ {print $2}' "$out")
  badbody=$(awk '/^mcp-badbody:/ {print $2}' "$out")
  answers=$(awk '/ requests in / {print $1}' "$out")
  [[ -n $non200 && -n $badbody && -n $answers ]] || { cat "$out" >&2; die "could not parse the check run $variant/$target"; }
  ! grep -qE '^ +Socket errors:' "$out" || die "check $variant/$target: $(grep -E '^ +Socket errors:' "$out")"
  [[ $answers -gt 0 ]] || die "check $variant/$target: no answers"
  [[ $((non200 + badbody)) == 0 ]] || die "check $variant/$target: $non200 non-200 and $badbody wrong answers of $answers"
  printf '  check %-6s %-6s %9d answers checked, 0 wrong\n' "$variant" "$target" "$answers"
}

# run <variant> <conns> <target> <round>: one timed run; appends a line to $WORK/runs
run() {
  local variant=$1 conns=$2 target=$3 round=$4 url=$URL_DIRECT
  local out="$WORK/run.$1.c$2.$3.$4.wrk" tfile="$WORK/run.$1.c$2.$3.$4.time"
  [[ $target == fwd ]] && url=$URL_FWD
  local c1a c2a s1a s2a fca fba c1b c2b s1b s2b fcb fbb f1a f1b
  c1a=$(cpu_ticks "${PID[n1]}") c2a=$(cpu_ticks "${PID[n2]}")
  s1a=$(ctx_switches "${PID[n1]}") s2a=$(ctx_switches "${PID[n2]}")
  fca=$(metric n2 mcpmesh_cluster_forward_calls_total) fba=$(metric n2 mcpmesh_cluster_forward_batches_total)
  f1a=$(metric n1 mcpmesh_cluster_forward_calls_total)
  wrk_prefix "$variant"
  /usr/bin/time -f '%U %S' -o "$tfile" "${PRE[@]}" \
    wrk -t1 -c"$conns" -d"$DURATION" --latency -s "$SCRIPT_DIR/tools_call.lua" "$url" -- "$SID" "$PROTO" >"$out"
  c1b=$(cpu_ticks "${PID[n1]}") c2b=$(cpu_ticks "${PID[n2]}")
  s1b=$(ctx_switches "${PID[n1]}") s2b=$(ctx_switches "${PID[n2]}")
  fcb=$(metric n2 mcpmesh_cluster_forward_calls_total) fbb=$(metric n2 mcpmesh_cluster_forward_batches_total)
  f1b=$(metric n1 mcpmesh_cluster_forward_calls_total)
  local requests rps p50 p99 non2xx wrk_cpu
  requests=$(awk '/ requests in / {print $1}' "$out")
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p50=$(awk '$1 == "50%" {print $2; exit}' "$out")
  p99=$(awk '$1 == "99%" {print $2; exit}' "$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  wrk_cpu=$(awk '{print $1 + $2}' "$tfile")
  [[ -n $requests && -n $rps && -n $p50 && -n $p99 ]] || { cat "$out" >&2; die "could not parse wrk output ($variant c$conns $target)"; }
  ! grep -qE '^ +Socket errors:' "$out" || die "$variant c$conns $target round $round: $(grep -E '^ +Socket errors:' "$out")"
  [[ ${non2xx:-0} == 0 ]] || die "$variant c$conns $target round $round: $non2xx non-2xx answers"
  [[ $requests -gt 0 ]] || die "$variant c$conns $target round $round: no answers"
  [[ $((f1b - f1a)) == 0 ]] || die "n1 relayed $((f1b - f1a)) exchanges: it holds the session"
  if [[ $target == fwd ]]; then
    [[ $((fcb - fca)) -ge $requests ]] || die "n2 relayed $((fcb - fca)) exchanges for $requests answers"
  else
    [[ $((fcb - fca)) == 0 ]] || die "n2 relayed $((fcb - fca)) exchanges during a direct run"
  fi
  python3 - "$variant" "$conns" "$target" "$round" "$requests" "$rps" "$p50" "$p99" \
    "$((c1b - c1a))" "$((c2b - c2a))" "$((s1b - s1a))" "$((s2b - s2a))" "$wrk_cpu" \
    "$((fcb - fca))" "$((fbb - fba))" "$HZ" >>"$WORK/runs" <<'PY'
import re, sys
v, c, t, r, n, rps, p50, p99, t1, t2, s1, s2, wcpu, fc, fb, hz = sys.argv[1:]
def ms(x):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", x)
    if not m: raise SystemExit(f"bad wrk duration {x}")
    return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m[2]]
n = int(n); hz = int(hz)
per = lambda ticks: int(ticks) / hz * 1e6 / n
epb = int(fc) / int(fb) if t == "fwd" and int(fb) > 0 else 0.0
print(v, c, t, r, n, rps, f"{ms(p50):.3f}", f"{ms(p99):.3f}", f"{per(t1):.2f}", f"{per(t2):.2f}",
      f"{int(s1) / n:.3f}", f"{int(s2) / n:.3f}", f"{float(wcpu) * 1e6 / n:.2f}", f"{epb:.2f}")
PY
  tail -n1 "$WORK/runs" | awk '{printf "  round %s %-6s c%-3s %-6s %9.1f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu n1 %6.2f n2 %6.2f wrk %6.2f us/req  cs/req n1 %5.2f n2 %5.2f  exch/batch %5.2f\n", $4, $1, $2, $3, $6, $7, $8, $9, $10, $13, $11, $12, $14}'
}

for variant in "${VARIANTS[@]}"; do
  if [[ $variant == pinned ]]; then pin "$CPU"; else pin "$ALL_CPUS"; fi
  check "$variant" direct
  check "$variant" fwd
done
for round in $(seq 1 "$ROUNDS"); do
  # direct first in odd rounds, forwarded first in even ones
  targets=(direct fwd); ((round % 2)) || targets=(fwd direct)
  for variant in "${VARIANTS[@]}"; do
    if [[ $variant == pinned ]]; then pin "$CPU"; else pin "$ALL_CPUS"; fi
    for conns in 1 "$CONNS"; do
      for target in "${targets[@]}"; do run "$variant" "$conns" "$target" "$round"; done
    done
  done
done
pin "$ALL_CPUS"
for id in n1 n2; do kill -0 "${PID[$id]}" 2>/dev/null || die "$id exited during the run"; done

python3 - "$WORK/runs" "$CONNS" "$ROUNDS" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
conns, rounds = sys.argv[2], int(sys.argv[3])
cols = ["n", "rps", "p50", "p99", "cpu1", "cpu2", "cs1", "cs2", "wcpu", "epb"]
cells = {}
for r in rows:
    key = (r[0], r[1], r[2])
    cells.setdefault(key, []).append(dict(zip(cols, map(float, r[4:]))))
med = {k: {c: statistics.median(x[c] for x in v) for c in cols} for k, v in cells.items()}
print(f"\n### Forwarding hop: medians of {rounds} rounds (n1 holds the session; fwd = wrk -> n2 -> n1)\n")
print("| variant | conns | target | req/s | p50 ms | p99 ms | n1 CPU µs/req | n2 CPU µs/req | wrk CPU µs/req | n1 cs/req | n2 cs/req | exch/batch |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (v, c, t), m in med.items():
    epb = f'{m["epb"]:.2f}' if t == "fwd" else "–"
    print(f'| {v} | {c} | {t} | {m["rps"]:.0f} | {m["p50"]:.3f} | {m["p99"]:.3f} | {m["cpu1"]:.2f} | '
          f'{m["cpu2"]:.2f} | {m["wcpu"]:.2f} | {m["cs1"]:.2f} | {m["cs2"]:.2f} | {epb} |')
print()
bench = []
for v in sorted({k[0] for k in med}):
    pre = "fwd_" if v == "cross" else f"fwd_{v}_"
    for c in ("1", conns):
        d, f = med.get((v, c, "direct")), med.get((v, c, "fwd"))
        if not d or not f: continue
        cc = f"c{c}_"
        for t, m in (("direct", d), ("forwarded", f)):
            bench += [(f"{pre}{cc}{t}_rps", f'{m["rps"]:.0f}'), (f"{pre}{cc}{t}_p50_ms", f'{m["p50"]:.3f}'),
                      (f"{pre}{cc}{t}_p99_ms", f'{m["p99"]:.3f}'),
                      (f"{pre}{cc}{t}_n1_cpu_us_per_req", f'{m["cpu1"]:.2f}'),
                      (f"{pre}{cc}{t}_n2_cpu_us_per_req", f'{m["cpu2"]:.2f}'),
                      (f"{pre}{cc}{t}_wrk_cpu_us_per_req", f'{m["wcpu"]:.2f}'),
                      (f"{pre}{cc}{t}_n1_cs_per_req", f'{m["cs1"]:.3f}'),
                      (f"{pre}{cc}{t}_n2_cs_per_req", f'{m["cs2"]:.3f}')]
        bench += [(f"{pre}{cc}hop_added_p50_ms", f'{f["p50"] - d["p50"]:.3f}'),
                  (f"{pre}{cc}hop_added_p99_ms", f'{f["p99"] - d["p99"]:.3f}'),
                  (f"{pre}{cc}ratio_fwd_direct", f'{f["rps"] / d["rps"]:.3f}'),
                  (f"{pre}{cc}hop_added_cpu_us_per_req", f'{f["cpu1"] + f["cpu2"] - d["cpu1"] - d["cpu2"]:.2f}'),
                  (f"{pre}{cc}exchanges_per_batch", f'{f["epb"]:.2f}')]
for k, v in bench:
    print(f"BENCH {k} {v}")
PY
