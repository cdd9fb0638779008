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
