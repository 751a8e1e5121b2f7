#!/usr/bin/env bash
# Brings up a local ferrokube cluster on this machine, everything on 127.0.0.1:
#   etcd + an upstream kube-apiserver (found as envtest finds it: hack/lib/assets.sh),
#   a PKI and one kubeconfig per component made with openssl,
#   then every ferrokube component that exists so far.
# State (PKI, kubeconfigs, etcd data, logs, pids) lives in ${FERROKUBE_LOCAL_DIR:-/tmp/ferrokube-local}
# and is wiped at each start; hack/local-down.sh stops exactly the processes started here.
#
# Environment: FERROKUBE_LOCAL_DIR, FERROKUBE_API_PORT (6443), FERROKUBE_ETCD_PORT (2379),
# FERROKUBE_ETCD_PEER_PORT (2380), FERROKUBE_SKIP_BUILD=1 (use the binaries already built),
# FERROKUBE_BIN_DIR (where the ferrokube binaries are; default target/debug),
# KUBEBUILDER_ASSETS (where kube-apiserver, etcd and kubectl are).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${ROOT}/hack/lib/assets.sh"
source "${ROOT}/hack/lib/pki.sh"
source "${ROOT}/hack/lib/local.sh"
source "${ROOT}/hack/lib/node.sh"

API_PORT="${FERROKUBE_API_PORT:-6443}"
ETCD_PORT="${FERROKUBE_ETCD_PORT:-2379}"
ETCD_PEER_PORT="${FERROKUBE_ETCD_PEER_PORT:-2380}"
SCHEDULER_PORT=10259          # upstream default secure ports
CONTROLLER_MANAGER_PORT=10257
SERVICE_CIDR="10.96.0.0/16"
CLUSTER_CIDR="10.244.0.0/16"
NODE_NAME="$(hostname)"
BIN_DIR="${FERROKUBE_BIN_DIR:-${CARGO_TARGET_DIR:-${ROOT}/target}/debug}"
# The ferrokube binaries local-up starts (the node's too unless FERROKUBE_NODE=0).
COMPONENTS=(kube-scheduler kube-controller-manager)
[[ "${FERROKUBE_NODE:-1}" != 1 ]] || COMPONENTS+=(kubelet kube-proxy ferrokube-load-image)

log() { echo "local-up: $*"; }

# Starts "$@" detached, output in logs/NAME.log, and records NAME PID BINARY in the pid file.
start() {
  local name="$1"; shift
  nohup "$@" </dev/null >"${LOGS}/${name}.log" 2>&1 &
  local pid=$!
  echo "${name} ${pid} $(readlink -f "$1")" >>"${PIDS}"
  log "started ${name} (pid ${pid}, log ${LOGS}/${name}.log)"
}

# Fails with the log tail if process NAME (pid in the pid file) has exited.
alive_or_die() {
  local name="$1" pid
  pid="$(awk -v n="${name}" '$1 == n { print $2 }' "${PIDS}")"
  if ! kill -0 "${pid}" 2>/dev/null; then
    echo "local-up: ${name} exited; last lines of ${LOGS}/${name}.log:" >&2
    tail -n 20 "${LOGS}/${name}.log" >&2
    exit 1
  fi
}

port_free_or_die() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "local-up: 127.0.0.1:$1 is in use ($2); stop what uses it or set another port" >&2
    exit 1
  fi
}

