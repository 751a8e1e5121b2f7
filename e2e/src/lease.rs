//! Reading and awaiting `coordination.k8s.io/v1` Leases, for leader-election tests.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::Api;

use crate::process::ManagedProcess;
use crate::wait;

/// How often Lease state is polled.
const POLL: Duration = Duration::from_millis(200);

/// The Lease `namespace/name`, if it exists.
pub async fn get(client: &kube::Client, namespace: &str, name: &str) -> Result<Option<LeaseSpec>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    Ok(leases
        .get_opt(name)
        .await?
        .map(|l| l.spec.unwrap_or_default()))
}

/// The holder of a Lease spec: `None` when absent or empty (released).
pub fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// Waits until the Lease is held by someone for whom `accept` returns true, and returns the
/// spec; fails early if a `watch`ed process exits.
pub async fn wait_for_holder(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    watch: &mut [&mut ManagedProcess],
    accept: impl Fn(&str) -> bool,
) -> Result<LeaseSpec> {
    let what = format!("a holder of Lease {namespace}/{name}");
    wait::until_running(&what, timeout, POLL, watch, || async {
        Ok(get(client, namespace, name)
            .await?
            .filter(|spec| holder(spec).is_some_and(&accept)))
    })
    .await
}

/// Waits until the Lease exists with no holder (released).
pub async fn wait_for_release(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<LeaseSpec> {
    let what = format!("Lease {namespace}/{name} to be released");
    wait::until(&what, timeout, POLL, || async {
        Ok(get(client, namespace, name)
            .await?
            .filter(|spec| holder(spec).is_none()))
    })
    .await
}
