//! A private containerd for tests and local clusters: started in the background from the
//! project's config (`kubelet/deploy/containerd-config.toml`) on a socket, root and state
//! directory of its own, with the busybox and pause images loaded; stopped (only its own
//! PID) on drop.

use crate::image::busybox::{busybox_image, pause_image, BUSYBOX_IMAGE, BUSYBOX_PATH, PAUSE_IMAGE};
use crate::image::{ImageLoader, K8S_NAMESPACE};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The containerd configuration the project ships, with `@…@` placeholders.
pub const CONFIG_TEMPLATE: &str = include_str!("../../deploy/containerd-config.toml");

/// Renders [`CONFIG_TEMPLATE`] for the given directories and socket.
pub fn render_config(root: &Path, state: &Path, socket: &Path, cni_conf_dir: &Path) -> String {
    CONFIG_TEMPLATE
        .replace("@ROOT@", &root.display().to_string())
        .replace("@STATE@", &state.display().to_string())
        .replace("@SOCKET@", &socket.display().to_string())
        .replace("@CNI_CONF_DIR@", &cni_conf_dir.display().to_string())
}

/// Why containerd could not be used, when that is the machine's fault, not the test's.
pub fn unavailable_reason() -> Option<String> {
    for bin in ["containerd", "runc", "containerd-shim-runc-v2"] {
        if which(bin).is_none() {
            return Some(format!("no {bin} on PATH (run hack/install-deps.sh)"));
        }
    }
    if !Path::new(BUSYBOX_PATH).exists() {
        return Some(format!("no {BUSYBOX_PATH} (apt install busybox-static)"));
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Some("containerd needs root".into());
    }
    None
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.exists())
}

/// A running containerd owned by this process.
pub struct TestContainerd {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl TestContainerd {
    /// Starts containerd in a fresh directory under `/var/tmp` (overlayfs needs a real
    /// filesystem) and loads the busybox and pause images into `k8s.io`.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ferrokube-containerd-")
            .tempdir_in("/var/tmp")?;
        let socket = dir.path().join("containerd.sock");
        let cni = dir.path().join("cni");
        std::fs::create_dir_all(&cni)?;
        let config = dir.path().join("config.toml");
        let text = render_config(
            &dir.path().join("root"),
            &dir.path().join("state"),
            &socket,
            &cni,
        );
        std::fs::write(&config, text)?;
        let log = std::fs::File::create(dir.path().join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start containerd")?;
        let mut me = TestContainerd { child, dir, socket };
        me.wait_ready().await?;
        me.load_images().await?;
        Ok(me)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("containerd exited with {status}: {}", self.log_tail());
            }
            if self.socket.exists() {
                if let Ok(cri) = crate::cri::Cri::connect(&self.endpoint()).await {
                    use crate::cri::CriService;
                    if cri.runtime_version().await.is_ok() {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not serve CRI within 20s: {}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn load_images(&self) -> Result<()> {
        let loader = ImageLoader::connect(&self.endpoint(), K8S_NAMESPACE).await?;
        let busybox = Path::new(BUSYBOX_PATH);
        loader.load(&busybox_image(busybox, BUSYBOX_IMAGE)?).await?;
        loader.load(&pause_image(busybox, PAUSE_IMAGE)?).await?;
        // The CRI plugin learns of imported images from events, asynchronously: wait for it.
        let cri = crate::cri::Cri::connect(&self.endpoint()).await?;
        use crate::cri::CriService;
        let deadline = Instant::now() + Duration::from_secs(10);
        for image in [BUSYBOX_IMAGE, PAUSE_IMAGE] {
            loop {
                let spec = k8s_cri::v1::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                };
                let request = k8s_cri::v1::ImageStatusRequest {
                    image: Some(spec),
                    verbose: false,
                };
                let seen = cri.image_status(request).await.ok().and_then(|r| r.image);
                if seen.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("CRI does not list the loaded image {image}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The CRI endpoint, `unix://…`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The CNI configuration directory containerd watches.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.path().join("cni")
    }

    /// A scratch directory that lives as long as containerd.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of containerd's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(15).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Stops containerd (SIGTERM, then SIGKILL after 5s) and reaps it.
    pub fn stop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(self.child.id() as i32);
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        self.stop();
        self.kill_leftover_shims();
    }
}

impl TestContainerd {
    /// Kills the shims (and their containers) this containerd started that outlived it: they
    /// carry our unique socket path on their command line, so nothing else is touched.
    fn kill_leftover_shims(&self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let needle = self.socket.display().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("containerd-shim") && cmdline.contains(&needle) {
                let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .unwrap_or_default();
                for child in children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok())
                {
                    let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
                }
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}
