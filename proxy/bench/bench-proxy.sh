#!/usr/bin/env bash
# kube-proxy benchmark (not a timed test): rule generation and kernel apply of full and
# incremental syncs with N Services x 10 endpoints, in throwaway network namespaces, plus
# the same Services served by a real kube-apiserver to whole kube-proxy binaries.
#
#   proxy/bench/bench-proxy.sh [--sizes 1000,10000] [--binary PATH]...
#
# With no --binary, ferrokube's release kube-proxy and, if present, upstream's
# /opt/upstream/bin/kube-proxy are measured. Needs root, nft, and kube-apiserver + etcd
# (KUBEBUILDER_ASSETS or /usr/local/kubebuilder/bin) for the binary runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
args=("$@")
if [[ " ${args[*]-} " != *" --binary "* ]]; then
  cargo build --release -p proxy --bin kube-proxy
  args+=(--binary "$PWD/target/release/kube-proxy")
  if [[ -x /opt/upstream/bin/kube-proxy ]]; then
    args+=(--binary /opt/upstream/bin/kube-proxy)
  fi
fi
exec cargo bench -p proxy --bench bench_proxy -- "${args[@]}"
