//! Restart back-off, as upstream's kubelet: the first restart is immediate, then 10s
//! doubling to 5 minutes; a container that ran 10 minutes starts over.

use std::time::Duration;

/// The first back-off delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The longest back-off delay.
pub const MAX: Duration = Duration::from_secs(300);
/// Running this long resets the back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// How long to wait after a container with `restart_count` restarts behind it exited
/// before starting it again. `ran` is how long the exited container ran.
pub fn delay(restart_count: i32, ran: Duration) -> Duration {
    if restart_count <= 0 || ran >= RESET_AFTER {
        return Duration::ZERO;
    }
    let doublings = (restart_count - 1).min(16) as u32;
    INITIAL.saturating_mul(1 << doublings).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_ten_seconds_to_five_minutes() {
        let ran = Duration::from_secs(1);
        let secs: Vec<u64> = (0..9).map(|n| delay(n, ran).as_secs()).collect();
        assert_eq!(secs, vec![0, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(delay(100, ran), MAX);
    }

    #[test]
    fn resets_after_ten_minutes_running() {
        assert_eq!(delay(5, Duration::from_secs(600)), Duration::ZERO);
    }
}
