#!/usr/bin/env bash
# Entry point of the mcpmesh-nginx image: writes nginx.conf with gen-nginx-conf.sh from the
# container's arguments (--listen [HOST:]PORT, --node ID=HOST:PORT once per node, any other
# generator flag), checks it with `nginx -t` and runs nginx in the foreground as the container's
# user. nginx's prefix is MCPMESH_NGINX_DIR (default /var/lib/mcpmesh-nginx), where the image
# links access.log to stdout and error.log to stderr.
set -euo pipefail
dir=${MCPMESH_NGINX_DIR:-/var/lib/mcpmesh-nginx}
conf=$dir/nginx.conf
gen-nginx-conf.sh --dir "$dir" --out "$conf" "$@"
nginx -t -q -p "$dir/" -c "$conf" -e "$dir/error.log"
exec nginx -p "$dir/" -c "$conf" -e "$dir/error.log"
