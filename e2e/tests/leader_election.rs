//! Leader election of the real binaries on a real apiserver: two kube-scheduler candidates,
//! one Lease holder with upstream's fields; kill -9 of the leader hands over within one lease
//! duration; SIGTERM releases the Lease so the standby takes over at once.
//!
//! The same tests run against upstream's binaries with `FERROKUBE_BIN_DIR=<dir of upstream
//! binaries>`, which is how their expectations were checked.

use std::time::{Duration, Instant};

use e2e::components::{
    controller_manager_args, scheduler_args, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER,
};
use e2e::lease::{self, holder};
use e2e::ports::free_port;
use e2e::process::Signal;
use e2e::{ManagedProcess, TestCluster};
use k8s_openapi::api::coordination::v1::LeaseSpec;

/// Upstream's defaults: lease 15 s, retry 2 s.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Slack for process start, client-go's 1.2 retry jitter and a loaded machine.
const SLACK: Duration = Duration::from_secs(6);
/// How long a fresh candidate may take to acquire a free Lease.
const FIRST_ACQUIRE: Duration = Duration::from_secs(30);
const NS: &str = "kube-system";

fn start_scheduler(cluster: &TestCluster) -> ManagedProcess {
    let args = scheduler_args(cluster, free_port().unwrap(), true).unwrap();
    cluster.spawn_component(KUBE_SCHEDULER, &args).unwrap()
}

fn start_controller_manager(cluster: &TestCluster) -> ManagedProcess {
    let args = controller_manager_args(cluster, free_port().unwrap(), true).unwrap();
    cluster
        .spawn_component(KUBE_CONTROLLER_MANAGER, &args)
        .unwrap()
}

/// Asserts the fields upstream writes for a held Lease.
fn assert_held(spec: &LeaseSpec, context: &str) {
    assert!(holder(spec).is_some(), "{context}: no holder: {spec:?}");
    assert_eq!(spec.lease_duration_seconds, Some(15), "{context}: {spec:?}");
    let acquire = spec.acquire_time.as_ref().expect("acquireTime set");
    let renew = spec.renew_time.as_ref().expect("renewTime set");
    assert!(
        renew >= acquire,
        "{context}: renewTime before acquireTime: {spec:?}"
    );
    assert!(
        spec.lease_transitions.is_some(),
        "{context}: leaseTransitions unset: {spec:?}"
    );
}

#[tokio::test]
async fn scheduler_leader_holds_lease_and_standby_takes_over_after_kill() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();

    let mut first = start_scheduler(&cluster);
    let held = lease::wait_for_holder(
        &client,
        NS,
        KUBE_SCHEDULER,
        FIRST_ACQUIRE,
        &mut [&mut first],
        |_| true,
    )
    .await
    .unwrap();
    assert_held(&held, "first leader");
    let leader = holder(&held).unwrap().to_string();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        leader.starts_with(&format!("{}_", hostname.trim())),
        "holderIdentity is <hostname>_<uuid> upstream: {leader}"
    );

    // A standby candidate changes nothing; the leader keeps renewing.
    let mut second = start_scheduler(&cluster);
    tokio::time::sleep(RETRY_PERIOD * 3).await;
    assert!(
        second.is_running(),
        "standby exited:\n{}",
        second.log_tail(20)
    );
    let later = lease::get(&client, NS, KUBE_SCHEDULER)
        .await
        .unwrap()
        .unwrap();
    assert_held(&later, "while standby runs");
    assert_eq!(
        holder(&later),
        Some(leader.as_str()),
        "standby must not steal the Lease"
    );
    assert_eq!(later.lease_transitions, held.lease_transitions);
    assert_eq!(later.acquire_time, held.acquire_time);
    assert!(
        later.renew_time > held.renew_time,
        "leader did not renew: {later:?}"
    );

    first.signal(Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let taken = lease::wait_for_holder(
        &client,
        NS,
        KUBE_SCHEDULER,
        LEASE_DURATION + SLACK * 2,
        &mut [&mut second],
        |h| h != leader,
    )
    .await
    .unwrap();
    let took = killed.elapsed();
    assert!(
        took <= LEASE_DURATION + SLACK,
        "takeover took {took:?}, more than one lease duration (+{SLACK:?})"
    );
    assert!(
        took >= LEASE_DURATION - RETRY_PERIOD * 2,
        "takeover after {took:?}: the standby did not wait for the lease to expire"
    );
    assert_held(&taken, "new leader");
    assert_eq!(
        taken.lease_transitions,
        held.lease_transitions.map(|t| t + 1),
        "leaseTransitions must count the handover"
    );
    assert!(
        taken.acquire_time > held.acquire_time,
        "acquireTime not renewed: {taken:?}"
    );
    assert!(second.is_running());
}

