//! `--proxy-mode=iptables`: upstream's chain layout in the `filter` and `nat` tables,
//! written as one iptables-restore transaction per sync.

pub mod names;
pub mod proxier;
pub mod restore;
pub mod runner;
pub mod service;

pub use proxier::{IptPlan, IptProxier};
pub use restore::Restore;
pub use runner::Iptables;
