//! `--proxy-mode=nftables`: one `kube-proxy` table per family in upstream's layout,
//! written as one atomic `nft -f` transaction per sync.

pub mod base;
pub mod config;
pub mod elements;
pub mod names;
pub mod proxier;
pub mod runner;
pub mod service;
pub mod tx;

pub use config::NftConfig;
pub use proxier::{Inventory, NftProxier, Plan};
pub use runner::Nft;
pub use tx::Transaction;
