#!/usr/bin/env bash
# Builds the ferrokube container image, `ferrokube:<tag>`, as an image archive — no registry
# and no image builder needed — and optionally imports it into a containerd.
#
# The image holds the component binaries in /usr/local/bin (kubelet, kube-proxy,
# kube-scheduler, kube-controller-manager, ferrokube-dns: what charts/ferrokube and
# hack/lib/dns.sh run), the data-plane tools
# kube-proxy executes (nft, iptables/ip6tables{,-restore,-save} on the nft backend, conntrack,
# ip) and exactly the shared libraries `ldd` finds for all of them, laid out as Debian's
# merged /usr. One uncompressed layer; timestamps and owners are fixed.
#
# The archive is written in docker-archive form (manifest.json + config + layer.tar), which
# `ferrokube-load-image`, `ctr images import`, `docker load` and `kind load image-archive`
# all read. Importing uses the project's `ferrokube-load-image` (as hack/local-up.sh does), so
# the OCI manifest, digests and containerd records come from the one OCI writer we have
# (kubelet/src/image/oci.rs); without it, `ctr -n k8s.io images import` is used.
#
# Usage: hack/build-image.sh [--release] [--tag TAG] [--output FILE]
#                            [--containerd-address unix:///path/to/containerd.sock]
#   --release              release binaries (target/release) instead of debug (target/debug)
#   --tag TAG              image tag (default: the workspace version, as the chart's appVersion)
#   --name REF             the image's full name instead of ferrokube:TAG (e.g.
#                          registry.k8s.io/kube-proxy:v1.35.0, as kind's node image wants it)
#   --output FILE          archive path (default: target/images/ferrokube-TAG.tar)
#   --containerd-address   import the image there, namespace k8s.io (what the CRI uses)
#   --keep-debuginfo       copy the binaries as built (debug builds are ~250 MB each with
#                          their DWARF; by default it is stripped from the copies)
# Environment: FERROKUBE_SKIP_BUILD=1 uses the binaries already built; FERROKUBE_BIN_DIR
# overrides where they are; CARGO_TARGET_DIR as for cargo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${ROOT}/hack/lib/image.sh"
BINARIES=(kubelet kube-proxy kube-scheduler kube-controller-manager ferrokube-dns)
# What kube-proxy runs (proxy/src/{nftables,iptables}/runner.rs, conntrack.rs, cmd/node.rs).
TOOLS=(/usr/sbin/nft /usr/sbin/xtables-nft-multi /usr/sbin/conntrack /usr/sbin/ip)
# Names iptables answers to; all are the nft-backend multi-binary, as in upstream's images.
XTABLES_LINKS=(iptables iptables-restore iptables-save ip6tables ip6tables-restore ip6tables-save
  iptables-nft iptables-nft-restore iptables-nft-save ip6tables-nft ip6tables-nft-restore ip6tables-nft-save)

log() { echo "build-image: $*"; }
die() { echo "build-image: $*" >&2; exit 1; }

workspace_version() {
  awk '/^\[workspace.package\]/ { p = 1; next } /^\[/ { p = 0 }
       p && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' "${ROOT}/Cargo.toml"
}

# Copies FILE (following symlinks) to the same path under ROOTFS, with the directory
# resolved as the host resolves it (/lib/x86_64-linux-gnu -> /usr/lib/x86_64-linux-gnu), so the
# rootfs's merged-/usr symlinks find it where the dynamic loader looks.
copy_resolved() {
  local file="$1" rootfs="$2" dir
  dir="$(readlink -f "$(dirname "${file}")")"
  mkdir -p "${rootfs}${dir}"
  cp -L "${file}" "${rootfs}${dir}/$(basename "${file}")"
}

# Copies every shared library ldd reports for the given executables (and the loader).
copy_libraries() {
  local rootfs="$1"; shift
  local lib
  while read -r lib; do
    [[ -n "${lib}" ]] && copy_resolved "${lib}" "${rootfs}"
  done < <(for exe in "$@"; do
    ldd "${exe}" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
  done | sort -u)
}

