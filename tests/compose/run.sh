#!/usr/bin/env bash
# make compose-test: deploy/docker-compose.yml for real, without a Docker engine. Podman serves
# the Docker API to docker-compose; the images are built from deploy/Dockerfile on a Debian
# bookworm base made here with debootstrap; the OTLP receiver in tests/compose/otlp-receiver
# stands in for Jaeger (docker-compose.test.yml). Then journey.test.mjs runs the official SDK
# client through nginx, kills the container owning its session and checks the failover and
# the traces. Everything started is stopped and removed at the end, also on failure or Ctrl-C.
#
# Usage: tests/compose/run.sh          (as root: podman runs rootful; `make compose-test`)
# State, kept between runs so that the next one is fast (MCPMESH_COMPOSE_DIR, default
# build-compose/ at the repository root, ignored by git):
#   containers.conf, storage.conf   podman's configuration for this test alone
#   storage/                        podman's image store (images and build cache)
#   debian-bookworm.tar             the debootstrapped base, in case the store is removed
#   logs/                           the last run: each container's log, the build log
# Environment: MCPMESH_COMPOSE_DIR; MCPMESH_COMPOSE_NET (first three octets of the test
# network's /24, default 172.30.54: not the deployment's default, so both can run);
# MCPMESH_COMPOSE_KEEP=1 leaves the stack running at the end (then: tests/compose/run.sh down).
# Deadlines: 90 s for the stack to come up, 10 min for the test, 2 min for each teardown step.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
prog=compose-test
state=${MCPMESH_COMPOSE_DIR:-$repo/build-compose}
project=mcpmesh-compose-test
tag=compose-test
net=${MCPMESH_COMPOSE_NET:-172.30.54}
release=bookworm

say() { echo "$prog: $*" >&2; }
die() { say "$*"; exit 1; }
elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

[[ $(id -u) == 0 ]] || die "needs root: podman runs rootful here (sudo make compose-test)"
for tool in podman docker-compose debootstrap python3; do
  command -v "$tool" >/dev/null || die "no $tool: scripts/install-deps.sh compose installs it"
