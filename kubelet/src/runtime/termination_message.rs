//! A terminated container's message, as upstream's `convertToKubeContainerStatus`: the
//! file mounted at `terminationMessagePath` (its last 4096 bytes), or — with
//! `terminationMessagePolicy: FallbackToLogsOnError`, a failed container and an empty or
//! missing file — the tail of its log (last 80 lines, at most 2048 bytes). The runtime's own
//! message, when it has one, comes first, joined by `": "`.

use crate::cri::labels;
use crate::server::logs::{self, LogOptions};
use k8s_cri::v1 as cri;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Upstream's `MaxContainerTerminationMessageLength`: bytes read from the message file.
pub const MAX_MESSAGE_BYTES: u64 = 4096;
/// Upstream's `MaxContainerTerminationMessageLogLength`: bytes kept from the log tail.
pub const MAX_LOG_BYTES: usize = 2048;
/// Upstream's `MaxContainerTerminationMessageLogLines`: log lines considered.
pub const MAX_LOG_LINES: u64 = 80;

/// What reading the message file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileMessage {
    /// The file does not exist.
    Missing,
    /// Its (last `MAX_MESSAGE_BYTES`) content.
    Content(Vec<u8>),
    /// It could not be read: the error's text.
    Error(String),
}

/// Where a message comes from: the host's files, or a fake in tests.
pub trait MessageSource {
    /// The last `MAX_MESSAGE_BYTES` of the host file at `host_path`.
    fn read_file(&self, host_path: &str) -> FileMessage;
    /// The last `MAX_LOG_LINES` lines of the CRI log at `log_path`, at most
    /// `MAX_LOG_BYTES` (the end kept), or the read error as upstream words it.
    fn log_tail(&self, log_path: &str) -> String;
}

/// The message of `status` (empty unless the container exited).
pub fn termination_message(status: &cri::ContainerStatus, source: &impl MessageSource) -> String {
    if status.state != cri::ContainerState::ContainerExited as i32 {
        return status.message.clone();
    }
    let annotation = |k: &str| status.annotations.get(k).map(String::as_str);
    let path = annotation(labels::TERMINATION_MESSAGE_PATH).unwrap_or_default();
    let policy = annotation(labels::TERMINATION_MESSAGE_POLICY).unwrap_or_default();
    // A container that could not even start has no logs to fall back to.
    let fallback = policy == "FallbackToLogsOnError"
        && status.exit_code != 0
        && status.reason != "ContainerCannotRun";
    let (mut message, check_logs) = from_file(status, path, fallback, source);
    if check_logs && !status.log_path.is_empty() {
        message = source.log_tail(&status.log_path);
    }
    match (status.message.is_empty(), message.is_empty()) {
        (_, true) => status.message.clone(),
        (true, false) => message,
        (false, false) => format!("{}: {message}", status.message),
    }
}

/// The file's message and whether the log must be read instead (upstream's
/// `getTerminationMessage`).
fn from_file(
    status: &cri::ContainerStatus,
    path: &str,
    fallback: bool,
    source: &impl MessageSource,
) -> (String, bool) {
    if path.is_empty() {
        return (String::new(), fallback);
    }
    let Some(mount) = status.mounts.iter().find(|m| m.container_path == path) else {
        return (String::new(), fallback);
    };
    match source.read_file(&mount.host_path) {
        FileMessage::Missing => (String::new(), fallback),
        FileMessage::Content(data) => {
            let empty = data.is_empty();
            (
                String::from_utf8_lossy(&data).into_owned(),
                fallback && empty,
            )
        }
        FileMessage::Error(e) => (
            format!("Error on reading termination log {}: {e}", mount.host_path),
            false,
        ),
    }
}

/// The last `max` bytes of `data`, as a string.
pub fn keep_tail(data: &[u8], max: usize) -> String {
    let start = data.len().saturating_sub(max);
    String::from_utf8_lossy(&data[start..]).into_owned()
}

/// [`MessageSource`] over the node's filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostFiles;

impl MessageSource for HostFiles {
    fn read_file(&self, host_path: &str) -> FileMessage {
        match read_at_most(Path::new(host_path), MAX_MESSAGE_BYTES) {
            Ok(data) => FileMessage::Content(data),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileMessage::Missing,
            Err(e) => FileMessage::Error(e.to_string()),
        }
    }

    fn log_tail(&self, log_path: &str) -> String {
        let opts = LogOptions {
            tail_lines: Some(MAX_LOG_LINES),
            ..Default::default()
        };
        match logs::render(Path::new(log_path), &opts) {
            Ok(out) => keep_tail(&out, MAX_LOG_BYTES),
            Err(e) => format!("Error on reading termination message from logs: {e}"),
        }
    }
}

