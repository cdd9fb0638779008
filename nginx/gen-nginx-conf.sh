#!/usr/bin/env bash
# Writes a complete nginx.conf that balances a set of mcpmesh nodes (DESIGN.md §7):
#   - a request whose Mcp-Session-Id names a known node goes to that node's upstream, where the
#     node is the only primary server and every other node is a backup (a dead owner's sessions
#     fall through to nodes that forward them or adopted them);
#   - a request without a session id, or naming a node not in the list, is spread round robin
#     over all nodes;
#   - SSE-safe (no buffering, HTTP/1.1 keepalive upstream, 1 h read/send timeouts) and a request
#     that may have reached a node is never replayed on another one.
# nginx/README.md explains every directive. Only this script writes the config: regenerate it
# when the member list changes, never edit the output.
#
# Usage:
#   nginx/gen-nginx-conf.sh --listen [HOST:]PORT --dir DIR --node ID=HOST:PORT [--node ...]
#                           [--out FILE] [--workers N] [--worker-connections N]
#                           [--max-body-bytes N] [--backlog N]
#   DIR is nginx's own directory (its prefix; it must exist): the pid and lock files, the logs
#   and the temp directories live there and nginx writes nowhere else. Run nginx with:
#     nginx -p DIR/ -c FILE -e DIR/error.log        (foreground: the config says daemon off)
#   Without --out the config goes to stdout.
set -euo pipefail
export LC_ALL=C

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 2; }
usage() { sed -n '/^# Usage:/,/^# *Without --out/p' "$0" | sed 's/^# \{0,1\}//'; }

listen="" dir="" out="" workers=1 worker_connections=4096
# Listen queue (accepted by the kernel, not yet by nginx). nginx's own default, 511, is less
# than a burst of 2,000 clients connecting at once (bench/scale_bench.sh); past it the kernel
# drops connections and clients wait for SYN retransmits. Capped at net.core.somaxconn.
backlog=4096
# Matches mcpmesh-node's --max-body-bytes default (4 MiB): nginx answers 413 where a node would.
max_body=4194304
ids=() addrs=()

