//! `ferrokube-load-image`: puts images into a node's containerd without a registry, as
//! `kind load` does — OCI/docker archives from files, or the project's locally built
//! busybox and pause images — through containerd's API (the `k8s.io` namespace by default).
//!
//! ```text
//! ferrokube-load-image --containerd-address unix:///run/containerd/containerd.sock --builtin busybox --builtin pause
//! ferrokube-load-image --containerd-address unix:///run/containerd/containerd.sock image.tar
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use kubelet::image::busybox::{
    busybox_image, pause_image, BUSYBOX_IMAGE, BUSYBOX_PATH, PAUSE_IMAGE,
};
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
    for builtin in &opts.builtins {
        let image = match builtin.as_str() {
            "busybox" => busybox_image(Path::new(&opts.busybox), BUSYBOX_IMAGE)?,
            _ => pause_image(Path::new(&opts.busybox), PAUSE_IMAGE)?,
        };
        loader
            .load(&image)
            .await
            .with_context(|| format!("load builtin {builtin}"))?;
        println!(
            "loaded {}",
            if builtin == "busybox" {
                BUSYBOX_IMAGE
            } else {
                PAUSE_IMAGE
            }
        );
    }
    for archive in &opts.archives {
        let names = loader
            .load_archive(archive)
            .await
            .with_context(|| format!("load {}", archive.display()))?;
        for name in names {
            println!("loaded {name}");
        }
    }
    Ok(())
}
