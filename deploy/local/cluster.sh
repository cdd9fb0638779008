#!/usr/bin/env bash
# A local mcpmesh cluster: N mcpmesh-node processes on loopback plus nginx in front of them,
# configured by nginx/gen-nginx-conf.sh (sticky per session owner, SSE-safe).
#
# Usage:
#   cluster.sh up --nodes N --port P --dir D [--app NAME] [--profile lan|fast] [--detach]
#                 [--bin PATH] [--nginx PATH] [--node-arg ARG]... [--nginx-arg ARG]...
#   cluster.sh down --dir D
#   cluster.sh status --dir D
#
# up      starts nodes n1..nN (HTTP and cluster ports: free loopback ports picked at start; n1
#         first, the others with --seeds n1's cluster address; a fresh random secret in
#         D/cluster.secret, mode 0600), then nginx on 127.0.0.1:P. It waits (bounded) until
#         every node answers /healthz and nginx answers /nginx-health, and prints
#         `url http://127.0.0.1:P/mcp` as its last line. Without --detach it stays in the
#         foreground and SIGINT/SIGTERM (Ctrl-C) stop everything it started; with --detach it
#         returns and `down` stops the cluster. Anything that does not come up stops the whole
#         start with the tail of that process's log. Every node trusts nginx (127.0.0.1) to name
#         its clients in X-Forwarded-For (--trusted-proxies); each --node-arg is passed to every
#         node as is (e.g. --node-arg --client-rate-limit --node-arg 0); each --nginx-arg is
#         passed to nginx/gen-nginx-conf.sh as is (e.g. --nginx-arg --worker-connections
#         --nginx-arg 8192: bench/scale_bench.sh, thousands of client connections).
# down    SIGTERM to nginx, then to the nodes; SIGKILL for what is still running after a bounded
#         wait; removes the pid files (logs stay).
# status  one line per process (pid, running or not, addresses, /healthz and /readyz), the
#         membership seen by n1 (mcpmesh-ctl, when built), the URL. Exit 0 when all run.
#
# Files in D: cluster.env (binaries, port), cluster.secret, nodes (`ID HTTP CLUSTER` per line),
# <id>.pid, <id>.log, nginx.pid, nginx/ (nginx.conf, error.log, access.log, stderr.log, temp).
# Environment: MCPMESH_NODE, MCPMESH_NGINX (defaults for --bin, --nginx),
# MCPMESH_CLUSTER_START_S (start deadline in seconds, default 20).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
prog=cluster.sh
start_deadline_s=${MCPMESH_CLUSTER_START_S:-20}
stop_deadline_s=10

say() { echo "$prog: $*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }

# ---------------------------------------------------------------------------------------------
# processes

# Is PID a live process running EXE? (A recycled pid or a zombie is not.)
running() {
  local pid=$1 exe=$2 link
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  link=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ ${link% (deleted)} == "$exe" ]]
}

# Starts EXE ARGS... in the background with stdin from /dev/null and stdout+stderr appended to
# LOG (never the caller's pipes: a test reading this script's output sees it end). Sets
# last_pid, and returns once that pid runs EXE (or has already ended), so that `running` can
# tell a process that exited from one that has not yet been exec'd.
launch() {
  local log=$1 exe=$2 link end=$((SECONDS + 5))
  shift
  "$@" </dev/null >>"$log" 2>&1 &
  last_pid=$!
  while link=$(readlink "/proc/$last_pid/exe" 2>/dev/null); do
    [[ ${link% (deleted)} != "$exe" ]] || return 0
    ((SECONDS < end)) || return 0
    sleep 0.01
  done
}