#[tokio::test]
async fn scheduler_sigterm_releases_lease_for_immediate_takeover() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();

    let mut first = start_scheduler(&cluster);
    let held = lease::wait_for_holder(
        &client,
        NS,
        KUBE_SCHEDULER,
        FIRST_ACQUIRE,
        &mut [&mut first],
        |_| true,
    )
    .await
    .unwrap();
    let leader = holder(&held).unwrap().to_string();
    let mut second = start_scheduler(&cluster);
    tokio::time::sleep(RETRY_PERIOD * 2).await;
    assert!(
        second.is_running(),
        "standby exited:\n{}",
        second.log_tail(20)
    );

    first.signal(Signal::SIGTERM).unwrap();
    let stopped = Instant::now();
    let status = first.wait_timeout(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "leader did not exit cleanly on SIGTERM ({status:?}):\n{}",
        first.log_tail(20)
    );
    // Without a release the standby would wait out the whole lease (15 s).
    let taken = lease::wait_for_holder(
        &client,
        NS,
        KUBE_SCHEDULER,
        LEASE_DURATION + SLACK,
        &mut [&mut second],
        |h| h != leader,
    )
    .await
    .unwrap();
    let took = stopped.elapsed();
    assert!(
        took < LEASE_DURATION / 2,
        "takeover took {took:?} after SIGTERM: the lease was not released"
    );
    assert_held(&taken, "after release");
    assert_eq!(
        taken.lease_transitions,
        held.lease_transitions.map(|t| t + 1)
    );
}

#[tokio::test]
async fn scheduler_release_leaves_an_empty_holder() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();

    let mut only = start_scheduler(&cluster);
    let held = lease::wait_for_holder(
        &client,
        NS,
        KUBE_SCHEDULER,
        FIRST_ACQUIRE,
        &mut [&mut only],
        |_| true,
    )
    .await
    .unwrap();
    only.terminate(Duration::from_secs(15)).unwrap();
    // Nobody else runs, so the released record stays as the leader left it.
    let released = lease::wait_for_release(&client, NS, KUBE_SCHEDULER, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(released.lease_duration_seconds, Some(1), "{released:?}");
    assert_eq!(released.lease_transitions, held.lease_transitions);
}

#[tokio::test]
async fn controller_manager_leader_holds_its_lease() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();

    let mut first = start_controller_manager(&cluster);
    let held = lease::wait_for_holder(
        &client,
        NS,
        KUBE_CONTROLLER_MANAGER,
        FIRST_ACQUIRE,
        &mut [&mut first],
        |_| true,
    )
    .await
    .unwrap();
    assert_held(&held, "controller-manager");
    let mut second = start_controller_manager(&cluster);
    tokio::time::sleep(RETRY_PERIOD * 2).await;
    assert!(
        second.is_running(),
        "standby exited:\n{}",
        second.log_tail(20)
    );
    let later = lease::get(&client, NS, KUBE_CONTROLLER_MANAGER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder(&later), holder(&held));
    assert_eq!(later.lease_transitions, held.lease_transitions);
    assert!(first.is_running());
}
