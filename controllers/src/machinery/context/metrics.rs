//! The manager's metrics as controllers see them: component-base's registry (served on
//! /metrics) plus the families several controllers share, each registered once.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use component_base::metrics::Metrics;

use crate::machinery::queue::metrics::WorkqueueMetrics;

/// Handle to the manager's metrics; [`ControllerMetrics::disabled`] (the default) for
/// controllers run without a registry, e.g. in unit tests. Cheap to clone.
#[derive(Clone, Default)]
pub struct ControllerMetrics {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    registry: Metrics,
    workqueue: WorkqueueMetrics,
    /// Per-controller metric sets, by type, registered on first use.
    families: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl ControllerMetrics {
    /// Controller metrics in `registry`, with the work queue families registered.
    pub fn new(registry: &Metrics) -> Self {
        ControllerMetrics {
            inner: Some(Arc::new(Inner {
                registry: registry.clone(),
                workqueue: WorkqueueMetrics::register(registry),
                families: Mutex::default(),
            })),
        }
    }

    /// No registry: queues report nothing and metric sets are registered nowhere.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// The work queue families, when metrics are on.
    pub fn workqueue(&self) -> Option<&WorkqueueMetrics> {
        self.inner.as_ref().map(|i| &i.workqueue)
    }

    /// The metric set `T`, registered by `register` the first time it is asked for (a
    /// controller restarted after regaining leadership gets the same set again). Without a
    /// registry `T` is registered in a throwaway one, so callers need no second code path.
    pub fn families<T: Clone + Send + Sync + 'static>(
        &self,
        register: impl FnOnce(&Metrics) -> T,
    ) -> T {
        let Some(inner) = &self.inner else {
            return register(&Metrics::new());
        };
        let mut families = inner.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = families
            .get(&TypeId::of::<T>())
            .and_then(|f| f.downcast_ref::<T>())
        {
            return existing.clone();
        }
        let created = register(&inner.registry);
        families.insert(TypeId::of::<T>(), Box::new(created.clone()));
        created
    }
}
