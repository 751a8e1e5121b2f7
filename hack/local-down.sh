#!/usr/bin/env bash
# Removes everything hack/local-up.sh made: the processes it started (the pids it saved, and
# only while they still run the binary recorded at start), the pods' processes and network
# namespaces, the nodes' network namespaces, the bridge and its routes, the host's nftables
# table, mounts under the state directory, the nodes' cgroups and the state itself (etcd
# data, PKI, node directories). The logs stay in ${FERROKUBE_LOCAL_DIR:-/tmp/ferrokube-local}/logs
# for inspection; local-up wipes them at its next start.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_PREFIX=local-down
source "${ROOT}/hack/lib/local.sh"
source "${ROOT}/hack/lib/network.sh"
source "${ROOT}/hack/lib/node.sh"

local::stop_all

# Pods outlive containerd in their shims: end the ones each node's containerd started.
for node in $(local::nodes); do
  node::cleanup "${node}"
done
network::down
node::remove_all_cgroups

# The state, once nothing is mounted under it any more; the logs stay.
local::remove_state
