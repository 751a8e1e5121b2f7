//! The kubelet's certificates from the certificates API: client TLS bootstrap
//! (`--bootstrap-kubeconfig`), client certificate rotation (`rotateCertificates`) and the
//! serving certificate (`serverTLSBootstrap`), kept in `--cert-dir` as upstream keeps them.

pub mod csr;
pub mod pair;
pub mod rotation;
pub mod store;
pub mod template;
