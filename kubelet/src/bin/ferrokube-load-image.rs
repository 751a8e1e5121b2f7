//! `ferrokube-load-image`: puts images into a node's containerd without a registry, as
//! `kind load` does — OCI/docker archives from files, the project's locally built busybox
//! and pause images, or images made of given binaries — through containerd's API (the
//! `k8s.io` namespace by default), each also under further names when asked.
//!
//! ```text
//! ferrokube-load-image --containerd-address unix:///run/containerd/containerd.sock --builtin busybox --builtin pause
//! ferrokube-load-image --containerd-address unix:///run/containerd/containerd.sock image.tar
//! ferrokube-load-image --binary-image registry.k8s.io/kube-apiserver:v1.35.0=/usr/local/bin/kube-apiserver \
//!     --tag ferrokube:local=registry.k8s.io/kube-proxy:v1.35.0 target/images/ferrokube-local.tar
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use kubelet::image::busybox::{
    binary_image, busybox_image, pause_image, BUSYBOX_IMAGE, BUSYBOX_PATH, PAUSE_IMAGE,
};
use kubelet::image::oci::{normalize_reference, OciImage};
use kubelet::image::{ImageLoader, K8S_NAMESPACE};
use std::path::{Path, PathBuf};

/// Loads images into containerd (what `kind load` does for a kind node).
#[derive(Parser)]
#[command(name = "ferrokube-load-image", version = component_base::version::version())]
struct Opts {
    /// containerd's socket, `unix://…` or a plain path.
    #[arg(long, default_value = "unix:///run/containerd/containerd.sock")]
    containerd_address: String,
    /// containerd namespace (the CRI plugin's is `k8s.io`).
    #[arg(long, default_value = K8S_NAMESPACE)]
    namespace: String,
    /// A locally built image: `busybox` (docker.io/library/busybox:1.35, from busybox-static)
    /// or `pause` (registry.k8s.io/pause:3.10). May repeat.
    #[arg(long = "builtin", value_parser = ["busybox", "pause"])]
    builtins: Vec<String>,
    /// `NAME=PATH`: an image NAME holding the binary PATH in /usr/local/bin over the busybox
    /// rootfs (a control-plane component for kubeadm's static pods). May repeat.
    #[arg(long = "binary-image", value_parser = name_and_value)]
    binary_images: Vec<(String, String)>,
    /// `SRC=DST`: an image this run loads (SRC) is also loaded as DST, e.g. the ferrokube
    /// image as `registry.k8s.io/kube-proxy:<version>`. May repeat.
    #[arg(long = "tag", value_parser = name_and_value)]
    tags: Vec<(String, String)>,
    /// Where the busybox-static binary is.
    #[arg(long, default_value = BUSYBOX_PATH)]
    busybox: PathBuf,
    /// OCI or docker image archives to load.
    archives: Vec<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let opts = Opts::parse();
    let address = if opts.containerd_address.contains("://") {
        opts.containerd_address.clone()
    } else {
        format!("unix://{}", opts.containerd_address)
    };
    let loader = ImageLoader::connect(&address, &opts.namespace)
        .await
        .with_context(|| format!("connect to containerd at {address}"))?;
    let mut images: Vec<OciImage> = Vec::new();
    for builtin in &opts.builtins {
        images.push(match builtin.as_str() {
            "busybox" => busybox_image(Path::new(&opts.busybox), BUSYBOX_IMAGE)?,
            _ => pause_image(Path::new(&opts.busybox), PAUSE_IMAGE)?,
        });
    }
    for (name, path) in &opts.binary_images {
        let image = binary_image(Path::new(&opts.busybox), name, &[Path::new(path)])
            .with_context(|| format!("--binary-image {name}={path}"))?;
        images.push(image);
    }
    for archive in &opts.archives {
        let read = kubelet::image::oci::read_archive(archive)
            .with_context(|| format!("read {}", archive.display()))?;
        images.extend(read);
    }
    let tagged = with_tags(&images, &opts.tags)?;
    for image in images.iter().chain(&tagged) {
        loader.load(image).await?;
        println!("loaded {}", image.name);
    }
    Ok(())
}

/// Parses `NAME=VALUE`, both non-empty.
fn name_and_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => {
            Ok((name.to_string(), value.to_string()))
        }
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// The copies `--tag SRC=DST` asks for; a SRC this run does not load is an error.
fn with_tags(images: &[OciImage], tags: &[(String, String)]) -> Result<Vec<OciImage>> {
    tags.iter()
        .map(|(src, dst)| {
            let src_name = normalize_reference(src);
            let image = images
                .iter()
                .find(|i| i.name == src_name)
                .with_context(|| {
                    format!("--tag {src}={dst}: no image {src_name} is loaded by this run")
                })?;
            Ok(OciImage {
                name: normalize_reference(dst),
                ..image.clone()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_copy_a_loaded_image_under_another_name() {
        let image =
            OciImage::from_parts("ferrokube:local", &serde_json::json!({}), vec![]).unwrap();
        let tags = [(
            "ferrokube:local".to_string(),
            "registry.k8s.io/kube-proxy:v1.35.0".to_string(),
        )];
        let copies = with_tags(std::slice::from_ref(&image), &tags).unwrap();
        assert_eq!(copies[0].name, "registry.k8s.io/kube-proxy:v1.35.0");
        assert_eq!(copies[0].manifest.digest, image.manifest.digest);
        let missing = [("nope:1".to_string(), "x:1".to_string())];
        let err = with_tags(&[image], &missing).unwrap_err().to_string();
        assert!(err.contains("--tag nope:1=x:1"), "{err}");
        assert!(name_and_value("a=b").is_ok());
        assert!(name_and_value("=b").is_err() && name_and_value("a").is_err());
    }
}
