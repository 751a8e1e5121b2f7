#!/usr/bin/env bash
# The local cluster's network, as kind + kindnet make it, without containers: one host bridge
# with an address for the control plane, one network namespace per node joined to it by a
# veth, a route on the host for each node's podCIDR, and masquerading for what leaves the
# cluster. Everything made here carries the cluster's names (bridge ${BRIDGE}, namespaces and
# nftables tables named after the cluster), and network::down removes exactly that.
# Expects local.sh.

HOST_NFT_TABLE="${CLUSTER_NAME}-local"   # ip family, on the host
NODE_NFT_TABLE="${CLUSTER_NAME}-node"    # ip family, in each node's namespace

# The host veth of node $1 (its index): `veth-<cluster>N` fits IFNAMSIZ for short names, so
# it is `fkvethN` (the bridge's ports are listed by `ip link show master ${BRIDGE}`).
network::host_veth() { echo "${VETH_PREFIX:-fkveth}$1"; }

# The host's side: the bridge with the control plane's address, forwarding on, and a
# masquerade for node and pod traffic that leaves this machine.
network::host_up() {
  if [[ ! -e "/sys/class/net/${BRIDGE}" ]]; then
    ip link add "${BRIDGE}" type bridge
  fi
  [[ "$(ip -o addr show dev "${BRIDGE}")" == *" ${HOST_IP}/24 "* ]] ||
    ip addr add "${HOST_IP}/24" dev "${BRIDGE}"
  ip link set "${BRIDGE}" up
  sysctl -qw net.ipv4.ip_forward=1
  nft -f - <<NFT
table ip ${HOST_NFT_TABLE}
delete table ip ${HOST_NFT_TABLE}
table ip ${HOST_NFT_TABLE} {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr { ${NODE_NET}.0/24, ${CLUSTER_CIDR} } oifname != "${BRIDGE}" masquerade
  }
}
NFT
}

# Node $1 (index) named $2: its namespace, eth0 on the bridge, a default route through the
# host, forwarding on, bridged pod traffic seen by netfilter (kube-proxy needs it for a pod
# reaching its own Service), and a masquerade for pod traffic that leaves the cluster CIDR
# (traffic between pods, on any node, keeps its pod IPs, as kindnet's).
network::node_up() {
  local index="$1" node="$2" ip veth
  ip="$(local::node_ip "${index}")"
  veth="$(network::host_veth "${index}")"
  [[ -e "$(local::netns "${node}")" ]] || ip netns add "${node}"
  if [[ ! -e "/sys/class/net/${veth}" ]]; then
    ip link add "${veth}" type veth peer name eth0 netns "${node}"
  fi
  ip link set "${veth}" master "${BRIDGE}" up
  ip -n "${node}" link set lo up
  [[ "$(ip -n "${node}" -o addr show dev eth0)" == *" ${ip}/24 "* ]] ||
    ip -n "${node}" addr add "${ip}/24" dev eth0
  ip -n "${node}" link set eth0 up
  ip -n "${node}" route replace default via "${HOST_IP}"
  ip netns exec "${node}" sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  ip netns exec "${node}" nft -f - <<NFT
table ip ${NODE_NFT_TABLE}
delete table ip ${NODE_NFT_TABLE}
table ip ${NODE_NFT_TABLE} {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${CLUSTER_CIDR} ip daddr != ${CLUSTER_CIDR} oifname "eth0" masquerade
  }
}
NFT
}

# Routes podCIDR $2 through node $1 (index) on the host.
network::route_pod_cidr() {
  ip route replace "$2" via "$(local::node_ip "$1")" dev "${BRIDGE}"
}

# Routes the Service CIDR through node $1 (index), so the host's connections to ClusterIPs
# meet that node's kube-proxy rules (kind's host reaches none; ours reaches them through the
# first node).
network::route_services() {
  ip route replace "${SERVICE_CIDR}" via "$(local::node_ip "$1")" dev "${BRIDGE}"
}

# Cuts node $1 (name) off the network (its host veth down) or, with `up`, joins it again.
network::link() {
  local index
  index="$(local::node_index "$1")"
  ip link set "$(network::host_veth "${index}")" "$2"
}

# Removes what network::* made: node namespaces (their veths and routes go with them), the
# bridge (the host routes through it go with it) and the host's table. Only names of this
# cluster are touched; what is already gone is skipped.
network::down() {
  local node i
  for ((i = 1; i <= MAX_NODES; i++)); do
    node="$(local::node_name "${i}")"
    if [[ -e "$(local::netns "${node}")" ]]; then
      ip netns del "${node}"
      log "removed network namespace ${node}"
    fi
    # Deleting the namespace takes its veth pair with it, though not always at once.
    ip link del "$(network::host_veth "${i}")" 2>/dev/null || true
  done
  if [[ -e "/sys/class/net/${BRIDGE}" ]]; then
    ip link del "${BRIDGE}"
    log "removed bridge ${BRIDGE}"
  fi
  nft delete table ip "${HOST_NFT_TABLE}" 2>/dev/null || true
}
