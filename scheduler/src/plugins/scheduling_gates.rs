//! SchedulingGates: a pod with `spec.schedulingGates` stays out of the active queue.

use crate::framework::{Code, Plugin, PreEnqueuePlugin, Status};
use crate::snapshot::PodInfo;

/// Registry name.
pub const NAME: &str = "SchedulingGates";

/// The SchedulingGates PreEnqueue plugin.
#[derive(Debug, Default)]
pub struct SchedulingGates;

impl Plugin for SchedulingGates {
    fn name(&self) -> &'static str {
        NAME
    }
    extension_points!(PreEnqueue);
}

impl PreEnqueuePlugin for SchedulingGates {
    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        let gates: Vec<&str> = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .into_iter()
            .flatten()
            .map(|g| g.name.as_str())
            .collect();
        if gates.is_empty() {
            return Status::success();
        }
        Status::new(
            Code::UnschedulableAndUnresolvable,
            format!("waiting for scheduling gates: [{}]", gates.join(" ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::pod;
    use serde_json::json;

    #[test]
    fn gated_pod_is_held() {
        let p = pod(
            "p",
            json!({"schedulingGates": [{"name": "a"}, {"name": "b"}]}),
        );
        let s = SchedulingGates.pre_enqueue(&p);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.message(), "waiting for scheduling gates: [a b]");
        assert!(SchedulingGates
            .pre_enqueue(&pod("q", json!({})))
            .is_success());
    }
}
