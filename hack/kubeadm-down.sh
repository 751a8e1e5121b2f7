#!/usr/bin/env bash
# Removes everything hack/kubeadm-up.sh made: the kubelets (under their supervisors), the pods'
# processes (each node's containerd shims) and network namespaces, containerd and etcd (by the
# pids saved), the nodes' mount and network namespaces, the bridge, routes and nftables table,
# the nodes' cgroups, the mount points it had to create on the host, and the state. The logs
# stay in ${FERROKUBE_KUBEADM_DIR:-/tmp/ferrokube-kubeadm}/logs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_PREFIX=kubeadm-down
export FERROKUBE_LOCAL_DIR="${FERROKUBE_KUBEADM_DIR:-/tmp/ferrokube-kubeadm}"
source "${ROOT}/hack/lib/local.sh"
source "${ROOT}/hack/lib/kubeadm-cluster.sh"
source "${ROOT}/hack/lib/network.sh"
source "${ROOT}/hack/lib/node.sh"
source "${ROOT}/hack/lib/kubeadm.sh"

local::stop_all
for node in $(local::nodes); do
  node::cleanup "${node}"
  mnt="$(local::mountns "${node}")"
  if [[ -f "${mnt}" ]]; then
    umount "${mnt}" 2>/dev/null || umount -l "${mnt}" 2>/dev/null || true
    rm -f "${mnt}"
  fi
done
network::down
node::remove_all_cgroups
if [[ -f "${KUBEADM_CREATED}" ]]; then
  while read -r d; do rmdir "${d}" 2>/dev/null || log "${d} is not empty; left"; done <"${KUBEADM_CREATED}"
fi
# The state directory was bound onto itself (private) to pin the mount namespaces; a lazy
# unmount detaches it with what is mounted below.
if awk -v d="${DIR}" '$2 == d { found = 1 } END { exit !found }' /proc/mounts; then
  umount -l "${DIR}"
fi
local::remove_state
