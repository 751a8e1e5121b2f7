//! The controller machinery (upstream's `pkg/controller` helpers and client-go's
//! informers and work queue): what every controller is built from. Nothing here imports a
//! controller or the app.
//!
//! - [`context`]: the handles a controller starts with, its informer factory included;
//! - [`options`]: the parsed configuration and the feature gates the manager reads;
//! - [`informers`]: shared informers, one watch per resource type;
//! - [`queue`]: the rate-limited work queue with upstream's `workqueue_*` metrics;
//! - [`runner`]: the start-up and worker loop of a queue-driven controller;
//! - [`descriptor`]: how the app starts a controller;
//! - shared rules: [`owner`] (controller references and claims), [`expectations`],
//!   [`pods`] (readiness, availability, deletion order), [`pod_control`] (slow-start
//!   creation), [`pod_events`], [`pod_eviction`] (DisruptionTarget then delete),
//!   [`pod_resources`] (effective requests and limits), [`nodes`] (readiness,
//!   out-of-service), [`ca_bundle`] (the CA bundle to publish) and [`discovery`] (which
//!   resources the apiserver serves).

pub mod ca_bundle;
pub mod context;
pub mod descriptor;
pub mod discovery;
pub mod expectations;
pub mod informers;
pub mod nodes;
pub mod options;
pub mod owner;
pub mod pod_control;
pub mod pod_events;
pub mod pod_eviction;
pub mod pod_resources;
pub mod pods;
pub mod queue;
#[macro_use]
pub mod runner;

pub use descriptor::ControllerDescriptor;
