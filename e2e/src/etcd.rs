//! An etcd member for one test cluster, on free loopback ports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::ports::{free_port, is_listening};

/// Starts retried when a chosen free port was taken before etcd bound it.
const PORT_RACE_RETRIES: usize = 3;
use crate::process::{Launch, ManagedProcess};

/// How long etcd may take to accept client connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running single-member etcd.
#[derive(Debug)]
pub struct Etcd {
    process: ManagedProcess,
    client_url: String,
    client_port: u16,
    launch: Launch,
}

impl Etcd {
    /// Starts etcd with its data in `data_dir` and its log in `log`. Client and peer ports
    /// are both free loopback ports, so parallel tests never share or clash; a port taken
    /// between choosing and binding it (another test's process) means a retry on new ports
    /// with an emptied data dir.
    pub fn start(binary: &Path, data_dir: &Path, log: &Path) -> Result<Etcd> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(binary, data_dir, log) {
                Err(e)
                    if attempt < PORT_RACE_RETRIES
                        && format!("{e:#}").contains("address already in use") =>
                {
                    eprintln!("etcd port taken, retrying: {e:#}");
                    for entry in std::fs::read_dir(data_dir)?.flatten() {
                        let _ = std::fs::remove_dir_all(entry.path())
                            .or_else(|_| std::fs::remove_file(entry.path()));
                    }
                }
                result => return result,
            }
        }
    }

    fn start_once(binary: &Path, data_dir: &Path, log: &Path) -> Result<Etcd> {
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let args = vec![
            "--name=default".to_string(),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--initial-cluster-state=new".to_string(),
            // Tests write little; keep the WAL from growing snapshots we never read.
            "--snapshot-count=10000".to_string(),
        ];
        let mut launch = Launch {
            name: "etcd",
            binary: binary.to_path_buf(),
            args,
            log: log.to_path_buf(),
        };
        let mut process = launch.spawn()?;
        wait_listening(&mut process, client_port, &client_url)?;
        // From now on the member exists in its data dir: a restart joins it, not a new one.
        launch.args.retain(|a| a != "--initial-cluster-state=new");
        Ok(Etcd {
            process,
            client_url,
            client_port,
            launch,
        })
    }

    /// Kills etcd (SIGKILL, as a crash), keeps it down for `down`, and starts it again on the
    /// same ports and data; returns once it listens.
    pub fn kill_and_restart(&mut self, down: Duration) -> Result<()> {
        self.launch.crash_and_restart(&mut self.process, down)?;
        wait_listening(&mut self.process, self.client_port, &self.client_url)
    }

    /// The client URL for `--etcd-servers`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The etcd process.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// etcd's log file.
    pub fn log_path(&self) -> PathBuf {
        self.process.log_path().to_path_buf()
    }
}

/// Waits until etcd listens on `port`, failing early with its log when it exits.
fn wait_listening(process: &mut ManagedProcess, port: u16, url: &str) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while !is_listening(port) {
        if let Some(status) = process.try_exit_status() {
            bail!(
                "etcd exited ({status}) before serving; log {}:\n{}",
                process.log_path().display(),
                process.log_tail(20)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "etcd did not listen on {url} within {START_TIMEOUT:?}; log:\n{}",
                process.log_tail(20)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
