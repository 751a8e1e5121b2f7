#!/usr/bin/env bash
# The shape of hack/kubeadm-up.sh's cluster, kind's without containers: its own bridge and
# /24 (so it can run beside hack/local-up.sh's), kind's node names (<cluster>-control-plane,
# <cluster>-worker, -worker2, …), and the kubeadm configuration kind writes for v1.35.
# Sourced after local.sh, whose constants it overrides.

CLUSTER_NAME=fkadm
NODE_NET="10.201.0"
HOST_IP="${NODE_NET}.1"
BRIDGE="fkadm0"
VETH_PREFIX="fkadmv"
CGROUP_PARENT="ferrokube-kubeadm"
ETCD_PORT=2379
ETCD_PEER_PORT=2380
ETCD_URL="http://${HOST_IP}:${ETCD_PORT}"
# kind's well-known bootstrap token.
BOOTSTRAP_TOKEN="abcdef.0123456789abcdef"

# kind's names: node 1 is the control plane, then the workers.
local::node_name() {
  case "$1" in
    1) echo "${CLUSTER_NAME}-control-plane" ;;
    2) echo "${CLUSTER_NAME}-worker" ;;
    *) echo "${CLUSTER_NAME}-worker$(($1 - 1))" ;;
  esac
}

# The control plane's endpoint: node 1's address.
kubeadm::endpoint() { echo "$(local::node_ip 1):6443"; }

# The KubeletConfiguration and KubeProxyConfiguration kind gives kubeadm (cluster-wide: every
# node's kubelet gets it from the kubelet-config ConfigMap), with cgroupfs for the driver.
kubeadm::component_configs() {
  cat <<YAML
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
imageGCHighThresholdPercent: 100
evictionHard:
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
conntrack:
  maxPerCore: 0
iptables:
  minSyncPeriod: 1s
YAML
}

# Node $1's registration: its CRI socket, its address and its own cgroup root (all nodes share
# this machine's cgroups).
kubeadm::node_registration() {
  local node="$1"
  cat <<YAML
nodeRegistration:
  name: ${node}
  criSocket: unix://$(node::containerd_socket "${node}")
  kubeletExtraArgs:
  - name: node-ip
    value: "$(local::node_ip "$(local::node_index "${node}")")"
  - name: cgroup-root
    value: /${CGROUP_PARENT}/${node}
  - name: provider-id
    value: kind://ferrokube/${CLUSTER_NAME}/${node}
YAML
}

# `kubeadm init`'s configuration for control-plane node $1 at version $2.
kubeadm::config() {
  local node="$1" version="$2" ip
  ip="$(local::node_ip 1)"
  cat <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: ${CLUSTER_NAME}
kubernetesVersion: ${version}
controlPlaneEndpoint: $(kubeadm::endpoint)
apiServer:
  certSANs: [localhost, 127.0.0.1, ${HOST_IP}]
controllerManager:
  extraArgs:
  - name: enable-hostpath-provisioner
    value: "true"
networking:
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/16
etcd:
  external:
    endpoints: [${ETCD_URL}]
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: ${BOOTSTRAP_TOKEN}
localAPIEndpoint:
  advertiseAddress: ${ip}
  bindPort: 6443
$(kubeadm::node_registration "${node}")
YAML
  kubeadm::component_configs
}

# `kubeadm join`'s configuration for worker node $1.
kubeadm::join_config() {
  local node="$1"
  cat <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: $(kubeadm::endpoint)
    token: ${BOOTSTRAP_TOKEN}
    unsafeSkipCAVerification: true
$(kubeadm::node_registration "${node}")
YAML
}
