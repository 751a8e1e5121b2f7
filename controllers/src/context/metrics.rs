//! The manager's metrics as controllers see them: component-base's registry (served on
//! /metrics) plus the families several controllers share, each registered once.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use component_base::metrics::Metrics;

use crate::lifecycle::queue::metrics::WorkqueueMetrics;

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

/// A counter family exposed under its registered name as is, without prometheus-client's
/// `_total` suffix: upstream counters whose names lack it (e.g.
/// `endpoint_slice_mirroring_controller_changes`) keep their names. Cheap to clone.
#[derive(Debug)]
pub struct UnsuffixedCounter<S> {
    values: Arc<Mutex<std::collections::BTreeMap<S, u64>>>,
}

impl<S> Clone for UnsuffixedCounter<S> {
    fn clone(&self) -> Self {
        UnsuffixedCounter {
            values: self.values.clone(),
        }
    }
}

impl<S> Default for UnsuffixedCounter<S> {
    fn default() -> Self {
        UnsuffixedCounter {
            values: Arc::default(),
        }
    }
}

impl<S: Ord + Clone> UnsuffixedCounter<S> {
    /// Adds one to the series `labels`.
    pub fn inc(&self, labels: &S) {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        match values.get_mut(labels) {
            Some(v) => *v += 1,
            None => {
                values.insert(labels.clone(), 1);
            }
        }
    }

    /// The value of the series `labels` (0 if never incremented).
    pub fn get(&self, labels: &S) -> u64 {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.get(labels).copied().unwrap_or(0)
    }
}

impl<S> prometheus_client::encoding::EncodeMetric for UnsuffixedCounter<S>
where
    S: prometheus_client::encoding::EncodeLabelSet + std::fmt::Debug + Ord + Send + Sync,
{
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        for (labels, value) in values.iter() {
            // A gauge-shaped sample: the name as registered, no suffix.
            encoder.encode_family(labels)?.encode_gauge(value)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Counter
    }
}
