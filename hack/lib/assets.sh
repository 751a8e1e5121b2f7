#!/usr/bin/env bash
# Finds the control-plane binaries the way controller-runtime's envtest does:
#   0. a per-binary override $TEST_ASSET_<NAME> (e.g. TEST_ASSET_KUBE_APISERVER; e2e.test:
#      TEST_ASSET_E2E_TEST),
#   1. the directory in $KUBEBUILDER_ASSETS,
#   2. else /usr/local/kubebuilder/bin,
#   3. else $PATH.
# Source this file, then call `assets::find NAME` (prints the path) or
# `assets::require NAME...` (exports ASSET_<NAME> for each, e.g. ASSET_KUBE_APISERVER, or
# fails naming every missing binary).

ASSETS_DEFAULT_DIR="/usr/local/kubebuilder/bin"

# Prints the path of binary $1, or returns 1 when it is nowhere.
assets::find() {
  local name="$1" override
  override="TEST_ASSET_$(tr 'a-z.-' 'A-Z__' <<<"${name}")"
  if [[ -n "${!override:-}" ]]; then
    [[ -x "${!override}" ]] && { echo "${!override}"; return 0; }
    return 1
  fi
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    # As envtest: when KUBEBUILDER_ASSETS is set, it is the only place looked at.
    [[ -x "${KUBEBUILDER_ASSETS}/${name}" ]] && { echo "${KUBEBUILDER_ASSETS}/${name}"; return 0; }
    return 1
  fi
  [[ -x "${ASSETS_DEFAULT_DIR}/${name}" ]] && { echo "${ASSETS_DEFAULT_DIR}/${name}"; return 0; }
  command -v "${name}" 2>/dev/null && return 0
  return 1
}

# Where assets::find looked, for error messages.
assets::searched() {
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    echo "\$KUBEBUILDER_ASSETS (${KUBEBUILDER_ASSETS})"
  else
    echo "\$KUBEBUILDER_ASSETS (unset), ${ASSETS_DEFAULT_DIR}, \$PATH"
  fi
}

# Exports ASSET_<NAME> for every binary named, or prints one error naming all missing ones
# and returns 1.
assets::require() {
  local name path var missing=()
  for name in "$@"; do
    if path="$(assets::find "${name}")"; then
      var="ASSET_$(tr 'a-z.-' 'A-Z__' <<<"${name}")"
      export "${var}=${path}"
    else
      missing+=("${name}")
    fi
  done
  if [[ ${#missing[@]} -ne 0 ]]; then
    echo "missing control-plane binaries: ${missing[*]} (searched $(assets::searched))." >&2
    echo "Put kube-apiserver, etcd and kubectl for your platform in one directory and set KUBEBUILDER_ASSETS to it." >&2
    return 1
  fi
}
