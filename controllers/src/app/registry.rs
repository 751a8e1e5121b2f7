//! The controllers this binary can run, upstream's name table, and `--controllers` selection.

use std::collections::BTreeSet;

pub use crate::machinery::options::FEATURE_GATES;
use crate::machinery::ControllerDescriptor;

/// Every controller this binary implements, the only list of them all.
pub fn all() -> Vec<ControllerDescriptor> {
    use crate::{
        admissionregistration, apps, autoscaling, batch, certificates, core, discovery, internal,
        networking, policy, rbac, resource, storage, storagemigration,
    };
    vec![
        core::serviceaccount::descriptor(),
        certificates::root_ca::descriptor(),
        core::namespace::descriptor(),
        core::gc::descriptor(),
        discovery::endpoints::slice_descriptor(),
        discovery::endpoints::endpoints_descriptor(),
        discovery::endpointslice_mirroring::descriptor(),
        core::node::descriptor(),
        core::node_ipam::descriptor(),
        core::taint_eviction::descriptor(),
        core::resourcequota::descriptor(),
        core::podgc::descriptor(),
        policy::disruption::descriptor(),
        batch::ttl_after_finished::descriptor(),
        core::ttl::descriptor(),
        certificates::approver::descriptor(),
        certificates::signer::descriptor(),
        certificates::cleaner::descriptor(),
        rbac::clusterrole_aggregation::descriptor(),
        core::serviceaccount_token::descriptor(),
        core::serviceaccount_token::legacy_cleaner::descriptor(),
        core::bootstrap::signer::descriptor(),
        core::bootstrap::cleaner::descriptor(),
        storage::volume_protection::pvc_descriptor(),
        storage::volume_protection::pv_descriptor(),
        storage::vac_protection::descriptor(),
        storage::ephemeral_volume::descriptor(),
        batch::cronjob::descriptor(),
        apps::daemonset::descriptor(),
        apps::deployment::descriptor(),
        batch::job::descriptor(),
        apps::replicaset::replicaset_descriptor(),
        apps::replicaset::replicationcontroller_descriptor(),
        apps::statefulset::descriptor(),
        storage::controller::descriptor(),
        storage::expander::descriptor(),
        storage::attach_detach::descriptor(),
        networking::service_cidr::descriptor(),
        admissionregistration::vap_status::descriptor(),
        internal::storageversion_gc::descriptor(),
        resource::claim::descriptor(),
        resource::device_taint::descriptor(),
        autoscaling::descriptor(),
        certificates::pcr_cleaner::descriptor(),
        certificates::ctb_publisher::descriptor(),
        storagemigration::descriptor(),
    ]
}

/// One upstream 1.35 controller: canonical name, aliases accepted in `--controllers`, and
/// whether `*` leaves it off.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamController {
    /// The canonical name, e.g. `replicaset-controller`.
    pub name: &'static str,
    /// Older names `--controllers` still accepts.
    pub aliases: &'static [&'static str],
    /// Not enabled by `*`.
    pub disabled_by_default: bool,
    /// The feature gates it runs under (all must be on), as upstream's descriptor requires.
    pub gates: &'static [&'static str],
    /// A cloud-provider controller: upstream's kube-controller-manager never runs it (the
    /// cloud-controller-manager does, KEP-2395), whatever `--controllers` says.
    pub cloud: bool,
}

const fn c(name: &'static str, aliases: &'static [&'static str]) -> UpstreamController {
    UpstreamController {
        name,
        aliases,
        disabled_by_default: false,
        gates: &[],
        cloud: false,
    }
}

const fn off(name: &'static str, aliases: &'static [&'static str]) -> UpstreamController {
    UpstreamController {
        disabled_by_default: true,
        ..c(name, aliases)
    }
}

const fn cloud(name: &'static str, aliases: &'static [&'static str]) -> UpstreamController {
    UpstreamController {
        cloud: true,
        ..c(name, aliases)
    }
}

impl UpstreamController {
    const fn gated(self, gates: &'static [&'static str]) -> Self {
        UpstreamController { gates, ..self }
    }
}

/// Why a controller `--controllers` enables does not run, as upstream logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// "Skipping a cloud provider controller".
    CloudProvider,
    /// "Controller is disabled by a feature gate", with the gates it requires.
    FeatureGates(&'static [&'static str]),
}

