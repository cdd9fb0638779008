#!/usr/bin/env bash
# Fails unless every suite is registered in this build, whatever was installed when it was
# configured: a suite whose tools are missing must fail when it runs, never vanish from the list.
# usage: cmake/suites_check.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: suites_check.sh BUILD_DIR}
expected=(format_check suites_check registry_test registry_tsan_test mcp_test transport_test
  cluster_membership_test cluster_sim_test cluster_service_test cluster_auth_test
  cluster_mesh_test node_test bench_smoke scale_bench_smoke overload_bench_smoke
  integration_bad_input conformance_suite
  interop_sdk_v1 cluster_process_test cluster_nginx_routing conformance_cluster
  interop_sdk_v1_cluster cluster_sessions cluster_failover cluster_pause cluster_restart cluster_quorum
  cluster_drain
  cluster_security_test mcpmesh_bench_test mcpmesh_bench_smoke mcpmesh_bench_sdk
  integration_admission integration_stdio_backpressure integration_startup cluster_ctl
  cluster_tracing
  memory_bench_smoke conformance_requirements_2026-07-28 conformance_requirements_2025-11-25
  conformance_cluster_2026 interop_sdk_v2 chaos_checker chaos_smoke conformance_suite_all_next
  integration_stateless conformance_cluster_all_next)
listed=$(cd "$build" && ctest -N)
missing=()
for t in "${expected[@]}"; do
  grep -qE "Test +#[0-9]+: $t\$" <<<"$listed" || missing+=("$t")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "suites_check: not registered: ${missing[*]}" >&2
  exit 1
fi
# No suite may depend on what was installed at configure time.
if grep -rnE 'if\(NOT EXISTS .*node_modules|message\(STATUS .*disabled' \
  --include=CMakeLists.txt "$(dirname "$0")/.."/{tests,bench,mcp,transport,cluster,registry,node} \
  2>/dev/null; then
  echo "suites_check: a suite is registered only when a tool exists at configure time" >&2
  exit 1
fi
echo "suites_check: all ${#expected[@]} suites registered"
