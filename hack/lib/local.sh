#!/usr/bin/env bash
# What hack/local-up.sh, hack/local-node.sh and hack/local-down.sh share: the state layout,
# the cluster's addresses and node names, and starting/stopping the processes they record.
#
# The cluster's shape (kind's, without containers):
#   control plane  on the host: etcd, kube-apiserver (bound to and advertising ${HOST_IP}),
#                  kube-scheduler, kube-controller-manager
#   node i (1..N)  network namespace <cluster>-worker, -worker2, … with eth0 at
#                  ${NODE_NET}.(i+1)/24 on the host bridge ${BRIDGE} (${HOST_IP}), running its
#                  own containerd, kubelet and kube-proxy
#   pods           the node's podCIDR (node-ipam, from ${CLUSTER_CIDR}), on the node's cni0;
#                  the host routes each podCIDR to its node

DIR="${FERROKUBE_LOCAL_DIR:-/tmp/ferrokube-local}"
PKI="${DIR}/pki"
LOGS="${DIR}/logs"
PIDS="${DIR}/pids"          # one line per process: NAME PID BINARY
NODES_FILE="${DIR}/node-names"   # one node name per line, in creation order
MARKER="${DIR}/.ferrokube-local"

CLUSTER_NAME="${FERROKUBE_CLUSTER_NAME:-ferrokube}"
SERVICE_CIDR="10.96.0.0/16"
CLUSTER_CIDR="10.244.0.0/16"
CLUSTER_DNS="10.96.0.10"
NODE_NET="10.200.0"          # the nodes' /24: the host bridge is .1, node i is .(i+1)
HOST_IP="${NODE_NET}.1"
BRIDGE="ferrokube0"
MAX_NODES=50
# The kubelets' cgroups: <root>/<node>/kubepods/…, so each node's pods stay apart.
CGROUP_PARENT="ferrokube-local"

# Empties DIR, refusing to touch a directory local-up did not make.
local::reset_dir() {
  if [[ -e "${DIR}" && ! -f "${MARKER}" ]] && [[ -n "$(ls -A "${DIR}" 2>/dev/null)" ]]; then
    echo "local-up: ${DIR} exists and was not made by local-up; refusing to wipe it" >&2
    exit 1
  fi
  rm -rf "${DIR}"
  mkdir -p "${DIR}"
  touch "${MARKER}"
}

# The name of node $1 (1-based), as kind names workers: <cluster>-worker, <cluster>-worker2, …
local::node_name() {
  if (($1 == 1)); then echo "${CLUSTER_NAME}-worker"; else echo "${CLUSTER_NAME}-worker$1"; fi
}

# The index of node $1 (its name), or fails.
local::node_index() {
  local i
  for ((i = 1; i <= MAX_NODES; i++)); do
    [[ "$(local::node_name "${i}")" == "$1" ]] && { echo "${i}"; return 0; }
  done
  return 1
}

# The address of node $1 (its index) on the node network.
local::node_ip() { echo "${NODE_NET}.$(($1 + 1))"; }

# The nodes local-up made, one name per line (none before it ran).
local::nodes() { [[ -f "${NODES_FILE}" ]] && cat "${NODES_FILE}" || true; }

# Where node $1 keeps its state: containerd, CNI config and IPAM, kubelet root, pod logs.
local::node_dir() { echo "${DIR}/nodes/$1"; }

# The network namespace's path of node $1.
local::netns() { echo "/run/netns/$1"; }

# Where a node with a mount namespace of its own (hack/kubeadm-up.sh's nodes, whose
# /etc/kubernetes and /var/lib/kubelet are their own) keeps it pinned.
local::mountns() { echo "$(local::node_dir "$1")/mnt"; }

# nsenter's options to enter node $1: its network namespace, and its mount namespace when it
# has one (local-up's nodes share the host's).
local::node_namespaces() {
  local opts="--net=$(local::netns "$1")"
  [[ ! -f "$(local::mountns "$1")" ]] || opts+=" --mount=$(local::mountns "$1")"
  echo "${opts}"
}

log() { echo "${LOG_PREFIX:-local}: $*"; }

# The supervisor every component runs under (restarted on exit; hack/lib/supervise.sh).
SUPERVISE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/supervise.sh"
# What a supervisor's pid runs (recorded in the pid file instead of the component).
SUPERVISOR_EXE="$(readlink -f "$(command -v bash)")"

# start NAME BINARY ARGS...: starts BINARY detached under hack/lib/supervise.sh (restarted
# whenever it exits, as systemd or static pods would), in a process group of its own, output
# appended to logs/NAME.log, and records NAME PID BASH in the pid file (the supervisor's pid:
# stopping it stops the component). NAME may be NODE/COMPONENT (log in logs/NODE/).
start() {
  local name="$1"; shift
  mkdir -p "$(dirname "${LOGS}/${name}.log")"
  nohup setsid "${SUPERVISOR_EXE}" "${SUPERVISE}" "${name}" "$@" </dev/null \
    >>"${LOGS}/${name}.log" 2>&1 &
  local pid=$! i
  # nohup and setsid exec on to the supervisor's bash: wait until it runs, so that whoever
  # checks the recorded pid next (local::running) sees it.
  for ((i = 0; i < 100; i++)); do
    local::ours "${pid}" "${SUPERVISOR_EXE}" && break
    sleep 0.01
  done
  echo "${name} ${pid} ${SUPERVISOR_EXE}" >>"${PIDS}"
  log "started ${name} (pid ${pid}, log ${LOGS}/${name}.log)"
}

