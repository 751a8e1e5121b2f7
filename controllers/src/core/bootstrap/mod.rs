//! Bootstrap-token controllers, both off unless named in `--controllers` (as upstream):
//! bootstrap-signer (signs the `kube-public/cluster-info` ConfigMap with each signing
//! token) and token-cleaner (deletes expired bootstrap-token Secrets).

pub mod cleaner;
pub mod signer;
pub mod token;