/// The last `max` bytes of the file at `path`.
fn read_at_most(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut data = Vec::new();
    f.take(max).read_to_end(&mut data)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake {
        file: FileMessage,
        log: &'static str,
    }

    impl MessageSource for Fake {
        fn read_file(&self, host_path: &str) -> FileMessage {
            assert_eq!(host_path, "/host/termination-log");
            self.file.clone()
        }
        fn log_tail(&self, log_path: &str) -> String {
            assert_eq!(log_path, "/var/log/pods/x/c/0.log");
            self.log.to_string()
        }
    }

    fn status(policy: &str, exit_code: i32, cri_message: &str) -> cri::ContainerStatus {
        cri::ContainerStatus {
            state: cri::ContainerState::ContainerExited as i32,
            exit_code,
            message: cri_message.into(),
            log_path: "/var/log/pods/x/c/0.log".into(),
            annotations: HashMap::from([
                (
                    labels::TERMINATION_MESSAGE_PATH.to_string(),
                    "/dev/termination-log".to_string(),
                ),
                (
                    labels::TERMINATION_MESSAGE_POLICY.to_string(),
                    policy.to_string(),
                ),
            ]),
            mounts: vec![cri::Mount {
                container_path: "/dev/termination-log".into(),
                host_path: "/host/termination-log".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn fake(file: FileMessage) -> Fake {
        Fake {
            file,
            log: "last words\n",
        }
    }

    #[test]
    fn message_comes_from_the_file() {
        let src = fake(FileMessage::Content(b"DONE".to_vec()));
        assert_eq!(termination_message(&status("File", 0, ""), &src), "DONE");
        // Even a failed container with FallbackToLogsOnError keeps a non-empty file.
        let s = status("FallbackToLogsOnError", 1, "");
        assert_eq!(termination_message(&s, &src), "DONE");
    }

    #[test]
    fn fallback_reads_the_log_only_when_failed_and_the_file_is_empty() {
        let empty = fake(FileMessage::Content(Vec::new()));
        let s = status("FallbackToLogsOnError", 1, "");
        assert_eq!(termination_message(&s, &empty), "last words\n");
        let missing = fake(FileMessage::Missing);
        assert_eq!(termination_message(&s, &missing), "last words\n");
        // Success: no fallback.
        let s = status("FallbackToLogsOnError", 0, "");
        assert_eq!(termination_message(&s, &empty), "");
        // Policy File: no fallback.
        let s = status("File", 1, "");
        assert_eq!(termination_message(&s, &empty), "");
        // Could not run: no fallback.
        let mut s = status("FallbackToLogsOnError", 128, "");
        s.reason = "ContainerCannotRun".into();
        assert_eq!(termination_message(&s, &empty), "");
    }

    #[test]
    fn runtime_message_comes_first() {
        let src = fake(FileMessage::Content(b"mine".to_vec()));
        let s = status("File", 137, "OOM");
        assert_eq!(termination_message(&s, &src), "OOM: mine");
        let src = fake(FileMessage::Content(Vec::new()));
        assert_eq!(termination_message(&s, &src), "OOM");
    }

    #[test]
    fn read_errors_are_reported() {
        let src = fake(FileMessage::Error("permission denied".into()));
        let s = status("FallbackToLogsOnError", 1, "");
        assert_eq!(
            termination_message(&s, &src),
            "Error on reading termination log /host/termination-log: permission denied"
        );
    }

    #[test]
    fn running_containers_have_no_file_message() {
        let src = fake(FileMessage::Content(b"DONE".to_vec()));
        let mut s = status("File", 0, "");
        s.state = cri::ContainerState::ContainerRunning as i32;
        assert_eq!(termination_message(&s, &src), "");
    }

    #[test]
    fn host_files_keep_the_ends() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("termination-log");
        let mut big = vec![b'a'; 5000];
        big.extend_from_slice(b"END");
        std::fs::write(&file, &big).unwrap();
        let FileMessage::Content(data) = HostFiles.read_file(file.to_str().unwrap()) else {
            panic!("expected content");
        };
        assert_eq!(data.len(), MAX_MESSAGE_BYTES as usize);
        assert!(data.ends_with(b"END"));
        assert_eq!(
            HostFiles.read_file(dir.path().join("none").to_str().unwrap()),
            FileMessage::Missing
        );

        let log = dir.path().join("0.log");
        let mut lines = String::new();
        for i in 0..100 {
            lines.push_str(&format!("2024-01-01T00:00:00Z stdout F line {i}\n"));
        }
        std::fs::write(&log, &lines).unwrap();
        let tail = HostFiles.log_tail(log.to_str().unwrap());
        assert!(tail.starts_with("line 20\n"), "{tail}");
        assert!(tail.ends_with("line 99\n"));
        // Long lines: only the last 2048 bytes stay.
        let long = format!("2024-01-01T00:00:00Z stderr F {}\n", "x".repeat(3000));
        std::fs::write(&log, format!("{long}2024-01-01T00:00:01Z stdout F bye\n")).unwrap();
        let tail = HostFiles.log_tail(log.to_str().unwrap());
        assert_eq!(tail.len(), MAX_LOG_BYTES);
        assert!(tail.ends_with("x\nbye\n"));
    }

    #[test]
    fn keep_tail_keeps_the_end() {
        assert_eq!(keep_tail(b"abcdef", 3), "def");
        assert_eq!(keep_tail(b"ab", 3), "ab");
    }
}
