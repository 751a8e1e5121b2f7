#!/usr/bin/env bash
# Assembles a Kubernetes server tarball with ferrokube's node components in it, for
# `kind build node-image --type file TARBALL` (docs/kind.md). The layout is the one kind's
# tarball builder reads, as upstream's release writes it:
#   kubernetes/version                          the Kubernetes version (e.g. v1.35.0)
#   kubernetes/server/bin/kubeadm, kubectl      upstream's
#   kubernetes/server/bin/kubelet               ferrokube's
#   kubernetes/server/bin/kube-apiserver.tar    upstream's image
#   kubernetes/server/bin/kube-proxy.tar        the ferrokube image as registry.k8s.io/kube-proxy:<version>
#   kubernetes/server/bin/kube-controller-manager.tar, kube-scheduler.tar
#                                               upstream's, or with --control-plane the ferrokube
#                                               image under their names
#
# Usage: hack/kind-node-tarball.sh [--server-tarball FILE] [--control-plane] [--output FILE]
#   --server-tarball FILE  upstream's kubernetes-server-linux-<arch>.tar.gz: its kubeadm, kubectl,
#                          kube-apiserver image and version are kept, the rest replaced. Without
#                          it, the tarball is made of the kubeadm, kubectl and kube-apiserver
#                          binaries found as envtest finds kube-apiserver (hack/lib/assets.sh),
#                          the version being `kubeadm version -o short`.
#   --control-plane        ferrokube's kube-controller-manager and kube-scheduler too
#   --output FILE          default target/images/ferrokube-server-linux-<arch>.tar.gz
# Environment: FERROKUBE_SKIP_BUILD=1 (use the binaries already built), FERROKUBE_BIN_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${ROOT}/hack/lib/assets.sh"
source "${ROOT}/hack/lib/image.sh"
log() { echo "kind-node-tarball: $*"; }
die() { echo "kind-node-tarball: $*" >&2; exit 1; }

server_tarball="" control_plane=0 output=""
while (($#)); do
  case "$1" in
    --server-tarball) server_tarball="${2:?--server-tarball needs a file}"; shift ;;
    --control-plane) control_plane=1 ;;
    --output) output="${2:?--output needs a file}"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
target="${CARGO_TARGET_DIR:-${ROOT}/target}"
bin_dir="${FERROKUBE_BIN_DIR:-${target}/debug}"
output="${output:-${target}/images/ferrokube-server-linux-$(image::arch).tar.gz}"
work="$(mktemp -d -t ferrokube-kind.XXXXXX)"
trap 'rm -rf "${work}"' EXIT
bin="${work}/kubernetes/server/bin"

if [[ -n "${server_tarball}" ]]; then
  [[ -f "${server_tarball}" ]] || die "--server-tarball ${server_tarball}: no such file"
  log "unpacking ${server_tarball}"
  tar -xzf "${server_tarball}" -C "${work}"
  [[ -d "${bin}" ]] || die "${server_tarball} has no kubernetes/server/bin: not a server tarball"
  if [[ -f "${work}/kubernetes/version" ]]; then
    version="$(tr -d '[:space:]' <"${work}/kubernetes/version")"
  else
    version="$(tr -d '[:space:]' <"${bin}/kube-apiserver.docker_tag")"
  fi
else
  assets::require kubeadm kubectl kube-apiserver
  mkdir -p "${bin}"
  cp "${ASSET_KUBEADM}" "${ASSET_KUBECTL}" "${bin}/"
  version="$("${ASSET_KUBEADM}" version -o short)"
  echo "${version}" >"${work}/kubernetes/version"
  log "making the kube-apiserver image of ${ASSET_KUBE_APISERVER}"
  mkdir -p "${work}/apiserver/usr/local/bin"
  cp "${ASSET_KUBE_APISERVER}" "${work}/apiserver/usr/local/bin/"
  image::archive "${work}/apiserver" "registry.k8s.io/kube-apiserver:${version}" "${bin}/kube-apiserver.tar"
  rm -rf "${work}/apiserver"
fi
[[ -n "${version}" ]] || die "cannot tell the Kubernetes version"

if [[ "${FERROKUBE_SKIP_BUILD:-0}" != 1 ]]; then
  log "building the ferrokube binaries"
  (cd "${ROOT}" && cargo build --quiet --bins)
fi
[[ -x "${bin_dir}/kubelet" ]] || die "${bin_dir}/kubelet missing (build it, or unset FERROKUBE_SKIP_BUILD)"
strip --strip-debug -o "${bin}/kubelet" "${bin_dir}/kubelet" 2>/dev/null || cp "${bin_dir}/kubelet" "${bin}/kubelet"
components=(kube-proxy)
((control_plane == 0)) || components+=(kube-controller-manager kube-scheduler)
for c in "${components[@]}"; do
  log "the ferrokube image as registry.k8s.io/${c}:${version}"
  FERROKUBE_SKIP_BUILD=1 FERROKUBE_BIN_DIR="${bin_dir}" "${ROOT}/hack/build-image.sh" \
    --name "registry.k8s.io/${c}:${version}" --output "${bin}/${c}.tar" >/dev/null
  echo "${version}" >"${bin}/${c}.docker_tag"
done
for f in kubeadm kubectl kubelet kube-apiserver.tar kube-controller-manager.tar kube-scheduler.tar kube-proxy.tar; do
  [[ -e "${bin}/${f}" ]] || die "kubernetes/server/bin/${f} missing: a server tarball has it (pass --server-tarball, or --control-plane)"
done
mkdir -p "$(dirname "${output}")"
tar --numeric-owner --owner=0 --group=0 -C "${work}" -czf "${output}.tmp" kubernetes
mv "${output}.tmp" "${output}"
log "wrote ${output} ($(du -h "${output}" | cut -f1)), Kubernetes ${version}: kind build node-image --type file ${output}"
