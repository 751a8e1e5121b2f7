//! The narrow slice of systemd's D-Bus API (org.freedesktop.systemd1.Manager) the kubelet
//! needs, behind a trait so the manager is tested against a recording fake: the machine the
//! tests run on has no systemd.

use super::properties::UnitProperty;
use std::io;
use std::sync::Mutex;

/// The systemd manager's methods the kubelet calls; unit names are full (`x.slice`).
pub trait SystemdBus: Send + Sync {
    /// `StartTransientUnit(name, "replace", properties, [])`; an existing unit is an
    /// [`io::ErrorKind::AlreadyExists`] error.
    fn start_transient_unit(&self, name: &str, properties: &[UnitProperty]) -> io::Result<()>;
    /// `SetUnitProperties(name, runtime=true, properties)`.
    fn set_unit_properties(&self, name: &str, properties: &[UnitProperty]) -> io::Result<()>;
    /// `StopUnit(name, "replace")`; an unknown unit is [`io::ErrorKind::NotFound`].
    fn stop_unit(&self, name: &str) -> io::Result<()>;
    /// `ResetFailedUnit(name)`, so a failed unit of that name can be started again.
    fn reset_failed_unit(&self, name: &str) -> io::Result<()>;
    /// The manager's `Version` property as a number (`255` of `255.4-1`).
    fn version(&self) -> io::Result<u32>;
}

/// A shared bus is a bus (the tests keep a handle on their fake to read its calls).
impl<T: SystemdBus> SystemdBus for std::sync::Arc<T> {
    fn start_transient_unit(&self, name: &str, properties: &[UnitProperty]) -> io::Result<()> {
        (**self).start_transient_unit(name, properties)
    }
    fn set_unit_properties(&self, name: &str, properties: &[UnitProperty]) -> io::Result<()> {
        (**self).set_unit_properties(name, properties)
    }
    fn stop_unit(&self, name: &str) -> io::Result<()> {
        (**self).stop_unit(name)
    }
    fn reset_failed_unit(&self, name: &str) -> io::Result<()> {
        (**self).reset_failed_unit(name)
    }
    fn version(&self) -> io::Result<u32> {
        (**self).version()
    }
}

/// The release number at the start of systemd's `Version` string (`v252`, `255.4-1ubuntu`).
pub fn parse_version(version: &str) -> Option<u32> {
    let digits: String = version
        .trim()
        .trim_start_matches('v')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One call made on a [`RecordingBus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusCall {
    /// `StartTransientUnit`.
    Start(String, Vec<UnitProperty>),
    /// `SetUnitProperties`.
    Set(String, Vec<UnitProperty>),
    /// `StopUnit`.
    Stop(String),
    /// `ResetFailedUnit`.
    ResetFailed(String),
}

/// A fake systemd for tests: records every call, keeps the set of started units (starting
/// one twice is `AlreadyExists`, as systemd's UnitExists) and, like systemd, creates a
/// started slice's directory under `cgroup_dir` (and removes it when stopped), so the
/// manager's file writes land as they would on a node.
pub struct RecordingBus {
    calls: Mutex<Vec<BusCall>>,
    units: Mutex<Vec<String>>,
    cgroup_dir: Option<std::path::PathBuf>,
    version: u32,
}

impl RecordingBus {
    /// A fake systemd of release `version`, creating slice directories under `cgroup_dir`.
    pub fn new(version: u32, cgroup_dir: Option<std::path::PathBuf>) -> Self {
        RecordingBus {
            calls: Mutex::new(Vec::new()),
            units: Mutex::new(Vec::new()),
            cgroup_dir,
            version,
        }
    }

    /// The calls so far, oldest first.
    pub fn calls(&self) -> Vec<BusCall> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, call: BusCall) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }

    fn slice_dir(&self, name: &str) -> Option<std::path::PathBuf> {
        let path = crate::cgroups::name::expand_slice(name).ok()?;
        Some(self.cgroup_dir.as_ref()?.join(path.trim_start_matches('/')))
    }
}

impl SystemdBus for RecordingBus {
    fn start_transient_unit(&self, name: &str, properties: &[UnitProperty]) -> io::Result<()> {
        self.record(BusCall::Start(name.to_string(), properties.to_vec()));
        let mut units = self.units.lock().unwrap_or_else(|e| e.into_inner());
        if units.iter().any(|u| u == name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("Unit {name} was already loaded or has a fragment file."),
            ));
        }
        units.push(name.to_string());
        if let Some(dir) = self.slice_dir(name) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    fn set_unit_properties(&self, name: &str, properties: &[UnitProperty]) -> io::Result<()> {
        self.record(BusCall::Set(name.to_string(), properties.to_vec()));
        Ok(())
    }

    fn stop_unit(&self, name: &str) -> io::Result<()> {
        self.record(BusCall::Stop(name.to_string()));
        let mut units = self.units.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = units.iter().position(|u| u == name) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("Unit {name} not loaded."),
            ));
        };
        units.remove(i);
        if let Some(dir) = self.slice_dir(name) {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }

    fn reset_failed_unit(&self, name: &str) -> io::Result<()> {
        self.record(BusCall::ResetFailed(name.to_string()));
        Ok(())
    }

    fn version(&self) -> io::Result<u32> {
        Ok(self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_systemd_reports_them() {
        assert_eq!(parse_version("255.4-1ubuntu8"), Some(255));
        assert_eq!(parse_version("v252"), Some(252));
        assert_eq!(parse_version("239"), Some(239));
        assert_eq!(parse_version("unknown"), None);
    }
}
