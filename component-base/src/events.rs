//! An event recorder on `events.k8s.io/v1`, with client-go's aggregation of repeats: an
//! event isomorphic to one recorded in the last six minutes is not created again, but the
//! first one gains a `series` whose count and lastObservedTime move.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a recorded event stays eligible for aggregation (client-go's 6 minutes).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// `Normal` or `Warning`, as the Event type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something an operator should look at.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

impl EventType {
    /// `Warning` when `warning`, else `Normal`.
    pub fn warning_if(warning: bool) -> Self {
        if warning {
            EventType::Warning
        } else {
            EventType::Normal
        }
    }
}

/// A reference to `obj` for an event's `regarding` or `related`: its apiVersion, kind,
/// name, namespace, uid and resourceVersion, as client-go's `reference.GetReference`.
pub fn reference_to<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

/// One event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    /// The object the event is about.
    pub regarding: ObjectReference,
    /// A second object involved, if any.
    pub related: Option<ObjectReference>,
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// Short machine-readable reason, e.g. `Scheduled`, `FailedScheduling`.
    pub reason: String,
    /// What was done, e.g. `Binding`, `Scheduling`.
    pub action: String,
    /// Human-readable note (truncated to 1 KiB as upstream).
    pub note: String,
}

/// What the recorder should do with a new event, given what it has recorded recently.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregation {
    /// Create a new Event object.
    Create,
    /// Patch the series of the existing Event `name` to this count.
    Series {
        /// The existing event's name.
        name: String,
        /// The new series count.
        count: i32,
    },
}

/// Recently recorded events by their isomorphism key.
#[derive(Debug, Default)]
pub struct SeriesCache {
    entries: HashMap<String, (String, i32, Timestamp)>,
    /// When expired entries were last dropped: at most once a second, not on every event
    /// (a burst of N events would otherwise scan the cache N times).
    last_sweep: Option<Timestamp>,
}

/// The key under which two events count as repeats (client-go's getKey).
pub fn isomorphism_key(e: &EventSpec) -> String {
    let r = &e.regarding;
    let rel = e.related.as_ref();
    [
        e.action.as_str(),
        e.reason.as_str(),
        r.kind.as_deref().unwrap_or(""),
        r.namespace.as_deref().unwrap_or(""),
        r.name.as_deref().unwrap_or(""),
        r.uid.as_deref().unwrap_or(""),
        r.field_path.as_deref().unwrap_or(""),
        rel.and_then(|r| r.kind.as_deref()).unwrap_or(""),
        rel.and_then(|r| r.name.as_deref()).unwrap_or(""),
        e.type_.as_str(),
        e.note.as_str(),
    ]
    .join("\u{1f}")
}

impl SeriesCache {
    /// Decides create-or-series for `e` at `now` and remembers the outcome (the created
    /// event's name is recorded by [`SeriesCache::created`]).
    pub fn decide(&mut self, e: &EventSpec, now: Timestamp) -> Aggregation {
        let window = k8s_openapi::jiff::SignedDuration::try_from(SERIES_WINDOW).unwrap_or_default();
        let live = |seen: &Timestamp| now.duration_since(*seen) < window;
        if self.last_sweep.is_none_or(|t| {
            now.duration_since(t) >= k8s_openapi::jiff::SignedDuration::from_secs(1)
        }) {
            self.entries.retain(|_, (_, _, seen)| live(seen));
            self.last_sweep = Some(now);
        }
        match self.entries.get_mut(&isomorphism_key(e)) {
            Some((name, count, seen)) if live(seen) => {
                *count += 1;
                *seen = now;
                Aggregation::Series {
                    name: name.clone(),
                    count: *count,
                }
            }
            _ => Aggregation::Create,
        }
    }

    /// Remembers that `e` was created as Event `name`.
    pub fn created(&mut self, e: &EventSpec, name: String, now: Timestamp) {
        self.entries.insert(isomorphism_key(e), (name, 1, now));
    }
}

/// client-go's spam filter for its legacy recorder (`tools/record`, used by the controller
/// manager and the kubelet): each source and object may produce a burst of 25 events, then
/// one per 5 minutes; the rest are dropped.
pub const SPAM_BURST: f64 = 25.0;
/// Tokens regained per second by a source and object's spam bucket (1 per 300 s).
pub const SPAM_QPS: f64 = 1.0 / 300.0;
/// How many sources and objects the spam filter remembers (client-go's LRU of 4096).
const SPAM_CACHE_ENTRIES: usize = 4096;

/// Token buckets per source and object (client-go's `EventSourceObjectSpamFilter`).
#[derive(Debug, Default)]
pub struct SpamFilter {
    buckets: HashMap<String, (f64, std::time::Instant)>,
}