/// Whether upstream controller `name` (canonical) runs under `gates`; `Err` says why not.
pub fn runs_under(
    name: &str,
    gates: &component_base::feature_gates::FeatureGates,
) -> Result<(), Skipped> {
    let Some(u) = UPSTREAM.iter().find(|u| u.name == name) else {
        return Ok(());
    };
    if u.cloud {
        return Err(Skipped::CloudProvider);
    }
    if !u.gates.iter().all(|g| gates.enabled(g)) {
        return Err(Skipped::FeatureGates(u.gates));
    }
    Ok(())
}

/// Every controller upstream's 1.35 kube-controller-manager knows (its `--help` list).
pub const UPSTREAM: &[UpstreamController] = &[
    off("bootstrap-signer-controller", &["bootstrapsigner"]),
    c(
        "certificatesigningrequest-approving-controller",
        &["csrapproving"],
    ),
    c(
        "certificatesigningrequest-cleaner-controller",
        &["csrcleaner"],
    ),
    c(
        "certificatesigningrequest-signing-controller",
        &["csrsigning"],
    ),
    cloud("cloud-node-lifecycle-controller", &["cloud-node-lifecycle"]),
    c(
        "clusterrole-aggregation-controller",
        &["clusterrole-aggregation"],
    ),
    c("cronjob-controller", &["cronjob"]),
    c("daemonset-controller", &["daemonset"]),
    c("deployment-controller", &["deployment"]),
    c("device-taint-eviction-controller", &[])
        .gated(&["DynamicResourceAllocation", "DRADeviceTaints"]),
    c("disruption-controller", &["disruption"]),
    c("endpoints-controller", &["endpoint"]),
    c("endpointslice-controller", &["endpointslice"]),
    c(
        "endpointslice-mirroring-controller",
        &["endpointslicemirroring"],
    ),
    c("ephemeral-volume-controller", &["ephemeral-volume"]),
    c("garbage-collector-controller", &["garbagecollector"]),
    c(
        "horizontal-pod-autoscaler-controller",
        &["horizontalpodautoscaling"],
    ),
    c("job-controller", &["job"]),
    c(
        "kube-apiserver-serving-clustertrustbundle-publisher-controller",
        &[],
    )
    .gated(&["ClusterTrustBundle"]),
    c(
        "legacy-serviceaccount-token-cleaner-controller",
        &["legacy-service-account-token-cleaner"],
    ),
    c("namespace-controller", &["namespace"]),
    c("node-ipam-controller", &["nodeipam"]),
    c("node-lifecycle-controller", &["nodelifecycle"]),
    cloud("node-route-controller", &["route"]),
    c(
        "persistentvolume-attach-detach-controller",
        &["attachdetach"],
    ),
    c(
        "persistentvolume-binder-controller",
        &["persistentvolume-binder"],
    ),
    c(
        "persistentvolume-expander-controller",
        &["persistentvolume-expander"],
    ),
    c("persistentvolume-protection-controller", &["pv-protection"]),
    c(
        "persistentvolumeclaim-protection-controller",
        &["pvc-protection"],
    ),
    c("pod-garbage-collector-controller", &["podgc"]),
    c("podcertificaterequest-cleaner-controller", &[]).gated(&["PodCertificateRequest"]),
    c("replicaset-controller", &["replicaset"]),
    c(
        "replicationcontroller-controller",
        &["replicationcontroller"],
    ),
    c("resourceclaim-controller", &["resource-claim-controller"])
        .gated(&["DynamicResourceAllocation"]),
    c("resourcequota-controller", &["resourcequota"]),
    c(
        "root-ca-certificate-publisher-controller",
        &["root-ca-cert-publisher"],
    ),
    off("selinux-warning-controller", &[]).gated(&["SELinuxChangePolicy"]),
    c("service-cidr-controller", &[]).gated(&["MultiCIDRServiceAllocator"]),
    cloud("service-lb-controller", &["service"]),
    c("serviceaccount-controller", &["serviceaccount"]),
    c("serviceaccount-token-controller", &["serviceaccount-token"]),
    c("statefulset-controller", &["statefulset"]),
    c("storage-version-migrator-controller", &["svm"]).gated(&["StorageVersionMigrator"]),
    c(
        "storageversion-garbage-collector-controller",
        &["storage-version-gc"],
    )
    .gated(&["APIServerIdentity", "StorageVersionAPI"]),
    c("taint-eviction-controller", &[]).gated(&["SeparateTaintEvictionController"]),
    off("token-cleaner-controller", &["tokencleaner"]),
    c("ttl-after-finished-controller", &["ttl-after-finished"]),
    c("ttl-controller", &["ttl"]),
    c("validatingadmissionpolicy-status-controller", &[]),
    c("volumeattributesclass-protection-controller", &[]).gated(&["VolumeAttributesClass"]),
];

