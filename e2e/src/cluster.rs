//! `TestCluster`: etcd + kube-apiserver in a temp dir, with an admin kubeconfig, clients and
//! per-component kubeconfigs; torn down on drop.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::apiserver::{ApiServer, ApiServerPki};
use crate::assets::{self, ControlPlaneAssets, MissingAssets};
use crate::binaries::ferrokube_binary;
use crate::etcd::Etcd;
use crate::identity::Identity;
use crate::kubeconfig;
use crate::pki::{Pki, ServiceAccountKeys};
use crate::process::ManagedProcess;

/// How often the apiserver start is retried when its free port was taken in between.
const PORT_RACE_RETRIES: usize = 3;
/// Set to `1` to keep a cluster's directory (logs, PKI, kubeconfigs) after the test.
pub const KEEP_ENV: &str = "FERROKUBE_E2E_KEEP";

/// Why a [`TestCluster`] could not start.
#[derive(Debug)]
pub enum StartError {
    /// kube-apiserver or etcd is missing: the test should be skipped.
    MissingAssets(MissingAssets),
    /// Something else went wrong: the test should fail.
    Failed(anyhow::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::MissingAssets(missing) => missing.fmt(f),
            StartError::Failed(err) => write!(f, "{err:#}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<anyhow::Error> for StartError {
    fn from(err: anyhow::Error) -> Self {
        StartError::Failed(err)
    }
}

/// Prefix of etcd data directories in /dev/shm: `<prefix><pid>-<random>`.
const ETCD_DATA_PREFIX: &str = "ferrokube-etcd-";

/// Removes etcd data directories in `dir` whose owning test process no longer exists.
fn sweep_orphaned_etcd_data(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(ETCD_DATA_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The one-line reason printed when a test is skipped for `missing` binaries.
pub fn skip_reason(missing: &MissingAssets) -> String {
    if missing.lacks_apiserver() {
        "no kube-apiserver (set KUBEBUILDER_ASSETS)".to_string()
    } else {
        format!("no {} (set KUBEBUILDER_ASSETS)", missing.missing.join(", "))
    }
}

/// A real control plane for one test. Fields drop in order: apiserver, etcd, then the
/// directories.
pub struct TestCluster {
    apiserver: ApiServer,
    etcd: Etcd,
    client: kube::Client,
    admin_kubeconfig: PathBuf,
    pki: Pki,
    service_account: ServiceAccountKeys,
    assets: ControlPlaneAssets,
    logs: PathBuf,
    etcd_data: Option<TempDir>,
    dir: Option<TempDir>,
}

impl TestCluster {
    /// Starts etcd and kube-apiserver on free loopback ports in a new temp dir and waits for
    /// `/readyz`. Missing binaries give [`StartError::MissingAssets`]; see
    /// [`crate::cluster_or_skip!`] for the usual way to call this from a test.
    pub async fn start() -> Result<TestCluster, StartError> {
        Self::start_with_apiserver_flags(&[]).await
    }

    /// [`TestCluster::start`] with extra kube-apiserver flags after the usual ones (a later
    /// flag wins): e.g. `--feature-gates=…` and `--runtime-config=…` for alpha APIs.
    pub async fn start_with_apiserver_flags(extra: &[&str]) -> Result<TestCluster, StartError> {
        let assets = assets::find_control_plane().map_err(StartError::MissingAssets)?;
        let extra: Vec<String> = extra.iter().map(|f| f.to_string()).collect();
        Ok(Self::start_with_flags(assets, &extra).await?)
    }

    /// [`TestCluster::start`] with explicit binaries.
    pub async fn start_with(assets: ControlPlaneAssets) -> Result<TestCluster> {
        Self::start_with_flags(assets, &[]).await
    }

    /// [`TestCluster::start_with`] plus extra kube-apiserver flags.
    pub async fn start_with_flags(
        assets: ControlPlaneAssets,
        apiserver_flags: &[String],
    ) -> Result<TestCluster> {
        let dir = tempfile::Builder::new()
            .prefix("ferrokube-e2e-")
            .tempdir()
            .context("creating cluster dir")?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let pki_dir = dir.path().join("pki");
        let pki = Pki::create(&pki_dir)?;
        let files = ApiServerPki::create(&pki, &pki_dir)?;

        // etcd fsyncs every write: keep its data in memory when /dev/shm exists. The name
        // carries our pid so that data left by a test process that was killed (no Drop) is
        // swept by the next cluster.
        let shm = Path::new("/dev/shm");
        let etcd_data = if shm.is_dir() {
            sweep_orphaned_etcd_data(shm);
            tempfile::Builder::new()
                .prefix(&format!("{ETCD_DATA_PREFIX}{}-", std::process::id()))
                .tempdir_in(shm)
        } else {
            tempfile::Builder::new()
                .prefix("etcd-")
                .tempdir_in(dir.path())
        }
        .context("creating etcd data dir")?;
        let etcd = Etcd::start(&assets.etcd, etcd_data.path(), &logs.join("etcd.log"))?;

        let admin = Identity::Admin;
        let admin_cert =
            pki.client_cert(&admin.file_stem(), &admin.user(), admin.group().as_deref())?;
        let admin_kubeconfig = dir.path().join("admin.kubeconfig");
        let mut attempt = 0;
        let (apiserver, client) = loop {
            attempt += 1;
            let log = logs.join("kube-apiserver.log");
            let mut apiserver = ApiServer::start(
                &assets.kube_apiserver,
                etcd.client_url(),
                pki.ca_cert(),
                &files,
                &log,
                apiserver_flags,
            )?;
            kubeconfig::write(
                &admin_kubeconfig,
                &apiserver.url(),
                pki.ca_cert(),
                &admin_cert,
                &admin.user(),
            )?;
            let client = kubeconfig::client(&admin_kubeconfig).await?;
            match apiserver.wait_ready(&client).await {
                Ok(()) => break (apiserver, client),
                Err(err)
                    if attempt < PORT_RACE_RETRIES
                        && apiserver.process().log().contains("address already in use") =>
                {
                    eprintln!("kube-apiserver port taken, retrying: {err:#}");
                }
                Err(err) => return Err(err),
            }
        };
        Ok(TestCluster {
            apiserver,
            etcd,
            client,
            admin_kubeconfig,
            service_account: files.service_account,
            pki,
            assets,
            logs,
            etcd_data: Some(etcd_data),
            dir: Some(dir),
        })
    }

    /// Kills kube-apiserver (SIGKILL), keeps it down for `down`, starts it again on the same
    /// port and waits for `/readyz`; returns when it is ready. etcd keeps running.
    pub async fn restart_apiserver(&mut self, down: Duration) -> Result<()> {
        self.apiserver.kill_and_restart(down)?;
        self.apiserver.wait_ready(&self.client).await
    }

    /// Kills etcd (SIGKILL), keeps it down for `down`, starts it again on its data and waits
    /// for kube-apiserver's `/readyz` (which checks etcd). The API server keeps running.
    pub async fn restart_etcd(&mut self, down: Duration) -> Result<()> {
        self.etcd.kill_and_restart(down)?;
        self.apiserver.wait_ready(&self.client).await
    }

    /// An admin (`system:masters`) client.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// A kubeconfig authenticating as `identity` (made on first use).
    pub fn kubeconfig_for(&self, identity: &Identity) -> Result<PathBuf> {
        if *identity == Identity::Admin {
            return Ok(self.admin_kubeconfig.clone());
        }
        let path = self
            .dir()
            .join(format!("{}.kubeconfig", identity.file_stem()));
        if !path.exists() {
            let cert = self.pki.client_cert(
                &identity.file_stem(),
                &identity.user(),
                identity.group().as_deref(),
            )?;
            kubeconfig::write(
                &path,
                &self.url(),
                self.pki.ca_cert(),
                &cert,
                &identity.user(),
            )?;
        }
        Ok(path)
    }

    /// A client authenticating as `identity`.
    pub async fn client_for(&self, identity: &Identity) -> Result<kube::Client> {
        kubeconfig::client(&self.kubeconfig_for(identity)?).await
    }

    /// The kube-apiserver's process id (benchmarks read its CPU time and memory).
    pub fn apiserver_pid(&mut self) -> u32 {
        self.apiserver.process().pid()
    }

    /// The apiserver URL, `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.apiserver.url()
    }

    /// The cluster's directory (PKI, kubeconfigs, logs).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("dir lives as long as the cluster")
            .path()
    }

    /// The cluster's PKI (CA for kcm's signing flags, more client certificates).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The service-account signing key pair.
    pub fn service_account_keys(&self) -> &ServiceAccountKeys {
        &self.service_account
    }

    /// The control-plane binaries in use.
    pub fn assets(&self) -> &ControlPlaneAssets {
        &self.assets
    }

    /// Starts `program` with `args`, its output in `logs/<name>.log` (a numbered name when
    /// taken). The caller owns the process: it is killed when dropped.
    pub fn spawn(&self, name: &str, program: &Path, args: &[String]) -> Result<ManagedProcess> {
        let mut log = self.logs.join(format!("{name}.log"));
        let mut n = 1;
        while log.exists() {
            n += 1;
            log = self.logs.join(format!("{name}-{n}.log"));
        }
        ManagedProcess::spawn(name, program, args, &log)
    }

    /// Starts ferrokube binary `binary` (see [`ferrokube_binary`]) with `args`.
    pub fn spawn_component(&self, binary: &str, args: &[String]) -> Result<ManagedProcess> {
        let program = ferrokube_binary(binary)?;
        self.spawn(binary, &program, args)
    }

    /// Runs kubectl with the admin kubeconfig (fails if kubectl was not found).
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        let kubectl = self
            .assets
            .kubectl
            .as_ref()
            .context("kubectl not found (searched as for kube-apiserver)")?;
        std::process::Command::new(kubectl)
            .arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()))
            .args(args)
            .output()
            .context("running kubectl")
    }

    fn print_logs_on_failure(&mut self) {
        eprintln!(
            "--- test failed; control-plane logs in {} ---",
            self.logs.display()
        );
        for p in [self.etcd.process(), self.apiserver.process()] {
            eprintln!("--- {} (last lines) ---\n{}", p.name(), p.log_tail(15));
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let keep = std::thread::panicking() || std::env::var(KEEP_ENV).is_ok_and(|v| v == "1");
        if std::thread::panicking() {
            self.print_logs_on_failure();
        }
        let _ = self.apiserver.process().kill();
        let _ = self.etcd.process().kill();
        drop(self.etcd_data.take());
        if let Some(dir) = self.dir.take() {
            if keep {
                eprintln!("kept cluster dir {}", dir.keep().display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_only_data_of_dead_processes() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir
            .path()
            .join(format!("{ETCD_DATA_PREFIX}{}-abc", std::process::id()));
        // Pid numbers above the kernel's pid_max (4194304 at most) never exist.
        let dead = dir.path().join(format!("{ETCD_DATA_PREFIX}4294967-abc"));
        let foreign = dir.path().join(format!("{ETCD_DATA_PREFIX}xyz"));
        for d in [&live, &dead, &foreign] {
            std::fs::create_dir(d).unwrap();
        }
        sweep_orphaned_etcd_data(dir.path());
        assert!(live.exists() && foreign.exists());
        assert!(!dead.exists());
    }
}
