//! What service-cidr-controller does with one ServiceCIDR, decided from the cached
//! ServiceCIDRs and IPAddresses (upstream's `pkg/controller/servicecidrs`).

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};

use super::prefix::Prefix;

/// The finalizer that keeps a ServiceCIDR while IPAddresses only it covers remain.
pub const FINALIZER: &str = "networking.k8s.io/service-cidr-finalizer";
/// The condition type the controller maintains.
pub const CONDITION_READY: &str = "Ready";
/// The reason of `Ready=False` while a deleting ServiceCIDR is still in use.
pub const REASON_TERMINATING: &str = "Terminating";
/// The message of `Ready=True`.
pub const MESSAGE_READY: &str = "Kubernetes Service CIDR is ready";
/// The message of `Ready=False` (reason Terminating).
pub const MESSAGE_TERMINATING: &str =
    "There are still IPAddresses referencing the ServiceCIDR, please remove them or create a new ServiceCIDR";
/// Label naming the family of an IPAddress (`IPv4`/`IPv6`).
pub const LABEL_IP_FAMILY: &str = "ipaddress.kubernetes.io/ip-family";
/// Label naming who manages an IPAddress.
pub const LABEL_MANAGED_BY: &str = "ipaddress.kubernetes.io/managed-by";
/// The apiserver's Service IP allocator, the manager of the IPAddresses that block deletion.
pub const IPALLOCATOR: &str = "ipallocator.k8s.io";
/// How long a releasable ServiceCIDR is kept after its deletion, so that allocators that have
/// not seen the deletion yet stop using it first.
pub const DELETION_GRACE: Duration = Duration::from_secs(10);

/// The `Ready` condition as the controller wants it (status, reason, message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// `True` or `False`.
    pub status: &'static str,
    /// Empty for `True` (as upstream), `Terminating` for `False`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: &'static str,
}

/// What to do with one ServiceCIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// A live ServiceCIDR: add the finalizer if missing, then set `ready` unless it is
    /// already so.
    Live {
        /// The finalizer is missing.
        add_finalizer: bool,
        /// The condition to write, `None` when it is already as wanted.
        ready: Option<Ready>,
    },
    /// Deleting but still covering IPAddresses no other ServiceCIDR covers: keep it and say
    /// so in the condition (`None` when it already does).
    Blocked(Option<Ready>),
    /// Releasable, but within [`DELETION_GRACE`] of its deletion: look again after this.
    WaitGrace(Duration),
    /// Releasable: remove the finalizer.
    Release,
    /// Deleting and releasable, and the finalizer is already gone.
    Nothing,
}

fn cidrs_of(c: &ServiceCIDR) -> Vec<Prefix> {
    c.spec
        .as_ref()
        .and_then(|s| s.cidrs.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|s| Prefix::parse(s))
        .collect()
}

fn name_of(c: &ServiceCIDR) -> &str {
    c.metadata.name.as_deref().unwrap_or_default()
}

fn has_finalizer(c: &ServiceCIDR) -> bool {
    c.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// The names of the ServiceCIDRs in `all` with a range overlapping one of `cidr`'s (itself
/// included): a new ServiceCIDR may change whether those can be released.
pub fn overlapping<'a>(cidr: &ServiceCIDR, all: &'a [&'a ServiceCIDR]) -> Vec<&'a str> {
    let mine = cidrs_of(cidr);
    let mut names: Vec<&str> = all
        .iter()
        .filter(|o| {
            cidrs_of(o)
                .iter()
                .any(|p| mine.iter().any(|m| m.overlaps(p)))
        })
        .map(|o| name_of(o))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The address an IPAddress stands for, if the apiserver's allocator manages it (only
/// those block a ServiceCIDR's deletion).
fn allocated_address(ip: &IPAddress) -> Option<IpAddr> {
    let managed = ip
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|m| m == IPALLOCATOR);
    managed
        .then(|| ip.metadata.name.as_deref()?.parse().ok())
        .flatten()
}

fn family_label(ip: &IPAddress) -> Option<&str> {
    ip.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_IP_FAMILY))
        .map(String::as_str)
}

