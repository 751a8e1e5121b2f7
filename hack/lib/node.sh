#!/usr/bin/env bash
# The node half of hack/local-up.sh: this machine as one ferrokube node — containerd (the
# project's config, its own socket and state under ${DIR}), the locally built busybox and
# pause images, the kubelet and kube-proxy. Expects local.sh's DIR, PKI, LOGS and
# local-up.sh's start()/log()/alive_or_die().

NODE_IP="${FERROKUBE_NODE_IP:-10.200.0.1}"   # a /32 on lo: an address of this machine only
CONTAINERD_DIR="${DIR}/containerd"
CONTAINERD_SOCK="${CONTAINERD_DIR}/containerd.sock"
CNI_CONF_DIR="${DIR}/cni/net.d"
KUBELET_DIR="${DIR}/kubelet"

# Gives this machine its node address (on lo; the kernel has no dummy module), routes the
# Service CIDR through lo so the host's connections to ClusterIPs meet kube-proxy's rules
# instead of the default route, and lets pods' traffic be forwarded.
node::network() {
  # Not `ip | grep -q`: under pipefail, grep's early exit can fail ip with SIGPIPE.
  [[ "$(ip -o addr show dev lo)" == *" ${NODE_IP}/32 "* ]] || ip addr add "${NODE_IP}/32" dev lo
  ip route replace "${SERVICE_CIDR}" dev lo src "${NODE_IP}"
  sysctl -qw net.ipv4.ip_forward=1
}

# Starts containerd with the shipped config and loads the images pods use.
node::containerd() {
  mkdir -p "${CONTAINERD_DIR}" "${CNI_CONF_DIR}"
  sed -e "s#@ROOT@#${CONTAINERD_DIR}/root#; s#@STATE@#${CONTAINERD_DIR}/state#" \
    -e "s#@SOCKET@#${CONTAINERD_SOCK}#g; s#@CNI_CONF_DIR@#${CNI_CONF_DIR}#" \
    "${ROOT}/kubelet/deploy/containerd-config.toml" >"${CONTAINERD_DIR}/config.toml"
  start containerd "$(command -v containerd)" --config "${CONTAINERD_DIR}/config.toml"
  local i
  # The socket file appears before containerd accepts on it: wait until it answers.
  for ((i = 0; i < 200; i++)); do
    alive_or_die containerd
    [[ -S "${CONTAINERD_SOCK}" ]] && ctr --address "${CONTAINERD_SOCK}" version >/dev/null 2>&1 && break
    sleep 0.1
  done
  "${BIN_DIR}/ferrokube-load-image" --containerd-address "unix://${CONTAINERD_SOCK}" \
    --builtin busybox --builtin pause | sed 's/^/local-up: /'
}

# Starts the kubelet with a KubeletConfiguration as kubeadm writes it, with kind's disk
# settings: eviction thresholds 0% (a developer machine's disk is often below upstream's
# default 15% imagefs.available, which would put the node under DiskPressure and taint it)
# and image GC off (imageGCHighThresholdPercent 100: on a full disk it would remove the
# locally imported images, which no registry can give back).
node::kubelet() {
  mkdir -p "${KUBELET_DIR}"
  cat >"${KUBELET_DIR}/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: ${PKI}/ca.crt
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
failCgroupV1: false
evictionHard:
  imagefs.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
failSwapOn: false
imageGCHighThresholdPercent: 100
healthzBindAddress: 127.0.0.1
healthzPort: 10248
YAML
  # The conflist the kubelet writes from the podCIDR goes where our containerd looks.
  FERROKUBE_CNI_CONF_DIR="${CNI_CONF_DIR}" start kubelet "${BIN_DIR}/kubelet" \
    --config="${KUBELET_DIR}/config.yaml" \
    --kubeconfig="${DIR}/kubelet.kubeconfig" \
    --container-runtime-endpoint="unix://${CONTAINERD_SOCK}" \
    --root-dir="${KUBELET_DIR}/root" \
    --hostname-override="${NODE_NAME}" \
    --node-ip="${NODE_IP}"
}

# Starts kube-proxy (nftables) for this node.
node::proxy() {
  start kube-proxy "${BIN_DIR}/kube-proxy" \
    --kubeconfig="${DIR}/kube-proxy.kubeconfig" \
    --proxy-mode=nftables \
    --cluster-cidr="${CLUSTER_CIDR}" \
    --hostname-override="${NODE_NAME}" \
    --healthz-bind-address=127.0.0.1:10256 \
    --metrics-bind-address=127.0.0.1:10249
}

# Waits for the node to be Ready.
node::wait_ready() {
  local i
  for ((i = 0; i < 120; i++)); do
    alive_or_die kubelet
    if [[ "$("${ASSET_KUBECTL}" --kubeconfig="${DIR}/admin.kubeconfig" get node "${NODE_NAME}" \
      -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]; then
      log "node ${NODE_NAME} is Ready (InternalIP ${NODE_IP})"
      return 0
    fi
    sleep 0.5
  done
  echo "local-up: WARNING: node ${NODE_NAME} not Ready after 60 s (see ${LOGS}/kubelet.log)" >&2
}

# After containerd stopped: ends the pod shims it started (they outlive containerd; found by
# our socket in their command line) and, first, their containers (each shim's children are
# the containers' first processes; killing one ends its pid namespace), then unmounts what
# they left under ${DIR}.
node::cleanup() {
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address ${CONTAINERD_SOCK}" || true); do
    pkill -KILL -P "${pid}" 2>/dev/null || true
    kill -KILL "${pid}" 2>/dev/null || true
  done
  if [[ -d "${DIR}" ]]; then
    awk -v d="${DIR}/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
      while read -r m; do umount -l "${m}" 2>/dev/null || true; done
  fi
}
