//! OCI image layouts in memory: blobs addressed by digest plus the manifest that ties them
//! together, written to and read from the tar archives `docker save` / `ctr export` /
//! `kind load` exchange (OCI image layout, or the older docker-archive `manifest.json`).

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// OCI media type of an image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI media type of an image index.
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI media type of an image config.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI media type of an uncompressed layer.
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker's media type of a gzip layer (docker-archive tars).
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The annotation that names an image inside an OCI layout's index.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation for the full image name inside an OCI layout's index.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Length in bytes.
    pub size: i64,
}

impl Descriptor {
    /// The descriptor of `data` with the given media type.
    pub fn of(media_type: &str, data: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest: sha256_digest(data),
            size: data.len() as i64,
        }
    }

    fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// One named image: its manifest plus every blob the manifest references.
#[derive(Debug, Clone)]
pub struct OciImage {
    /// The full reference, e.g. `docker.io/library/busybox:1.35`.
    pub name: String,
    /// The manifest's descriptor (what the image record points at).
    pub manifest: Descriptor,
    /// Blobs by digest: manifest, config and layers.
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// Config then layers, as the manifest lists them (for GC labels on the manifest).
    pub children: Vec<Descriptor>,
}

impl OciImage {
    /// Builds an image from one config and uncompressed layer tars; an empty
    /// `rootfs.diff_ids` is filled in with the layers' digests.
    pub fn from_parts(name: &str, config: &Value, layers: Vec<Vec<u8>>) -> Result<Self> {
        let mut config = config.clone();
        let no_diff_ids = config["rootfs"]["diff_ids"]
            .as_array()
            .is_none_or(|ids| ids.is_empty());
        if no_diff_ids {
            let ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
            config["rootfs"] = json!({"type": "layers", "diff_ids": ids});
        }
        let config_bytes = serde_json::to_vec(&config)?;
        let config_desc = Descriptor::of(MEDIA_TYPE_CONFIG, &config_bytes);
        let mut blobs = BTreeMap::new();
        let mut children = vec![config_desc.clone()];
        blobs.insert(config_desc.digest.clone(), config_bytes);
        for layer in layers {
            let d = Descriptor::of(MEDIA_TYPE_LAYER, &layer);
            blobs.insert(d.digest.clone(), layer);
            children.push(d);
        }
        let manifest_json = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": children[0].to_json(),
            "layers": children[1..].iter().map(Descriptor::to_json).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest_json)?;
        let manifest = Descriptor::of(MEDIA_TYPE_MANIFEST, &manifest_bytes);
        blobs.insert(manifest.digest.clone(), manifest_bytes);
        Ok(OciImage {
            name: normalize_reference(name),
            manifest,
            blobs,
            children,
        })
    }

    /// The image ID as CRI reports it: the config's digest.
    pub fn config_digest(&self) -> &str {
        &self.children[0].digest
    }

    /// Writes the image as an OCI image-layout tar archive (what `ctr export` writes).
    pub fn write_oci_archive(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path).with_context(|| format!("create {path:?}"))?;
        let mut tar = tar::Builder::new(file);
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [{
                "mediaType": self.manifest.media_type,
                "digest": self.manifest.digest,
                "size": self.manifest.size,
                "annotations": {
                    ANNOTATION_CONTAINERD_NAME: self.name,
                    ANNOTATION_REF_NAME: self.name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest"),
                },
            }],
        });
        append(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        append(&mut tar, "index.json", &serde_json::to_vec(&index)?)?;
        for (digest, data) in &self.blobs {
            let hex = digest.trim_start_matches("sha256:");
            append(&mut tar, &format!("blobs/sha256/{hex}"), data)?;
        }
        tar.into_inner()?;
        Ok(())
    }
}

fn append<W: std::io::Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, path, data)?;
    Ok(())
}

/// Normalizes a reference as containerd's CRI does: `busybox` is
/// `docker.io/library/busybox:latest`, a missing tag is `latest`.
pub fn normalize_reference(name: &str) -> String {
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), format!(":{t}")),
        _ => (name.to_string(), ":latest".to_string()),
    };
    let (repo, tag) = match repo.split_once('@') {
        Some(_) => (name.to_string(), String::new()),
        None => (repo, tag),
    };
    let first = repo.split('/').next().unwrap_or_default();
    let has_domain =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_domain {
        repo
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    format!("{full}{tag}")
}

