#!/usr/bin/env bash
# A drain leaks nothing: builds mcpmesh-node with AddressSanitizer (LeakSanitizer on) in
# build-asan/, starts two nodes, leaves requests in flight on the node that drains (a long tool
# call there, a sampling request relayed to it from the other node, a GET stream), sends SIGTERM
# and checks: both nodes exit 0, each in-flight request is answered with the shutdown error,
# and neither sanitizer reports anything. Not in `make test` (it builds the node a second
# time); run it with `make lsan-drain`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${ASAN_BUILD_DIR:-$root/build-asan}
if [[ ! -f $build/build.ninja ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS="-fsanitize=address -fno-omit-frame-pointer" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address" -DMCPMESH_BUILD_TESTS=OFF \
    -DMCPMESH_BUILD_BENCH=OFF >/dev/null
fi
ninja -C "$build" mcpmesh-node
node_bin=$build/bin/mcpmesh-node
work=$(mktemp -d "${TMPDIR:-/tmp}/mcpmesh-lsan.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
head -c 32 /dev/urandom | base64 >"$work/secret"
chmod 600 "$work/secret"
free_ports=($(python3 "$root/deploy/local/free-ports.py" 4))
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
start() {  # id http cluster [seed]
  local args=(--node-id "$1" --http "127.0.0.1:$2" --cluster "127.0.0.1:$3"
    --cluster-secret-file "$work/secret" --cluster-profile fast --drain-timeout-ms 1500)
  [[ -n ${4:-} ]] && args+=(--seeds "127.0.0.1:$4")
  "$node_bin" "${args[@]}" >"$work/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do
    grep -q "cluster listening" "$work/$1.log" && return 0
    sleep 0.05
  done
  echo "lsan_drain: $1 did not start" >&2
  cat "$work/$1.log" >&2
  exit 1
}
start n1 "${free_ports[0]}" "${free_ports[1]}"
start n2 "${free_ports[2]}" "${free_ports[3]}" "${free_ports[1]}"
n1=${pids[0]} n2=${pids[1]}
u1=http://127.0.0.1:${free_ports[0]}/mcp u2=http://127.0.0.1:${free_ports[2]}/mcp
h=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')
for _ in $(seq 1 100); do  # both nodes know each other
  curl -s "http://127.0.0.1:${free_ports[2]}/metrics" | grep -q 'cluster_members{state="alive"} 2' && break
  sleep 0.05
done
sid=$(curl -s -D - "${h[@]}" "$u1" -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"lsan","version":"1"}}}' |
  tr -d '\r' | awk 'tolower($1)=="mcp-session-id:"{print $2}')
[[ -n $sid ]] || { echo "lsan_drain: no session" >&2; exit 1; }
curl -s "${h[@]}" -H "Mcp-Session-Id: $sid" "$u1" -d '{"jsonrpc":"2.0","method":"notifications/initialized"}' >/dev/null
curl -s -N "${h[@]}" -H "Mcp-Session-Id: $sid" "$u1" -d '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"slow","arguments":{"seconds":30,"steps":3}}}' >"$work/slow.out" 2>&1 &
curl -s -N "${h[@]}" -H "Mcp-Session-Id: $sid" "$u2" -d '{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"ask_llm","arguments":{"prompt":"hi"}}}' >"$work/ask.out" 2>&1 &
curl -s -N -H 'Accept: text/event-stream' -H "Mcp-Session-Id: $sid" "$u2" >"$work/get.out" 2>&1 &
for _ in $(seq 1 100); do  # both calls are running on n1
  curl -s "http://127.0.0.1:${free_ports[0]}/metrics" | grep -q '^mcpmesh_inflight_requests 2' && break
  sleep 0.05
done
status=0
kill -TERM "$n1"; wait "$n1" || status=$?
[[ $status -eq 0 ]] || { echo "lsan_drain: n1 exited $status" >&2; cat "$work/n1.log" >&2; exit 1; }
kill -TERM "$n2"; status=0; wait "$n2" || status=$?
[[ $status -eq 0 ]] || { echo "lsan_drain: n2 exited $status" >&2; cat "$work/n2.log" >&2; exit 1; }
for f in slow ask; do
  grep -q 'the node is shutting down' "$work/$f.out" ||
    { echo "lsan_drain: $f was not answered with the shutdown error:" >&2; cat "$work/$f.out" >&2; exit 1; }
done
if grep -E 'Sanitizer|SUMMARY' "$work/n1.log" "$work/n2.log"; then
  echo "lsan_drain: the sanitizer reported something" >&2
  exit 1
fi
echo "lsan_drain: both nodes drained, exited 0, answered what was in flight, leaked nothing"
