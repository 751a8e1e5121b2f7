#!/usr/bin/env bash
# kube-proxy benchmark (not a timed test): rule generation and kernel apply of full and
# incremental syncs with N Services x 10 endpoints, in throwaway network namespaces, plus
# the same Services served by a real kube-apiserver to whole kube-proxy binaries.
#
#   proxy/bench/bench-proxy.sh [--sizes 1000,10000] [--binary PATH]... [--no-rules]
#
# With no --binary, ferrokube's release kube-proxy and upstream's kube-proxy are measured,
# upstream's found in $FERROKUBE_UPSTREAM_DIR
# (a loud skip when none has it). The first --binary is reported as "ours", the second as
# "upstream": a table, then one JSON line per figure, e.g.
#   {"figure": "kube-proxy 10000 Services full sync", "ours": 4.1, "upstream": 196.9, "unit": "s"}
# Needs root, nft, and kube-apiserver + etcd (/usr/local/kubebuilder/bin) for the binary
# runs. FERROKUBE_NFT_BACKEND=cli makes ours use `nft -f` instead of netlink.
set -euo pipefail
cd "$(dirname "$0")/../.."
args=("$@")
target="${CARGO_TARGET_DIR:-$PWD/target}"
if [[ " ${args[*]-} " != *" --binary "* ]]; then
  cargo build --release -p proxy --bin kube-proxy
  args+=(--binary "$target/release/kube-proxy")
  upstream=""
  for dir in ${FERROKUBE_UPSTREAM_DIR:-}; do
    if [[ -x "$dir/kube-proxy" ]]; then upstream="$dir/kube-proxy"; break; fi
  done
  if [[ -n "$upstream" ]]; then
    args+=(--binary "$upstream")
  else
    echo "SKIPPED: upstream kube-proxy: not found (set FERROKUBE_UPSTREAM_DIR)" >&2
  fi
fi
exec cargo bench -p proxy --bench bench_proxy -- "${args[@]}"
