#!/usr/bin/env bash
# Entry point of the mcpmesh-node image: runs mcpmesh-node with the container's arguments
# followed by MCPMESH_NODE_ARGS (split on blanks; flags for every node of a compose file,
# e.g. MCPMESH_NODE_ARGS="--log-format json").
#
# As the image's own user (mcpmesh) it just runs the node. Started as root (docker-compose.yml
# does, for this reason only), it first copies each file named by --cluster-secret-file and
# --cluster-tls-{cert,key,ca} to /run/mcpmesh/, owned by mcpmesh with mode 0400, and passes the
# copy instead: a compose secret is a bind mount that keeps the host file's owner and mode
# (0600, someone else's), which mcpmesh could not read. Then it drops to mcpmesh with no
# capabilities and no_new_privs; the node never runs as root.
set -euo pipefail
prog=mcpmesh-entrypoint
node=/usr/local/bin/mcpmesh-node

args=("$@")
if [[ -n ${MCPMESH_NODE_ARGS:-} ]]; then
  read -r -a extra <<<"$MCPMESH_NODE_ARGS"
  args+=("${extra[@]}")
fi

if (($(id -u) != 0)); then exec "$node" "${args[@]}"; fi

user=mcpmesh
uid=$(id -u "$user")
gid=$(id -g "$user")
private=/run/mcpmesh
install -d -o root -g "$gid" -m 0750 "$private"

# Sets `copy` to the path of a private copy of FILE, readable only by mcpmesh. Written by root
# with umask 077 and given away last, so that no capability beyond CHOWN is needed.
private_copy() {
  local src=$1
  [[ -f $src ]] || { echo "$prog: '$src' is not a file" >&2; exit 2; }
  copy=$private/$(printf '%s' "$src" | sha256sum | cut -c1-12)-${src##*/}
  rm -f -- "$copy"
  (umask 077 && cp -- "$src" "$copy")
  chmod 0400 -- "$copy"
  chown "$uid:$gid" -- "$copy"
}

copy=""
out=()
for ((i = 0; i < ${#args[@]}; i++)); do
  a=${args[i]}
  case $a in
    --cluster-secret-file | --cluster-tls-cert | --cluster-tls-key | --cluster-tls-ca)
      out+=("$a")
      if ((i + 1 < ${#args[@]})); then
        i=$((i + 1))
        private_copy "${args[i]}"
        out+=("$copy")
      fi
      ;;
    --cluster-secret-file=* | --cluster-tls-cert=* | --cluster-tls-key=* | --cluster-tls-ca=*)
      private_copy "${a#*=}"
      out+=("${a%%=*}=$copy")
      ;;
    *) out+=("$a") ;;
  esac
done

exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --no-new-privs \
  -- "$node" "${out[@]}"
