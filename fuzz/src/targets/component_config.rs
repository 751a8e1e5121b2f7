//! Component-config files decoded strictly: KubeletConfiguration (then defaulted) and
//! KubeSchedulerConfiguration (then validated).

use component_base::config::parse_strict;
use kubelet::config::file::KubeletConfiguration;
use scheduler::config::KubeSchedulerConfiguration;
use std::path::Path;

/// Decodes the text as each component's config; what decodes goes on to defaulting or
/// validation, as at start-up.
pub fn fuzz(data: &[u8]) {
    let s = crate::text(data);
    let path = Path::new("/etc/fuzz/config.yaml");
    if let Ok(mut c) =
        parse_strict::<KubeletConfiguration>(path, &s, kubelet::config::options::CONFIG_TYPES)
    {
        kubelet::config::defaults::apply(&mut c);
    }
    if let Ok(c) = parse_strict::<KubeSchedulerConfiguration>(path, &s, scheduler::config::ACCEPTED)
    {
        let _ = c.validate();
    }
}
