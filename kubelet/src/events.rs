//! Events as upstream's kubelet records them: about a pod, one of its containers
//! (`fieldPath spec.containers{name}`) or the node, with upstream's reasons and messages,
//! reported by `kubelet` from the node. They are written through component-base's
//! recorder (events.k8s.io/v1, `reportingController: kubelet`, which the core/v1 view
//! and its `source=kubelet` field selector show as the source), whose series aggregate
//! repeats.
//!
//! Recording never blocks the caller: events go through a channel to one background task.

use component_base::events::{self as base, EventRecorder, EventSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use tokio::sync::mpsc;

/// Event reasons the kubelet uses (upstream's pkg/kubelet/events).
pub mod reason {
    /// A container was created.
    pub const CREATED: &str = "Created";
    /// A container was started.
    pub const STARTED: &str = "Started";
    /// Creating or starting a container failed; also image pull errors.
    pub const FAILED: &str = "Failed";
    /// A container is being stopped.
    pub const KILLING: &str = "Killing";
    /// Back-off restarting a container or pulling an image.
    pub const BACK_OFF: &str = "BackOff";
    /// An image is being pulled.
    pub const PULLING: &str = "Pulling";
    /// An image was pulled or is present.
    pub const PULLED: &str = "Pulled";
    /// `imagePullPolicy: Never` and the image is absent.
    pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
    /// A pod's sandbox could not be created (its RuntimeClass, the runtime).
    pub const FAILED_CREATE_POD_SANDBOX: &str = "FailedCreatePodSandBox";
    /// An image reference that does not parse (upstream's `FailedToInspectImage`).
    pub const INSPECT_FAILED: &str = "InspectFailed";
    /// A probe failed.
    pub const UNHEALTHY: &str = "Unhealthy";
    /// A probe succeeded with a warning (e.g. a redirect to another host).
    pub const PROBE_WARNING: &str = "ProbeWarning";
    /// The postStart hook failed.
    pub const FAILED_POST_START_HOOK: &str = "FailedPostStartHook";
    /// The preStop hook failed.
    pub const FAILED_PRE_STOP_HOOK: &str = "FailedPreStopHook";
    /// A volume could not be mounted.
    pub const FAILED_MOUNT: &str = "FailedMount";
    /// The kubelet started.
    pub const STARTING: &str = "Starting";
    /// The node registered with the apiserver.
    pub const REGISTERED_NODE: &str = "RegisteredNode";
    /// The node became Ready.
    pub const NODE_READY: &str = "NodeReady";
    /// The node stopped being Ready.
    pub const NODE_NOT_READY: &str = "NodeNotReady";
}

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Expected.
    Normal,
    /// Worth an operator's look.
    Warning,
}

impl EventType {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// What it is about.
    pub involved: ObjectReference,
    /// Normal or Warning.
    pub type_: EventType,
    /// Upstream's reason.
    pub reason: String,
    /// Upstream's message.
    pub message: String,
}

/// The reference upstream's `GenerateContainerRef` builds: the pod, with `fieldPath`
/// `spec.containers{name}` / `spec.initContainers{name}` / `spec.ephemeralContainers{name}`
/// when about a container.
pub fn object_ref(pod: &Pod, container: Option<&str>) -> ObjectReference {
    let field_path = container.map(|name| {
        let list = crate::pod::containers::find(pod, name)
            .map(|(list, _)| list)
            .unwrap_or(crate::pod::containers::SpecList::App);
        format!("{}{{{name}}}", list.field())
    });
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path,
    }
}

/// The node's reference, as upstream's kubelet uses it (the UID is the node name).
pub fn node_ref(node_name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".into()),
        name: Some(node_name.into()),
        uid: Some(node_name.into()),
        ..Default::default()
    }
}

/// Replaces the container ID in a runtime error with the container's name, as upstream
/// does so repeats aggregate.
pub fn scrub_id(message: &str, container_id: &str, name: &str) -> String {
    if container_id.is_empty() {
        message.to_string()
    } else {
        message.replace(container_id, name)
    }
}

/// A duration as Go's `time.Duration` prints it after truncation to milliseconds
/// (`350ms`, `1.5s`, `2m3.04s`, `1h0m5s`), as upstream's pull messages show it.
pub fn go_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let (secs, frac) = (ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&secs.to_string());
    if frac > 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// The `action` events.k8s.io/v1 requires (the core/v1 events upstream's kubelet writes
/// have none): what the kubelet was doing when it recorded `reason`.
pub fn action_for(reason: &str) -> &'static str {
    match reason {
        reason::PULLING | reason::PULLED | reason::ERR_IMAGE_NEVER_PULL => "Pull",
        reason::CREATED => "Create",
        reason::STARTED | reason::BACK_OFF => "Start",
        reason::KILLING => "Kill",
        reason::UNHEALTHY | reason::PROBE_WARNING => "Probe",
        reason::FAILED_POST_START_HOOK | reason::FAILED_PRE_STOP_HOOK => "RunHook",
        reason::FAILED_MOUNT => "Mount",
        reason::STARTING
        | reason::REGISTERED_NODE
        | reason::NODE_READY
        | reason::NODE_NOT_READY => "NodeStatus",
        _ => "Sync",
    }
}

