//! One shared informer per resource type for every controller of a context, as upstream's
//! SharedInformerFactory: the Pod watch is opened once and the Pods cached once, whichever
//! controllers ask for them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::informer::Informer;

/// Lazily started shared informers over one client.
pub struct InformerFactory {
    client: kube::Client,
    shutdown: CancellationToken,
    informers: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl InformerFactory {
    /// A factory whose watches use `client` and stop on `shutdown`.
    pub fn new(client: kube::Client, shutdown: CancellationToken) -> Self {
        InformerFactory {
            client,
            shutdown,
            informers: Mutex::new(HashMap::new()),
        }
    }

    /// The informer for `K` across all namespaces: its watch is started by the first caller,
    /// later callers share its cache and events.
    pub fn informer<K>(&self) -> Informer<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default,
    {
        let mut map = self.informers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = map.get(&TypeId::of::<K>()) {
            if let Some(i) = i.downcast_ref::<Informer<K>>() {
                return i.clone();
            }
        }
        let informer = Informer::<K>::new();
        informer.run(Api::all(self.client.clone()), self.shutdown.clone());
        map.insert(TypeId::of::<K>(), Box::new(informer.clone()));
        tracing::info!(
            kind = %K::kind(&Default::default()),
            informers = map.len(),
            "Starting shared informer"
        );
        informer
    }

    /// How many shared informers (watches) have been started.
    pub fn started(&self) -> usize {
        self.informers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}
