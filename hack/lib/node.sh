#!/usr/bin/env bash
# One ferrokube node of the local cluster, inside its own network namespace (network.sh):
# its containerd (the project's config; own root, state, socket and CNI config dir), the
# locally built images, its kubelet (own root dir, cgroup root, pod log dir, ports on the
# node's address) and its kube-proxy. Every node, the first included, goes through here.
# Expects local.sh and network.sh, and local-up's ROOT, BIN_DIR, ASSET_KUBECTL, API_SERVER.

# The node's containerd socket.
node::containerd_socket() { echo "$(local::node_dir "$1")/containerd/containerd.sock"; }

# Brings node $1 (index) up: network, containerd + images, kubelet, kube-proxy.
node::up() {
  local index="$1" node
  node="$(local::node_name "${index}")"
  mkdir -p "$(local::node_dir "${node}")"
  network::node_up "${index}" "${node}"
  node::containerd "${node}"
  node::load_images "${node}"
  node::kubelet "${node}"
  node::proxy "${node}"
}

# Starts node $1's containerd with the shipped config and waits until it answers.
node::containerd() {
  local node="$1" dir sock i
  dir="$(local::node_dir "${node}")/containerd"
  sock="$(node::containerd_socket "${node}")"
  mkdir -p "${dir}" "$(local::node_dir "${node}")/cni/net.d"
  rm -f "${sock}" "${sock}.ttrpc"
  sed -e "s#@ROOT@#${dir}/root#; s#@STATE@#${dir}/state#" \
    -e "s#@SOCKET@#${sock}#g; s#@CNI_CONF_DIR@#$(local::node_dir "${node}")/cni/net.d#" \
    "${ROOT}/kubelet/deploy/containerd-config.toml" >"${dir}/config.toml"
  start_in_node "${node}" containerd "$(command -v containerd)" --config "${dir}/config.toml"
  # The socket file appears before containerd accepts on it: wait until it answers.
  for ((i = 0; i < 200; i++)); do
    alive_or_die "${node}/containerd"
    [[ -S "${sock}" ]] && ctr --address "${sock}" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "${LOG_PREFIX:-local}: ${node}/containerd does not answer on ${sock} after 20 s" >&2
  exit 1
}

