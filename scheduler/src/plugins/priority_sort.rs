//! PrioritySort: higher priority first, then earlier enqueue time.

use crate::framework::{Plugin, QueueSortPlugin, QueuedPod};

/// Registry name.
pub const NAME: &str = "PrioritySort";

/// The default QueueSort plugin.
#[derive(Debug, Default)]
pub struct PrioritySort;

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        NAME
    }
    extension_points!(QueueSort);
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &QueuedPod, b: &QueuedPod) -> bool {
        let (pa, pb) = (a.info.priority, b.info.priority);
        pa > pb || (pa == pb && a.timestamp_ms < b.timestamp_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::pod;
    use serde_json::json;

    fn queued(priority: i32, ts: u64) -> QueuedPod {
        QueuedPod {
            info: pod("p", json!({"priority": priority})),
            timestamp_ms: ts,
            initial_attempt: None,
            attempts: 0,
            unschedulable_plugins: Default::default(),
            gated: false,
        }
    }

    #[test]
    fn priority_then_time() {
        let s = PrioritySort;
        assert!(s.less(&queued(10, 5), &queued(1, 1)));
        assert!(s.less(&queued(1, 1), &queued(1, 2)));
        assert!(!s.less(&queued(1, 2), &queued(1, 1)));
    }
}
