use super::*;
use crate::framework::{Action, Code, EventResource};
use crate::plugins::testutil::pod;
use serde_json::json;

fn queue() -> SchedulingQueue {
    let less: LessFn = Arc::new(|a: &QueuedPod, b: &QueuedPod| {
        a.info.priority > b.info.priority
            || (a.info.priority == b.info.priority && a.timestamp_ms < b.timestamp_ms)
    });
    let gate: PreEnqueueFn = Arc::new(|p: &PodInfo| {
        if p.labels.contains_key("gated") {
            Status::new(Code::UnschedulableAndUnresolvable, "gated")
        } else {
            Status::success()
        }
    });
    let mut events = HashMap::new();
    events.insert(
        "NodeResourcesFit",
        vec![ClusterEvent::new(EventResource::Node, Action::ADD)],
    );
    events.insert(
        "TaintToleration",
        vec![ClusterEvent::new(EventResource::Node, Action::UPDATE_TAINT)],
    );
    SchedulingQueue::new(
        less,
        gate,
        events,
        Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
        },
    )
}

fn p(name: &str, prio: i32) -> Arc<PodInfo> {
    pod(name, json!({"priority": prio}))
}

#[test]
fn active_queue_pops_by_priority_then_age() {
    let q = queue();
    q.add(p("low", 1));
    q.add(p("high", 10));
    q.add(p("low2", 1));
    let order: Vec<String> = (0..3)
        .map(|_| q.pop(Duration::ZERO).unwrap().0.info.name.clone())
        .collect();
    assert_eq!(order, vec!["high", "low", "low2"]);
    assert!(q.pop(Duration::from_millis(1)).is_none());
}

#[test]
fn unschedulable_pod_moves_only_on_registered_event() {
    let q = queue();
    q.add(p("a", 0));
    let (qp, cycle) = q.pop(Duration::ZERO).unwrap();
    q.requeue(
        qp.info.clone(),
        cycle,
        HashSet::from(["NodeResourcesFit"]),
        false,
    );
    assert_eq!(q.pending().unschedulable, 1);
    assert_eq!(
        q.on_event(ClusterEvent::new(EventResource::Node, Action::UPDATE_TAINT)),
        0
    );
    assert_eq!(
        q.on_event(ClusterEvent::new(EventResource::Node, Action::ADD)),
        1
    );
    std::thread::sleep(Duration::from_millis(3));
    q.flush(MAX_IN_UNSCHEDULABLE);
    assert_eq!(q.pop(Duration::ZERO).unwrap().0.attempts, 2);
}

#[test]
fn event_during_attempt_sends_pod_to_backoff() {
    let q = queue();
    q.add(p("a", 0));
    let (qp, cycle) = q.pop(Duration::ZERO).unwrap();
    q.on_event(ClusterEvent::new(EventResource::Node, Action::ADD));
    q.requeue(
        qp.info.clone(),
        cycle,
        HashSet::from(["TaintToleration"]),
        false,
    );
    assert_eq!(q.pending().backoff, 1);
}

#[test]
fn gated_pod_waits_for_update_and_flush_moves_stale() {
    let q = queue();
    q.add(pod("g", json!({})).as_ref().clone().into_gated());
    assert_eq!(q.pending().gated, 1);
    assert!(q.pop(Duration::ZERO).is_none());
    q.update(p("g", 0));
    assert_eq!(q.pop(Duration::ZERO).unwrap().0.info.name, "g");

    q.add(p("u", 0));
    let (qp, cycle) = q.pop(Duration::ZERO).unwrap();
    q.requeue(
        qp.info.clone(),
        cycle,
        HashSet::from(["NodeResourcesFit"]),
        false,
    );
    std::thread::sleep(Duration::from_millis(3));
    q.flush(Duration::ZERO);
    assert_eq!(q.pending().active, 1);
}

trait Gated {
    fn into_gated(self) -> Arc<PodInfo>;
}

impl Gated for PodInfo {
    fn into_gated(mut self) -> Arc<PodInfo> {
        self.labels.insert("gated".into(), "y".into());
        self.uid = "g".into();
        self.name = "g".into();
        Arc::new(self)
    }
}

#[test]
fn failed_binding_backs_off_and_keeps_its_attempts() {
    let q = queue();
    q.add(p("a", 0));
    let (qp, cycle) = q.pop(Duration::ZERO).unwrap();
    // The binding cycle fails (an API error): the pod is still queued, in backoff.
    assert!(q.requeue(qp.info.clone(), cycle, HashSet::new(), true));
    assert_eq!(q.pending().backoff, 1);
    std::thread::sleep(Duration::from_millis(3));
    q.flush(MAX_IN_UNSCHEDULABLE);
    let (again, _) = q.pop(Duration::ZERO).unwrap();
    assert_eq!(again.attempts, 2, "not re-added as a new pod");

    // With upstream's defaults (1s, 10s) the retry waits.
    let q = SchedulingQueue::new(
        Arc::new(|_: &QueuedPod, _: &QueuedPod| false),
        Arc::new(|_: &PodInfo| Status::success()),
        HashMap::new(),
        Backoff::default(),
    );
    q.add(p("b", 0));
    let (qp, cycle) = q.pop(Duration::ZERO).unwrap();
    assert!(q.requeue(qp.info.clone(), cycle, HashSet::new(), true));
    q.flush(MAX_IN_UNSCHEDULABLE);
    assert!(
        q.pop(Duration::from_millis(50)).is_none(),
        "retried at once"
    );
    assert_eq!(q.pending().backoff, 1);
}

#[test]
fn pod_deleted_while_in_flight_is_never_requeued() {
    let q = queue();
    q.add(p("a", 0));
    let (qp, cycle) = q.pop(Duration::ZERO).unwrap();
    // The informer sees the deletion while the pod is being bound.
    q.delete(&qp.info.uid);
    assert!(!q.requeue(qp.info.clone(), cycle, HashSet::new(), true));
    assert!(!q.requeue(qp.info.clone(), cycle, HashSet::new(), false));
    assert_eq!(q.pending(), Pending::default());
    std::thread::sleep(Duration::from_millis(3));
    q.flush(Duration::ZERO);
    assert!(q.pop(Duration::from_millis(5)).is_none());
}
