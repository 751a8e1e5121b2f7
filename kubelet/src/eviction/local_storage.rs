//! Local storage limits (upstream's `localStorageEviction`, its emptyDir part): every
//! interval, a pod whose emptyDir volume uses more than the volume's `sizeLimit` is evicted
//! at once (1 s grace) with upstream's message, whatever the node's thresholds. Usage is the
//! volume directory's, as upstream's `du`-style volume stats count it (blocks, the directory
//! itself included).

use api_helpers::quantity;
use k8s_openapi::api::core::v1::Pod;

/// The grace period of a local storage eviction (upstream's
/// `immediateEvictionGracePeriodSeconds`).
pub const GRACE_PERIOD: i64 = 1;
/// The `eviction_signal` label such evictions are counted under.
pub const SIGNAL: &str = "emptydirfs.limit";

/// Upstream's message for an emptyDir over its limit (`limit` as the spec gives it, which
/// the apiserver has made canonical).
pub fn empty_dir_message(volume: &str, limit: &str) -> String {
    format!("Usage of EmptyDir volume {volume:?} exceeds the limit {limit:?}. ")
}

/// The eviction message for the first emptyDir of `pod` that uses (`used(volume name)`,
/// bytes; `None`: not measured) more than a positive `sizeLimit`.
pub fn over_limit(pod: &Pod, used: impl Fn(&str) -> Option<u64>) -> Option<String> {
    let volumes = pod.spec.as_ref()?.volumes.as_ref()?;
    volumes.iter().find_map(|v| {
        let limit = v.empty_dir.as_ref()?.size_limit.as_ref()?;
        let bytes = quantity::value(&limit.0).ok().filter(|b| *b > 0)?;
        let used = used(&v.name)?;
        (used > bytes as u64).then(|| empty_dir_message(&v.name, &limit.0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PodSpec, Volume};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod(limits: &[(&str, Option<&str>)]) -> Pod {
        let volumes = limits
            .iter()
            .map(|(name, limit)| Volume {
                name: name.to_string(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: limit.map(|l| Quantity(l.into())),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        Pod {
            spec: Some(PodSpec {
                volumes: Some(volumes),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_empty_dir_over_its_limit_is_evicted_with_upstreams_message() {
        let p = pod(&[
            ("free", None),
            ("scratch", Some("1")),
            ("big", Some("64Mi")),
        ]);
        let used = |n: &str| Some(if n == "big" { 1 << 20 } else { 4096 });
        assert_eq!(
            over_limit(&p, used).as_deref(),
            Some(r#"Usage of EmptyDir volume "scratch" exceeds the limit "1". "#)
        );
    }

    #[test]
    fn within_limits_unmeasured_or_zero_limits_are_left_alone() {
        let p = pod(&[("scratch", Some("64Ki")), ("zero", Some("0"))]);
        assert_eq!(over_limit(&p, |_| Some(65536)), None);
        assert_eq!(over_limit(&p, |_| None), None);
        let over = over_limit(&p, |_| Some(65537)).unwrap();
        assert!(
            over.contains(r#""scratch" exceeds the limit "64Ki""#),
            "{over}"
        );
        assert_eq!(over_limit(&Pod::default(), |_| Some(1)), None);
    }
}