/// The names of the ServiceCIDRs in `all` whose ranges hold `addr` as an assignable address.
fn containing_address<'a>(addr: IpAddr, all: &'a [&'a ServiceCIDR]) -> Vec<&'a str> {
    // One entry per matching range, as upstream counts them.
    all.iter()
        .flat_map(|c| {
            cidrs_of(c)
                .into_iter()
                .filter(move |p| p.contains_address(addr))
                .map(move |_| name_of(c))
        })
        .collect()
}

/// The ServiceCIDRs an allocator-managed IPAddress lies in (to requeue them when it comes or
/// goes); empty for other IPAddresses.
pub fn containing<'a>(ip: &IPAddress, all: &'a [&'a ServiceCIDR]) -> Vec<&'a str> {
    let Some(addr) = allocated_address(ip) else {
        return Vec::new();
    };
    let mut names = containing_address(addr, all);
    names.sort_unstable();
    names.dedup();
    names
}

/// Whether a deleting `cidr` may go: every range of it lies inside another ServiceCIDR, or
/// no allocator-managed IPAddress lies in it alone.
pub fn can_release(cidr: &ServiceCIDR, all: &[&ServiceCIDR], ips: &[&IPAddress]) -> bool {
    let me = name_of(cidr);
    let mine = cidrs_of(cidr);
    let has_parent = mine.iter().all(|p| {
        let parents: Vec<&str> = all
            .iter()
            .flat_map(|c| {
                cidrs_of(c)
                    .into_iter()
                    .filter(|q| q.contains_prefix(p))
                    .map(move |_| name_of(c))
            })
            .collect();
        !(parents.is_empty() || parents == [me])
    });
    if has_parent {
        return true;
    }
    !mine.iter().any(|p| {
        let family = if p.is_ipv6() { "IPv6" } else { "IPv4" };
        ips.iter()
            .filter(|ip| family_label(ip) == Some(family))
            .filter_map(|ip| allocated_address(ip))
            .any(|addr| containing_address(addr, all) == [me])
    })
}

/// `want` unless the current `Ready` condition already has its status, reason and message.
fn ready_if_changed(cidr: &ServiceCIDR, want: Ready) -> Option<Ready> {
    let current = cidr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == CONDITION_READY));
    let same = current.is_some_and(|c| {
        c.status == want.status && c.reason == want.reason && c.message == want.message
    });
    (!same).then_some(want)
}