/// The event as component-base's recorder takes it.
pub fn spec(r: &Record) -> EventSpec {
    EventSpec {
        regarding: r.involved.clone(),
        related: None,
        type_: match r.type_ {
            EventType::Normal => base::EventType::Normal,
            EventType::Warning => base::EventType::Warning,
        },
        reason: r.reason.clone(),
        action: action_for(&r.reason).to_string(),
        note: r.message.clone(),
    }
}

/// Records events for one kubelet; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: Option<mpsc::UnboundedSender<Record>>,
}

impl Recorder {
    /// A recorder writing through `client` as `kubelet` on `host` (the node name). Must be
    /// called inside a tokio runtime.
    pub fn new(client: kube::Client, host: &str) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        // client-go's legacy recorder, as upstream's kubelet uses: its spam filter included.
        let recorder = EventRecorder::new(client, "kubelet", host).with_spam_filter();
        tokio::spawn(run(recorder, rx));
        Recorder { tx: Some(tx) }
    }

    /// A recorder that drops everything.
    pub fn disabled() -> Self {
        Recorder { tx: None }
    }

    /// A recorder whose events arrive on the returned channel instead of the apiserver
    /// (component tests without an apiserver).
    pub fn capture() -> (Self, mpsc::UnboundedReceiver<Record>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Recorder { tx: Some(tx) }, rx)
    }

    /// Records an event about `involved`.
    pub fn event(&self, involved: ObjectReference, type_: EventType, reason: &str, message: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Record {
                involved,
                type_,
                reason: reason.to_string(),
                message: message.to_string(),
            });
        }
    }

    /// Records an event about the node `node_name` (e.g. `Starting`: `Starting kubelet.`).
    pub fn node_event(&self, node_name: &str, type_: EventType, reason: &str, message: &str) {
        self.event(node_ref(node_name), type_, reason, message);
    }

    /// Records an event about the pod, or one of its containers.
    pub fn pod_event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        self.event(object_ref(pod, container), type_, reason, message);
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("enabled", &self.tx.is_some())
            .finish()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::disabled()
    }
}

async fn run(recorder: EventRecorder, mut rx: mpsc::UnboundedReceiver<Record>) {
    while let Some(r) = rx.recv().await {
        recorder.record(spec(&r)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app"}],
                     "ephemeralContainers": [{"name": "debugger"}]}
        }))
        .unwrap()
    }

    #[test]
    fn container_refs_name_the_field_path() {
        let p = pod();
        assert_eq!(
            object_ref(&p, Some("app")).field_path.as_deref(),
            Some("spec.containers{app}")
        );
        assert_eq!(
            object_ref(&p, Some("init")).field_path.as_deref(),
            Some("spec.initContainers{init}")
        );
        assert_eq!(
            object_ref(&p, Some("debugger")).field_path.as_deref(),
            Some("spec.ephemeralContainers{debugger}")
        );
        assert_eq!(object_ref(&p, None).field_path, None);
        assert_eq!(object_ref(&p, None).kind.as_deref(), Some("Pod"));
    }

    #[test]
    fn records_map_onto_component_base_specs() {
        let r = Record {
            involved: object_ref(&pod(), Some("app")),
            type_: EventType::Warning,
            reason: reason::UNHEALTHY.into(),
            message: "Readiness probe failed: ".into(),
        };
        let e = spec(&r);
        assert_eq!(e.type_, base::EventType::Warning);
        assert_eq!(
            (e.reason.as_str(), e.action.as_str()),
            ("Unhealthy", "Probe")
        );
        assert_eq!(e.note, "Readiness probe failed: ");
        assert_eq!(
            e.regarding.field_path.as_deref(),
            Some("spec.containers{app}")
        );
        assert_eq!(action_for(reason::KILLING), "Kill");
        assert_eq!(action_for("SomethingNew"), "Sync");
        assert_eq!(scrub_id("oops abc123", "abc123", "app"), "oops app");
        let n = node_ref("n1");
        assert_eq!(
            (n.kind.as_deref(), n.uid.as_deref()),
            (Some("Node"), Some("n1"))
        );
    }

    #[test]
    fn durations_print_as_go_does() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(go_duration(ms(0)), "0s");
        assert_eq!(go_duration(ms(350)), "350ms");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(123_040)), "2m3.04s");
        assert_eq!(go_duration(ms(3_605_000)), "1h0m5s");
    }

    #[test]
    fn captured_events_arrive_in_order() {
        let (rec, mut rx) = Recorder::capture();
        rec.pod_event(&pod(), Some("init"), EventType::Normal, reason::PULLED, "a");
        rec.pod_event(&pod(), None, EventType::Warning, reason::FAILED_MOUNT, "b");
        let first = rx.try_recv().unwrap();
        assert_eq!(
            first.involved.field_path.as_deref(),
            Some("spec.initContainers{init}")
        );
        assert_eq!(rx.try_recv().unwrap().reason, "FailedMount");
        Recorder::disabled().pod_event(&pod(), None, EventType::Normal, reason::STARTED, "x");
    }
}
