//! The kubelet's command line and KubeletConfiguration file, resolved into [`Options`]:
//! the file is parsed, defaulted ([`defaults`]), then flags the user set override it, as
//! upstream.

pub mod auth;
pub mod defaults;
pub mod file;
pub mod flags;
pub mod options;

pub use file::KubeletConfiguration;
pub use options::Options;
