//! Leader-election settings: the `leaderElection` block of component configs
//! (component-base's LeaderElectionConfiguration) and upstream's `--leader-elect*` flags.

use crate::duration::GoDuration;
use serde::{Deserialize, Serialize};

/// component-base's LeaderElectionConfiguration, as it appears in config files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LeaderElectionConfiguration {
    /// Whether to elect a leader before doing work.
    pub leader_elect: bool,
    /// How long a non-leader waits after the last observed renewal before taking over.
    pub lease_duration: GoDuration,
    /// How long the leader keeps retrying to renew before it gives up leadership.
    pub renew_deadline: GoDuration,
    /// How long candidates wait between attempts.
    pub retry_period: GoDuration,
    /// The lock type; only `leases` is supported (as upstream since 1.28).
    pub resource_lock: String,
    /// The Lease's name.
    pub resource_name: String,
    /// The Lease's namespace.
    pub resource_namespace: String,
}

impl LeaderElectionConfiguration {
    /// Upstream's defaults for a component whose Lease is `kube-system/<name>`.
    pub fn defaults_for(name: &str) -> Self {
        LeaderElectionConfiguration {
            leader_elect: true,
            lease_duration: GoDuration::from_secs(15),
            renew_deadline: GoDuration::from_secs(10),
            retry_period: GoDuration::from_secs(2),
            resource_lock: "leases".into(),
            resource_name: name.into(),
            resource_namespace: "kube-system".into(),
        }
    }

    /// Checks the settings as upstream's validation does, naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !self.leader_elect {
            return Ok(());
        }
        if self.lease_duration.0.is_zero() {
            return Err("leaderElection.leaseDuration: must be greater than zero".into());
        }
        if self.renew_deadline.0.is_zero() {
            return Err("leaderElection.renewDeadline: must be greater than zero".into());
        }
        if self.retry_period.0.is_zero() {
            return Err("leaderElection.retryPeriod: must be greater than zero".into());
        }
        if self.lease_duration <= self.renew_deadline {
            return Err("leaderElection.leaseDuration: must be greater than renewDeadline".into());
        }
        if self.resource_lock != "leases" {
            return Err(format!(
                "leaderElection.resourceLock: Unsupported value: {:?}: supported values: \"leases\"",
                self.resource_lock
            ));
        }
        if self.resource_name.is_empty() {
            return Err("leaderElection.resourceName: Required value".into());
        }
        if self.resource_namespace.is_empty() {
            return Err("leaderElection.resourceNamespace: Required value".into());
        }
        Ok(())
    }

    /// Upstream's `--leader-elect*` flags, for a component's clap command.
    pub fn args() -> Vec<clap::Arg> {
        let value = |id: &'static str, help: &'static str| clap::Arg::new(id).long(id).help(help);
        vec![
            crate::flags::bool_flag("leader-elect", true)
                .help("Start a leader election client and gain leadership before executing the main loop."),
            value("leader-elect-lease-duration", "Duration non-leader candidates wait after observing a renewal before acquiring leadership.")
                .value_parser(clap::value_parser!(GoDuration))
                .default_value("15s"),
            value("leader-elect-renew-deadline", "Interval the acting leader retries refreshing leadership before it stops leading.")
                .value_parser(clap::value_parser!(GoDuration))
                .default_value("10s"),
            value("leader-elect-retry-period", "Duration clients wait between attempts of acquisition and renewal of a leadership.")
                .value_parser(clap::value_parser!(GoDuration))
                .default_value("2s"),
            value("leader-elect-resource-lock", "The type of resource object used for locking during leader election. Supported option is 'leases'.")
                .default_value("leases"),
            value("leader-elect-resource-name", "The name of the resource object used for locking during leader election."),
            value("leader-elect-resource-namespace", "The namespace of the resource object used for locking during leader election.")
                .default_value("kube-system"),
        ]
    }

    /// Applies the flags in `matches` over `self`: only flags given on the command line
    /// override (a config file's values), unless `all` asks for every flag's value.
    pub fn apply_flags(&mut self, matches: &clap::ArgMatches, all: bool) {
        let set = |id: &str| all || crate::flags::explicitly_set(matches, id);
        if set("leader-elect") {
            if let Some(v) = matches.get_one::<bool>("leader-elect") {
                self.leader_elect = *v;
            }
        }
        for (id, field) in [
            ("leader-elect-lease-duration", &mut self.lease_duration),
            ("leader-elect-renew-deadline", &mut self.renew_deadline),
            ("leader-elect-retry-period", &mut self.retry_period),
        ] {
            if set(id) {
                if let Some(v) = matches.get_one::<GoDuration>(id) {
                    *field = *v;
                }
            }
        }
        for (id, field) in [
            ("leader-elect-resource-lock", &mut self.resource_lock),
            ("leader-elect-resource-name", &mut self.resource_name),
            (
                "leader-elect-resource-namespace",
                &mut self.resource_namespace,
            ),
        ] {
            if set(id) {
                if let Some(v) = matches.get_one::<String>(id) {
                    *field = v.clone();
                }
            }
        }
    }
}

impl Default for LeaderElectionConfiguration {
    fn default() -> Self {
        Self::defaults_for("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(args: &[&str]) -> clap::ArgMatches {
        clap::Command::new("c")
            .args(LeaderElectionConfiguration::args())
            .try_get_matches_from(std::iter::once("c").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn explicit_flags_override_file_values_and_defaults_do_not() {
        let mut cfg = LeaderElectionConfiguration::defaults_for("kube-scheduler");
        cfg.lease_duration = GoDuration::from_secs(30);
        cfg.apply_flags(
            &matches(&["--leader-elect=false", "--leader-elect-retry-period=5s"]),
            false,
        );
        assert!(!cfg.leader_elect);
        assert_eq!(cfg.retry_period, GoDuration::from_secs(5));
        assert_eq!(cfg.lease_duration, GoDuration::from_secs(30));
        assert_eq!(cfg.resource_name, "kube-scheduler");
    }

    #[test]
    fn validation_names_the_field() {
        let mut cfg = LeaderElectionConfiguration::defaults_for("x");
        assert!(cfg.validate().is_ok());
        cfg.renew_deadline = GoDuration::from_secs(20);
        assert!(cfg
            .validate()
            .unwrap_err()
            .starts_with("leaderElection.leaseDuration"));
        cfg = LeaderElectionConfiguration::defaults_for("x");
        cfg.resource_lock = "endpoints".into();
        assert!(cfg
            .validate()
            .unwrap_err()
            .starts_with("leaderElection.resourceLock"));
    }
}