done
[[ $net =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "MCPMESH_COMPOSE_NET: three octets, e.g. 172.30.54"

mkdir -p "$state"
state=$(cd "$state" && pwd)
logs=$state/logs
service_pid_file=$state/podman-service.pid

# ---------------------------------------------------------------------------------------------
# podman, for this test alone: its own store, network configs, locks and events under $state.

# The containers' limits: this shell's hard limits (podman's own default asks for more than a
# limited shell allows, and the containers then do not start).
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[[ $nofile =~ ^[0-9]+$ ]] || nofile=1048576
[[ $nproc =~ ^[0-9]+$ ]] || nproc=32768
((nproc <= 32768)) || nproc=32768
cat >"$state/containers.conf" <<EOF
# Written by tests/compose/run.sh.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[network]
network_config_dir = "$state/cni"
[engine]
# crun fails on hosts with hybrid cgroups (v1 controllers + a v2 mount); runc works.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$state/events.log"
# File locks under tmp_dir: nothing shared with other podman stores on the machine.
lock_type = "file"
tmp_dir = "$state/tmp"
EOF
cat >"$state/storage.conf" <<EOF
# Written by tests/compose/run.sh.
[storage]
driver = "overlay"
graphroot = "$state/storage"
runroot = "$state/run"
EOF
export CONTAINERS_CONF=$state/containers.conf
export CONTAINERS_STORAGE_CONF=$state/storage.conf

sock_dir="" service_pid="" stack_bridge=""

# Is PID a podman process (not a recycled pid)?
is_podman() { [[ $1 =~ ^[0-9]+$ ]] && [[ $(readlink "/proc/$1/exe" 2>/dev/null) == "$(command -v podman)" ]]; }

stop_service() {
  local pid=$1 end
  is_podman "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  end=$((SECONDS + 10))
  while is_podman "$pid" && ((SECONDS < end)); do sleep 0.1; done
  if is_podman "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
}

# Removes every container (the stack's, and the build containers a failed build keeps) and the
# test network from this store (nothing else lives in it).
remove_containers() {
  local n ids bridge
  timeout 120 podman rm --all --force --time 0 >/dev/null 2>&1 || say "podman rm --all failed"
  ids=$(podman ps --all --external --quiet 2>/dev/null) || true
  if [[ -n $ids ]]; then
    # shellcheck disable=SC2086 # one id a word
    timeout 120 podman rm --force $ids >/dev/null 2>&1 || say "removing build containers failed"
  fi
  for n in $(podman network ls --format '{{.Name}}' 2>/dev/null); do
    [[ $n == "${project}"_* ]] || continue
    bridge=$(podman network inspect --format '{{.NetworkInterface}}' "$n" 2>/dev/null) || bridge=""
    timeout 60 podman network rm --force "$n" >/dev/null 2>&1 || true
    if [[ -n $bridge ]]; then drop_bridge_rules "$bridge"; fi
  done
}

# CNI's firewall plugin leaves its isolation rules for a bridge behind when the network goes.
drop_bridge_rules() {
  local bridge=$1 table rule
  command -v iptables >/dev/null || return 0
  for table in filter nat; do
    iptables -t "$table" -S 2>/dev/null | grep -E -- "^-A .*-[io] $bridge( |$)" |
      while IFS= read -r rule; do
        # xargs splits the rule as iptables -S quoted it (comments are in double quotes).
        printf '%s\n' "-D ${rule#-A }" | xargs iptables -t "$table" 2>/dev/null || true
      done || true
  done
}

# Processes of this store that outlive their container: conmon of an exec session (every
# `docker-compose exec`) waits 300 s for its exit status to be collected; stopped, it runs its
# exit command (`podman container cleanup`, a second or so). Waits (10 s) until none is left.
store_pids() { # conmon and podman processes whose command line names this store
  local f pid exe
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    [[ $exe == */conmon || $exe == */podman ]] || continue
    tr '\0' ' ' <"$f" 2>/dev/null | grep -qF -- " $state/storage" && echo "$pid"
  done
  return 0
}
stop_store_processes() {
  local pid end left=()
  for pid in $(store_pids); do
    if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */conmon ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  end=$((SECONDS + 10))
  while :; do
    mapfile -t left < <(store_pids)
    ((${#left[@]} == 0 || SECONDS >= end)) && break
    sleep 0.2
  done
  if ((${#left[@]})); then say "processes of the store still run: ${left[*]}"; fi
}

# Once no container is left: what the overlay driver still has mounted under the store (its
# bind mount of storage/overlay on itself, layers of containers that are gone), deepest first.
unmount_store() {
  local m
  findmnt -rn -o TARGET | { grep -F -- "$state/storage/" || true; } | sort -r | while IFS= read -r m; do
    umount -- "$m" 2>/dev/null || umount --lazy -- "$m" 2>/dev/null || say "cannot unmount $m"
  done
}

# ---------------------------------------------------------------------------------------------
# teardown: always (EXIT), also after a failure or Ctrl-C

# Long steps run in the background and are waited for, so that Ctrl-C reaches the trap at once
# (bash runs a trap only after the foreground command returns); teardown stops what still runs.
child=""
bounded() { # SECONDS COMMAND...
  local limit=$1 rc=0
  shift
  timeout "$limit" "$@" &
  child=$!
  wait "$child" || rc=$?
  child=""
  return "$rc"
}
compose() { bounded "${COMPOSE_DEADLINE_S:-900}" docker-compose "$@"; }

torn_down=0
teardown() {
  local rc=$?
  ((torn_down)) && return
  torn_down=1
  trap '' INT TERM
  # Every step runs, whatever the one before it did.
  set +e
  if [[ -n $child ]]; then kill -TERM "$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; child=""; fi
  if [[ -n $service_pid ]]; then
    if [[ ${MCPMESH_COMPOSE_KEEP:-0} == 1 && $rc == 0 ]]; then
      say "MCPMESH_COMPOSE_KEEP=1: the stack stays up (DOCKER_HOST=unix://$sock_dir/podman.sock);"
      say "  stop it with: $0 down"
      return
    fi
    mkdir -p "$logs"
    COMPOSE_DEADLINE_S=120 compose logs --no-color --timestamps >"$logs/containers.log" 2>&1 || true
    COMPOSE_DEADLINE_S=120 compose down --volumes --remove-orphans --timeout 5 >>"$logs/down.log" 2>&1 ||
      say "docker-compose down failed (see $logs/down.log); removing the containers directly"
    stop_service "$service_pid"
  fi
  remove_containers
  if [[ -n $stack_bridge ]]; then drop_bridge_rules "$stack_bridge"; fi
  stop_store_processes
  unmount_store
  if [[ -n $sock_dir ]]; then rm -rf -- "$sock_dir"; fi
  rm -rf -- "$state/rootfs.tmp" "$service_pid_file"
  if ((rc != 0)); then
    say "FAILED after $(elapsed "$SECONDS"); the containers' logs: $logs/containers.log"
  fi
}
trap teardown EXIT
trap 'say "interrupted"; exit 130' INT TERM

# A run that was killed may have left its service and containers behind.
if [[ -f $service_pid_file ]]; then
  { read -r old_pid; read -r old_sock_dir; } <"$service_pid_file" || true
  if is_podman "${old_pid:-}"; then
    say "stopping the podman service an earlier run left (pid $old_pid)"
    stop_service "$old_pid"
  fi
  if [[ ${old_sock_dir:-} == /tmp/mcpmesh-compose.* ]]; then rm -rf -- "$old_sock_dir"; fi
  rm -f "$service_pid_file"
fi
if [[ ${1-} == down ]]; then
  remove_containers
  stop_store_processes
  unmount_store
  say "removed every container of $state"
  exit 0
fi
[[ -z ${1-} ]] || die "usage: $0 [down]"
remove_containers

# ---------------------------------------------------------------------------------------------
# the base image: Debian bookworm from the archive apt uses, tagged as Docker Hub's
# debian:bookworm and debian:bookworm-slim (there is no registry to pull them from).

# Prints the first URI of a `deb` source for SUITE in apt's lists (deb822 and one-line forms).
apt_uri() {
  local suite=$1 f
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [[ -f $f ]] || continue
      awk -v suite="$suite" '
        function flush() {
          if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uri != "") print uri
          types = ""; suites = ""; uri = ""
        }
        /^[[:space:]]*$/ { flush(); next }
        /^Types:/ { types = $0; sub(/^Types:[[:space:]]*/, "", types) }
        /^Suites:/ { suites = $0; sub(/^Suites:[[:space:]]*/, "", suites) }
        /^URIs:/ { uri = $2 }
        END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -f $f ]] || continue
      awk -v suite="$suite" '$1 == "deb" {
          i = 2
          if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) == suite) print $i
        }' "$f"
    done
  } | head -n 1
}

make_base_image() {
  local tar=$state/debian-$release.tar rootfs=$state/rootfs.tmp mirror security
  if ! [[ -s $tar ]]; then
    mirror=$(apt_uri "$release")
    mirror=${mirror:-http://deb.debian.org/debian}
    security=$(apt_uri "$release-security")
    security=${security:-http://deb.debian.org/debian-security}
    say "debootstrap $release (minbase) from $mirror"
    rm -rf -- "$rootfs"
    debootstrap --variant=minbase "$release" "$rootfs" "$mirror" >"$logs/debootstrap.log" 2>&1 ||
      { tail -n 20 "$logs/debootstrap.log" >&2; die "debootstrap failed ($logs/debootstrap.log)"; }
    # As the official image: deb822 sources with the updates and security suites, no package
    # lists or caches, no documentation (now or from later installs).
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $release $release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf -- "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
      "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
      "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*
    tar --numeric-owner -C "$rootfs" -cf "$tar.tmp" .
    mv -f -- "$tar.tmp" "$tar"
    rm -rf -- "$rootfs"
  fi
  podman import --quiet --change 'CMD ["bash"]' "$tar" "docker.io/library/debian:$release" >/dev/null
  podman tag "docker.io/library/debian:$release" "docker.io/library/debian:$release-slim"
}

# ---------------------------------------------------------------------------------------------

rm -rf -- "$logs"
mkdir -p "$logs"
t_start=$SECONDS

if ! podman image exists "docker.io/library/debian:$release" ||
  ! podman image exists "docker.io/library/debian:$release-slim"; then
  make_base_image
fi
t_base=$SECONDS

# The stack: deploy/docker-compose.yml + this folder's override; every variable either file
# reads, exported so that journey.test.mjs's docker-compose calls (and the teardown's) see the same.
mapfile -t ports < <(python3 "$repo/deploy/local/free-ports.py" 2)
export COMPOSE_PROJECT_NAME=$project
export COMPOSE_FILE=$repo/deploy/docker-compose.yml:$here/docker-compose.test.yml
export MCPMESH_TAG=$tag MCPMESH_NET=$net MCPMESH_BIND=127.0.0.1
export MCPMESH_PORT=${ports[0]} MCPMESH_JAEGER_UI_PORT=${ports[1]}
export MCPMESH_SECRET_FILE=$state/cluster.secret
(umask 077 && head -c 32 /dev/urandom | base64 >"$MCPMESH_SECRET_FILE")

# The Docker API on a socket of our own. setsid: Ctrl-C in the terminal reaches this script
# (which then takes the stack down through the service), not the service itself. BUILDAH_FORMAT:
# docker-format images keep HEALTHCHECK (OCI has no such field).
sock_dir=$(mktemp -d /tmp/mcpmesh-compose.XXXXXX)
BUILDAH_FORMAT=docker setsid podman system service --time=0 "unix://$sock_dir/podman.sock" \
  </dev/null >"$logs/podman-service.log" 2>&1 &
service_pid=$!
printf '%s\n%s\n' "$service_pid" "$sock_dir" >"$service_pid_file"
export DOCKER_HOST=unix://$sock_dir/podman.sock
end=$((SECONDS + 30))
until [[ -S $sock_dir/podman.sock ]] && podman --url "$DOCKER_HOST" version >/dev/null 2>&1; do
  st=$(ps -o stat= -p "$service_pid" 2>/dev/null) || st=Z
  [[ $st != Z* ]] || { cat "$logs/podman-service.log" >&2; die "the podman service exited"; }
  ((SECONDS < end)) || die "the podman service did not answer within 30 s"
  sleep 0.2
done

say "building the images (deploy/Dockerfile: node, nginx; the OTLP receiver); log: $logs/build.log"
compose build n1 nginx jaeger >"$logs/build.log" 2>&1 ||
  { tail -n 40 "$logs/build.log" >&2; die "docker-compose build failed ($logs/build.log)"; }
t_build=$SECONDS
# Every source change leaves the layers of the build before it; those older than a week go.
podman image prune --force --filter until=168h >/dev/null 2>&1 || true
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' |
  grep -E "mcpmesh-(node|nginx|otlp-receiver):$tag|debian:$release" | sed "s/^/$prog: image /" >&2 || true

say "starting the stack (project $project, network $net.0/24, MCP on 127.0.0.1:$MCPMESH_PORT)"
rc=0
compose up --detach --no-build >"$logs/up.log" 2>&1 || rc=$?
# The network's bridge, for the teardown: docker-compose down removes the network, not the
# rules CNI's firewall plugin made for its bridge.
stack_bridge=$(podman network inspect --format '{{.NetworkInterface}}' "${project}_mesh" 2>/dev/null) || true
((rc == 0)) || { cat "$logs/up.log" >&2; die "docker-compose up failed"; }
end=$((SECONDS + 90))
until python3 - "$MCPMESH_PORT" <<'EOF' 2>/dev/null; do
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/nginx-health", timeout=2).read()
EOF
  ((SECONDS < end)) || { compose ps >&2 || true; die "nginx did not answer on 127.0.0.1:$MCPMESH_PORT within 90 s"; }
  sleep 0.5
done
# Each image's HEALTHCHECK, run once by hand (podman runs them from systemd timers, and there
# may be no systemd): every node ready, nginx and the receiver up.
for svc in n1 n2 n3 n4 nginx jaeger; do
  until podman healthcheck run "${project}_${svc}_1" >/dev/null 2>&1; do
    ((SECONDS < end)) || { compose ps >&2 || true; die "$svc is not healthy within 90 s of the start"; }
    sleep 0.5
  done
done
t_up=$SECONDS
say "stack up in $(elapsed $((t_up - t_build))); every container healthy"

export MCPMESH_URL=http://127.0.0.1:$MCPMESH_PORT/mcp
export MCPMESH_TRACES_URL=http://127.0.0.1:$MCPMESH_JAEGER_UI_PORT
rc=0
bounded 600 "$repo/tests/run-node-tests.sh" --needs @modelcontextprotocol/sdk -- \
  --test --test-reporter=spec "$here/journey.test.mjs" || rc=$?
t_test=$SECONDS
say "base image $(elapsed $((t_base - t_start))), build $(elapsed $((t_build - t_base))), up $(elapsed $((t_up - t_build))), test $(elapsed $((t_test - t_up)))"
if ((rc != 0)); then say "the journey failed (exit $rc)"; exit "$rc"; fi
say "passed in $(elapsed "$SECONDS") (teardown follows)"
