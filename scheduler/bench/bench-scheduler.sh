#!/usr/bin/env bash
# SchedulingBasic side by side (ours and upstream's kube-scheduler in the same run) against
# a real kube-apiserver + etcd, plus the in-memory one-cycle benchmark. Release build.
#
#   scheduler/bench/bench-scheduler.sh [NODES] [PODS]
#
# Env: KUBEBUILDER_ASSETS (kube-apiserver, etcd; default /usr/local/kubebuilder/bin),
#      BENCH_SCHEDULERS="label=/path/bin;label2=/path/bin2" (default: ferrokube + upstream),
#      BENCH_SCHEDULER_FLAGS (default "--kube-api-qps=5000 --kube-api-burst=5000").
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_NODES="${1:-${BENCH_NODES:-5000}}"
export BENCH_PODS="${2:-${BENCH_PODS:-10000}}"
export KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-/usr/local/kubebuilder/bin}"
cargo build --release -p scheduler --bin kube-scheduler
export FERROKUBE_BIN_DIR="$PWD/target/release"
if [[ -z "${BENCH_SCHEDULERS:-}" && ! -x /opt/upstream/bin/kube-scheduler ]]; then
  export BENCH_SCHEDULERS="ferrokube=$FERROKUBE_BIN_DIR/kube-scheduler"
  echo "note: /opt/upstream/bin/kube-scheduler not found; measuring ferrokube only" >&2
fi
echo "== in-memory: one scheduling cycle over ${BENCH_NODES} nodes"
cargo bench -p scheduler --bench cycle
echo "== SchedulingBasic against a real apiserver"
cargo bench -p scheduler --bench scheduling_basic
