#!/usr/bin/env bash
# SchedulingBasic side by side (ours and upstream's kube-scheduler in the same run, plus the
# binding ceiling: a tiny binder that only POSTs bindings) against a real kube-apiserver +
# etcd, and the in-memory one-cycle benchmark. Release build.
#
#   scheduler/bench/bench-scheduler.sh [NODES] [PODS]
#
# Prints a table, and one JSON line per figure on stdout:
#   {"figure": "scheduler 5000 nodes/10000 pods throughput", "ours": 512.0, "upstream": 256.0, "unit": "pods/s"}
# (null where a side was not measured).
#
# Env: FERROKUBE_UPSTREAM_DIR (directory with upstream's kube-scheduler; unset: upstream is
#      skipped, saying so), the control plane is found as by the e2e tests
#      (e2e/src/assets.rs), BENCH_SCHEDULERS="label=/path/bin;label2=/path/bin2"
#      (default: ferrokube + upstream), BENCH_SCHEDULER_FLAGS (default
#      "--kube-api-qps=5000 --kube-api-burst=5000"), BENCH_CEILING=0 skips the ceiling run,
#      BENCH_CEILING_CONCURRENCY (default: our bindings in flight), BENCH_CYCLE=0 skips the
#      in-memory bench.
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_NODES="${1:-${BENCH_NODES:-5000}}"
export BENCH_PODS="${2:-${BENCH_PODS:-10000}}"
cargo build --release -p scheduler --bin kube-scheduler >&2
export FERROKUBE_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/release"
if [[ "${BENCH_CYCLE:-1}" != 0 ]]; then
  echo "== in-memory: one scheduling cycle over ${BENCH_NODES} nodes" >&2
  cargo bench -p scheduler --bench cycle
fi
echo "== SchedulingBasic against a real apiserver" >&2
cargo bench -p scheduler --bench scheduling_basic