# start_in_node NODE COMPONENT BINARY ARGS...: as start, inside NODE's network namespace (and
# its mount namespace if it has one; local-up's nodes keep the host's, and either way the
# kubelet's volume mounts and containerd's see one another, as on a real node).
start_in_node() {
  local node="$1" component="$2" binary="$3"; shift 3
  # shellcheck disable=SC2046 # the namespace options are words
  start "${node}/${component}" nsenter $(local::node_namespaces "${node}") -- "${binary}" "$@"
}

# The pid last recorded for NAME, or nothing.
local::pid_of() {
  [[ -f "${PIDS}" ]] || return 0
  awk -v n="$1" '$1 == n { pid = $2 } END { if (pid) print pid }' "${PIDS}"
}

# Whether pid $1 still runs binary $2 (guards against pid reuse). A binary rebuilt since
# (cargo replaces the file) reads as "PATH (deleted)": still ours.
local::ours() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe% (deleted)}" == "$2" ]]
}

# Fails with the log tail if process NAME (last pid recorded) has exited, or its supervisor
# has had to restart it three times (a component that cannot start).
alive_or_die() {
  local name="$1" pid restarts
  pid="$(local::pid_of "${name}")"
  # Restarts since this supervisor started (the log also holds earlier runs').
  restarts="$(awk -v n="${name}" '$0 == "supervise: " n " started" { c = 0 }
    index($0, "supervise: " n " exited") == 1 { c++ } END { print c + 0 }' "${LOGS}/${name}.log" 2>/dev/null)"
  if [[ -z "${pid}" ]] || ! kill -0 "${pid}" 2>/dev/null || ((${restarts:-0} >= 3)); then
    echo "${LOG_PREFIX:-local}: ${name} exited (restarted ${restarts:-0} times); last lines of ${LOGS}/${name}.log:" >&2
    tail -n 20 "${LOGS}/${name}.log" >&2
    exit 1
  fi
}
# Stops pid $2 recorded as NAME $1 with binary $3: SIGTERM, then SIGKILL after 10 s. A pid
# that no longer runs its binary is left alone.
local::stop_pid() {
  local name="$1" pid="$2" binary="$3" i
  if ! local::ours "${pid}" "${binary}"; then
    log "${name} (pid ${pid}) was not running"
    return 0
  fi
  kill -TERM "${pid}" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    local::ours "${pid}" "${binary}" || break
    sleep 0.1
  done
  if local::ours "${pid}" "${binary}"; then
    # The supervisor leads its process group: the component goes with it.
    kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "${pid}" 2>/dev/null || true
    log "${name} (pid ${pid}) killed after 10 s"
  else
    log "stopped ${name} (pid ${pid})"
  fi
}
# Stops every process recorded under NAME $1 (the latest and any earlier ones).
local::stop() {
  [[ -f "${PIDS}" ]] || return 0
  local name pid binary
  while read -r name pid binary; do
    if [[ "${name}" == "$1" ]]; then local::stop_pid "${name}" "${pid}" "${binary}"; fi
  done < <(tac "${PIDS}")
}

# Stops every process recorded, in reverse start order (components first, the API server and
# etcd last), and forgets them.
local::stop_all() {
  if [[ ! -f "${PIDS}" ]]; then
    log "no processes recorded (no ${PIDS})"
    return 0
  fi
  local entries entry name pid binary
  mapfile -t entries < <(tac "${PIDS}")
  for entry in "${entries[@]}"; do
    read -r name pid binary <<<"${entry}"
    local::stop_pid "${name}" "${pid}" "${binary}"
  done
  rm -f "${PIDS}"
}

# Whether the process last recorded as NAME still runs.
local::running() {
  [[ -f "${PIDS}" ]] || return 1
  local entry
  entry="$(awk -v n="$1" '$1 == n { e = $2 " " $3 } END { print e }' "${PIDS}")"
  [[ -n "${entry}" ]] && local::ours ${entry}
}

# Removes the cluster's state in DIR (what is mounted under it first), keeping the logs; only
# a directory a run of ours made (it has the marker).
local::remove_state() {
  [[ -f "${MARKER}" ]] || return 0
  awk -v d="${DIR}/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "${m}" 2>/dev/null || true; done
  find "${DIR}" -mindepth 1 -maxdepth 1 ! -name logs ! -name "$(basename "${MARKER}")" \
    -exec rm -rf {} +
  log "removed the cluster's state in ${DIR} (logs kept in ${LOGS})"
}