/// The canonical upstream name for a name or alias (also accepts the short form without
/// `-controller`, e.g. `root-ca-certificate-publisher`), or `None` if upstream has no such
/// controller.
pub fn canonical(name: &str) -> Option<&'static str> {
    UPSTREAM
        .iter()
        .find(|u| {
            u.name == name
                || u.aliases.contains(&name)
                || u.name.strip_suffix("-controller") == Some(name)
        })
        .map(|u| u.name)
}

/// `--controllers` after validation: entries canonicalised, `-` prefixes kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    entries: Vec<String>,
}

impl Selection {
    /// Validates and canonicalises a `--controllers` list as upstream does: each entry is `*`,
    /// a known controller or alias, or one prefixed with `-`.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let mut entries = Vec::with_capacity(list.len());
        for raw in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if raw == "*" {
                entries.push(raw.to_string());
                continue;
            }
            let (neg, name) = match raw.strip_prefix('-') {
                Some(n) => ("-", n),
                None => ("", raw),
            };
            let Some(canon) = canonical(name) else {
                return Err(format!(
                    "--controllers: {name:?} is not in the list of known controllers{}",
                    suggestion(name)
                ));
            };
            entries.push(format!("{neg}{canon}"));
        }
        Ok(Selection { entries })
    }

    /// Whether the controller (canonical name) runs: the first explicit `foo` / `-foo` wins,
    /// otherwise `*` enables those not disabled by default.
    pub fn is_enabled(&self, canonical_name: &str) -> bool {
        let mut star = false;
        for e in &self.entries {
            if e == canonical_name {
                return true;
            }
            if e.strip_prefix('-') == Some(canonical_name) {
                return false;
            }
            star |= e == "*";
        }
        star && !UPSTREAM
            .iter()
            .any(|u| u.name == canonical_name && u.disabled_by_default)
    }

    /// Upstream controllers that would run (enabled, not a cloud-provider controller, their
    /// feature gates on) but that this binary does not implement (for one warning).
    pub fn enabled_but_unimplemented(
        &self,
        implemented: &BTreeSet<&'static str>,
        gates: &component_base::feature_gates::FeatureGates,
    ) -> Vec<&'static str> {
        UPSTREAM
            .iter()
            .map(|u| u.name)
            .filter(|n| self.is_enabled(n) && runs_under(n, gates).is_ok())
            .filter(|n| !implemented.contains(n))
            .collect()
    }

    /// Enabled controllers that do not run and why (upstream logs each at start).
    pub fn skipped(
        &self,
        gates: &component_base::feature_gates::FeatureGates,
    ) -> Vec<(&'static str, Skipped)> {
        UPSTREAM
            .iter()
            .filter(|u| self.is_enabled(u.name))
            .filter_map(|u| runs_under(u.name, gates).err().map(|why| (u.name, why)))
            .collect()
    }
}

fn suggestion(name: &str) -> String {
    UPSTREAM
        .iter()
        .flat_map(|u| std::iter::once(u.name).chain(u.aliases.iter().copied()))
        .map(|n| (strsim::jaro_winkler(name, n), n))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| format!(" (did you mean {n:?}?)"))
        .unwrap_or_default()
}

