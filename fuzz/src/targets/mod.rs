//! One module per parser family; each exposes `pub fn fuzz(data: &[u8])`.

pub mod component_config;
pub mod cri_log;
pub mod cron;
pub mod csr;
pub mod dns_message;
pub mod duration;
pub mod kubeconfig;
pub mod labels;
pub mod netfilter_output;
pub mod quantity;
pub mod resolv_conf;
pub mod static_pod;
