//! Controllers of the `batch` API group: Job, CronJob and ttl-after-finished.

pub mod cronjob;
pub mod job;
pub mod ttl_after_finished;
