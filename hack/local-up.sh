#!/usr/bin/env bash
# Brings up a local ferrokube cluster on this machine: "kind without containers".
#   The control plane on the host: etcd + an upstream kube-apiserver (found as envtest finds
#   it: hack/lib/assets.sh) bound to the node network's host address, a PKI and one
#   kubeconfig per component made with openssl, ferrokube's kube-scheduler and
#   kube-controller-manager.
#   N nodes (default 1), each a network namespace on one host bridge running its own
#   containerd, kubelet and kube-proxy (hack/lib/node.sh, hack/lib/network.sh); the host
#   routes every node's podCIDR, so pods reach each other across nodes by pod IP.
# State (PKI, kubeconfigs, etcd data, node dirs, logs, pids) lives in
# ${FERROKUBE_LOCAL_DIR:-/tmp/ferrokube-local} and is wiped at each start;
# hack/local-down.sh removes everything this made; hack/local-node.sh stops and starts a node.
#
# Usage: hack/local-up.sh [--nodes N]
# Environment: FERROKUBE_NODES (N), FERROKUBE_LOCAL_DIR, FERROKUBE_API_PORT (6443),
# FERROKUBE_ETCD_PORT (2379), FERROKUBE_ETCD_PEER_PORT (2380), FERROKUBE_SKIP_BUILD=1 (use
# the binaries already built), FERROKUBE_BIN_DIR (where the ferrokube binaries are; default
# target/debug), FERROKUBE_IMAGES_DIR (image archives imported into every node),
# FERROKUBE_NODE=0 (the control plane only), FERROKUBE_DNS=0 (no cluster DNS),
# KUBEBUILDER_ASSETS (where kube-apiserver, etcd and kubectl are).
#
# The cluster DNS is deployed as kubeadm deploys CoreDNS (hack/lib/dns.sh): ferrokube-dns from
# the ferrokube image, which local-up builds (hack/build-image.sh) and imports into every
# node, behind the Service kube-system/kube-dns at the kubelets' clusterDNS, 10.96.0.10.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_PREFIX=local-up
source "${ROOT}/hack/lib/assets.sh"
source "${ROOT}/hack/lib/pki.sh"
source "${ROOT}/hack/lib/local.sh"
source "${ROOT}/hack/lib/network.sh"
source "${ROOT}/hack/lib/node.sh"
source "${ROOT}/hack/lib/dns.sh"

API_PORT="${FERROKUBE_API_PORT:-6443}"
ETCD_PORT="${FERROKUBE_ETCD_PORT:-2379}"
ETCD_PEER_PORT="${FERROKUBE_ETCD_PEER_PORT:-2380}"
SCHEDULER_PORT=10259          # upstream default secure ports
CONTROLLER_MANAGER_PORT=10257
NODES="${FERROKUBE_NODES:-1}"
BIN_DIR="${FERROKUBE_BIN_DIR:-${CARGO_TARGET_DIR:-${ROOT}/target}/debug}"
API_SERVER="https://${HOST_IP}:${API_PORT}"
# The ferrokube binaries local-up starts (the nodes' too unless FERROKUBE_NODE=0).
COMPONENTS=(kube-scheduler kube-controller-manager)
[[ "${FERROKUBE_NODE:-1}" != 1 ]] || COMPONENTS+=(kubelet kube-proxy ferrokube-load-image)
DNS="${FERROKUBE_DNS:-1}"
[[ "${FERROKUBE_NODE:-1}" == 1 ]] || DNS=0
# The ferrokube image (every component binary; the DNS runs from it).
IMAGE="ferrokube:local"
[[ "${DNS}" != 1 ]] || COMPONENTS+=(ferrokube-dns)

while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes) NODES="${2:?--nodes needs a number}"; shift 2 ;;
    --nodes=*) NODES="${1#--nodes=}"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "local-up: unknown argument $1 (usage: hack/local-up.sh [--nodes N])" >&2; exit 2 ;;
  esac
done
if ! [[ "${NODES}" =~ ^[0-9]+$ ]] || ((NODES < 1 || NODES > MAX_NODES)); then
  echo "local-up: --nodes (FERROKUBE_NODES) must be a number from 1 to ${MAX_NODES}, not '${NODES}'" >&2
  exit 2
fi
[[ "${FERROKUBE_NODE:-1}" == 1 ]] || NODES=0

port_free_or_die() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "local-up: 127.0.0.1:$1 is in use ($2); stop what uses it or set another port" >&2
    exit 1
  fi
}

