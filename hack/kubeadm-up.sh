#!/usr/bin/env bash
# Brings up a cluster the way kind does — `kubeadm init` on a control-plane node, `kubeadm
# join` on the others, upstream's kubeadm doing all of it — with ferrokube's kubelet as every
# node's kubelet, and without containers: each node is a network namespace plus a mount
# namespace of its own (its /etc/kubernetes, /var/lib/kubelet, …; hack/lib/kubeadm.sh).
#   * The control plane runs as kubeadm's static pods, started by our kubelet: upstream's
#     kube-apiserver (an image made here of the kube-apiserver binary found), ferrokube's
#     kube-controller-manager and kube-scheduler (the ferrokube image under upstream's names).
#     etcd is external (apt's etcd on the host bridge): the etcd image kubeadm names cannot be
#     pulled here.
#   * kube-proxy runs as kubeadm's DaemonSet, with the ferrokube image as
#     registry.k8s.io/kube-proxy:<version> under kubeadm's ConfigMap.
#   * Joining nodes get their client certificate through the kubelet's TLS bootstrap
#     (bootstrap token, CSR approved and signed by our kube-controller-manager).
#   * The pod network is ferrokube's bridge CNI config (opted in), standing in for kindnet;
#     the host routes every podCIDR. kubeadm's CoreDNS addon is skipped (no image).
# The kubeadm configuration is kind's for v1.35 (clusterName, token, networking, eviction
# settings), with cgroupDriver cgroupfs (no systemd here) and a cgroup root per node.
#
# Usage: hack/kubeadm-up.sh [--nodes N]   (N ≥ 1: one control-plane node and N-1 workers)
# Environment: FERROKUBE_KUBEADM_DIR (state, default /tmp/ferrokube-kubeadm), FERROKUBE_SKIP_BUILD=1,
# FERROKUBE_BIN_DIR, KUBEBUILDER_ASSETS / TEST_ASSET_* (kubeadm, kube-apiserver, kubectl,
# etcd; hack/lib/assets.sh). hack/kubeadm-down.sh removes it all; logs stay in DIR/logs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_PREFIX=kubeadm-up
export FERROKUBE_LOCAL_DIR="${FERROKUBE_KUBEADM_DIR:-/tmp/ferrokube-kubeadm}"
source "${ROOT}/hack/lib/assets.sh"
source "${ROOT}/hack/lib/local.sh"
source "${ROOT}/hack/lib/kubeadm-cluster.sh"
source "${ROOT}/hack/lib/network.sh"
source "${ROOT}/hack/lib/node.sh"
source "${ROOT}/hack/lib/kubeadm.sh"

NODES=2
BIN_DIR="${FERROKUBE_BIN_DIR:-${CARGO_TARGET_DIR:-${ROOT}/target}/debug}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes) NODES="${2:?--nodes needs a number}"; shift 2 ;;
    --nodes=*) NODES="${1#--nodes=}"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "kubeadm-up: unknown argument $1 (usage: hack/kubeadm-up.sh [--nodes N])" >&2; exit 2 ;;
  esac
done
if ! [[ "${NODES}" =~ ^[0-9]+$ ]] || ((NODES < 1 || NODES > MAX_NODES)); then
  echo "kubeadm-up: --nodes must be a number from 1 to ${MAX_NODES}, not '${NODES}'" >&2
  exit 2
fi