# Imports into node $1's containerd, without a registry: the locally built busybox and pause
# images, the ferrokube image archive when one was built (target/images), and every archive
# in $FERROKUBE_IMAGES_DIR.
node::load_images() {
  local node="$1" archives=()
  [[ -z "${FERROKUBE_IMAGE_ARCHIVE:-}" ]] || archives+=("${FERROKUBE_IMAGE_ARCHIVE}")
  if [[ -n "${FERROKUBE_IMAGES_DIR:-}" ]]; then
    shopt -s nullglob
    archives+=("${FERROKUBE_IMAGES_DIR}"/*.tar)
    shopt -u nullglob
  fi
  "${BIN_DIR}/ferrokube-load-image" --containerd-address "unix://$(node::containerd_socket "${node}")" \
    --builtin busybox --builtin pause "${archives[@]}" | sed "s#^#${LOG_PREFIX:-local}: ${node}: #"
}

# Writes node $1's KubeletConfiguration as kubeadm writes one, with kind's disk settings:
# eviction thresholds 0% (a developer machine's disk is often below upstream's default 15%
# imagefs.available, which would put the node under DiskPressure and taint it) and image GC
# off (imageGCHighThresholdPercent 100: on a full disk it would remove the locally imported
# images, which no registry can give back). Each node has its own cgroup root and pod log
# directory, since all share this machine's cgroups and filesystem.
node::kubelet_config() {
  local node="$1" dir
  dir="$(local::node_dir "${node}")"
  mkdir -p "${dir}/kubelet"
  cat >"${dir}/kubelet/config.yaml" <<YAML
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
cgroupRoot: /${CGROUP_PARENT}/${node}
clusterDNS:
- ${CLUSTER_DNS}
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
podLogsDir: ${dir}/pod-logs
YAML
}

# Starts node $1's kubelet in its namespace, opted in (FERROKUBE_CNI_BRIDGE) to the bridge
# conflist ferrokube's kubelet writes from the podCIDR — upstream's writes none, so without
# it the node stays NotReady. It goes where the node's containerd looks, with host-local's
# allocations kept per node and no masquerade by the bridge plugin (network::node_up
# masquerades only what leaves the cluster).
node::kubelet() {
  local node="$1" dir index
  dir="$(local::node_dir "${node}")"
  index="$(local::node_index "${node}")"
  [[ -f "${dir}/kubelet/config.yaml" ]] || node::kubelet_config "${node}"
  FERROKUBE_CNI_BRIDGE=cni0 FERROKUBE_CNI_CONF_DIR="${dir}/cni/net.d" \
    FERROKUBE_CNI_IPAM_DIR="${dir}/cni/ipam" FERROKUBE_CNI_IP_MASQ=false \
    start_in_node "${node}" kubelet "${BIN_DIR}/kubelet" \
    --config="${dir}/kubelet/config.yaml" \
    --kubeconfig="${dir}/kubelet.kubeconfig" \
    --container-runtime-endpoint="unix://$(node::containerd_socket "${node}")" \
    --root-dir="${dir}/kubelet/root" \
    --hostname-override="${node}" \
    --node-ip="$(local::node_ip "${index}")"
}

# Starts node $1's kube-proxy (nftables) in its namespace, on upstream's default ports.
node::proxy() {
  local node="$1"
  start_in_node "${node}" kube-proxy "${BIN_DIR}/kube-proxy" \
    --kubeconfig="${DIR}/kube-proxy.kubeconfig" \
    --proxy-mode=nftables \
    --cluster-cidr="${CLUSTER_CIDR}" \
    --hostname-override="${node}"
}

# Prints node $1's podCIDR once node-ipam has given it one (waits up to 60 s).
node::pod_cidr() {
  local i cidr
  for ((i = 0; i < 120; i++)); do
    cidr="$("${ASSET_KUBECTL}" --kubeconfig="${DIR}/admin.kubeconfig" get node "$1" \
      -o 'jsonpath={.spec.podCIDR}' 2>/dev/null || true)"
    [[ -n "${cidr}" ]] && { echo "${cidr}"; return 0; }
    sleep 0.5
  done
  return 1
}

# Waits for node $1 to be Ready, then routes its podCIDR from the host.
node::wait_ready() {
  local node="$1" i cidr
  for ((i = 0; i < 120; i++)); do
    alive_or_die "${node}/kubelet"
    if [[ "$("${ASSET_KUBECTL}" --kubeconfig="${DIR}/admin.kubeconfig" get node "${node}" \
      -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]; then
      break
    fi
    sleep 0.5
  done
  ((i < 120)) || echo "${LOG_PREFIX:-local}: WARNING: node ${node} not Ready after 60 s (see ${LOGS}/${node}/kubelet.log)" >&2
  if cidr="$(node::pod_cidr "${node}")"; then
    network::route_pod_cidr "$(local::node_index "${node}")" "${cidr}"
    log "node ${node} is Ready (InternalIP $(local::node_ip "$(local::node_index "${node}")"), podCIDR ${cidr})"
  else
    echo "${LOG_PREFIX:-local}: WARNING: node ${node} has no podCIDR after 60 s (is node-ipam running?)" >&2
  fi
}

# Stops node $1's components (all of them, or those named after it) in reverse start order;
# with containerd, also its pods (node::cleanup).
node::stop() {
  local node="$1"; shift
  local components=("$@") c
  ((${#components[@]})) || components=(kube-proxy kubelet containerd)
  for c in "${components[@]}"; do
    local::stop "${node}/${c}"
    [[ "${c}" != containerd ]] || node::cleanup "${node}"
  done
}

# After node $1's containerd stopped: ends the pod shims it started (they outlive containerd;
# found by its socket in their command line) and, first, their containers (each shim's
# children are the containers' first processes; killing one ends its pid namespace), removes
# the pods' network namespaces containerd pinned in /run/netns, then unmounts what they left
# under the node's directory.
node::cleanup() {
  local node="$1" sock pid child ns pinned dir i shims
  sock="$(node::containerd_socket "${node}")"
  declare -A pod_netns=()
  shims="$(pgrep -f "containerd-shim-runc-v2 .*-address ${sock}( |$)" || true)"
  for pid in ${shims}; do
    for child in $(pgrep -P "${pid}" || true); do
      ns="$(stat -L -c %i "/proc/${child}/ns/net" 2>/dev/null)" && pod_netns["${ns}"]=1
    done
    pkill -KILL -P "${pid}" 2>/dev/null || true
    kill -KILL "${pid}" 2>/dev/null || true
  done
  # SIGKILL is not instant: wait (up to 5 s) until they are gone.
  for ((i = 0; i < 50; i++)); do
    [[ -n "$(pgrep -f "containerd-shim-runc-v2 .*-address ${sock}( |$)" || true)" ]] || break
    sleep 0.1
  done
  shopt -s nullglob
  for pinned in /run/netns/cni-*; do
    ns="$(stat -L -c %i "${pinned}" 2>/dev/null)" || continue
    if [[ -n "${pod_netns[${ns}]:-}" ]]; then
      umount "${pinned}" 2>/dev/null || true
      rm -f "${pinned}"
    fi
  done
  shopt -u nullglob
  dir="$(local::node_dir "${node}")"
  if [[ -d "${dir}" ]]; then
    awk -v d="${dir}/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
      while read -r m; do umount -l "${m}" 2>/dev/null || true; done
  fi
}

# Removes node $1's cgroups (empty once its processes are gone), deepest first, in every
# cgroup v1 hierarchy and the unified one.
node::remove_cgroups() {
  local root
  for root in /sys/fs/cgroup/*/"${CGROUP_PARENT}/$1" /sys/fs/cgroup/"${CGROUP_PARENT}/$1"; do
    [[ -d "${root}" ]] || continue
    find "${root}" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

# Removes every node's cgroups, then the cluster's cgroup parent once empty.
node::remove_all_cgroups() {
  local node root
  for node in $(local::nodes); do
    node::remove_cgroups "${node}"
  done
  for root in /sys/fs/cgroup/*/"${CGROUP_PARENT}" /sys/fs/cgroup/"${CGROUP_PARENT}"; do
    [[ ! -d "${root}" ]] || rmdir "${root}" 2>/dev/null || log "cgroup ${root} is not empty; left"
  done
}