# HOST:PORT with HOST a name, an IPv4 address or a bracketed IPv6 address.
addr_re='^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$'
valid_addr() {
  [[ $1 =~ $addr_re ]] && ((10#${BASH_REMATCH[2]} >= 1 && 10#${BASH_REMATCH[2]} <= 65535))
}
posint() { [[ $1 =~ ^[1-9][0-9]{0,8}$ ]]; }

while (($#)); do
  case $1 in
    --listen) listen=${2-}; shift 2 || die "--listen needs a value" ;;
    --dir) dir=${2-}; shift 2 || die "--dir needs a value" ;;
    --out) out=${2-}; shift 2 || die "--out needs a value" ;;
    --workers) workers=${2-}; shift 2 || die "--workers needs a value" ;;
    --worker-connections) worker_connections=${2-}; shift 2 || die "--worker-connections needs a value" ;;
    --max-body-bytes) max_body=${2-}; shift 2 || die "--max-body-bytes needs a value" ;;
    --backlog) backlog=${2-}; shift 2 || die "--backlog needs a value" ;;
    --node)
      spec=${2-}; shift 2 || die "--node needs ID=HOST:PORT"
      # A node id may itself contain '=' (it is any visible ASCII but '.'); an address never
      # does, so the last '=' separates them.
      [[ $spec == *=* ]] || die "--node '$spec': expected ID=HOST:PORT"
      id=${spec%=*} addr=${spec##*=}
      [[ -n $id && $id =~ ^[!-~]+$ && $id != *.* ]] ||
        die "--node '$spec': a node id is visible ASCII without '.' (as mcpmesh-node --node-id)"
      valid_addr "$addr" || die "--node '$spec': '$addr' is not HOST:PORT"
      for seen in "${ids[@]}"; do [[ $seen != "$id" ]] || die "node id '$id' given twice"; done
      ids+=("$id") addrs+=("$addr")
      ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[[ -n $listen ]] || die "--listen is required"
[[ $listen =~ ^[0-9]{1,5}$ ]] && listen="127.0.0.1:$listen"
valid_addr "$listen" || die "--listen '$listen' is not [HOST:]PORT"
[[ -n $dir ]] || die "--dir is required"
((${#ids[@]} > 0)) || die "at least one --node ID=HOST:PORT is required"
posint "$workers" || [[ $workers == auto ]] || die "--workers: a positive number or auto"
posint "$worker_connections" || die "--worker-connections: a positive number"
posint "$max_body" || die "--max-body-bytes: a positive number"
posint "$backlog" || die "--backlog: a positive number"

# Absolute, normalised prefix; characters nginx would read as syntax or variables are refused
# rather than escaped ('$' in a log path turns it into a per-request variable path).
dir=$(realpath -m -- "$dir")
[[ $dir != *[\"\\\$\'[:cntrl:]]* ]] || die "--dir '$dir': quotes, '\\', '\$' and control characters are not allowed"

# An id inside a regex inside a double-quoted nginx string: every character that is not a
# letter or digit is escaped for PCRE ('\' + punctuation is always that literal character),
# then every '\' and '"' is escaped for nginx's quoted-string syntax.
nginx_regex_literal() {
  local s=$1 r="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    if [[ $c == [A-Za-z0-9] ]]; then r+=$c; else r+="\\$c"; fi
  done
  r=${r//\\/\\\\}
  r=${r//\"/\\\"}
  printf '%s' "$r"
}
# An id in a '#' comment: one line, nothing else to worry about.

n=${#ids[@]}
# Shared-memory zone per upstream (failure state and round robin shared by all workers): a
# server entry takes well under 1 KiB; 64 KiB is the floor.
zone_kib=$((64 + n))

emit() {
  local i j
  cat <<CONF
# Generated by nginx/gen-nginx-conf.sh — do not edit; regenerate from the member list.
# Members:
CONF
  for ((i = 0; i < n; i++)); do printf '#   %s  %s\n' "${ids[i]}" "${addrs[i]}"; done
  cat <<CONF
# Run: nginx -p "$dir/" -c <this file> -e "$dir/error.log"

# Foreground, master + workers; no 'user' directive: started by a normal user nginx runs as that
# user; started as root its workers take nginx's default unprivileged user, and they never touch
# the disk (bodies are buffered in memory, responses are not buffered at all).
daemon off;
master_process on;
worker_processes $workers;
# Each proxied request holds two descriptors (client and node); raised by nginx itself, so a
# shell's 1024 default does not cap worker_connections.
worker_rlimit_nofile $((2 * worker_connections + 64));
pid "$dir/nginx.pid";
lock_file "$dir/nginx.lock";
error_log "$dir/error.log" warn;

events {
    worker_connections $worker_connections;
    # Accept every pending connection on each wake-up. With one at a time, a worker busy with
    # thousands of proxied requests accepted ~6 connections a second and a burst of 2,000
    # waited in the listen queue past the clients' timeouts (bench/scale_bench.sh, 6 nodes).
    multi_accept on;
}

http {
    # Every path nginx may write is under $dir.
    client_body_temp_path "$dir/client_body_temp";
    proxy_temp_path       "$dir/proxy_temp";
    fastcgi_temp_path     "$dir/fastcgi_temp";
    uwsgi_temp_path       "$dir/uwsgi_temp";
    scgi_temp_path        "$dir/scgi_temp";

    log_format mcpmesh '\$remote_addr [\$time_local] "\$request" \$status \$body_bytes_sent '
                       'upstream=\$mcpmesh_upstream addr=\$upstream_addr '
                       'ustatus=\$upstream_status rt=\$request_time';
    access_log "$dir/access.log" mcpmesh;

    server_tokens off;
    default_type application/octet-stream;
    gzip off;

    # Session owner -> upstream. A session id is "<owner>.<epoch>.<random>"; the owner is the
    # node id before the first '.'. No session id, or an owner not listed here: spread.
    map \$http_mcp_session_id \$mcpmesh_upstream {
        default mcpmesh_all;
CONF
  for ((i = 0; i < n; i++)); do
    printf '        "~^%s\\\\."  mcpmesh_owner_%d;  # %s\n' "$(nginx_regex_literal "${ids[i]}")" \
      "$((i + 1))" "${ids[i]}"
  done
  cat <<CONF
    }

    # Sessionless requests (initialize, /healthz, /metrics, stateless use): round robin.
    upstream mcpmesh_all {
        zone mcpmesh_all ${zone_kib}k;
CONF
  for ((i = 0; i < n; i++)); do
    printf '        server %s max_fails=1 fail_timeout=2s;  # %s\n' "${addrs[i]}" "${ids[i]}"
  done
  cat <<CONF
        keepalive 32;
        keepalive_timeout 30s;
    }
CONF
  for ((i = 0; i < n; i++)); do
    printf '\n    # Sessions owned by %s; the others take over when it is down.\n' "${ids[i]}"
    printf '    upstream mcpmesh_owner_%d {\n' "$((i + 1))"
    printf '        zone mcpmesh_owner_%d %dk;\n' "$((i + 1))" "$zone_kib"
    printf '        server %s max_fails=1 fail_timeout=2s;  # %s (owner)\n' "${addrs[i]}" "${ids[i]}"
    for ((j = 0; j < n; j++)); do
      ((j != i)) || continue
      printf '        server %s max_fails=1 fail_timeout=2s backup;  # %s\n' "${addrs[j]}" "${ids[j]}"
    done
    printf '        keepalive 16;\n'
    printf '        keepalive_timeout 30s;\n'
    printf '    }\n'
  done
  cat <<CONF

    server {
        listen $listen backlog=$backlog;

        # Same limit as the nodes; the whole body is held in memory (never a temp file) so that
        # it is complete before an upstream is picked.
        client_max_body_size $max_body;
        client_body_buffer_size $max_body;

        location = /nginx-health {
            access_log off;
            default_type text/plain;
            return 200 "ok\\n";
        }

        location / {
            proxy_pass http://\$mcpmesh_upstream;

            # SSE: pass every event on as it arrives; nothing is cached.
            proxy_buffering off;
            proxy_cache off;
            proxy_request_buffering on;

            # HTTP/1.1 with an empty Connection header: upstream keepalive connections.
            proxy_http_version 1.1;
            proxy_set_header Connection "";

            proxy_set_header Host \$host;
            proxy_set_header Mcp-Session-Id \$http_mcp_session_id;
            proxy_set_header Last-Event-ID \$http_last_event_id;
            proxy_set_header MCP-Protocol-Version \$http_mcp_protocol_version;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_redirect off;

            # A dead node is found in one connect attempt and skipped for fail_timeout; a
            # stream may stay open (and a tool call run) for an hour.
            proxy_connect_timeout 1s;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;

            # Only failures before the request reached a node move it to the next server. Never
            # non_idempotent: nginx then does not replay a POST that was sent to a node.
            proxy_next_upstream error timeout;
        }
    }
}
CONF
}

if [[ -z $out || $out == - ]]; then
  emit
else
  tmp="$out.tmp.$$"
  emit >"$tmp"
  mv -f -- "$tmp" "$out"
fi