/// The key under which events share a spam bucket (client-go's getSpamKey: the source,
/// the regarding object's kind, namespace, name, uid and apiVersion, and the event type).
pub fn spam_key(instance: &str, e: &EventSpec) -> String {
    let r = &e.regarding;
    [
        instance,
        r.kind.as_deref().unwrap_or(""),
        r.namespace.as_deref().unwrap_or(""),
        r.name.as_deref().unwrap_or(""),
        r.uid.as_deref().unwrap_or(""),
        r.api_version.as_deref().unwrap_or(""),
        e.type_.as_str(),
    ]
    .join("\u{1f}")
}

impl SpamFilter {
    /// Takes a token from `key`'s bucket at `now`; false when it is empty (drop the event).
    pub fn allow(&mut self, key: &str, now: std::time::Instant) -> bool {
        if self.buckets.len() >= SPAM_CACHE_ENTRIES && !self.buckets.contains_key(key) {
            // Forget the least recently used source and object, as client-go's LRU.
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(k, _)| k.clone())
            {
                self.buckets.remove(&oldest);
            }
        }
        let (tokens, seen) = self
            .buckets
            .entry(key.to_string())
            .or_insert((SPAM_BURST, now));
        let regained = now.saturating_duration_since(*seen).as_secs_f64() * SPAM_QPS;
        *tokens = (*tokens + regained).min(SPAM_BURST);
        *seen = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Records events for one component instance.
#[derive(Clone)]
pub struct EventRecorder {
    client: kube::Client,
    reporting_controller: String,
    reporting_instance: String,
    cache: Arc<Mutex<SeriesCache>>,
    spam: Option<Arc<Mutex<SpamFilter>>>,
}

impl EventRecorder {
    /// A recorder reporting as `controller` (e.g. `default-scheduler`) from `instance`
    /// (e.g. `default-scheduler-<hostname>`).
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Self {
        EventRecorder {
            client,
            reporting_controller: controller.into(),
            reporting_instance: instance.into(),
            cache: Arc::default(),
            spam: None,
        }
    }

    /// The same recorder with client-go's legacy spam filter ([`SpamFilter`]): what the
    /// controller manager's and the kubelet's recorders do upstream, so a 1,000-pod
    /// scale-up writes 25 `SuccessfulCreate` events, not 1,000.
    pub fn with_spam_filter(mut self) -> Self {
        self.spam = Some(Arc::default());
        self
    }

    /// Records `e` in the background (the caller does not wait for the apiserver), as
    /// client-go's recorder does from a sync loop.
    pub fn emit(&self, e: EventSpec) {
        let recorder = self.clone();
        tokio::spawn(async move { recorder.record(e).await });
    }

    /// Records `e`; failures are logged, never returned, as upstream's recorder.
    pub async fn record(&self, e: EventSpec) {
        if let Err(err) = self.try_record(&e).await {
            tracing::warn!(reason = %e.reason, error = %err, "Unable to record event");
        }
    }