main() {
  local profile=debug tag="" name="" output="" address="" strip_debug=1
  while (($#)); do
    case "$1" in
      --release) profile=release ;;
      --debug) profile=debug ;;
      --tag) tag="${2:?--tag needs a value}"; shift ;;
      --name) name="${2:?--name needs a value}"; shift ;;
      --name=*) name="${1#*=}" ;;
      --tag=*) tag="${1#*=}" ;;
      --output) output="${2:?--output needs a value}"; shift ;;
      --output=*) output="${1#*=}" ;;
      --containerd-address) address="${2:?--containerd-address needs a value}"; shift ;;
      --containerd-address=*) address="${1#*=}" ;;
      --keep-debuginfo) strip_debug=0 ;;
      -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
  done
  tag="${tag:-$(workspace_version)}"
  [[ -n "${tag}" ]] || die "cannot read the workspace version from ${ROOT}/Cargo.toml; pass --tag"
  local target="${CARGO_TARGET_DIR:-${ROOT}/target}"
  local bin_dir="${FERROKUBE_BIN_DIR:-${target}/${profile}}"
  output="${output:-${target}/images/ferrokube-${tag}.tar}"
  local image="${name:-ferrokube:${tag}}"

  for t in "${TOOLS[@]}"; do
    [[ -x "${t}" ]] || die "${t} missing: run hack/install-deps.sh (nftables, iptables, conntrack, iproute2)"
  done
  command -v ldd >/dev/null || die "ldd missing"
  if [[ "${FERROKUBE_SKIP_BUILD:-0}" != 1 ]]; then
    local bins=() b flags=()
    for b in "${BINARIES[@]}"; do bins+=(--bin "${b}"); done
    [[ -z "${address}" ]] || bins+=(--bin ferrokube-load-image)
    [[ "${profile}" == debug ]] || flags+=(--release)
    log "building ${BINARIES[*]} (${profile})"
    (cd "${ROOT}" && cargo build --quiet "${flags[@]}" "${bins[@]}")
  fi

  WORK="$(mktemp -d -t ferrokube-image.XXXXXX)"
  trap 'rm -rf "${WORK}"' EXIT
  local work="${WORK}"
  local rootfs="${work}/rootfs"
  mkdir -p "${rootfs}"/usr/{bin,sbin,lib,lib64,local/bin} "${rootfs}"/{etc,tmp,var/run,run,proc,sys,dev}
  chmod 1777 "${rootfs}/tmp"
  # Debian 12's merged /usr, so paths ldd prints (/lib/..., /lib64/...) resolve.
  ln -s usr/bin "${rootfs}/bin"
  ln -s usr/sbin "${rootfs}/sbin"
  ln -s usr/lib "${rootfs}/lib"
  ln -s usr/lib64 "${rootfs}/lib64"

  local b
  for b in "${BINARIES[@]}"; do
    [[ -x "${bin_dir}/${b}" ]] || die "${bin_dir}/${b} missing (build it, or unset FERROKUBE_SKIP_BUILD)"
    if ((strip_debug)) && command -v strip >/dev/null; then
      strip --strip-debug -o "${rootfs}/usr/local/bin/${b}" "${bin_dir}/${b}"
    else
      cp "${bin_dir}/${b}" "${rootfs}/usr/local/bin/${b}"
    fi
  done
  local t
  for t in "${TOOLS[@]}"; do copy_resolved "${t}" "${rootfs}"; done
  for t in "${XTABLES_LINKS[@]}"; do ln -sf xtables-nft-multi "${rootfs}/usr/sbin/${t}"; done
  # iptables' match/target extensions are loaded at run time, not linked.
  local xt
  xt="$(readlink -f /usr/lib/x86_64-linux-gnu/xtables 2>/dev/null || true)"
  if [[ -d "${xt}" ]]; then
    mkdir -p "${rootfs}${xt}"
    cp -a "${xt}/." "${rootfs}${xt}/"
  fi
  copy_libraries "${rootfs}" "${rootfs}"/usr/local/bin/* "${TOOLS[@]}" "${xt:-/nonexistent}"/*.so
  # What nft and iptables read: protocol and service names.
  for f in /etc/protocols /etc/services /etc/ethertypes; do
    [[ -f "${f}" ]] && cp "${f}" "${rootfs}${f}"
  done
  echo 'root:x:0:0:root:/root:/sbin/nologin' >"${rootfs}/etc/passwd"
  echo 'root:x:0:' >"${rootfs}/etc/group"

  image::archive "${rootfs}" "${image}" "${output}" ferrokube "${tag}"
  log "wrote ${image} to ${output} ($(du -h "${output}" | cut -f1))"

  if [[ -n "${address}" ]]; then
    [[ "${address}" == *://* ]] || address="unix://${address}"
    local loader="${bin_dir}/ferrokube-load-image"
    if [[ -x "${loader}" ]]; then
      "${loader}" --containerd-address "${address}" --namespace k8s.io "${output}" | sed 's/^/build-image: /'
    else
      command -v ctr >/dev/null || die "neither ${loader} nor ctr to import with"
      ctr -a "${address#unix://}" -n k8s.io images import "${output}"
    fi
    log "imported ${image} into ${address} (namespace k8s.io)"
  fi
}

main "$@"
