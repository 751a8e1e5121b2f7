#!/usr/bin/env bash
# Stops exactly the processes hack/local-up.sh started (the pids it saved), nothing else: a
# pid whose executable is no longer the binary recorded at start is left alone.
# State and logs stay in ${FERROKUBE_LOCAL_DIR:-/tmp/ferrokube-local} for inspection.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${ROOT}/hack/lib/local.sh"
source "${ROOT}/hack/lib/node.sh"

if [[ ! -f "${PIDS}" ]]; then
  echo "local-down: nothing to stop (no ${PIDS})"
  exit 0
fi

# Ours: the pid still runs the binary recorded at start (guards against pid reuse).
# A binary rebuilt since (cargo replaces the file) reads as "PATH (deleted)": still ours.
ours() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe% (deleted)}" == "$2" ]]
}

# Components first, the apiserver and etcd last: reverse start order.
mapfile -t entries < <(tac "${PIDS}")
for entry in "${entries[@]}"; do
  read -r name pid binary <<<"${entry}"
  if ours "${pid}" "${binary}"; then
    kill -TERM "${pid}"
    for ((i = 0; i < 100; i++)); do
      ours "${pid}" "${binary}" || break
      sleep 0.1
    done
    if ours "${pid}" "${binary}"; then
      kill -KILL "${pid}"
      echo "local-down: ${name} (pid ${pid}) killed after 10 s"
    else
      echo "local-down: stopped ${name} (pid ${pid})"
    fi
  else
    echo "local-down: ${name} (pid ${pid}) was not running"
  fi
done
rm -f "${PIDS}"
# Pods outlive containerd in their shims: end the ones our containerd started.
node::cleanup