    /// Records `e`, returning the apiserver's error if any.
    pub async fn try_record(&self, e: &EventSpec) -> Result<(), kube::Error> {
        if let Some(spam) = &self.spam {
            let key = spam_key(&self.reporting_instance, e);
            let allowed = spam
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .allow(&key, std::time::Instant::now());
            if !allowed {
                tracing::debug!(reason = %e.reason, "event dropped by the spam filter");
                return Ok(());
            }
        }
        let now = Timestamp::now();
        let namespace = e
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let decision = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .decide(e, now);
        match decision {
            Aggregation::Series { name, count } => {
                let patch = serde_json::json!({
                    "series": EventSeries { count, last_observed_time: MicroTime(now) }
                });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Aggregation::Create => {
                let event = self.build(e, &namespace, now);
                let created = api.create(&PostParams::default(), &event).await?;
                if let Some(name) = created.metadata.name {
                    self.cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .created(e, name, now);
                }
            }
        }
        Ok(())
    }

    fn build(&self, e: &EventSpec, namespace: &str, now: Timestamp) -> Event {
        let base = e.regarding.name.clone().unwrap_or_default();
        let mut note = e.note.clone();
        if note.len() > 1024 {
            let mut cut = 1024;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{base}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(e.action.clone()),
            reason: Some(e.reason.clone()),
            note: Some(note),
            regarding: Some(e.regarding.clone()),
            related: e.related.clone(),
            reporting_controller: Some(self.reporting_controller.clone()),
            reporting_instance: Some(self.reporting_instance.clone()),
            type_: Some(e.type_.as_str().into()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spam_filter_allows_a_burst_of_25_then_one_per_five_minutes() {
        let mut f = SpamFilter::default();
        let t0 = std::time::Instant::now();
        let allowed = (0..1000).filter(|_| f.allow("rs", t0)).count();
        assert_eq!(allowed, 25);
        // Another object has its own bucket.
        assert!(f.allow("other", t0));
        assert!(!f.allow("rs", t0 + Duration::from_secs(299)));
        assert!(f.allow("rs", t0 + Duration::from_secs(301)));
        assert!(!f.allow("rs", t0 + Duration::from_secs(302)));
    }

    #[test]
    fn spam_key_ignores_reason_and_note_but_not_the_object_or_type() {
        let a = ev("SuccessfulCreate", "Created pod: a");
        let b = ev("SuccessfulDelete", "Deleted pod: b");
        assert_eq!(spam_key("i", &a), spam_key("i", &b));
        let mut w = a.clone();
        w.type_ = EventType::Normal;
        assert_ne!(spam_key("i", &a), spam_key("i", &w));
        let mut other = a.clone();
        other.regarding.name = Some("other".into());
        assert_ne!(spam_key("i", &a), spam_key("i", &other));
    }

    #[test]
    fn reference_to_names_the_object_with_its_kind_and_version() {
        let mut job = k8s_openapi::api::batch::v1::Job::default();
        job.metadata.name = Some("pi".into());
        job.metadata.namespace = Some("ns".into());
        job.metadata.uid = Some("u1".into());
        job.metadata.resource_version = Some("7".into());
        let r = reference_to(&job);
        assert_eq!(r.api_version.as_deref(), Some("batch/v1"));
        assert_eq!(r.kind.as_deref(), Some("Job"));
        assert_eq!(
            (r.name.as_deref(), r.namespace.as_deref()),
            (Some("pi"), Some("ns"))
        );
        assert_eq!(
            (r.uid.as_deref(), r.resource_version.as_deref()),
            (Some("u1"), Some("7"))
        );
        assert_eq!(EventType::warning_if(true), EventType::Warning);
        assert_eq!(EventType::warning_if(false), EventType::Normal);
    }

    fn ev(reason: &str, note: &str) -> EventSpec {
        EventSpec {
            regarding: ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some("default".into()),
                name: Some("web".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            related: None,
            type_: EventType::Warning,
            reason: reason.into(),
            action: "Scheduling".into(),
            note: note.into(),
        }
    }

    #[test]
    fn repeats_within_the_window_become_a_series() {
        let mut cache = SeriesCache::default();
        let t0 = Timestamp::now();
        let e = ev("FailedScheduling", "0/3 nodes are available");
        assert_eq!(cache.decide(&e, t0), Aggregation::Create);
        cache.created(&e, "web.1".into(), t0);
        assert_eq!(
            cache.decide(&e, t0 + k8s_openapi::jiff::SignedDuration::from_secs(10)),
            Aggregation::Series {
                name: "web.1".into(),
                count: 2
            }
        );
        assert_eq!(
            cache.decide(&e, t0 + k8s_openapi::jiff::SignedDuration::from_secs(20)),
            Aggregation::Series {
                name: "web.1".into(),
                count: 3
            }
        );
    }

    #[test]
    fn different_notes_or_expired_entries_create_anew() {
        let mut cache = SeriesCache::default();
        let t0 = Timestamp::now();
        let e = ev("FailedScheduling", "a");
        cache.created(&e, "web.1".into(), t0);
        assert_eq!(
            cache.decide(&ev("FailedScheduling", "b"), t0),
            Aggregation::Create
        );
        assert_eq!(
            cache.decide(&e, t0 + k8s_openapi::jiff::SignedDuration::from_mins(7)),
            Aggregation::Create
        );
    }

    #[test]
    fn an_entry_expired_between_sweeps_is_not_continued() {
        use k8s_openapi::jiff::SignedDuration;
        let mut cache = SeriesCache::default();
        let t0 = Timestamp::now();
        let (a, b) = (ev("FailedScheduling", "a"), ev("FailedScheduling", "b"));
        cache.created(&a, "web.1".into(), t0);
        cache.created(&b, "web.2".into(), t0);
        // A sweep 359.5 s in keeps both entries (the window is 360 s).
        let swept = t0 + SignedDuration::from_millis(359_500);
        assert!(matches!(
            cache.decide(&a, swept),
            Aggregation::Series { .. }
        ));
        // 0.7 s later no sweep runs, but `b` (last seen 360.2 s ago) has expired.
        let later = t0 + SignedDuration::from_millis(360_200);
        assert_eq!(cache.decide(&b, later), Aggregation::Create);
        assert!(matches!(
            cache.decide(&a, later),
            Aggregation::Series { .. }
        ));
    }
}
