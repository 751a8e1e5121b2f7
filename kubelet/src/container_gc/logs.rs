//! Pod log directories (`/var/log/pods/<ns>_<name>_<uid>`) of removed pods, as upstream's
//! container GC `evictPodLogsDirectories`: a directory goes once the kubelet no longer
//! knows its pod and the runtime holds nothing of it (so a pod not yet seen after a
//! restart, whose containers still exist, keeps its logs).

use super::policy::PodState;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The pod UID of a log directory name: what follows its last `_`.
pub fn pod_uid_of(dir_name: &str) -> Option<&str> {
    dir_name
        .rsplit_once('_')
        .map(|(_, uid)| uid)
        .filter(|u| !u.is_empty())
}

/// Which of the directories `names` go: their pod is unknown to the kubelet and has no
/// container or sandbox in the runtime (`in_runtime`: UIDs the runtime holds).
pub fn removable<'a>(
    names: impl IntoIterator<Item = &'a str>,
    state: &dyn Fn(&str) -> PodState,
    in_runtime: &HashSet<String>,
) -> Vec<&'a str> {
    names
        .into_iter()
        .filter(|n| {
            pod_uid_of(n)
                .is_some_and(|uid| state(uid) == PodState::Unknown && !in_runtime.contains(uid))
        })
        .collect()
}

/// Removes the removable pod log directories under `logs_dir`; returns them.
pub fn collect(
    logs_dir: &Path,
    state: &dyn Fn(&str) -> PodState,
    in_runtime: &HashSet<String>,
) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(logs_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let mut removed = Vec::new();
    for name in removable(names.iter().map(String::as_str), state, in_runtime) {
        let path = logs_dir.join(name);
        std::fs::remove_dir_all(&path)?;
        removed.push(path);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(uid: &str) -> PodState {
        match uid {
            "live" => PodState::Active,
            "evicted" => PodState::Removable,
            _ => PodState::Unknown,
        }
    }

    #[test]
    fn only_unknown_pods_with_nothing_in_the_runtime_lose_their_logs() {
        let in_runtime = HashSet::from(["restarting".to_string()]);
        let names = [
            "ns_web_live",
            "ns_old_gone",
            "ns_evicted-pod_evicted",
            "ns_not-seen-yet_restarting",
            "no-uid",
            "ns_a_b_c_gone2",
        ];
        assert_eq!(
            removable(names, &state, &in_runtime),
            vec!["ns_old_gone", "ns_a_b_c_gone2"]
        );
        assert_eq!(pod_uid_of("kube-system_x_1234-abcd"), Some("1234-abcd"));
        assert_eq!(pod_uid_of("trailing_"), None);
    }

    #[test]
    fn collect_removes_the_directories() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["ns_a_live/app", "ns_b_gone/app"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
            std::fs::write(dir.path().join(d).join("0.log"), "x").unwrap();
        }
        let removed = collect(dir.path(), &state, &HashSet::new()).unwrap();
        assert_eq!(removed, vec![dir.path().join("ns_b_gone")]);
        assert!(dir.path().join("ns_a_live/app/0.log").exists());
        assert!(!dir.path().join("ns_b_gone").exists());
        assert!(collect(&dir.path().join("none"), &state, &HashSet::new())
            .unwrap()
            .is_empty());
    }
}
