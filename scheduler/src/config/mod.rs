//! The scheduler's component config: KubeSchedulerConfiguration v1 and profile building.

mod profile;
pub mod types;

pub use profile::{build_framework, default_framework};
pub use types::{KubeSchedulerConfiguration, Profile, ACCEPTED, DEFAULT_SCHEDULER_NAME};

use std::path::Path;

/// Reads a KubeSchedulerConfiguration file strictly and validates it.
pub fn load(path: &Path) -> anyhow::Result<KubeSchedulerConfiguration> {
    let cfg: KubeSchedulerConfiguration = component_base::config::load_strict(path, ACCEPTED)?;
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("config file {path:?}: {e}"))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests;
