//! Writing kubeconfig files that point at a test apiserver with a client certificate.

use std::path::Path;

use anyhow::{Context, Result};

use crate::pki::CertFiles;

/// Writes a kubeconfig for `user` at `path`: one cluster (`server`, trusting `ca`), one user
/// authenticating with `client`, one current context.
pub fn write(path: &Path, server: &str, ca: &Path, client: &CertFiles, user: &str) -> Result<()> {
    let text = render(server, ca, client, user);
    std::fs::write(path, text).with_context(|| format!("writing kubeconfig {}", path.display()))
}

/// The kubeconfig text [`write`] writes. Paths are quoted as YAML strings.
pub fn render(server: &str, ca: &Path, client: &CertFiles, user: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("strings always serialize");
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: ferrokube
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: ferrokube
  context:
    cluster: ferrokube
    user: {user}
current-context: ferrokube
",
        server = q(server),
        ca = q(&ca.display().to_string()),
        user = q(user),
        cert = q(&client.cert.display().to_string()),
        key = q(&client.key.display().to_string()),
    )
}

/// Builds a `kube::Client` from a kubeconfig file.
pub async fn client(path: &Path) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).context("building client")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn renders_a_kubeconfig_kube_rs_can_parse() {
        let client = CertFiles {
            cert: PathBuf::from("/t/admin.crt"),
            key: PathBuf::from("/t/admin.key"),
        };
        let text = render(
            "https://127.0.0.1:6443",
            Path::new("/t/ca.crt"),
            &client,
            "system:node:a",
        );
        let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("ferrokube"));
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(parsed.auth_infos[0].name, "system:node:a");
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.client_key.as_deref(), Some("/t/admin.key"));
    }
}
