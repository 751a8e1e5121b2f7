//! The cluster CA bundle controllers publish (root-ca-cert-publisher's `kube-root-ca.crt`,
//! legacy service-account token Secrets' `ca.crt`).

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;

use super::options::KcmOptions;

const IN_CLUSTER_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// The CA bundle to publish: `--root-ca-file`, else the kubeconfig's CA, else the
/// in-cluster service account's.
pub fn load_ca(options: &KcmOptions) -> anyhow::Result<String> {
    if let Some(path) = &options.root_ca_file {
        return std::fs::read_to_string(path)
            .with_context(|| format!("--root-ca-file {}", path.display()));
    }
    if let Some(path) = &options.kubeconfig {
        return kubeconfig_ca(path);
    }
    std::fs::read_to_string(IN_CLUSTER_CA)
        .with_context(|| format!("no --root-ca-file and cannot read {IN_CLUSTER_CA}"))
}

fn kubeconfig_ca(path: &Path) -> anyhow::Result<String> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("--kubeconfig {}", path.display()))?;
    let context = kc
        .current_context
        .as_deref()
        .and_then(|c| kc.contexts.iter().find(|n| n.name == c))
        .and_then(|n| n.context.as_ref());
    let cluster_name = context.map(|c| c.cluster.as_str());
    let cluster = kc
        .clusters
        .iter()
        .find(|c| Some(c.name.as_str()) == cluster_name)
        .or(kc.clusters.first())
        .and_then(|c| c.cluster.as_ref())
        .with_context(|| format!("--kubeconfig {}: no cluster", path.display()))?;
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("certificate-authority-data is not base64")?;
        return String::from_utf8(pem).context("certificate-authority-data is not PEM text");
    }
    if let Some(file) = &cluster.certificate_authority {
        let file = path
            .parent()
            .map(|dir| dir.join(file))
            .unwrap_or_else(|| file.into());
        return std::fs::read_to_string(&file)
            .with_context(|| format!("certificate-authority {}", file.display()));
    }
    anyhow::bail!(
        "--kubeconfig {} has no certificate authority and --root-ca-file is unset",
        path.display()
    )
}
