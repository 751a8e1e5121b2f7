//! The kubelet's command line and KubeletConfiguration file, resolved into [`Options`]:
//! flags the user set override the file, as upstream.

pub mod auth;
pub mod file;
pub mod flags;
pub mod options;

pub use file::KubeletConfiguration;
pub use options::Options;