/// The implemented controllers `--controllers` enables and `--feature-gates` lets run, with
/// canonical names.
pub fn enabled(
    selection: &Selection,
    gates: &component_base::feature_gates::FeatureGates,
) -> Vec<(&'static str, ControllerDescriptor)> {
    all()
        .into_iter()
        .filter_map(|d| canonical(d.name).map(|n| (n, d)))
        .filter(|(n, _)| selection.is_enabled(n) && runs_under(n, gates).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(v: &[&str]) -> Selection {
        Selection::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn star_enables_defaults_only() {
        let s = sel(&["*"]);
        assert!(s.is_enabled("replicaset-controller"));
        assert!(!s.is_enabled("bootstrap-signer-controller"));
        assert!(!s.is_enabled("token-cleaner-controller"));
    }

    #[test]
    fn explicit_names_and_aliases() {
        let s = sel(&["*", "-replicaset", "tokencleaner"]);
        assert!(!s.is_enabled("replicaset-controller"));
        assert!(s.is_enabled("token-cleaner-controller"));
        assert!(s.is_enabled("deployment-controller"));
        let only = sel(&["namespace"]);
        assert!(only.is_enabled("namespace-controller"));
        assert!(!only.is_enabled("deployment-controller"));
    }

    #[test]
    fn first_match_wins() {
        let s = sel(&["-job", "job"]);
        assert!(!s.is_enabled("job-controller"));
    }

    #[test]
    fn unknown_is_an_error_with_suggestion() {
        let err = Selection::parse(&["replicaste".to_string()]).unwrap_err();
        assert!(err.contains("\"replicaste\""), "{err}");
        assert!(err.contains("did you mean \"replicaset\""), "{err}");
    }

    #[test]
    fn every_descriptor_has_an_upstream_name() {
        for d in all() {
            assert!(
                canonical(d.name).is_some(),
                "{} is not an upstream controller",
                d.name
            );
        }
    }

    fn implemented() -> BTreeSet<&'static str> {
        all().iter().filter_map(|d| canonical(d.name)).collect()
    }

    #[test]
    fn cloud_controllers_never_run_and_gated_ones_follow_the_gates() {
        use component_base::feature_gates::FeatureGates;
        let defaults = FeatureGates::with_defaults(FEATURE_GATES);
        let s = sel(&["*", "route"]);
        let skipped = s.skipped(&defaults);
        for cloud in [
            "cloud-node-lifecycle-controller",
            "node-route-controller",
            "service-lb-controller",
        ] {
            assert!(
                skipped.contains(&(cloud, Skipped::CloudProvider)),
                "{cloud}"
            );
        }
        assert!(skipped.contains(&(
            "podcertificaterequest-cleaner-controller",
            Skipped::FeatureGates(&["PodCertificateRequest"])
        )));
        // Off-by-default controllers are not "skipped": --controllers leaves them off.
        assert!(!skipped
            .iter()
            .any(|(n, _)| *n == "selinux-warning-controller"));
        let on = FeatureGates::parse("PodCertificateRequest=true", FEATURE_GATES).unwrap();
        assert_eq!(
            runs_under("podcertificaterequest-cleaner-controller", &on),
            Ok(())
        );
        let off =
            FeatureGates::parse("SeparateTaintEvictionController=false", FEATURE_GATES).unwrap();
        assert!(!enabled(&s, &off)
            .iter()
            .any(|(n, _)| *n == "taint-eviction-controller"));
        assert!(enabled(&s, &defaults)
            .iter()
            .any(|(n, _)| *n == "taint-eviction-controller"));
    }

    #[test]
    fn what_is_reported_missing_is_what_upstream_would_run() {
        use component_base::feature_gates::FeatureGates;
        let defaults = FeatureGates::with_defaults(FEATURE_GATES);
        let missing = sel(&["*"]).enabled_but_unimplemented(&implemented(), &defaults);
        for m in &missing {
            assert!(runs_under(m, &defaults).is_ok(), "{m}");
            assert!(!implemented().contains(m), "{m}");
        }
        assert!(!missing.contains(&"service-lb-controller"));
        // Every gate on: nothing upstream would run is missing.
        let all_on = FEATURE_GATES
            .iter()
            .map(|(g, _)| format!("{g}=true"))
            .collect::<Vec<_>>()
            .join(",");
        let gated = FeatureGates::parse(&all_on, FEATURE_GATES).unwrap();
        let more = sel(&["*"]).enabled_but_unimplemented(&implemented(), &gated);
        assert!(more.is_empty(), "{more:?}");
    }

    /// The state the README's controller table gives `u`.
    fn state(u: &UpstreamController, implemented: &BTreeSet<&'static str>) -> String {
        if u.cloud {
            return "cloud provider: never run by kube-controller-manager (as upstream)".into();
        }
        let mut state = if implemented.contains(u.name) {
            "implemented".to_string()
        } else {
            "**not implemented yet**".to_string()
        };
        if u.disabled_by_default {
            state += ", off by default";
        }
        if !u.gates.is_empty() {
            let defaults =
                component_base::feature_gates::FeatureGates::with_defaults(FEATURE_GATES);
            let on = u.gates.iter().all(|g| defaults.enabled(g));
            state += &format!(
                ", feature gate {} ({} by default)",
                u.gates.join(" + "),
                if on { "on" } else { "off" }
            );
        }
        state
    }

    #[test]
    fn the_readme_table_shows_every_upstream_controller_with_its_state() {
        let readme = include_str!("../../README.md");
        let implemented = implemented();
        let rows: Vec<String> = UPSTREAM
            .iter()
            .map(|u| format!("| `{}` | {} |", u.name, state(u, &implemented)))
            .collect();
        let missing: Vec<&String> = rows
            .iter()
            .filter(|r| !readme.contains(r.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "controllers/README.md's table should read:\n{}",
            rows.join("\n")
        );
    }
}
