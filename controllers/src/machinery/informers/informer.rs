//! Shared informers as client-go's: one watch per resource feeding an indexed cache that
//! many controllers read, and event handlers that see the old and the new object.
//!
//! A handler registered after the watch started is replayed the current cache as adds, so
//! late registrants miss nothing. Named indices (upstream's `Indexers`) map an index value
//! to the keys of the objects that yield it, kept in step with the cache under one lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

/// What a handler is told.
#[derive(Debug)]
pub enum Change<'a, K> {
    /// A new object (also every object of the first list).
    Added(&'a K),
    /// An object changed (or was re-listed).
    Updated {
        /// As the cache had it.
        old: &'a K,
        /// As the apiserver has it now.
        new: &'a K,
    },
    /// An object is gone.
    Deleted(&'a K),
}

type Handler<K> = Arc<dyn Fn(Change<'_, K>) + Send + Sync>;

/// An index function: the index values of an object (upstream's `IndexFunc`).
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

struct Index<K> {
    func: IndexFn<K>,
    keys: HashMap<String, BTreeSet<Key>>,
}

impl<K> Index<K> {
    fn insert(&mut self, key: &Key, o: &K) {
        for value in (self.func)(o) {
            self.keys.entry(value).or_default().insert(key.clone());
        }
    }

    fn remove(&mut self, key: &Key, o: &K) {
        for value in (self.func)(o) {
            if let Some(keys) = self.keys.get_mut(&value) {
                keys.remove(key);
                if keys.is_empty() {
                    self.keys.remove(&value);
                }
            }
        }
    }
}

/// The objects and their indices, changed together.
struct Cache<K> {
    objects: BTreeMap<Key, Arc<K>>,
    indices: HashMap<&'static str, Index<K>>,
}

impl<K> Cache<K> {
    fn insert(&mut self, key: Key, o: Arc<K>) -> Option<Arc<K>> {
        let old = self.objects.insert(key.clone(), o.clone());
        for index in self.indices.values_mut() {
            if let Some(old) = &old {
                index.remove(&key, old);
            }
            index.insert(&key, &o);
        }
        old
    }

    fn remove(&mut self, key: &Key) -> Option<Arc<K>> {
        let old = self.objects.remove(key)?;
        for index in self.indices.values_mut() {
            index.remove(key, &old);
        }
        Some(old)
    }
}

struct Inner<K> {
    cache: RwLock<Cache<K>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
}

/// A shared informer's cache and handler list. Cheap to clone.
pub struct Informer<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            inner: self.inner.clone(),
        }
    }
}

/// The cache key of an object.
pub fn key_of<K: Resource>(o: &K) -> Key {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

impl<K> Default for Informer<K>
where
    K: Resource + Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + Send + Sync + 'static,
{
    /// An empty informer that no watch feeds yet (see [`Informer::run`]; tests feed it with
    /// [`Informer::apply`] and [`Informer::delete`]).
    pub fn new() -> Self {
        Informer {
            inner: Arc::new(Inner {
                cache: RwLock::new(Cache {
                    objects: BTreeMap::new(),
                    indices: HashMap::new(),
                }),
                handlers: RwLock::new(Vec::new()),
                synced: watch::channel(false).0,
            }),
        }
    }

    /// Registers `handler`; it is first told every cached object as [`Change::Added`].
    pub fn add_handler(&self, handler: impl Fn(Change<'_, K>) + Send + Sync + 'static) {
        let handler: Handler<K> = Arc::new(handler);
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(handler.clone());
        for o in self.list() {
            handler(Change::Added(&o));
        }
    }

    fn notify(&self, change: Change<'_, K>) {
        let handlers = self
            .inner
            .handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for h in &handlers {
            h(match &change {
                Change::Added(o) => Change::Added(o),
                Change::Updated { old, new } => Change::Updated { old, new },
                Change::Deleted(o) => Change::Deleted(o),
            });
        }
    }

    /// Stores `o` and tells the handlers.
    pub fn apply(&self, o: K) {
        let o = Arc::new(o);
        let old = self.write().insert(key_of(o.as_ref()), o.clone());
        match old {
            Some(old) => self.notify(Change::Updated { old: &old, new: &o }),
            None => self.notify(Change::Added(&o)),
        }
    }

    /// Forgets `o` and tells the handlers (with the watch's final state of it).
    pub fn delete(&self, o: &K) {
        self.write().remove(&key_of(o));
        self.notify(Change::Deleted(o));
    }

    /// Replaces the cache with a fresh list: deletes what vanished, applies the rest.
    fn replace(&self, listed: Vec<K>) {
        let listed_keys: std::collections::BTreeSet<Key> =
            listed.iter().map(|o| key_of(o)).collect();
        let vanished: Vec<Arc<K>> = self
            .read()
            .objects
            .iter()
            .filter(|(k, _)| !listed_keys.contains(*k))
            .map(|(_, o)| o.clone())
            .collect();
        for o in vanished {
            self.delete(&o);
        }
        for o in listed {
            self.apply(o);
        }
        self.inner.synced.send_replace(true);
    }

    /// The cached object `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.read()
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    /// The cached objects of one namespace (a range scan of the ordered cache).
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let from = (namespace.to_string(), String::new());
        self.read()
            .objects
            .range(from..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Adds the index `name` (a no-op when it exists, as upstream's
    /// `AddIndexerIfNotPresent`), built over what is cached now and kept up to date.
    pub fn add_index(
        &self,
        name: &'static str,
        func: impl Fn(&K) -> Vec<String> + Send + Sync + 'static,
    ) {
        let mut cache = self.write();
        if cache.indices.contains_key(name) {
            return;
        }
        let mut index = Index {
            func: Arc::new(func),
            keys: HashMap::new(),
        };
        for (key, o) in &cache.objects {
            index.insert(key, o);
        }
        cache.indices.insert(name, index);
    }

    /// The cached objects whose index `name` yields `value` (none if there is no such index).
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let cache = self.read();
        let Some(keys) = cache.indices.get(name).and_then(|i| i.keys.get(value)) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| cache.objects.get(k).cloned())
            .collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache<K>> {
        self.inner.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache<K>> {
        self.inner.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the first list has been stored.
    pub fn has_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Waits until the first list has been stored.
    pub async fn wait_synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    /// Feeds the informer from a watch of `api` until `shutdown` (retrying with
    /// kube-runtime's default backoff). Objects are cached without `managedFields`, which
    /// no controller reads (upstream's kube-controller-manager trims them the same way).
    pub fn run(&self, api: Api<K>, shutdown: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let stream = component_base::watch_backoff::backoff(watcher::watcher(
                api,
                watcher::Config::default().any_semantic(),
            ))
            .modify(|o: &mut K| o.meta_mut().managed_fields = None);
            let mut stream = std::pin::pin!(stream);
            let mut relist: Vec<K> = Vec::new();
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    e = stream.next() => e,
                };
                match event {
                    None => return,
                    Some(Ok(Event::Apply(o))) => this.apply(o),
                    Some(Ok(Event::Delete(o))) => this.delete(&o),
                    Some(Ok(Event::Init)) => relist.clear(),
                    Some(Ok(Event::InitApply(o))) => relist.push(o),
                    Some(Ok(Event::InitDone)) => this.replace(std::mem::take(&mut relist)),
                    Some(Err(e)) => tracing::warn!(
                        error = %e,
                        kind = %K::kind(&Default::default()),
                        "watch failed, retrying"
                    ),
                }
            }
        });
    }
}

/// `namespace/name` of an object, as work-queue keys are written.
pub fn queue_key<K: Resource>(o: &K) -> String {
    match o.meta().namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", o.name_any()),
        _ => o.name_any(),
    }
}

