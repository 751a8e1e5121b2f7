#!/usr/bin/env bash
# Writing container images without an image builder or a registry: a root filesystem
# directory becomes a one-layer image archive in docker-archive form (manifest.json + config
# + layer.tar), which ferrokube-load-image, `ctr images import`, `docker load`, `kind load
# image-archive` and kind's node-image builder all read. The layer is reproducible: entries
# sorted, owned by root, mtime 0.

# The architecture name images use for this machine (amd64, arm64, …).
image::arch() {
  case "$(uname -m)" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac
}

# image::archive ROOTFS REFERENCE OUTPUT [TITLE VERSION]: writes the image REFERENCE (e.g.
# registry.k8s.io/kube-proxy:v1.35.0) of ROOTFS to OUTPUT, with PATH set as Debian's and the
# OCI title/version labels when given.
image::archive() {
  local rootfs="$1" reference="$2" output="$3" title="${4:-}" version="${5:-}"
  local work diff_id labels=""
  work="$(mktemp -d -t ferrokube-archive.XXXXXX)"
  tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "${rootfs}" \
    -cf "${work}/layer.tar" .
  diff_id="sha256:$(sha256sum "${work}/layer.tar" | cut -d' ' -f1)"
  [[ -z "${title}" ]] ||
    labels=",\"Labels\":{\"org.opencontainers.image.title\":\"${title}\",\"org.opencontainers.image.version\":\"${version}\"}"
  cat >"${work}/config.json" <<JSON
{"architecture":"$(image::arch)","os":"linux","created":"1970-01-01T00:00:00Z",
 "config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"${labels}},
 "rootfs":{"type":"layers","diff_ids":["${diff_id}"]}}
JSON
  cat >"${work}/manifest.json" <<JSON
[{"Config":"config.json","RepoTags":["${reference}"],"Layers":["layer.tar"]}]
JSON
  mkdir -p "$(dirname "${output}")"
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "${work}" \
    -cf "${output}.tmp" manifest.json config.json layer.tar
  mv "${output}.tmp" "${output}"
  rm -rf "${work}"
}
