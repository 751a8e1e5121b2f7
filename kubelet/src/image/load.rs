//! `load image`: imports images into containerd's `k8s.io` namespace through containerd's
//! own API (content store + image records), as `kind load` / `ctr -n k8s.io images import`
//! do. CRI has no import call; the CRI plugin notices the new image records and unpacks the
//! layers on first use.

use super::oci::{read_archive, OciImage};
use anyhow::{Context, Result};
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    CreateImageRequest, CreateRequest, DeleteRequest, Image, InfoRequest, UpdateImageRequest,
    WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor as PbDescriptor;
use std::collections::HashMap;
use std::path::Path;
use tonic::transport::Channel;
use tonic::Request;

/// The containerd namespace the CRI plugin serves.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// Largest chunk sent per content write message (containerd accepts 16 MiB messages).
const CHUNK: usize = 1 << 20;

/// Imports images into one containerd namespace.
pub struct ImageLoader {
    channel: Channel,
    namespace: String,
}

impl ImageLoader {
    /// Connects to containerd's socket (a path, or `unix://` + path).
    pub async fn connect(socket: &str, namespace: &str) -> Result<Self> {
        let path = socket.trim_start_matches("unix://");
        let channel = containerd_client::connect(path)
            .await
            .with_context(|| format!("connect to containerd at {path}"))?;
        Ok(ImageLoader {
            channel,
            namespace: namespace.to_string(),
        })
    }

    fn request<T>(&self, msg: T, lease: Option<&str>) -> Request<T> {
        let mut req = Request::new(msg);
        let md = req.metadata_mut();
        md.insert(
            "containerd-namespace",
            self.namespace.parse().expect("namespace is ASCII"),
        );
        if let Some(lease) = lease {
            md.insert(
                "containerd-lease",
                lease.parse().expect("lease id is ASCII"),
            );
        }
        req
    }

    /// Imports every image of an OCI-layout or docker-archive tar; returns their names.
    pub async fn load_archive(&self, path: &Path) -> Result<Vec<String>> {
        let images = read_archive(path)?;
        let mut names = Vec::new();
        for image in &images {
            self.load(image).await?;
            names.push(image.name.clone());
        }
        Ok(names)
    }

    /// Imports one image: its blobs under a temporary lease (so garbage collection cannot
    /// take them half-way), with the GC reference labels containerd expects, then the image
    /// record (created, or updated to the new manifest).
    pub async fn load(&self, image: &OciImage) -> Result<()> {
        let lease = format!("ferrokube-load-{}", &image.manifest.digest[7..19]);
        let mut leases = LeasesClient::new(self.channel.clone());
        let mut labels = HashMap::new();
        let expire = chrono::Utc::now() + chrono::Duration::hours(1);
        labels.insert("containerd.io/gc.expire".to_string(), expire.to_rfc3339());
        let created = leases
            .create(self.request(
                CreateRequest {
                    id: lease.clone(),
                    labels,
                },
                None,
            ))
            .await;
        let lease_id = created.ok().map(|_| lease.clone());
        let result = self.load_under_lease(image, lease_id.as_deref()).await;
        if lease_id.is_some() {
            let _ = leases
                .delete(self.request(
                    DeleteRequest {
                        id: lease,
                        sync: false,
                    },
                    None,
                ))
                .await;
        }
        result.with_context(|| format!("load image {}", image.name))
    }

    async fn load_under_lease(&self, image: &OciImage, lease: Option<&str>) -> Result<()> {
        for child in &image.children {
            self.write_blob(
                &child.digest,
                &image.blobs[&child.digest],
                HashMap::new(),
                lease,
            )
            .await?;
        }
        let mut gc_labels = HashMap::new();
        for (i, child) in image.children.iter().enumerate() {
            let key = match i {
                0 => "containerd.io/gc.ref.content.config".to_string(),
                n => format!("containerd.io/gc.ref.content.l.{}", n - 1),
            };
            gc_labels.insert(key, child.digest.clone());
        }
        let manifest = &image.manifest;
        self.write_blob(
            &manifest.digest,
            &image.blobs[&manifest.digest],
            gc_labels,
            lease,
        )
        .await?;
        let record = Image {
            name: image.name.clone(),
            labels: HashMap::new(),
            target: Some(PbDescriptor {
                media_type: manifest.media_type.clone(),
                digest: manifest.digest.clone(),
                size: manifest.size,
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        };
        let mut images = ImagesClient::new(self.channel.clone());
        let create = CreateImageRequest {
            image: Some(record.clone()),
            source_date_epoch: None,
        };
        match images.create(self.request(create, lease)).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                let update = UpdateImageRequest {
                    image: Some(record),
                    update_mask: None,
                    source_date_epoch: None,
                };
                images.update(self.request(update, lease)).await?;
                Ok(())
            }
            Err(s) => Err(s.into()),
        }
    }

    /// Writes one blob unless the content store already has it.
    async fn write_blob(
        &self,
        digest: &str,
        data: &[u8],
        labels: HashMap<String, String>,
        lease: Option<&str>,
    ) -> Result<()> {
        let mut content = ContentClient::new(self.channel.clone());
        let info = InfoRequest {
            digest: digest.to_string(),
        };
        if content.info(self.request(info, lease)).await.is_ok() && labels.is_empty() {
            return Ok(());
        }
        let reference = format!("ferrokube-{digest}");
        let total = data.len() as i64;
        let mut messages = Vec::new();
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[]]
        } else {
            data.chunks(CHUNK).collect()
        };
        let last = chunks.len() - 1;
        let mut offset = 0i64;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let commit = i == last;
            messages.push(WriteContentRequest {
                action: if commit {
                    WriteAction::Commit
                } else {
                    WriteAction::Write
                } as i32,
                r#ref: reference.clone(),
                total,
                expected: if commit {
                    digest.to_string()
                } else {
                    String::new()
                },
                offset,
                data: chunk.to_vec(),
                labels: if commit {
                    labels.clone()
                } else {
                    HashMap::new()
                },
            });
            offset += chunk.len() as i64;
        }
        let stream = futures::stream::iter(messages);
        let mut responses = match content.write(self.request(stream, lease)).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(s).with_context(|| format!("write blob {digest}")),
        };
        loop {
            match responses.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(s) if s.code() == tonic::Code::AlreadyExists => return Ok(()),
                Err(s) => return Err(s).with_context(|| format!("write blob {digest}")),
            }
        }
    }
}