# SIGTERM to the listed pids that still run EXE, a bounded wait, then SIGKILL.
stop_pids() {
  local exe=$1 what=$2 pid left end
  shift 2
  local pids=()
  for pid in "$@"; do running "$pid" "$exe" && pids+=("$pid"); done
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  end=$((SECONDS + stop_deadline_s))
  while :; do
    left=()
    for pid in "${pids[@]}"; do running "$pid" "$exe" && left+=("$pid"); done
    ((${#left[@]})) || return 0
    ((SECONDS < end)) || break
    sleep 0.1
  done
  say "$what still running after ${stop_deadline_s}s (pids ${left[*]}): SIGKILL"
  kill -KILL "${left[@]}" 2>/dev/null || true
  end=$((SECONDS + 5))
  while ((SECONDS < end)); do
    left=()
    for pid in "${pids[@]}"; do running "$pid" "$exe" && left+=("$pid"); done
    ((${#left[@]})) || return 0
    sleep 0.1
  done
  say "$what: pids ${left[*]} did not exit"
  return 1
}

# ---------------------------------------------------------------------------------------------
# HTTP probes (bash's /dev/tcp: no curl needed; every read is bounded)

# Prints the HTTP status of GET PATH on HOST:PORT, or 000 when nothing answered in 2 s.
http_status() {
  local host=$1 port=$2 path=$3 line
  line=$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/$host/$port" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$path" "$host" "$port" >&3
    IFS= read -r -t 2 line <&3 && printf '%s' "$line"
  ) || true
  if [[ $line =~ ^HTTP/1\.[01]\ ([0-9]{3}) ]]; then echo "${BASH_REMATCH[1]}"; else echo 000; fi
}

# ---------------------------------------------------------------------------------------------
# the state directory

dir="" node_bin="" nginx_bin="" port=""

# Reads D/cluster.env (written by `up`; key=value, never sourced).
load_env() {
  local k v
  [[ -f $dir/cluster.env ]] || return 1
  while IFS='=' read -r k v; do
    case $k in
      node_bin) node_bin=$v ;;
      nginx_bin) nginx_bin=$v ;;
      port) port=$v ;;
    esac
  done <"$dir/cluster.env"
}

# Node ids with a pid file, in n1..nN order.
pid_file_ids() {
  local f id
  for f in "$dir"/*.pid; do
    [[ -e $f ]] || continue
    id=${f##*/}
    id=${id%.pid}
    [[ $id == nginx ]] || echo "$id"
  done | sort -V
}

read_pid() { if [[ -f $1 ]]; then tr -dc 0-9 <"$1"; fi; }

stop_all() {
  local id pids=() master workers=()
  load_env || { say "no $dir/cluster.env: nothing started here"; return 0; }
  # nginx first, so that no new request reaches a node that is about to go.
  master=$(read_pid "$dir/nginx.pid")
  if [[ -n $master ]] && running "$master" "$nginx_bin"; then
    # Workers outlive a SIGKILLed master: remember them, by pid, before anything is sent.
    mapfile -t workers < <(pgrep -P "$master" 2>/dev/null || true)
    stop_pids "$nginx_bin" nginx "$master" || true
    stop_pids "$nginx_bin" "nginx workers" "${workers[@]}" || true
  fi
  rm -f "$dir/nginx.pid"
  for id in $(pid_file_ids); do pids+=("$(read_pid "$dir/$id.pid")"); done
  ((${#pids[@]} == 0)) || stop_pids "$node_bin" nodes "${pids[@]}" || true
  for id in $(pid_file_ids); do rm -f "$dir/$id.pid"; done
}

# ---------------------------------------------------------------------------------------------
# up

nodes="" app=demo profile=lan detach=0
ids=() http_addrs=() cluster_addrs=() pids=()

# Prints the last lines of a log, indented, to stderr.
log_tail() {
  echo "---- last lines of $1 ----" >&2
  if [[ -s $1 ]]; then tail -n 25 "$1" | sed 's/^/  /' >&2; else echo "  (empty)" >&2; fi
  echo "----" >&2
}

fail_up() {
  say "$1"
  shift
  local log
  for log in "$@"; do log_tail "$log"; done
  say "stopping what was started"
  stop_all
  exit 1
}

# Starts node index I (0-based) on fresh free ports; `wait_node` then checks it came up.
start_node() {
  local i=$1 id=n$(($1 + 1)) ports args
  mapfile -t ports < <(python3 "$here/free-ports.py" 2) || fail_up "cannot pick free ports"
  ((${#ports[@]} == 2)) || fail_up "cannot pick free ports"
  http_addrs[i]=127.0.0.1:${ports[0]}
  cluster_addrs[i]=127.0.0.1:${ports[1]}
  args=(--node-id "$id" --app "$app" --http "${http_addrs[i]}"
    --cluster "${cluster_addrs[i]}" --cluster-profile "$profile"
    --cluster-secret-file "$dir/cluster.secret" --trusted-proxies 127.0.0.1 "${node_args[@]}")
  ((i == 0)) || args+=(--seeds "${cluster_addrs[0]}")
  echo "# $(date -u +%FT%TZ) $node_bin ${args[*]}" >>"$dir/$id.log"
  launch "$dir/$id.log" "$node_bin" "${args[@]}"
  pids[i]=$last_pid
  echo "$last_pid" >"$dir/$id.pid"
}

# Waits until node I has printed both listening lines. Returns 0 when it has, 2 when it
# exited because a port was taken in between (the caller retries on other ports); fails the
# start on any other exit or at the deadline.
wait_node() {
  local i=$1 id=n$(($1 + 1)) log
  log=$dir/$id.log
  while :; do
    if grep -q '^cluster listening on ' "$log" 2>/dev/null; then return 0; fi
    if ! running "${pids[i]}" "$node_bin"; then
      if grep -qE 'Address already in use|cannot listen on' "$log"; then return 2; fi
      fail_up "$id exited during start" "$log"
    fi
    ((SECONDS < deadline)) || fail_up "$id did not start listening within ${start_deadline_s}s" "$log"
    sleep 0.05
  done
}

start_and_wait() { # indexes...
  local i tries=() todo=("$@") again rc
  for i in "$@"; do tries[i]=1; start_node "$i"; done
  while ((${#todo[@]})); do
    again=()
    for i in "${todo[@]}"; do
      rc=0
      wait_node "$i" || rc=$?
      ((rc == 0)) && continue
      if ((tries[i] >= 3)); then
        fail_up "n$((i + 1)): ports taken three times in a row" "$dir/n$((i + 1)).log"
      fi
      say "n$((i + 1)): a port was taken before it bound; retrying on other ports"
      tries[i]=$((tries[i] + 1))
      start_node "$i"
      again+=("$i")
    done
    todo=("${again[@]}")
  done
}

on_foreground_signal() {
  trap - INT TERM
  say "stopping the cluster in $dir"
  stop_all
  say "stopped"
  exit 0
}

cmd_up() {
  local i id code nginx_dir gen_args
  ((nodes >= 1 && nodes <= 64)) || die "--nodes: 1 to 64"
  if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then die "--port: 1 to 65535"; fi
  [[ $app =~ ^[a-z0-9_-]+$ ]] || die "--app: a built-in app name (demo, conformance)"
  [[ $profile == lan || $profile == fast ]] || die "--profile: lan or fast"
  [[ -x $node_bin ]] || die "no mcpmesh-node at '$node_bin' (build it: make build, or pass --bin)"
  node_bin=$(realpath -- "$node_bin")
  [[ -x $nginx_bin ]] ||
    die "no nginx at '$nginx_bin' (apt-get install nginx-light, or make deps-test; or pass --nginx)"
  nginx_bin=$(realpath -- "$nginx_bin")
  command -v python3 >/dev/null || die "python3 is needed to pick free ports"

  mkdir -p -- "$dir"
  dir=$(cd -- "$dir" && pwd)
  local f pid want_node=$node_bin want_nginx=$nginx_bin want_port=$port
  # Refuse to start over a cluster that still runs here (load_env: the binaries it ran).
  if load_env; then
    for f in "$dir"/*.pid; do
      [[ -e $f ]] || continue
      pid=$(read_pid "$f")
      if running "$pid" "$node_bin" || running "$pid" "$nginx_bin"; then
        die "a cluster is already running in $dir (pid $pid): $0 down --dir $dir"
      fi
    done
  fi
  node_bin=$want_node nginx_bin=$want_nginx port=$want_port
  rm -f -- "$dir"/*.pid "$dir"/n[0-9]*.log "$dir/nodes"
  printf 'node_bin=%s\nnginx_bin=%s\nport=%s\n' "$node_bin" "$nginx_bin" "$port" >"$dir/cluster.env"
  (umask 077 && head -c 32 /dev/urandom >"$dir/cluster.secret")
  chmod 600 "$dir/cluster.secret"

  # From here on, an interruption stops what was started.
  trap 'trap - INT TERM; say "interrupted"; stop_all; exit 1' INT TERM
  # nginx's port is given; find out now, not after the nodes started, whether it is taken.
  code=$(http_status 127.0.0.1 "$port" /)
  [[ $code == 000 ]] || die "127.0.0.1:$port already answers HTTP (status $code): pick another --port"

  deadline=$((SECONDS + start_deadline_s))
  for ((i = 0; i < nodes; i++)); do ids[i]=n$((i + 1)); done
  start_and_wait 0
  if ((nodes > 1)); then start_and_wait $(seq 1 $((nodes - 1))); fi
  # Every node answers /healthz.
  for ((i = 0; i < nodes; i++)); do
    id=${ids[i]}
    while [[ $(http_status "${http_addrs[i]%:*}" "${http_addrs[i]##*:}" /healthz) != 200 ]]; do
      running "${pids[i]}" "$node_bin" || fail_up "$id exited before answering /healthz" "$dir/$id.log"
      ((SECONDS < deadline)) ||
        fail_up "$id did not answer /healthz within ${start_deadline_s}s" "$dir/$id.log"
      sleep 0.1
    done
  done
  for ((i = 0; i < nodes; i++)); do
    echo "${ids[i]} ${http_addrs[i]} ${cluster_addrs[i]}"
  done >"$dir/nodes"

  # nginx
  nginx_dir=$dir/nginx
  mkdir -p "$nginx_dir"
  gen_args=(--listen "127.0.0.1:$port" --dir "$nginx_dir" --out "$nginx_dir/nginx.conf")
  for ((i = 0; i < nodes; i++)); do gen_args+=(--node "${ids[i]}=${http_addrs[i]}"); done
  gen_args+=("${nginx_args[@]}")
  "$repo/nginx/gen-nginx-conf.sh" "${gen_args[@]}" || fail_up "nginx/gen-nginx-conf.sh failed"
  : >"$nginx_dir/stderr.log"
  "$nginx_bin" -t -q -p "$nginx_dir/" -c "$nginx_dir/nginx.conf" -e "$nginx_dir/error.log" \
    >>"$nginx_dir/stderr.log" 2>&1 ||
    fail_up "nginx -t rejected $nginx_dir/nginx.conf" "$nginx_dir/stderr.log" "$nginx_dir/error.log"
  launch "$nginx_dir/stderr.log" "$nginx_bin" -p "$nginx_dir/" -c "$nginx_dir/nginx.conf" \
    -e "$nginx_dir/error.log"
  echo "$last_pid" >"$dir/nginx.pid"
  deadline=$((SECONDS + start_deadline_s))
  while [[ $(http_status 127.0.0.1 "$port" /nginx-health) != 200 ]]; do
    running "$last_pid" "$nginx_bin" ||
      fail_up "nginx exited during start" "$nginx_dir/error.log" "$nginx_dir/stderr.log"
    ((SECONDS < deadline)) ||
      fail_up "nginx did not answer on 127.0.0.1:$port within ${start_deadline_s}s" "$nginx_dir/error.log"
    sleep 0.1
  done
  running "$last_pid" "$nginx_bin" ||
    fail_up "nginx exited during start" "$nginx_dir/error.log" "$nginx_dir/stderr.log"

  for ((i = 0; i < nodes; i++)); do
    echo "${ids[i]} pid ${pids[i]} http ${http_addrs[i]} cluster ${cluster_addrs[i]} log $dir/${ids[i]}.log"
  done
  echo "nginx pid $last_pid listen 127.0.0.1:$port log $nginx_dir/"
  if ((detach)); then
    trap - INT TERM
    echo "stop with: $0 down --dir $dir"
    echo "url http://127.0.0.1:$port/mcp"
    return 0
  fi

  trap on_foreground_signal INT TERM
  echo "Ctrl-C stops the cluster"
  echo "url http://127.0.0.1:$port/mcp"
  # Foreground: report processes that end on their own; leave when none is left.
  local all=("${pids[@]}" "$last_pid") logs=() reported=() alive
  for ((i = 0; i < nodes; i++)); do logs[i]=$dir/${ids[i]}.log; done
  logs[nodes]=$nginx_dir/error.log
  while :; do
    alive=()
    for i in "${!all[@]}"; do
      if running "${all[i]}" "$node_bin" || running "${all[i]}" "$nginx_bin"; then
        alive+=("${all[i]}")
      elif [[ -z ${reported[i]:-} ]]; then
        reported[i]=1
        say "${ids[i]:-nginx} (pid ${all[i]}) exited; see ${logs[i]}"
      fi
    done
    if ((${#alive[@]} == 0)); then
      say "every process exited"
      stop_all
      exit 1
    fi
    # Returns when one of them ends, or at once for a signal (the trap then runs).
    wait -n "${alive[@]}" 2>/dev/null || true
  done
}

# ---------------------------------------------------------------------------------------------
# status

cmd_status() {
  local id http cl pid state h r ok=1 ctl code
  [[ -d $dir ]] || die "no directory $dir"
  dir=$(cd -- "$dir" && pwd)
  load_env || die "no cluster was started in $dir (no cluster.env)"
  [[ -f $dir/nodes ]] || die "no $dir/nodes: the last start did not finish"
  printf '%-8s %-8s %-8s %-22s %-22s %-8s %s\n' NODE PID STATE HTTP CLUSTER HEALTHZ READYZ
  while read -r id http cl; do
    pid=$(read_pid "$dir/$id.pid")
    h=- r=-
    if running "$pid" "$node_bin"; then
      state=running
      h=$(http_status "${http%:*}" "${http##*:}" /healthz)
      r=$(http_status "${http%:*}" "${http##*:}" /readyz)
    else
      state=stopped ok=0
    fi
    printf '%-8s %-8s %-8s %-22s %-22s %-8s %s\n' "$id" "${pid:--}" "$state" "$http" "$cl" "$h" "$r"
  done <"$dir/nodes"
  pid=$(read_pid "$dir/nginx.pid")
  if running "$pid" "$nginx_bin"; then
    code=$(http_status 127.0.0.1 "$port" /nginx-health)
    printf '%-8s %-8s %-8s %-22s %-22s %s\n' nginx "$pid" running "127.0.0.1:$port" - "/nginx-health $code"
  else
    printf '%-8s %-8s %-8s %-22s\n' nginx "${pid:--}" stopped "127.0.0.1:$port"
    ok=0
  fi
  ctl=$(dirname -- "$node_bin")/mcpmesh-ctl
  read -r id http cl <"$dir/nodes"
  if [[ -x $ctl ]] && running "$(read_pid "$dir/$id.pid")" "$node_bin"; then
    echo "members seen by $id:"
    timeout 10 "$ctl" --node "$cl" --cluster-secret-file "$dir/cluster.secret" members 2>&1 |
      sed 's/^/  /' || true
  fi
  echo "url http://127.0.0.1:$port/mcp"
  ((ok))
}

# ---------------------------------------------------------------------------------------------

cmd=${1-}
(($#)) && shift
case $cmd in
  up | down | status) ;;
  -h | --help | help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac
node_bin=${MCPMESH_NODE:-$repo/build/bin/mcpmesh-node}
node_args=()
nginx_args=()
nginx_bin=${MCPMESH_NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
while (($#)); do
  case $1 in
    --dir) dir=${2-}; shift 2 || die "--dir needs a value" ;;
    --nodes) nodes=${2-}; shift 2 || die "--nodes needs a value" ;;
    --port) port=${2-}; shift 2 || die "--port needs a value" ;;
    --app) app=${2-}; shift 2 || die "--app needs a value" ;;
    --profile) profile=${2-}; shift 2 || die "--profile needs a value" ;;
    --bin) node_bin=${2-}; shift 2 || die "--bin needs a value" ;;
    --nginx) nginx_bin=${2-}; shift 2 || die "--nginx needs a value" ;;
    --detach) detach=1; shift ;;
    --node-arg) node_args+=("${2-}"); shift 2 || die "--node-arg needs a value" ;;
    --nginx-arg) nginx_args+=("${2-}"); shift 2 || die "--nginx-arg needs a value" ;;
    *) die "unknown argument '$1' (see $0 --help)" ;;
  esac
done
[[ -n $dir ]] || die "--dir is required"
case $cmd in
  up)
    [[ $nodes =~ ^[0-9]+$ ]] || die "--nodes N is required (a number)"
    [[ -n $port ]] || die "--port P is required"
    cmd_up
    ;;
  down)
    [[ -d $dir ]] || die "no directory $dir"
    dir=$(cd -- "$dir" && pwd)
    stop_all
    echo "stopped the cluster in $dir"
    ;;
  status) cmd_status ;;
esac