/// Reads every image of an OCI image-layout or docker-archive tar.
pub fn read_archive(path: &Path) -> Result<Vec<OciImage>> {
    let file = std::fs::File::open(path).with_context(|| format!("open image archive {path:?}"))?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data)?;
        files.insert(name, data);
    }
    if let Some(index) = files.get("index.json") {
        from_oci_layout(&files, index).with_context(|| format!("OCI layout {path:?}"))
    } else if let Some(manifest) = files.get("manifest.json") {
        from_docker_archive(&files, manifest).with_context(|| format!("docker archive {path:?}"))
    } else {
        bail!("{path:?} is neither an OCI image layout (index.json) nor a docker archive (manifest.json)")
    }
}

fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> Result<&'a Vec<u8>> {
    let (alg, hex) = digest.split_once(':').context("digest without algorithm")?;
    files
        .get(&format!("blobs/{alg}/{hex}"))
        .with_context(|| format!("blob {digest} missing"))
}

fn from_oci_layout(files: &BTreeMap<String, Vec<u8>>, index: &[u8]) -> Result<Vec<OciImage>> {
    let index: Value = serde_json::from_slice(index).context("index.json")?;
    let mut images = Vec::new();
    for m in index["manifests"]
        .as_array()
        .context("index.json: manifests")?
    {
        let annotations = &m["annotations"];
        let Some(name) = annotations[ANNOTATION_CONTAINERD_NAME]
            .as_str()
            .or(annotations[ANNOTATION_REF_NAME].as_str())
        else {
            continue;
        };
        let digest = m["digest"].as_str().context("manifest digest")?;
        let media_type = m["mediaType"].as_str().unwrap_or(MEDIA_TYPE_MANIFEST);
        let manifest_bytes = blob(files, digest)?;
        let manifest_json: Value = serde_json::from_slice(manifest_bytes)?;
        let mut blobs = BTreeMap::new();
        blobs.insert(digest.to_string(), manifest_bytes.clone());
        let mut children = Vec::new();
        let config = std::iter::once(&manifest_json["config"]);
        let layers = manifest_json["layers"].as_array().into_iter().flatten();
        for d in config.chain(layers) {
            let desc = Descriptor {
                media_type: d["mediaType"].as_str().unwrap_or_default().to_string(),
                digest: d["digest"]
                    .as_str()
                    .context("descriptor digest")?
                    .to_string(),
                size: d["size"].as_i64().unwrap_or_default(),
            };
            blobs.insert(desc.digest.clone(), blob(files, &desc.digest)?.clone());
            children.push(desc);
        }
        images.push(OciImage {
            name: normalize_reference(name),
            manifest: Descriptor {
                media_type: media_type.to_string(),
                digest: digest.to_string(),
                size: manifest_bytes.len() as i64,
            },
            blobs,
            children,
        });
    }
    Ok(images)
}

fn from_docker_archive(
    files: &BTreeMap<String, Vec<u8>>,
    manifest: &[u8],
) -> Result<Vec<OciImage>> {
    let entries: Value = serde_json::from_slice(manifest).context("manifest.json")?;
    let mut images = Vec::new();
    for entry in entries.as_array().context("manifest.json is not a list")? {
        let config_path = entry["Config"].as_str().context("manifest.json: Config")?;
        let config: Value = serde_json::from_slice(
            files
                .get(config_path)
                .with_context(|| format!("{config_path} missing"))?,
        )?;
        let layers = entry["Layers"]
            .as_array()
            .context("manifest.json: Layers")?
            .iter()
            .map(|l| {
                let p = l.as_str().unwrap_or_default();
                files
                    .get(p)
                    .cloned()
                    .with_context(|| format!("layer {p} missing"))
            })
            .collect::<Result<Vec<_>>>()?;
        for tag in entry["RepoTags"].as_array().into_iter().flatten() {
            if let Some(tag) = tag.as_str() {
                images.push(OciImage::from_parts(tag, &config, layers.clone())?);
            }
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalized_like_containerd() {
        assert_eq!(
            normalize_reference("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_reference("busybox:1.35"),
            "docker.io/library/busybox:1.35"
        );
        assert_eq!(normalize_reference("me/app:v1"), "docker.io/me/app:v1");
        assert_eq!(
            normalize_reference("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(
            normalize_reference("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
    }

    #[test]
    fn oci_archive_round_trips() {
        let config = json!({"os": "linux", "architecture": "amd64"});
        let img =
            OciImage::from_parts("example.com/a:b", &config, vec![b"layer".to_vec()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        img.write_oci_archive(&path).unwrap();
        let back = read_archive(&path).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].name, "example.com/a:b");
        assert_eq!(back[0].manifest, img.manifest);
        assert_eq!(back[0].blobs, img.blobs);
        assert_eq!(back[0].children, img.children);
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
