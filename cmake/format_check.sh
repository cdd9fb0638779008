#!/usr/bin/env bash
# Fails if any C++ source of the project is not formatted per .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || {
  echo "format_check: clang-format not found (make test installs it)" >&2
  exit 1
}
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' 2>/dev/null || find mcp transport registry node cluster ctl bench tests -name '*.cpp' -o -name '*.hpp')
[ ${#files[@]} -gt 0 ] || { echo "format_check: no sources found"; exit 1; }
clang-format --dry-run --Werror "${files[@]}"
echo "format_check: ${#files[@]} files formatted"
