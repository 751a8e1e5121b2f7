//! The result of running a plugin at an extension point.

use std::fmt;

/// Status codes, as upstream's framework.Code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The plugin ran correctly and found the pod schedulable.
    Success,
    /// An internal error; the pod is retried with backoff.
    Error,
    /// Not schedulable here, but preemption might help.
    Unschedulable,
    /// Not schedulable here, and preemption would not help.
    UnschedulableAndUnresolvable,
    /// A Permit plugin asks to wait.
    Wait,
    /// The plugin has nothing to do for this pod (PreFilter/PreScore/Bind).
    Skip,
    /// The pod waits for something outside the scheduler.
    Pending,
}

/// A status: a code, human-readable reasons and the plugin that returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The outcome.
    pub code: Code,
    /// Reasons; each becomes one entry in a FailedScheduling histogram.
    pub reasons: Vec<String>,
    /// Name of the plugin that produced the status (set by the framework).
    pub plugin: &'static str,
}

impl Status {
    /// Success, without reasons.
    pub const fn success() -> Self {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    /// Skip, without reasons.
    pub const fn skip() -> Self {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    /// A status with one reason.
    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }

    /// A status with several reasons.
    pub fn with_reasons(code: Code, reasons: Vec<String>) -> Self {
        Status {
            code,
            reasons,
            plugin: "",
        }
    }

    /// An internal error.
    pub fn error(msg: impl fmt::Display) -> Self {
        Status::new(Code::Error, msg.to_string())
    }

    /// Records which plugin returned this status.
    pub fn by(mut self, plugin: &'static str) -> Self {
        self.plugin = plugin;
        self
    }

    /// Whether the code is Success.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Whether the pod was rejected (Unschedulable, UnschedulableAndUnresolvable or Pending).
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable | Code::Pending
        )
    }

    /// The reasons joined with ", " (upstream's Status.Message()).
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message())
    }
}