main() {
  [[ ${EUID} -eq 0 ]] || { echo "kubeadm-up: needs root (namespaces, containerd, nftables, cgroups)" >&2; exit 1; }
  assets::require kubeadm kube-apiserver kubectl etcd
  local tool
  for tool in nsenter unshare nft ip containerd; do
    command -v "${tool}" >/dev/null || { echo "kubeadm-up: ${tool} missing: run hack/install-deps.sh" >&2; exit 1; }
  done
  ASSET_KUBEADM="$(assets::find kubeadm)"
  VERSION="$("${ASSET_KUBEADM}" version -o short)"

  if [[ -f "${PIDS}" || -f "${MARKER}" ]]; then
    log "removing the previous kubeadm cluster first"
    "${ROOT}/hack/kubeadm-down.sh"
  fi
  local::reset_dir
  mkdir -p "${LOGS}" "${DIR}/etcd"
  : >"${PIDS}"
  : >"${NODES_FILE}"

  if [[ "${FERROKUBE_SKIP_BUILD:-0}" != 1 ]]; then
    log "building the ferrokube binaries"
    (cd "${ROOT}" && cargo build --quiet --bins)
  fi
  log "building the ferrokube image (ferrokube:local)"
  FERROKUBE_SKIP_BUILD=1 FERROKUBE_BIN_DIR="${BIN_DIR}" "${ROOT}/hack/build-image.sh" \
    --tag local --output "${DIR}/images/ferrokube.tar" | sed "s/^/${LOG_PREFIX}: /"

  log "making the node network (bridge ${BRIDGE}, ${HOST_IP}/24) and etcd at ${ETCD_URL}"
  network::host_up
  start etcd "${ASSET_ETCD}" --name=kubeadm --data-dir="${DIR}/etcd" \
    --listen-client-urls="${ETCD_URL}" --advertise-client-urls="${ETCD_URL}" \
    --listen-peer-urls="http://${HOST_IP}:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls="http://${HOST_IP}:${ETCD_PEER_PORT}" \
    --initial-cluster="kubeadm=http://${HOST_IP}:${ETCD_PEER_PORT}"

  local i node
  for ((i = 1; i <= NODES; i++)); do
    node="$(local::node_name "${i}")"
    echo "${node}" >>"${NODES_FILE}"
    log "node ${node}: namespaces, containerd, images"
    kubeadm::node_namespaces "${i}" "${node}"
    node::containerd "${node}"
    kubeadm::load_images "${node}" "${VERSION}" "${DIR}/images/ferrokube.tar" "${ASSET_KUBE_APISERVER}"
    kubeadm::kubelet_service "${node}"
  done

  node="$(local::node_name 1)"
  kubeadm::config "${node}" "${VERSION}" >"${DIR}/kubeadm-init.yaml"
  log "kubeadm init on ${node} (output in ${LOGS}/kubeadm-init.log)"
  if ! kubeadm::in_node "${node}" "${ASSET_KUBEADM}" init --config "${DIR}/kubeadm-init.yaml" \
    --skip-phases=preflight,addon/coredns --v=1 >"${LOGS}/kubeadm-init.log" 2>&1; then
    echo "kubeadm-up: kubeadm init failed; last lines of ${LOGS}/kubeadm-init.log:" >&2
    tail -n 30 "${LOGS}/kubeadm-init.log" >&2
    exit 1
  fi
  cp "$(local::node_dir "${node}")/fs/etc/kubernetes/admin.conf" "${DIR}/admin.kubeconfig"
  node::wait_ready "${node}"

  for ((i = 2; i <= NODES; i++)); do
    node="$(local::node_name "${i}")"
    kubeadm::join_config "${node}" "${VERSION}" >"${DIR}/kubeadm-join-${node}.yaml"
    log "kubeadm join on ${node} (output in ${LOGS}/kubeadm-join-${node}.log)"
    if ! kubeadm::in_node "${node}" "${ASSET_KUBEADM}" join --config "${DIR}/kubeadm-join-${node}.yaml" \
      --skip-phases=preflight --v=1 >"${LOGS}/kubeadm-join-${node}.log" 2>&1; then
      echo "kubeadm-up: kubeadm join failed on ${node}; last lines of ${LOGS}/kubeadm-join-${node}.log:" >&2
      tail -n 30 "${LOGS}/kubeadm-join-${node}.log" >&2
      exit 1
    fi
    node::wait_ready "${node}"
  done
  network::route_services 1
  echo
  echo "kubeadm cluster is up: ${NODES} node(s) (state in ${DIR}; remove it with hack/kubeadm-down.sh)."
  echo "export KUBECONFIG=${DIR}/admin.kubeconfig"
}

main