/// What to do with `cidr`, given every cached ServiceCIDR and IPAddress and how long ago it
/// was deleted (`None` when it is not being deleted).
pub fn plan(
    cidr: &ServiceCIDR,
    all: &[&ServiceCIDR],
    ips: &[&IPAddress],
    deleted_ago: Option<Duration>,
) -> Plan {
    let Some(ago) = deleted_ago else {
        return Plan::Live {
            add_finalizer: !has_finalizer(cidr),
            ready: ready_if_changed(
                cidr,
                Ready {
                    status: "True",
                    reason: "",
                    message: MESSAGE_READY,
                },
            ),
        };
    };
    if !can_release(cidr, all, ips) {
        return Plan::Blocked(ready_if_changed(
            cidr,
            Ready {
                status: "False",
                reason: REASON_TERMINATING,
                message: MESSAGE_TERMINATING,
            },
        ));
    }
    if ago < DELETION_GRACE {
        return Plan::WaitGrace(DELETION_GRACE - ago);
    }
    if has_finalizer(cidr) {
        Plan::Release
    } else {
        Plan::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cidr(name: &str, ranges: &[&str]) -> ServiceCIDR {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"cidrs": ranges}}))
            .unwrap()
    }

    fn ip(addr: &str, managed_by: &str) -> IPAddress {
        let family = if addr.contains(':') { "IPv6" } else { "IPv4" };
        serde_json::from_value(json!({"metadata": {"name": addr, "labels": {
            LABEL_IP_FAMILY: family, LABEL_MANAGED_BY: managed_by}}}))
        .unwrap()
    }

    fn with_ready(mut c: ServiceCIDR, status: &str, reason: &str, message: &str) -> ServiceCIDR {
        c.status = serde_json::from_value(json!({"conditions": [{"type": "Ready",
            "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2025-01-01T00:00:00Z"}]}))
        .unwrap();
        c
    }

    fn finalized(mut c: ServiceCIDR) -> ServiceCIDR {
        c.metadata.finalizers = Some(vec![FINALIZER.into()]);
        c
    }

    #[test]
    fn a_live_cidr_gets_the_finalizer_and_ready() {
        let a = cidr("a", &["10.0.0.0/24"]);
        assert_eq!(
            plan(&a, &[&a], &[], None),
            Plan::Live {
                add_finalizer: true,
                ready: Some(Ready {
                    status: "True",
                    reason: "",
                    message: MESSAGE_READY
                })
            }
        );
        let done = with_ready(finalized(a), "True", "", MESSAGE_READY);
        assert_eq!(
            plan(&done, &[&done], &[], None),
            Plan::Live {
                add_finalizer: false,
                ready: None
            }
        );
    }

    #[test]
    fn an_ip_only_the_deleting_cidr_covers_blocks_it() {
        let a = finalized(cidr("a", &["10.0.0.0/24"]));
        let used = ip("10.0.0.10", IPALLOCATOR);
        let blocked = plan(&a, &[&a], &[&used], Some(Duration::from_secs(60)));
        assert_eq!(
            blocked,
            Plan::Blocked(Some(Ready {
                status: "False",
                reason: REASON_TERMINATING,
                message: MESSAGE_TERMINATING
            }))
        );
        let said = with_ready(a.clone(), "False", REASON_TERMINATING, MESSAGE_TERMINATING);
        assert_eq!(
            plan(&said, &[&said], &[&used], Some(Duration::from_secs(60))),
            Plan::Blocked(None)
        );
        // Addresses not managed by the allocator, or outside the range, do not block.
        let other = ip("10.0.0.10", "someone-else");
        let outside = ip("10.0.1.10", IPALLOCATOR);
        assert_eq!(
            plan(
                &a,
                &[&a],
                &[&other, &outside],
                Some(Duration::from_secs(60))
            ),
            Plan::Release
        );
    }

    #[test]
    fn another_cidr_covering_the_ips_or_the_range_releases_it() {
        let a = finalized(cidr("a", &["10.0.0.0/24"]));
        let used = ip("10.0.0.10", IPALLOCATOR);
        // A second, overlapping range also holding the address.
        let b = cidr("b", &["10.0.0.0/25"]);
        assert!(can_release(&a, &[&a, &b], &[&used]));
        // A parent holding the whole range.
        let parent = cidr("parent", &["10.0.0.0/16"]);
        assert!(can_release(&a, &[&a, &parent], &[&used]));
        // A sibling that does not hold the address.
        let c = cidr("c", &["10.0.0.128/25"]);
        assert!(!can_release(&a, &[&a, &c], &[&used]));
    }

    #[test]
    fn a_dual_stack_cidr_checks_each_family() {
        let a = finalized(cidr("a", &["10.0.0.0/24", "fd00::/112"]));
        let v6 = ip("fd00::5", IPALLOCATOR);
        assert!(!can_release(&a, &[&a], &[&v6]));
        let v6_parent = cidr("p6", &["fd00::/64"]);
        assert!(can_release(&a, &[&a, &v6_parent], &[&v6]));
    }

    #[test]
    fn release_waits_out_the_grace_period() {
        let a = finalized(cidr("a", &["10.0.0.0/24"]));
        assert_eq!(
            plan(&a, &[&a], &[], Some(Duration::from_secs(3))),
            Plan::WaitGrace(Duration::from_secs(7))
        );
        assert_eq!(plan(&a, &[&a], &[], Some(DELETION_GRACE)), Plan::Release);
        let bare = cidr("a", &["10.0.0.0/24"]);
        assert_eq!(
            plan(&bare, &[&bare], &[], Some(DELETION_GRACE)),
            Plan::Nothing
        );
    }

    #[test]
    fn requeue_targets() {
        let a = cidr("a", &["10.0.0.0/24"]);
        let b = cidr("b", &["10.0.0.0/16"]);
        let c = cidr("c", &["10.1.0.0/24"]);
        let all = [&a, &b, &c];
        assert_eq!(overlapping(&a, &all), ["a", "b"]);
        assert_eq!(containing(&ip("10.0.0.3", IPALLOCATOR), &all), ["a", "b"]);
        assert!(containing(&ip("10.0.0.3", "other"), &all).is_empty());
        // The broadcast address of the /24 is an ordinary one of the /16.
        assert_eq!(containing(&ip("10.0.0.255", IPALLOCATOR), &all), ["b"]);
    }
}
