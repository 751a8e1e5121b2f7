//! The controllers this binary can run, upstream's name table, and `--controllers` selection.

use std::collections::BTreeSet;

use futures::future::BoxFuture;

use crate::context::ControllerContext;

/// One controller: its upstream name and how to start it.
pub struct ControllerDescriptor {
    /// Upstream name or alias, e.g. `"replicaset"` (alias of `replicaset-controller`).
    pub name: &'static str,
    /// Whether `*` in `--controllers` enables it.
    pub enabled_by_default: bool,
    /// Runs the controller until `ctx.shutdown` is cancelled.
    pub start: fn(ControllerContext) -> BoxFuture<'static, anyhow::Result<()>>,
}

/// Every controller this binary implements.
pub fn all() -> Vec<ControllerDescriptor> {
    let mut all = crate::lifecycle::descriptors();
    all.extend(crate::workload::descriptors());
    all
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
}

const fn c(name: &'static str, aliases: &'static [&'static str]) -> UpstreamController {
    UpstreamController {
        name,
        aliases,
        disabled_by_default: false,
    }
}

const fn off(name: &'static str, aliases: &'static [&'static str]) -> UpstreamController {
    UpstreamController {
        name,
        aliases,
        disabled_by_default: true,
    }
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
    c("cloud-node-lifecycle-controller", &["cloud-node-lifecycle"]),
    c(
        "clusterrole-aggregation-controller",
        &["clusterrole-aggregation"],
    ),
    c("cronjob-controller", &["cronjob"]),
    c("daemonset-controller", &["daemonset"]),
    c("deployment-controller", &["deployment"]),
    c("device-taint-eviction-controller", &[]),
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
    ),
    c(
        "legacy-serviceaccount-token-cleaner-controller",
        &["legacy-service-account-token-cleaner"],
    ),
    c("namespace-controller", &["namespace"]),
    c("node-ipam-controller", &["nodeipam"]),
    c("node-lifecycle-controller", &["nodelifecycle"]),
    c("node-route-controller", &["route"]),
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
    c("podcertificaterequest-cleaner-controller", &[]),
    c("replicaset-controller", &["replicaset"]),
    c(
        "replicationcontroller-controller",
        &["replicationcontroller"],
    ),
    c("resourceclaim-controller", &["resource-claim-controller"]),
    c("resourcequota-controller", &["resourcequota"]),
    c(
        "root-ca-certificate-publisher-controller",
        &["root-ca-cert-publisher"],
    ),
    off("selinux-warning-controller", &[]),
    c("service-cidr-controller", &[]),
    c("service-lb-controller", &["service"]),
    c("serviceaccount-controller", &["serviceaccount"]),
    c("serviceaccount-token-controller", &["serviceaccount-token"]),
    c("statefulset-controller", &["statefulset"]),
    c("storage-version-migrator-controller", &["svm"]),
    c(
        "storageversion-garbage-collector-controller",
        &["storage-version-gc"],
    ),
    c("taint-eviction-controller", &[]),
    off("token-cleaner-controller", &["tokencleaner"]),
    c("ttl-after-finished-controller", &["ttl-after-finished"]),
    c("ttl-controller", &["ttl"]),
    c("validatingadmissionpolicy-status-controller", &[]),
    c("volumeattributesclass-protection-controller", &[]),
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

    /// Enabled upstream controllers this binary does not implement (for one warning).
    pub fn enabled_but_unimplemented(
        &self,
        implemented: &BTreeSet<&'static str>,
    ) -> Vec<&'static str> {
        UPSTREAM
            .iter()
            .map(|u| u.name)
            .filter(|n| self.is_enabled(n) && !implemented.contains(n))
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

/// The implemented controllers `--controllers` enables, with canonical names.
pub fn enabled(selection: &Selection) -> Vec<(&'static str, ControllerDescriptor)> {
    all()
        .into_iter()
        .filter_map(|d| canonical(d.name).map(|n| (n, d)))
        .filter(|(n, _)| selection.is_enabled(n))
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
}
