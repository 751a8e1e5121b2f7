//! `--proxy-mode=nftables`: one `kube-proxy` table per family in upstream's layout,
//! written as one atomic `nft -f` transaction per sync.

pub mod base;
pub mod elements;
pub mod names;
pub mod netlink;
pub mod proxier;
pub mod runner;
pub mod service;
pub mod tx;

/// The nftables proxier's settings (shared with the iptables proxier).
pub use crate::config::ProxierConfig as NftConfig;
pub use proxier::{Inventory, NftProxier, Plan};
pub use runner::Nft;
pub use tx::Transaction;
