//! Leader election on `coordination.k8s.io/v1` Leases, with client-go's semantics: candidates
//! poll every retry period (jittered), the leader renews every retry period and gives up when
//! it cannot renew within the renew deadline, and a leader that shuts down releases the Lease
//! so another candidate takes over at once. kube-rs has none, so this is the one for ferrokube.

mod config;
mod elector;
mod record;

pub use config::LeaderElectionConfiguration;
pub use elector::{LeaderElector, LeaderState, LeadershipLost};
pub use record::{next_attempt, observe, released, Attempt, Observed};

/// Upstream's identity for a candidate: `<hostname>_<uuid>`.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}_{}", random_uuid())
}

/// A random (version 4) UUID in its usual text form.
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
