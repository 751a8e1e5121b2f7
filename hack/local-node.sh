#!/usr/bin/env bash
# Stops, starts or cuts off one node of the local cluster hack/local-up.sh made, so node loss
# can be shown by hand and in tests.
#
# Usage: hack/local-node.sh COMMAND NODE [COMPONENT...]
#   stop NODE [COMPONENT...]     stop the node's components (default: kube-proxy, kubelet and
#                                containerd, which ends its pods too: the whole node)
#   start NODE [COMPONENT...]    start what is not running (default: containerd, kubelet,
#                                kube-proxy), then wait for the node to be Ready
#   restart NODE [COMPONENT...]  stop, then start (default: the kubelet only)
#   disconnect NODE              cut the node's link to the bridge (it keeps running, but
#                                reaches neither the apiserver nor other nodes)
#   connect NODE                 restore it
#   list                         the nodes and which components run
# COMPONENT: containerd, kubelet, kube-proxy. Environment: FERROKUBE_LOCAL_DIR, as local-up.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_PREFIX=local-node
source "${ROOT}/hack/lib/local.sh"
source "${ROOT}/hack/lib/network.sh"
source "${ROOT}/hack/lib/node.sh"

usage() { sed -n '5,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

COMMAND="${1:-}"
[[ -n "${COMMAND}" ]] || usage
shift
[[ -f "${DIR}/local.env" ]] || { echo "local-node: no local cluster in ${DIR} (run hack/local-up.sh)" >&2; exit 1; }
# shellcheck source=/dev/null
source "${DIR}/local.env"

if [[ "${COMMAND}" == list ]]; then
  for node in $(local::nodes); do
    states=()
    for c in containerd kubelet kube-proxy; do
      if local::running "${node}/${c}"; then states+=("${c}=running"); else states+=("${c}=stopped"); fi
    done
    echo "${node} $(local::node_ip "$(local::node_index "${node}")") ${states[*]}"
  done
  exit 0
fi

NODE="${1:-}"
[[ -n "${NODE}" ]] || usage
shift
grep -qx -- "${NODE}" "${NODES_FILE}" 2>/dev/null ||
  { echo "local-node: no node ${NODE} in this cluster (nodes: $(local::nodes | tr '\n' ' '))" >&2; exit 1; }
for c in "$@"; do
  case "${c}" in containerd | kubelet | kube-proxy) ;; *) echo "local-node: unknown component ${c} (containerd, kubelet, kube-proxy)" >&2; exit 2 ;; esac
done

# Starts the named components of NODE (in start order) that are not running.
start_node() {
  local node="$1"; shift
  local c
  for c in containerd kubelet kube-proxy; do
    [[ $# -eq 0 || " $* " == *" ${c} "* ]] || continue
    if local::running "${node}/${c}"; then
      log "${node}/${c} already runs"
      continue
    fi
    case "${c}" in
      containerd) node::containerd "${node}" ;;
      kubelet) node::kubelet "${node}" ;;
      kube-proxy) node::proxy "${node}" ;;
    esac
  done
  if local::running "${node}/kubelet"; then node::wait_ready "${node}"; fi
}

case "${COMMAND}" in
  stop) node::stop "${NODE}" "$@" ;;
  start) start_node "${NODE}" "$@" ;;
  restart)
    (($#)) || set -- kubelet
    node::stop "${NODE}" "$@"
    start_node "${NODE}" "$@"
    ;;
  disconnect) network::link "${NODE}" down; log "node ${NODE} disconnected" ;;
  connect) network::link "${NODE}" up; log "node ${NODE} connected" ;;
  *) usage ;;
esac