/// Splits a work-queue key into `(namespace, name)`.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ObjectMeta;
    use std::sync::Mutex;

    fn pod(ns: &str, name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn handlers_see_old_and_new_and_late_ones_get_replay() {
        let inf = Informer::<Pod>::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        inf.add_handler(move |c| {
            let e = match c {
                Change::Added(p) => format!("add {}", p.name_any()),
                Change::Updated { old, new } => format!(
                    "upd {} {}->{}",
                    new.name_any(),
                    old.resource_version().unwrap(),
                    new.resource_version().unwrap()
                ),
                Change::Deleted(p) => format!("del {}", p.name_any()),
            };
            s.lock().unwrap().push(e);
        });
        inf.apply(pod("a", "p1", "1"));
        inf.apply(pod("a", "p1", "2"));
        inf.replace(vec![pod("b", "p2", "3")]);
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["add p1", "upd p1 1->2", "del p1", "add p2"]
        );
        let late = Arc::new(Mutex::new(0));
        let l = late.clone();
        inf.add_handler(move |_| *l.lock().unwrap() += 1);
        assert_eq!(*late.lock().unwrap(), 1);
        assert!(inf.has_synced());
    }

    #[test]
    fn namespace_listing_is_exact() {
        let inf = Informer::<Pod>::new();
        for (ns, n) in [("a", "x"), ("ab", "y"), ("b", "z"), ("a", "w")] {
            inf.apply(pod(ns, n, "1"));
        }
        let names: Vec<String> = inf
            .list_namespace("a")
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, vec!["w", "x"]);
        assert_eq!(split_key("ns/n"), ("ns", "n"));
        assert_eq!(queue_key(&pod("ns", "n", "1")), "ns/n");
    }

    #[test]
    fn index_follows_updates_and_deletes() {
        let inf = Informer::<Pod>::new();
        inf.apply(pod("a", "p1", "1"));
        inf.add_index("rv", |p: &Pod| p.resource_version().into_iter().collect());
        inf.add_index("rv", |_: &Pod| vec!["ignored".into()]);
        let names = |v: &str| -> Vec<String> {
            inf.by_index("rv", v).iter().map(|p| p.name_any()).collect()
        };
        assert_eq!(names("1"), vec!["p1"]);
        inf.apply(pod("b", "p2", "1"));
        inf.apply(pod("a", "p1", "2"));
        assert_eq!(names("1"), vec!["p2"]);
        assert_eq!(names("2"), vec!["p1"]);
        inf.delete(&pod("b", "p2", "1"));
        assert!(names("1").is_empty());
        assert!(names("ignored").is_empty());
        assert!(inf.by_index("missing", "1").is_empty());
        assert_eq!(inf.len(), 1);
    }
}
