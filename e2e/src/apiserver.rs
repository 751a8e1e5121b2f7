//! kube-apiserver for one test cluster: secure serving on a free loopback port, client
//! certificates, service-account keys, Node+RBAC authorization and the default admission
//! plugins.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::pki::{CertFiles, Pki, ServiceAccountKeys};
use crate::ports::free_port;
use crate::process::{Launch, ManagedProcess};

/// The service network of test clusters (`--service-cluster-ip-range`).
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/16";
/// The `kubernetes` Service's ClusterIP in that range (a SAN of the serving certificate).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// The service-account token issuer.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// How long the apiserver may take to report ready; generous, as the machine is shared.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The front-proxy client's name (`--requestheader-allowed-names`), as kubeadm's.
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

/// The user the apiserver authenticates as to kubelets, as kubeadm names it.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// Files the apiserver needs, made by [`Pki`].
#[derive(Debug, Clone)]
pub struct ApiServerPki {
    /// Serving certificate for 127.0.0.1 and the in-cluster names.
    pub serving: CertFiles,
    /// Service-account signing keys.
    pub service_account: ServiceAccountKeys,
    /// The front-proxy CA certificate (`--requestheader-client-ca-file`): published in
    /// `kube-system/extension-apiserver-authentication`, where components' delegated
    /// authentication expects it.
    pub front_proxy_ca: PathBuf,
    /// The apiserver's front-proxy client certificate (`--proxy-client-cert-file`).
    pub front_proxy_client: CertFiles,
    /// The certificate the apiserver presents to kubelets (`--kubelet-client-certificate`),
    /// for logs, exec and port-forward: kubeadm's `apiserver-kubelet-client`.
    pub kubelet_client: CertFiles,
}

impl ApiServerPki {
    /// Issues the serving certificate, service-account keys and a front-proxy CA and client
    /// certificate beside the cluster CA.
    pub fn create(pki: &Pki, dir: &Path) -> Result<Self> {
        let front_proxy = Pki::create_named(dir, "front-proxy-ca", "front-proxy-ca")?;
        let front_proxy_client =
            front_proxy.client_cert(FRONT_PROXY_CLIENT, FRONT_PROXY_CLIENT, None)?;
        let serving = pki.serving_cert(
            "apiserver",
            "kube-apiserver",
            &[
                "127.0.0.1",
                "localhost",
                KUBERNETES_SERVICE_IP,
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )?;
        let kubelet_client = pki.client_cert(
            "apiserver-kubelet-client",
            KUBELET_CLIENT_USER,
            Some("system:masters"),
        )?;
        Ok(ApiServerPki {
            serving,
            kubelet_client,
            service_account: pki.service_account_keys()?,
            front_proxy_ca: front_proxy.ca_cert().to_path_buf(),
            front_proxy_client,
        })
    }
}

/// A running kube-apiserver.
#[derive(Debug)]
pub struct ApiServer {
    process: ManagedProcess,
    port: u16,
    launch: Launch,
}

impl ApiServer {
    /// The flags the harness runs kube-apiserver with.
    pub fn args(port: u16, etcd_url: &str, ca: &Path, files: &ApiServerPki) -> Vec<String> {
        vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            // The endpoint reconciler refuses loopback advertise addresses; nothing in a test
            // cluster reaches the apiserver through the `kubernetes` Service.
            "--advertise-address=127.0.0.1".into(),
            "--endpoint-reconciler-type=none".into(),
            format!("--tls-cert-file={}", files.serving.cert.display()),
            format!("--tls-private-key-file={}", files.serving.key.display()),
            format!("--client-ca-file={}", ca.display()),
            format!(
                "--service-account-key-file={}",
                files.service_account.public.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                files.service_account.private.display()
            ),
            format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
            "--authorization-mode=Node,RBAC".into(),
            // Bootstrap tokens (kube-system `bootstrap-token-*` Secrets), as kubeadm runs it:
            // kubelet TLS bootstrap authenticates with one.
            "--enable-bootstrap-token-auth=true".into(),
            // The default admission plugins plus NodeRestriction, as kubeadm runs them.
            "--enable-admission-plugins=NodeRestriction".into(),
            format!(
                "--requestheader-client-ca-file={}",
                files.front_proxy_ca.display()
            ),
            format!("--requestheader-allowed-names={FRONT_PROXY_CLIENT}"),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            format!(
                "--proxy-client-cert-file={}",
                files.front_proxy_client.cert.display()
            ),
            format!(
                "--proxy-client-key-file={}",
                files.front_proxy_client.key.display()
            ),
            format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
            "--allow-privileged=true".into(),
            "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
            format!(
                "--kubelet-client-certificate={}",
                files.kubelet_client.cert.display()
            ),
            format!(
                "--kubelet-client-key={}",
                files.kubelet_client.key.display()
            ),
        ]
    }

    /// Starts kube-apiserver on a free port with [`ApiServer::args`] followed by `extra`
    /// (a later flag wins, so `extra` can override, e.g. `--feature-gates`,
    /// `--runtime-config`). Readiness is awaited by the caller
    /// ([`crate::cluster::TestCluster`]), which has the admin client for `/readyz`.
    pub fn start(
        binary: &Path,
        etcd_url: &str,
        ca: &Path,
        files: &ApiServerPki,
        log: &Path,
        extra: &[String],
    ) -> Result<ApiServer> {
        let port = free_port()?;
        let mut args = Self::args(port, etcd_url, ca, files);
        args.extend(extra.iter().cloned());
        let launch = Launch {
            name: "kube-apiserver",
            binary: binary.to_path_buf(),
            args,
            log: log.to_path_buf(),
        };
        Ok(ApiServer {
            process: launch.spawn()?,
            port,
            launch,
        })
    }

    /// Kills the process (SIGKILL, as a crash) and starts it again on the same port with the
    /// same flags, after `down`. Readiness is the caller's to await.
    pub fn kill_and_restart(&mut self, down: Duration) -> Result<()> {
        self.launch.crash_and_restart(&mut self.process, down)
    }

    /// The secure port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The apiserver process.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// Polls `/readyz` with `client` until it answers `ok`, failing early if the process dies.
    pub async fn wait_ready(&mut self, client: &kube::Client) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.process.try_exit_status() {
                bail!(
                    "kube-apiserver exited ({status}); log {}:\n{}",
                    self.process.log_path().display(),
                    self.process.log_tail(30)
                );
            }
            let request = http::Request::get("/readyz").body(Vec::new())?;
            let last = match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(err) => err.to_string(),
            };
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver not ready within {READY_TIMEOUT:?} (last answer: {last}); \
                     log:\n{}",
                    self.process.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
