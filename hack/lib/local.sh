#!/usr/bin/env bash
# Paths shared by hack/local-up.sh and hack/local-down.sh.

DIR="${FERROKUBE_LOCAL_DIR:-/tmp/ferrokube-local}"
PKI="${DIR}/pki"
LOGS="${DIR}/logs"
PIDS="${DIR}/pids"          # one line per process: NAME PID BINARY
MARKER="${DIR}/.ferrokube-local"

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
