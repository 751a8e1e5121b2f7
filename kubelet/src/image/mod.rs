//! Container images the node needs without a registry: building small OCI images locally
//! and loading image archives into containerd.

pub mod busybox;
pub mod gc;
pub mod load;
pub mod oci;
pub mod reference;

pub use load::{ImageLoader, K8S_NAMESPACE};
pub use oci::OciImage;
