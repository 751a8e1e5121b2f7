//! horizontal-pod-autoscaler-controller (alias `horizontalpodautoscaling`): scales the
//! targets of `autoscaling/v2` HorizontalPodAutoscalers through their `scale` subresource
//! from resource (`metrics.k8s.io`), custom (`custom.metrics.k8s.io`) and external
//! (`external.metrics.k8s.io`) metrics, with upstream's tolerance, stabilization
//! windows, scaling policies, conditions and events.
//!
//! [`replicas`] and [`behavior`] are the pure rules, [`compute`] (and [`custom`] for
//! custom and external metrics) applies them to an HPA's metric specs, [`metrics`] reads
//! the samples behind a narrow trait, [`status`] keeps the conditions, [`monitor`] keeps
//! upstream's controller metrics, and [`controller`] is the sync loop. Only the custom
//! metrics API's `v1beta2` is spoken (upstream also falls back to `v1beta1`).

pub mod behavior;
pub mod compute;
pub mod controller;
pub mod custom;
pub mod metrics;
pub mod monitor;
pub mod replicas;
pub mod status;

#[cfg(test)]
mod tests;

use futures::future::FutureExt;

use crate::machinery::ControllerDescriptor;

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "horizontal-pod-autoscaler";

/// The component its events are reported by (upstream's event source).
pub const EVENT_SOURCE: &str = "horizontal-pod-autoscaler";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "horizontal-pod-autoscaler-controller",
        enabled_by_default: true,
        start: |ctx| controller::run(ctx).boxed(),
    }
}
