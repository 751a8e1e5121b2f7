//! The systemd cgroup driver: the kubelet's cgroups (`kubepods.slice`, the QoS slices, one
//! slice per pod) are transient slice units that systemd creates, updates and removes on
//! request over D-Bus, as upstream's libcontainer systemd managers do. The cgroup files
//! systemd does not manage (cpu.cfs_period_us, cpuset, …) are then written directly, as
//! upstream's managers follow `SetUnitProperties` with the cgroupfs writes.
//!
//! Paths handed to [`SystemdCgroups`] are the systemd names in cgroupfs form (see
//! [`crate::cgroups::name`]): the last part is the slice unit, the one before its parent.
//!
//! Only the recording fake bus is exercised by the tests: the machine they run on has no
//! systemd, so [`dbus::DbusSystemd`] has never talked to a real one here.

pub mod bus;
pub mod dbus;
pub mod properties;

use super::name::slice_of_path;
use super::{CgroupManager, Limits};
use bus::SystemdBus;
use properties::{resource_properties, start_properties, CgroupVersion};
use std::io;

/// A [`CgroupManager`] whose cgroups are systemd slices.
pub struct SystemdCgroups {
    bus: Box<dyn SystemdBus>,
    files: Box<dyn CgroupManager>,
    version: CgroupVersion,
    systemd_version: u32,
}

impl SystemdCgroups {
    /// Slices made through `bus`; `files` writes and reads the cgroup files at the same
    /// mount (the cgroupfs manager of the host's cgroup version).
    pub fn new(bus: Box<dyn SystemdBus>, files: Box<dyn CgroupManager>) -> io::Result<Self> {
        let systemd_version = bus.version()?;
        let version = if files.version() == "v1" {
            CgroupVersion::V1
        } else {
            CgroupVersion::V2
        };
        Ok(SystemdCgroups {
            bus,
            files,
            version,
            systemd_version,
        })
    }

    /// The systemd release talked to.
    pub fn systemd_version(&self) -> u32 {
        self.systemd_version
    }
}

fn invalid_path(e: super::name::NameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.0)
}

fn context(what: &str, unit: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {unit}: {e}"))
}

impl CgroupManager for SystemdCgroups {
    fn version(&self) -> &'static str {
        self.files.version()
    }

    /// Starts the slice (an existing one is fine, as upstream's `Apply(-1)`), sets its
    /// resource properties, then writes the cgroup files.
    fn apply(&self, path: &str, limits: &Limits) -> io::Result<()> {
        let (unit, parent) = slice_of_path(path).map_err(invalid_path)?;
        let start = start_properties(&unit, &parent, self.version);
        match self.bus.start_transient_unit(&unit, &start) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(context("start slice", &unit, e)),
        }
        let resources = resource_properties(limits, self.version, self.systemd_version);
        self.bus
            .set_unit_properties(&unit, &resources.properties)
            .map_err(|e| context("set properties of", &unit, e))?;
        self.files.apply(path, &resources.limits)
    }

    fn read(&self, path: &str) -> io::Result<Limits> {
        self.files.read(path)
    }

    /// Stops the slice (an unknown one is fine), lets systemd forget a failed one, and
    /// removes what is left of its directories.
    fn remove(&self, path: &str) -> io::Result<()> {
        let (unit, _) = slice_of_path(path).map_err(invalid_path)?;
        match self.bus.stop_unit(&unit) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(context("stop slice", &unit, e)),
        }
        if let Err(e) = self.bus.reset_failed_unit(&unit) {
            tracing::debug!(unit = %unit, error = %e, "ResetFailedUnit");
        }
        self.files.remove(path)
    }

    fn exists(&self, path: &str) -> bool {
        self.files.exists(path)
    }
}

#[cfg(test)]
mod tests;
