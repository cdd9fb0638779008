#!/usr/bin/env bash
# Container health check: exits 0 when GET PATH on 127.0.0.1:PORT answers 200 within 2 s.
# No curl in the images: bash's /dev/tcp and one HTTP/1.0 request.
# Usage: mcpmesh-http-probe [PATH] [PORT]      (default: /readyz 8080)
set -u
path=${1:-/readyz}
port=${2:-8080}
exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || exit 1
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
IFS= read -r -t 2 line <&3 || exit 1
[[ $line =~ ^HTTP/1\.[01]\ 200[[:space:]] ]]