main() {
  [[ ${EUID} -eq 0 ]] || { echo "local-up: needs root (network namespaces, containerd, nftables, cgroups)" >&2; exit 1; }
  assets::require kube-apiserver etcd kubectl
  local tool
  for tool in openssl nsenter nft ip; do
    command -v "${tool}" >/dev/null || { echo "local-up: ${tool} missing: run hack/install-deps.sh" >&2; exit 1; }
  done

  # A previous run in this directory: remove exactly what it made (processes, network,
  # cgroups, state). A cluster of another directory still running is not ours to remove; a
  # network a crashed run left behind is.
  if [[ -f "${PIDS}" ]]; then
    log "removing the previous local cluster first"
    "${ROOT}/hack/local-down.sh"
  elif [[ -e "/sys/class/net/${BRIDGE}" ]]; then
    port_free_or_die "${SCHEDULER_PORT}" "kube-scheduler of another local cluster (its bridge ${BRIDGE} exists)"
    log "removing the node network a previous local cluster left"
    network::down
  fi
  local::reset_dir
  mkdir -p "${PKI}" "${LOGS}" "${DIR}/etcd"
  : >"${PIDS}"
  : >"${NODES_FILE}"
  # What hack/local-node.sh needs to start a node's components as this run did.
  printf 'BIN_DIR=%q\nASSET_KUBECTL=%q\n' "${BIN_DIR}" "${ASSET_KUBECTL}" >"${DIR}/local.env"

  for p in "${API_PORT}:kube-apiserver" "${ETCD_PORT}:etcd" "${ETCD_PEER_PORT}:etcd peer" \
    "${SCHEDULER_PORT}:kube-scheduler" "${CONTROLLER_MANAGER_PORT}:kube-controller-manager"; do
    port_free_or_die "${p%%:*}" "${p#*:}"
  done

  if [[ "${FERROKUBE_SKIP_BUILD:-0}" != 1 ]]; then
    # Only what is started here, so a half-written crate elsewhere cannot block the cluster.
    log "building ${COMPONENTS[*]}"
    local bins=()
    for c in "${COMPONENTS[@]}"; do bins+=(--bin "${c}"); done
    (cd "${ROOT}" && cargo build --quiet "${bins[@]}")
  fi

  if [[ "${DNS}" == 1 ]]; then
    log "building the ferrokube image (${IMAGE}) for the cluster DNS"
    FERROKUBE_SKIP_BUILD=1 FERROKUBE_BIN_DIR="${BIN_DIR}" "${ROOT}/hack/build-image.sh" \
      --tag local --output "${DIR}/images/ferrokube.tar" | sed 's/^/local-up: /'
    export FERROKUBE_IMAGE_ARCHIVE="${DIR}/images/ferrokube.tar"
  fi

  log "making the node network (bridge ${BRIDGE}, ${HOST_IP}/24)"
  network::host_up

  log "making the PKI in ${PKI}"
  pki::ca "${PKI}"
  pki::serving "${PKI}" apiserver kube-apiserver \
    "IP:${HOST_IP},IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  pki::service_account "${PKI}"
  # Front proxy (as kubeadm): published in kube-system/extension-apiserver-authentication,
  # where the components' delegated authentication looks for it.
  pki::ca "${PKI}" front-proxy-ca front-proxy-ca
  pki::client "${PKI}" front-proxy-client front-proxy-client "" front-proxy-ca
  # What the apiserver presents to kubelets for logs/exec/port-forward (kubeadm's name).
  pki::client "${PKI}" apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  local user stem group kubeconfig node i
  local entries=("admin|kubernetes-admin|system:masters|${DIR}/admin.kubeconfig"
    "kube-scheduler|system:kube-scheduler||${DIR}/kube-scheduler.kubeconfig"
    "kube-controller-manager|system:kube-controller-manager||${DIR}/kube-controller-manager.kubeconfig"
    "kube-proxy|system:kube-proxy||${DIR}/kube-proxy.kubeconfig")
  for ((i = 1; i <= NODES; i++)); do
    node="$(local::node_name "${i}")"
    mkdir -p "$(local::node_dir "${node}")"
    entries+=("kubelet-${node}|system:node:${node}|system:nodes|$(local::node_dir "${node}")/kubelet.kubeconfig")
  done
  for entry in "${entries[@]}"; do
    IFS='|' read -r stem user group kubeconfig <<<"${entry}"
    pki::client "${PKI}" "${stem}" "${user}" "${group}"
    pki::kubeconfig "${kubeconfig}" "${API_SERVER}" "${PKI}/ca.crt" \
      "${PKI}/${stem}.crt" "${PKI}/${stem}.key" "${user}"
  done

  start etcd "${ASSET_ETCD}" --name=local --data-dir="${DIR}/etcd" \
    --listen-client-urls="http://127.0.0.1:${ETCD_PORT}" \
    --advertise-client-urls="http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster="local=http://127.0.0.1:${ETCD_PEER_PORT}"

  # Bound to and advertising the bridge address the nodes reach; the default `lease`
  # endpoint reconciler publishes it as the `kubernetes` Service's endpoint.
  start kube-apiserver "${ASSET_KUBE_APISERVER}" \
    --etcd-servers="http://127.0.0.1:${ETCD_PORT}" \
    --bind-address="${HOST_IP}" --secure-port="${API_PORT}" \
    --advertise-address="${HOST_IP}" \
    --tls-cert-file="${PKI}/apiserver.crt" --tls-private-key-file="${PKI}/apiserver.key" \
    --client-ca-file="${PKI}/ca.crt" \
    --service-account-key-file="${PKI}/sa.pub" \
    --service-account-signing-key-file="${PKI}/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --enable-admission-plugins=NodeRestriction \
    --requestheader-client-ca-file="${PKI}/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="${PKI}/front-proxy-client.crt" \
    --proxy-client-key-file="${PKI}/front-proxy-client.key" \
    --service-cluster-ip-range="${SERVICE_CIDR}" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --kubelet-client-certificate="${PKI}/apiserver-kubelet-client.crt" \
    --kubelet-client-key="${PKI}/apiserver-kubelet-client.key"

  log "waiting for kube-apiserver /readyz"
  for ((i = 0; i < 240; i++)); do
    alive_or_die etcd
    alive_or_die kube-apiserver
    if [[ "$(curl -sf --max-time 2 --cacert "${PKI}/ca.crt" --cert "${PKI}/admin.crt" \
      --key "${PKI}/admin.key" "${API_SERVER}/readyz" 2>/dev/null)" == ok ]]; then
      break
    fi
    sleep 0.5
  done
  ((i < 240)) || { echo "local-up: kube-apiserver not ready after 120 s" >&2; tail -n 20 "${LOGS}/kube-apiserver.log" >&2; exit 1; }
  log "kube-apiserver ready at ${API_SERVER}"

  start kube-scheduler "${BIN_DIR}/kube-scheduler" \
    --kubeconfig="${DIR}/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="${DIR}/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="${DIR}/kube-scheduler.kubeconfig" \
    --leader-elect=true \
    --bind-address=127.0.0.1 --secure-port="${SCHEDULER_PORT}"

  start kube-controller-manager "${BIN_DIR}/kube-controller-manager" \
    --kubeconfig="${DIR}/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="${DIR}/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="${DIR}/kube-controller-manager.kubeconfig" \
    --leader-elect=true \
    --bind-address=127.0.0.1 --secure-port="${CONTROLLER_MANAGER_PORT}" \
    --cluster-signing-cert-file="${PKI}/ca.crt" --cluster-signing-key-file="${PKI}/ca.key" \
    --service-account-private-key-file="${PKI}/sa.key" \
    --root-ca-file="${PKI}/ca.crt" \
    --service-cluster-ip-range="${SERVICE_CIDR}" \
    --cluster-cidr="${CLUSTER_CIDR}" --allocate-node-cidrs=true \
    --use-service-account-credentials=true

  # The nodes, each through the same path. FERROKUBE_NODE=0 brings up the control plane only.
  for ((i = 1; i <= NODES; i++)); do
    node="$(local::node_name "${i}")"
    echo "${node}" >>"${NODES_FILE}"
    log "bringing up node ${node} ($(local::node_ip "${i}"))"
    node::up "${i}"
  done
  ((NODES == 0)) || network::route_services 1

  log "waiting for the components to hold their Leases"
  local lease holder
  for lease in kube-scheduler kube-controller-manager; do
    holder=""
    for ((i = 0; i < 60; i++)); do
      alive_or_die "${lease}"
      holder="$("${ASSET_KUBECTL}" --kubeconfig="${DIR}/admin.kubeconfig" -n kube-system \
        get lease "${lease}" -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null || true)"
      [[ -n "${holder}" ]] && break
      sleep 0.5
    done
    if [[ -n "${holder}" ]]; then
      log "Lease kube-system/${lease} held by ${holder}"
    else
      echo "local-up: WARNING: ${lease} runs but holds no Lease after 30 s (see ${LOGS}/${lease}.log)" >&2
    fi
  done

  for node in $(local::nodes); do node::wait_ready "${node}"; done

  if [[ "${DNS}" == 1 ]]; then
    log "deploying the cluster DNS (ferrokube-dns as kube-system/coredns, Service kube-dns at ${CLUSTER_DNS})"
    dns::deploy "${ASSET_KUBECTL}" "${DIR}/admin.kubeconfig" "${IMAGE}" "${CLUSTER_DNS}" cluster.local |
      sed 's/^/local-up: /'
    dns::wait "${ASSET_KUBECTL}" "${DIR}/admin.kubeconfig" 180s | sed 's/^/local-up: /'
  fi

  echo
  echo "ferrokube local cluster is up: ${NODES} node(s) (state in ${DIR}; stop it with hack/local-down.sh)."
  echo "export KUBECONFIG=${DIR}/admin.kubeconfig"
}

main "$@"
