# shellcheck shell=bash
# Sourced by the bench scripts: a work directory and the processes a script starts, cleaned up
# however it ends (SIGTERM to each, SIGKILL 5 s later); the logs are kept when it fails, or
# when the variable named by bench_init's second argument is set.
#
# bench_init NAME [KEEP_VAR]: sets WORK (a new directory) and PIDS (append the pids to stop),
# and installs the EXIT/INT/TERM traps.
bench_init() {
  BENCH_NAME=$1
  BENCH_KEEP_VAR=${2:-}
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcpmesh-$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

bench_cleanup() {
  local rc=$? pid keep=
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [[ -n $BENCH_KEEP_VAR ]] && keep=${!BENCH_KEEP_VAR:-}
  if [[ $rc -ne 0 || -n $keep ]]; then
    echo "$BENCH_NAME: logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}

# cpu_ticks <pid>: user+system CPU time of a process (all its threads) and of its children
# (nginx's worker), in clock ticks
cpu_ticks() {
  local pid total=0 u s
  for pid in "$1" $(pgrep -P "$1" || true); do
    # fields 14 and 15 of /proc/<pid>/stat, counted after the ")" that ends the command name
    read -r u s < <(sed -E 's/^.*\) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12, $13}') || continue
    total=$((total + ${u:-0} + ${s:-0}))
  done
  echo "$total"
}

# nginx_static NGINX DIR PORT WORKER_CONNECTIONS LOCATION [PREFIX...]: starts NGINX (one worker,
# its files in DIR) serving `location /mcp { LOCATION }` on 127.0.0.1:PORT, run under the
# command PREFIX when given (taskset ...), and waits until it answers (START_DEADLINE s, 20 by
# default). Sets NGINX_PID (the master, also in PIDS); exits 1 with its logs when it does not
# start. A static responder: what this machine allows, measured beside a server.
nginx_static() {
  local nginx=$1 dir=$2 port=$3 conns=$4 location=$5 deadline
  shift 5
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile $((conns + 256));
events { worker_connections $conns; }
http {
  access_log off;
  default_type application/json;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy; fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  server {
    listen 127.0.0.1:$port;
    location /mcp {
$location
    }
  }
}
CONF
  "$@" "$nginx" -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" </dev/null >"$dir/out.log" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  deadline=$((SECONDS + ${START_DEADLINE:-20}))
  until curl -s -o /dev/null -X POST "http://127.0.0.1:$port/mcp" -d '{}'; do
    if ! kill -0 "$NGINX_PID" 2>/dev/null || [[ $SECONDS -ge $deadline ]]; then
      echo "$BENCH_NAME: nginx did not start:" >&2
      cat "$dir/out.log" "$dir/error.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.05
  done
}
