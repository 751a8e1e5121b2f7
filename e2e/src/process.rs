//! Child processes that a test owns: output captured to a log file, killed and reaped on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::kill;
/// Signals, for [`ManagedProcess::signal`].
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// A process started by the harness. Dropping it sends SIGKILL and waits for it, so no test
/// leaves a process behind, whatever way it ends.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl ManagedProcess {
    /// Starts `program` with `args`; stdout and stderr both go to `log` (created/truncated).
    /// stdin is closed.
    ///
    /// The child gets SIGKILL if the spawning thread dies first (`PR_SET_PDEATHSIG`), so a
    /// test killed by a timeout leaves no etcd or apiserver behind. Spawn from the test's own
    /// thread (as tests do), not from a short-lived thread such as tokio's blocking pool.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Self> {
        use std::os::unix::process::CommandExt;

        let out = File::create(log).with_context(|| format!("creating log {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
        // async-signal-safe; it allocates nothing and touches no locks.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(ManagedProcess {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            exited: None,
        })
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file holding the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far (lossy UTF-8).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_exit_status().is_none()
    }

    /// Sends `signal` to the process (no-op once it has been reaped).
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        if self.try_exit_status().is_some() {
            return Ok(());
        }
        kill(Pid::from_raw(self.pid() as i32), signal)
            .with_context(|| format!("sending {signal} to {} ({})", self.name, self.pid()))
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        if let Some(status) = self.wait_timeout(grace) {
            return Ok(status);
        }
        self.kill()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit_status() {
            return Ok(status);
        }
        // kill() fails only if the child was already reaped, which try_exit_status rules out.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .with_context(|| format!("reaping {}", self.name))?;
        self.exited = Some(status);
        Ok(status)
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, log: &Path) -> ManagedProcess {
        let args = vec!["-c".to_string(), script.to_string()];
        ManagedProcess::spawn("sh", Path::new("/bin/sh"), &args, log).unwrap()
    }

    #[test]
    fn captures_output_and_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh("echo out; echo err >&2; exit 3", &dir.path().join("p.log"));
        let status = p.wait_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(p.log_tail(5), "out\nerr");
    }

    #[test]
    fn terminate_and_drop_stop_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh("exec sleep 30", &dir.path().join("a.log"));
        assert!(p.is_running());
        let status = p.terminate(Duration::from_secs(5)).unwrap();
        assert!(!status.success());
        let q = sh("exec sleep 30", &dir.path().join("b.log"));
        let pid = q.pid() as i32;
        drop(q);
        // Reaped: the pid no longer names our child.
        assert!(kill(Pid::from_raw(pid), None).is_err());
    }

    #[test]
    fn child_dies_with_the_spawning_thread() {
        use std::os::unix::process::ExitStatusExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t.log");
        let mut p = std::thread::spawn(move || sh("exec sleep 30", &log))
            .join()
            .unwrap();
        let status = p
            .wait_timeout(Duration::from_secs(10))
            .expect("child outlived the thread that spawned it");
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    }
}

/// How a process was started, so that a test can crash it and start it again the same way.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The name in messages.
    pub name: &'static str,
    /// The program.
    pub binary: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where its output goes (appended).
    pub log: PathBuf,
}

impl Launch {
    /// Starts the process.
    pub fn spawn(&self) -> Result<ManagedProcess> {
        ManagedProcess::spawn(self.name, &self.binary, &self.args, &self.log)
    }

    /// Kills `process` (SIGKILL: no graceful shutdown, as a crash), waits `down` and starts
    /// this launch again in its place.
    pub fn crash_and_restart(&self, process: &mut ManagedProcess, down: Duration) -> Result<()> {
        process.kill()?;
        std::thread::sleep(down);
        *process = self.spawn()?;
        Ok(())
    }
}
