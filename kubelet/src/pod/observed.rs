//! What the runtime reports about one pod: its sandboxes and containers, read from CRI
//! and keyed by the labels the kubelet put on them. Everything the kubelet needs after a
//! restart is here, so re-adoption needs no local state.

/// A pod sandbox as CRI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedSandbox {
    /// CRI sandbox ID.
    pub id: String,
    /// `metadata.attempt`: how many sandboxes the pod had before this one.
    pub attempt: u32,
    /// `SANDBOX_READY`.
    pub ready: bool,
    /// Creation time, ns since the epoch.
    pub created_at: i64,
    /// Pod IPs (primary first); empty for hostNetwork pods.
    pub ips: Vec<String>,
}

/// A container's CRI state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// The runtime does not know.
    Unknown,
}

/// A container as CRI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    /// CRI container ID.
    pub id: String,
    /// The sandbox it runs in.
    pub sandbox_id: String,
    /// The spec container's name.
    pub name: String,
    /// Restart count recorded when it was created.
    pub restart_count: i32,
    /// Hash of the spec it was created from.
    pub hash: String,
    /// State.
    pub state: ContainerState,
    /// Exit code (exited containers).
    pub exit_code: i32,
    /// The runtime's reason, e.g. `OOMKilled`, `Completed`, `Error`.
    pub reason: String,
    /// The termination message (from terminationMessagePath or the log).
    pub message: String,
    /// Creation, start and finish times, ns since the epoch (0: not yet).
    pub created_at: i64,
    /// Start time (ns).
    pub started_at: i64,
    /// Finish time (ns).
    pub finished_at: i64,
    /// The image as specified.
    pub image: String,
    /// The resolved image reference (`imageID` in status).
    pub image_ref: String,
}

/// Everything CRI shows for one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedPod {
    /// Sandboxes, newest first.
    pub sandboxes: Vec<ObservedSandbox>,
    /// Containers of every sandbox.
    pub containers: Vec<ObservedContainer>,
}

impl ObservedPod {
    /// The newest sandbox.
    pub fn sandbox(&self) -> Option<&ObservedSandbox> {
        self.sandboxes.first()
    }

    /// The newest container named `name` (highest restart count, then newest), in any
    /// sandbox, or only in `sandbox_id` when given.
    pub fn latest(&self, name: &str, sandbox_id: Option<&str>) -> Option<&ObservedContainer> {
        self.containers
            .iter()
            .filter(|c| c.name == name && sandbox_id.is_none_or(|s| s == c.sandbox_id))
            .max_by_key(|c| (c.restart_count, c.created_at))
    }

    /// The container before `latest`: what `lastState` reports.
    pub fn previous(&self, name: &str) -> Option<&ObservedContainer> {
        let latest = self.latest(name, None)?;
        self.containers
            .iter()
            .filter(|c| c.name == name && c.id != latest.id)
            .max_by_key(|c| (c.restart_count, c.created_at))
    }

    /// Whether any container is running.
    pub fn any_running(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.state == ContainerState::Running)
    }
}