main() {
  assets::require kube-apiserver etcd kubectl
  command -v openssl >/dev/null || { echo "local-up: openssl missing: run hack/install-deps.sh" >&2; exit 1; }

  # A previous run: stop exactly what it started, then wipe its state (stale sockets, data).
  if [[ -f "${PIDS}" ]]; then
    log "stopping the previous local cluster first"
    "${ROOT}/hack/local-down.sh"
  fi
  local::reset_dir
  mkdir -p "${PKI}" "${LOGS}" "${DIR}/etcd"
  : >"${PIDS}"

  for p in "${API_PORT}:kube-apiserver" "${ETCD_PORT}:etcd" "${ETCD_PEER_PORT}:etcd peer" \
    "${SCHEDULER_PORT}:kube-scheduler" "${CONTROLLER_MANAGER_PORT}:kube-controller-manager" \
    10248:kubelet-healthz 10250:kubelet 10249:kube-proxy-metrics 10256:kube-proxy-healthz; do
    port_free_or_die "${p%%:*}" "${p#*:}"
  done

  if [[ "${FERROKUBE_SKIP_BUILD:-0}" != 1 ]]; then
    # Only what is started here, so a half-written crate elsewhere cannot block the cluster.
    log "building ${COMPONENTS[*]}"
    local bins=()
    for c in "${COMPONENTS[@]}"; do bins+=(--bin "${c}"); done
    (cd "${ROOT}" && cargo build --quiet "${bins[@]}")
  fi

  log "making the PKI in ${PKI}"
  pki::ca "${PKI}"
  pki::serving "${PKI}" apiserver kube-apiserver \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  pki::service_account "${PKI}"
  # Front proxy (as kubeadm): published in kube-system/extension-apiserver-authentication,
  # where the components' delegated authentication looks for it.
  pki::ca "${PKI}" front-proxy-ca front-proxy-ca
  pki::client "${PKI}" front-proxy-client front-proxy-client "" front-proxy-ca
  # What the apiserver presents to kubelets for logs/exec/port-forward (kubeadm's name).
  pki::client "${PKI}" apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  local server="https://127.0.0.1:${API_PORT}" user stem group
  for entry in "admin|kubernetes-admin|system:masters" \
    "kube-scheduler|system:kube-scheduler|" \
    "kube-controller-manager|system:kube-controller-manager|" \
    "kube-proxy|system:kube-proxy|" \
    "kubelet|system:node:${NODE_NAME}|system:nodes"; do
    IFS='|' read -r stem user group <<<"${entry}"
    pki::client "${PKI}" "${stem}" "${user}" "${group}"
    pki::kubeconfig "${DIR}/${stem}.kubeconfig" "${server}" "${PKI}/ca.crt" \
      "${PKI}/${stem}.crt" "${PKI}/${stem}.key" "${user}"
  done

  start etcd "${ASSET_ETCD}" --name=local --data-dir="${DIR}/etcd" \
    --listen-client-urls="http://127.0.0.1:${ETCD_PORT}" \
    --advertise-client-urls="http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster="local=http://127.0.0.1:${ETCD_PEER_PORT}"

  # With a loopback advertise address the endpoint reconciler cannot publish the `kubernetes`
  # Service (see NODE-ENVIRONMENT.md). KUBELET/KUBE-PROXY (later issue): give this machine a
  # node address on lo (e.g. a /32 in 10.200.0.0/16), advertise it, drop the reconciler flag.
  start kube-apiserver "${ASSET_KUBE_APISERVER}" \
    --etcd-servers="http://127.0.0.1:${ETCD_PORT}" \
    --bind-address=127.0.0.1 --secure-port="${API_PORT}" \
    --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
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
  local i
  for ((i = 0; i < 240; i++)); do
    alive_or_die etcd
    alive_or_die kube-apiserver
    if [[ "$(curl -sf --max-time 2 --cacert "${PKI}/ca.crt" --cert "${PKI}/admin.crt" \
      --key "${PKI}/admin.key" "${server}/readyz" 2>/dev/null)" == ok ]]; then
      break
    fi
    sleep 0.5
  done
  ((i < 240)) || { echo "local-up: kube-apiserver not ready after 120 s" >&2; tail -n 20 "${LOGS}/kube-apiserver.log" >&2; exit 1; }
  log "kube-apiserver ready at ${server}"

  start kube-scheduler "${BIN_DIR}/kube-scheduler" \
    --kubeconfig="${DIR}/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="${DIR}/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="${DIR}/kube-scheduler.kubeconfig" \
    --leader-elect=true \
    --bind-address=127.0.0.1 --secure-port="${SCHEDULER_PORT}"

  local kcm_flags=(
    --kubeconfig="${DIR}/kube-controller-manager.kubeconfig"
    --authentication-kubeconfig="${DIR}/kube-controller-manager.kubeconfig"
    --authorization-kubeconfig="${DIR}/kube-controller-manager.kubeconfig"
    --leader-elect=true
    --bind-address=127.0.0.1 --secure-port="${CONTROLLER_MANAGER_PORT}"
    --cluster-signing-cert-file="${PKI}/ca.crt" --cluster-signing-key-file="${PKI}/ca.key"
    --service-account-private-key-file="${PKI}/sa.key"
    --root-ca-file="${PKI}/ca.crt"
    --service-cluster-ip-range="${SERVICE_CIDR}"
    --cluster-cidr="${CLUSTER_CIDR}" --allocate-node-cidrs=true
  )
  # Per-controller service accounts, as kubeadm runs upstream, once our kcm implements it.
  if "${BIN_DIR}/kube-controller-manager" --help 2>&1 | grep -q -- '--use-service-account-credentials'; then
    kcm_flags+=(--use-service-account-credentials=true)
  fi
  start kube-controller-manager "${BIN_DIR}/kube-controller-manager" "${kcm_flags[@]}"

  # This machine as the cluster's node: containerd + images, kubelet, kube-proxy.
  # FERROKUBE_NODE=0 brings up the control plane only.
  if [[ "${FERROKUBE_NODE:-1}" == 1 ]]; then
    node::network
    node::containerd
    node::kubelet
    node::proxy
  fi

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

  [[ "${FERROKUBE_NODE:-1}" != 1 ]] || node::wait_ready

  echo
  echo "ferrokube local cluster is up (state in ${DIR}; stop it with hack/local-down.sh)."
  echo "export KUBECONFIG=${DIR}/admin.kubeconfig"
}

main "$@"
