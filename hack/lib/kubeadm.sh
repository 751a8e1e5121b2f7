#!/usr/bin/env bash
# A node of a kubeadm-made cluster (hack/kubeadm-up.sh), as kind makes one without its
# container: a network namespace (network.sh) and a mount namespace of its own, in which
# /etc/kubernetes, /var/lib/kubelet, the pod log directories and the hostPath directories
# kubeadm's static pods create are the node's own directories; its containerd; and a stand-in
# for the kubelet's systemd unit with kubeadm's drop-in (10-kubeadm.conf), which starts the
# kubelet once kubeadm has written its files and restarts it whenever it exits.
# Expects local.sh, network.sh and node.sh with kubeadm-up's DIR, BIN_DIR and constants.

# What each node has of its own, bind-mounted from its directory inside its mount namespace.
KUBEADM_PRIVATE_DIRS=(/etc/kubernetes /var/lib/kubelet /var/log/pods /var/log/containers
  /etc/pki /usr/libexec/kubernetes)
# Directories created on the host only to be mount points, removed by kubeadm-down.
KUBEADM_CREATED="${DIR}/created-mountpoints"

# Runs a command inside node $1's namespaces.
kubeadm::in_node() {
  local node="$1"; shift
  # shellcheck disable=SC2046 # the options are words
  nsenter $(local::node_namespaces "${node}") -- "$@"
}

# Node $1 (index) named $2: its network, then a pinned mount namespace (slave: the host's
# mounts reach it, its own stay inside) with the private directories bound in.
kubeadm::node_namespaces() {
  local index="$1" node="$2" dir mnt d
  dir="$(local::node_dir "${node}")"
  mnt="$(local::mountns "${node}")"
  mkdir -p "${dir}"
  network::node_up "${index}" "${node}"
  # A namespace can be pinned only on a mount that does not propagate: the state directory
  # is made one (bound onto itself, private) once.
  if ! awk -v d="${DIR}" '$2 == d { found = 1 } END { exit !found }' /proc/mounts; then
    mount --bind "${DIR}" "${DIR}"
    mount --make-private "${DIR}"
  fi
  if [[ ! -f "${mnt}" ]]; then
    touch "${mnt}"
    unshare --mount="${mnt}" --propagation slave true
  fi
  for d in "${KUBEADM_PRIVATE_DIRS[@]}"; do
    if [[ ! -d "${d}" ]]; then
      mkdir -p "${d}"
      echo "${d}" >>"${KUBEADM_CREATED}"
    fi
    mkdir -p "${dir}/fs${d}"
    kubeadm::in_node "${node}" mount --bind "${dir}/fs${d}" "${d}"
  done
}

# Loads node $1's images: pause and busybox, the control plane's images as kubeadm names
# them for version $2 — kube-apiserver made of the kube-apiserver binary found, and the
# ferrokube image (archive $3) as kube-controller-manager, kube-scheduler and kube-proxy.
kubeadm::load_images() {
  local node="$1" version="$2" archive="$3" apiserver="$4"
  local reg=registry.k8s.io
  "${BIN_DIR}/ferrokube-load-image" --containerd-address "unix://$(node::containerd_socket "${node}")" \
    --builtin busybox --builtin pause \
    --binary-image "${reg}/kube-apiserver:${version}=${apiserver}" \
    --tag "ferrokube:local=${reg}/kube-controller-manager:${version}" \
    --tag "ferrokube:local=${reg}/kube-scheduler:${version}" \
    --tag "ferrokube:local=${reg}/kube-proxy:${version}" \
    "${archive}" | sed "s#^#${LOG_PREFIX}: ${node}: #"
}

# The stand-in for systemd's kubelet.service with kubeadm's drop-in, for node $1: once
# kubeadm wrote /var/lib/kubelet/config.yaml, runs the kubelet as the drop-in does —
#   kubelet --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf
#           --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml
#           $KUBELET_KUBEADM_ARGS (from /var/lib/kubelet/kubeadm-flags.env, read at each start)
# — supervised like every component (started again whenever it exits: Restart=always), and
# recorded as <node>/kubelet.
kubeadm::kubelet_service() {
  local node="$1" dir
  dir="$(local::node_dir "${node}")"
  # The bridge CNI config is ferrokube's stand-in for kind's kindnet: opted in, per node.
  # shellcheck disable=SC2016,SC2046 # expanded by the unit's shell at each start; words
  FS="${dir}/fs" KUBELET="${BIN_DIR}/kubelet" FERROKUBE_CNI_BRIDGE=cni0 \
    FERROKUBE_CNI_CONF_DIR="${dir}/cni/net.d" FERROKUBE_CNI_IPAM_DIR="${dir}/cni/ipam" \
    FERROKUBE_CNI_IP_MASQ=false start "${node}/kubelet" bash -c '
      until [[ -f "${FS}/var/lib/kubelet/config.yaml" ]]; do sleep 1; done
      KUBELET_KUBEADM_ARGS=""
      [[ ! -f "${FS}/var/lib/kubelet/kubeadm-flags.env" ]] || source "${FS}/var/lib/kubelet/kubeadm-flags.env"
      # shellcheck disable=SC2086 # the flags are words, as systemd splits them
      exec nsenter "$@" -- "${KUBELET}" --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
        --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \
        ${KUBELET_KUBEADM_ARGS}' kubelet.service $(local::node_namespaces "${node}")
}
