//! Events as upstream's kubelet records them: core/v1 Events with `source.component:
//! kubelet` and `source.host: <node>`, about a pod, one of its containers (`fieldPath
//! spec.containers{name}`) or the node; repeats within ten minutes bump `count` and
//! `lastTimestamp` of the first one instead of creating another, as client-go's correlator.
//!
//! Recording never blocks the caller: events go through a channel to one background task.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
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

/// How long a recorded event absorbs repeats (client-go's correlator keeps 10 minutes).
const AGGREGATE_WINDOW: SignedDuration = SignedDuration::from_mins(10);

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
/// `spec.containers{name}` / `spec.initContainers{name}` when about a container.
pub fn object_ref(pod: &Pod, container: Option<&str>) -> ObjectReference {
    let field_path = container.map(|name| {
        let init = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|ics| ics.iter().any(|c| c.name == name));
        if init {
            format!("spec.initContainers{{{name}}}")
        } else {
            format!("spec.containers{{{name}}}")
        }
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

/// Recently created events: aggregation key → (event name, namespace, count, last seen).
#[derive(Debug, Default)]
pub struct Aggregator {
    seen: HashMap<String, (String, String, i32, Timestamp)>,
}

/// What to do with a new event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Create a new Event.
    Create,
    /// Patch the existing Event `name` to `count`.
    Bump {
        /// The existing event.
        name: String,
        /// Its new count.
        count: i32,
    },
}

fn key(r: &Record) -> String {
    let o = &r.involved;
    [
        o.kind.as_deref(),
        o.namespace.as_deref(),
        o.name.as_deref(),
        o.uid.as_deref(),
        o.field_path.as_deref(),
        Some(r.type_.as_str()),
        Some(r.reason.as_str()),
        Some(r.message.as_str()),
    ]
    .map(|s| s.unwrap_or(""))
    .join("\u{1f}")
}

impl Aggregator {
    /// Create or bump (pure apart from remembering what it decided).
    pub fn decide(&mut self, r: &Record, now: Timestamp) -> Decision {
        self.seen
            .retain(|_, (_, _, _, at)| now.duration_since(*at) < AGGREGATE_WINDOW);
        match self.seen.get_mut(&key(r)) {
            Some((name, _, count, at)) => {
                *count += 1;
                *at = now;
                Decision::Bump {
                    name: name.clone(),
                    count: *count,
                }
            }
            None => Decision::Create,
        }
    }

    /// Remembers the created event's name.
    pub fn created(&mut self, r: &Record, name: String, namespace: String, now: Timestamp) {
        self.seen.insert(key(r), (name, namespace, 1, now));
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
        tokio::spawn(run(client, host.to_string(), rx));
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

fn build(r: &Record, host: &str, now: Timestamp) -> Event {
    let namespace = r
        .involved
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let base = r.involved.name.clone().unwrap_or_default();
    let mut message = r.message.clone();
    if message.len() > 1024 {
        let mut cut = 1024;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{base}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace),
            ..Default::default()
        },
        involved_object: r.involved.clone(),
        reason: Some(r.reason.clone()),
        message: Some(message),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(host.into()),
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        type_: Some(r.type_.as_str().into()),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(host.into()),
        ..Default::default()
    }
}

async fn run(client: kube::Client, host: String, mut rx: mpsc::UnboundedReceiver<Record>) {
    let mut agg = Aggregator::default();
    while let Some(r) = rx.recv().await {
        let now = Timestamp::now();
        let event = build(&r, &host, now);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let result = match agg.decide(&r, now) {
            Decision::Bump { name, count } => {
                let patch = serde_json::json!({"count": count, "lastTimestamp": Time(now)});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            Decision::Create => match api.create(&PostParams::default(), &event).await {
                Ok(created) => {
                    let name = created.metadata.name.unwrap_or_default();
                    agg.created(&r, name, namespace, now);
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            tracing::warn!(reason = %r.reason, error = %e, "Unable to record event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]}
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
        assert_eq!(object_ref(&p, None).field_path, None);
        assert_eq!(object_ref(&p, None).kind.as_deref(), Some("Pod"));
    }

    #[test]
    fn repeats_bump_the_count_of_the_first_event() {
        let r = Record {
            involved: object_ref(&pod(), Some("app")),
            type_: EventType::Warning,
            reason: reason::UNHEALTHY.into(),
            message: "Readiness probe failed: ".into(),
        };
        let mut agg = Aggregator::default();
        let t0 = Timestamp::now();
        assert_eq!(agg.decide(&r, t0), Decision::Create);
        agg.created(&r, "web.1".into(), "ns".into(), t0);
        assert_eq!(
            agg.decide(&r, t0 + SignedDuration::from_secs(5)),
            Decision::Bump {
                name: "web.1".into(),
                count: 2
            }
        );
        let other = Record {
            message: "Liveness probe failed: ".into(),
            ..r.clone()
        };
        assert_eq!(agg.decide(&other, t0), Decision::Create);
        assert_eq!(
            agg.decide(&r, t0 + SignedDuration::from_mins(20)),
            Decision::Create
        );
    }

    #[test]
    fn events_carry_the_kubelet_source() {
        let r = Record {
            involved: node_ref("n1"),
            type_: EventType::Normal,
            reason: reason::NODE_READY.into(),
            message: "Node n1 status is now: NodeReady".into(),
        };
        let e = build(&r, "n1", Timestamp::now());
        let s = e.source.unwrap();
        assert_eq!(
            (s.component.as_deref(), s.host.as_deref()),
            (Some("kubelet"), Some("n1"))
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(e.count, Some(1));
        assert_eq!(scrub_id("oops abc123", "abc123", "app"), "oops app");
    }
}
