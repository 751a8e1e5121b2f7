//! Resolving the command line and the config file into the settings the kubelet runs with:
//! the file (or, without one, nothing) filled in with upstream's defaults by
//! [`super::defaults`], then the flags the user set. Every file field read here has been
//! defaulted, so `unwrap_or_default` below only unwraps.

use super::auth::{AuthFlags, ServerAuth};
use super::defaults;
use super::file::{unimplemented_fields_set, KubeletConfiguration};
use anyhow::{bail, Context, Result};
use clap::ArgMatches;
use component_base::flags::explicitly_set;
use k8s_openapi::api::core::v1::Taint;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The accepted `(apiVersion, kind)` of the config file.
pub const CONFIG_TYPES: &[(&str, &str)] =
    &[("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration")];

/// Everything the kubelet runs with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The node's name (hostname, lower-cased, or `--hostname-override`).
    pub node_name: String,
    /// `--kubeconfig` (written by client bootstrap when it has no valid certificate).
    pub kubeconfig: Option<PathBuf>,
    /// `--bootstrap-kubeconfig`: the credentials client bootstrap requests a certificate with.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// `--cert-dir`: bootstrapped, rotated and self-signed certificates. Defaults to
    /// `<root-dir>/pki`, upstream's `/var/lib/kubelet/pki` with the default root dir (so
    /// that kubelets with their own root dirs, as in tests, do not share one).
    pub cert_dir: PathBuf,
    /// `rotateCertificates` / `--rotate-certificates`.
    pub rotate_certificates: bool,
    /// `serverTLSBootstrap` / `--rotate-server-certificates`.
    pub server_tls_bootstrap: bool,
    /// CRI endpoint.
    pub runtime_endpoint: String,
    /// `--node-ip`: addresses reported as InternalIP.
    pub node_ips: Vec<IpAddr>,
    /// `--node-labels`.
    pub node_labels: BTreeMap<String, String>,
    /// Taints to register with.
    pub register_with_taints: Vec<Taint>,
    /// Whether to register the node.
    pub register_node: bool,
    /// `--provider-id`.
    pub provider_id: Option<String>,
    /// `--root-dir`.
    pub root_dir: PathBuf,
    /// `podLogsDir`.
    pub pod_logs_dir: PathBuf,
    /// `--cgroup-root`.
    pub cgroup_root: String,
    /// `cgroupDriver` / `--cgroup-driver`: cgroupfs (default) or systemd.
    pub cgroup_driver: crate::cgroups::CgroupDriver,
    /// `cgroupsPerQOS`.
    pub cgroups_per_qos: bool,
    /// `clusterDNS`.
    pub cluster_dns: Vec<String>,
    /// `clusterDomain`.
    pub cluster_domain: String,
    /// `resolvConf`.
    pub resolv_conf: PathBuf,
    /// `maxPods`.
    pub max_pods: i32,
    /// `podCIDR` (standalone; the node's spec.podCIDR wins when set).
    pub pod_cidr: Option<String>,
    /// `failSwapOn`.
    pub fail_swap_on: bool,
    /// `failCgroupV1`.
    pub fail_cgroup_v1: bool,
    /// Healthz address and port (port 0 disables).
    pub healthz: (IpAddr, u16),
    /// Kubelet API address and port.
    pub server: (IpAddr, u16),
    /// Serving certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `nodeStatusUpdateFrequency`.
    pub node_status_update_frequency: Duration,
    /// `nodeStatusReportFrequency`.
    pub node_status_report_frequency: Duration,
    /// `nodeStatusMaxImages` (-1: no limit).
    pub node_status_max_images: i32,
    /// `nodeLeaseDurationSeconds`.
    pub node_lease_duration_seconds: i32,
    /// `kubeAPIQPS` / `kubeAPIBurst`.
    pub api_qps_burst: (f32, u32),
    /// `staticPodPath`.
    pub static_pod_path: Option<PathBuf>,
    /// `fileCheckFrequency`: how often static pod files are re-read.
    pub file_check_frequency: Duration,
    /// Authentication and authorization of the kubelet API.
    pub auth: ServerAuth,
    /// `--kube-reserved` / `kubeReserved`.
    pub kube_reserved: BTreeMap<String, String>,
    /// `--system-reserved` / `systemReserved`.
    pub system_reserved: BTreeMap<String, String>,
    /// `--eviction-hard` / `evictionHard` (upstream's defaults when unset).
    pub eviction_hard: BTreeMap<String, String>,
    /// `--enforce-node-allocatable` / `enforceNodeAllocatable` (default `pods`).
    pub enforce_node_allocatable: Vec<String>,
    /// `evictionPressureTransitionPeriod` (default 5m).
    pub eviction_pressure_transition_period: Duration,
    /// `--eviction-max-pod-grace-period` / `evictionMaxPodGracePeriod` (seconds, default 0).
    pub eviction_max_pod_grace_period: i64,
    /// `evictionSoft`, `evictionSoftGracePeriod`, `evictionMinimumReclaim` (with
    /// `eviction_hard`, what [`crate::eviction::threshold::parse_all`] reads).
    pub eviction_soft: crate::eviction::threshold::EvictionConfig,
    /// `imageGCHighThresholdPercent`, `imageGCLowThresholdPercent`, `imageMinimumGCAge`,
    /// `imageMaximumGCAge`.
    pub image_gc: crate::image::gc::policy::Policy,
    /// Fields of the file and flags accepted but not acted on (for one warning).
    pub unimplemented: Vec<String>,
}

/// Parses `key=value,key=value` maps (`--kube-reserved`) and `key<value` thresholds
/// (`--eviction-hard`), naming `flag` on error.
pub fn parse_map(s: &str, sep: char, flag: &str) -> Result<BTreeMap<String, String>> {
    s.split(',')
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once(sep)
                .with_context(|| format!("{flag}: invalid entry {l:?}: want key{sep}value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Parses `key=value:Effect` / `key:Effect` taints, as `--register-with-taints`.
pub fn parse_taints(s: &str) -> Result<Vec<Taint>> {
    s.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            let (kv, effect) = t.trim().rsplit_once(':').with_context(|| {
                format!("invalid taint spec {t:?}: want <key>=<value>:<effect>")
            })?;
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
                bail!("invalid taint effect {effect:?} in {t:?}");
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (kv, None),
            };
            Ok(Taint {
                key: key.to_string(),
                value,
                effect: effect.to_string(),
                time_added: None,
            })
        })
        .collect()
}

/// Parses `a=b,c=d` (`--node-labels`).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>> {
    s.split(',')
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .with_context(|| format!("invalid label {l:?}: want key=value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// A count that must not be negative (upstream's validation), naming `field` if it is.
fn non_negative(v: Option<i32>, field: &str) -> Result<i32> {
    match v.unwrap_or_default() {
        n if n < 0 => bail!("invalid configuration: {field} {n} must not be a negative number"),
        n => Ok(n),
    }
}

fn go_duration(s: &str, flag: &str) -> Result<Duration> {
    s.parse::<component_base::duration::GoDuration>()
        .map(|d| d.0)
        .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

impl Options {
    /// Resolves flags (`m`) over the config file (if `--config` was given) over defaults.
    pub fn resolve(m: &ArgMatches) -> Result<Options> {
        let file: Option<KubeletConfiguration> = m
            .get_one::<PathBuf>("config")
            .map(|p| component_base::config::load_strict(p, CONFIG_TYPES))
            .transpose()?;
        Self::resolve_with(m, file)
    }

    /// [`Options::resolve`] with the file (if any) already parsed: it is defaulted here,
    /// then the flags override it.
    pub fn resolve_with(m: &ArgMatches, file: Option<KubeletConfiguration>) -> Result<Options> {
        let (f, unimplemented_in_file) = match file {
            Some(mut f) => {
                let unimplemented = unimplemented_fields_set(&f);
                defaults::apply(&mut f);
                (f, unimplemented)
            }
            None => (defaults::without_file(), Vec::new()),
        };
        let flag = |id: &str| {
            explicitly_set(m, id)
                .then(|| m.get_one::<String>(id).cloned())
                .flatten()
        };
        let flag_bool = |id: &str| {
            explicitly_set(m, id)
                .then(|| m.get_one::<bool>(id).copied())
                .flatten()
        };
        let flag_u16 = |id: &str| {
            explicitly_set(m, id)
                .then(|| m.get_one::<u16>(id).copied())
                .flatten()
        };
        let flag_i32 = |id: &str| {
            explicitly_set(m, id)
                .then(|| m.get_one::<i32>(id).copied())
                .flatten()
        };
        let flag_path = |id: &str| m.get_one::<PathBuf>(id).cloned();
        let ip = |s: String, what: &str| -> Result<IpAddr> {
            s.parse()
                .with_context(|| format!("{what}: invalid IP address {s:?}"))
        };
        let kubeconfig = flag_path("kubeconfig");
        let node_ips = flag("node-ip")
            .map(|s| {
                s.split(',')
                    .map(|i| ip(i.trim().to_string(), "--node-ip"))
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?
            .unwrap_or_default();
        let taints = match flag("register-with-taints") {
            Some(s) => parse_taints(&s)?,
            None => f.register_with_taints.clone().unwrap_or_default(),
        };
        let dur = |v: &Option<component_base::duration::GoDuration>| v.unwrap_or_default().0;
        // A duration flag, else the file's (defaulted) value.
        let dur_flag = |id: &str, file: &Option<component_base::duration::GoDuration>| {
            flag(id)
                .map(|s| go_duration(&s, &format!("--{id}")))
                .transpose()
                .map(|d| d.unwrap_or_else(|| dur(file)))
        };
        let status_update = dur_flag(
            "node-status-update-frequency",
            &f.node_status_update_frequency,
        )?;
        let tls = match (
            flag_path("tls-cert-file").or(f.tls_cert_file.clone().map(PathBuf::from)),
            flag_path("tls-private-key-file").or(f.tls_private_key_file.clone().map(PathBuf::from)),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => None,
        };
        let unimplemented: Vec<String> = unimplemented_in_file
            .into_iter()
            .map(str::to_string)
            .collect();
        let cgroup_driver = match (flag("cgroup-driver"), f.cgroup_driver.as_deref()) {
            (Some(d), _) => crate::cgroups::CgroupDriver::parse(&d, "--cgroup-driver")?,
            (None, Some(d)) => crate::cgroups::CgroupDriver::parse(d, "cgroupDriver")?,
            (None, None) => crate::cgroups::CgroupDriver::default(),
        };
        let options = Options {
            node_name: component_base::hostname::node_name(flag("hostname-override").as_deref()),
            kubeconfig,
            bootstrap_kubeconfig: flag_path("bootstrap-kubeconfig"),
            cert_dir: flag_path("cert-dir").unwrap_or_else(|| {
                flag_path("root-dir")
                    .unwrap_or_else(|| "/var/lib/kubelet".into())
                    .join("pki")
            }),
            rotate_certificates: flag_bool("rotate-certificates")
                .or(f.rotate_certificates)
                .unwrap_or(false),
            server_tls_bootstrap: flag_bool("rotate-server-certificates")
                .or(f.server_tls_bootstrap)
                .unwrap_or(false),
            runtime_endpoint: flag("container-runtime-endpoint")
                .or(f.container_runtime_endpoint.clone())
                .unwrap_or_default(),
            node_ips,
            node_labels: flag("node-labels")
                .map(|s| parse_labels(&s))
                .transpose()?
                .unwrap_or_default(),
            register_with_taints: taints,
            register_node: flag_bool("register-node")
                .or(f.register_node)
                .unwrap_or_default(),
            provider_id: flag("provider-id")
                .or(f.provider_id.clone())
                .filter(|p| !p.is_empty()),
            root_dir: flag_path("root-dir").unwrap_or_else(|| "/var/lib/kubelet".into()),
            pod_logs_dir: f.pod_logs_dir.clone().unwrap_or_default().into(),
            cgroup_root: flag("cgroup-root")
                .or(f.cgroup_root.clone())
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "/".into()),
            cgroup_driver,
            cgroups_per_qos: flag_bool("cgroups-per-qos")
                .or(f.cgroups_per_qos)
                .unwrap_or_default(),
            cluster_dns: flag("cluster-dns")
                .map(|s| s.split(',').map(str::to_string).collect())
                .or(f.cluster_dns.clone())
                .unwrap_or_default(),
            cluster_domain: flag("cluster-domain")
                .or(f.cluster_domain.clone())
                .unwrap_or_default(),
            resolv_conf: flag("resolv-conf")
                .or(f.resolv_conf.clone())
                .unwrap_or_default()
                .into(),
            max_pods: flag_i32("max-pods").or(f.max_pods).unwrap_or_default(),
            node_status_max_images: flag_i32("node-status-max-images")
                .or(f.node_status_max_images)
                .unwrap_or_default(),
            pod_cidr: flag("pod-cidr")
                .or(f.pod_cidr.clone())
                .filter(|c| !c.is_empty()),
            fail_swap_on: flag_bool("fail-swap-on")
                .or(f.fail_swap_on)
                .unwrap_or_default(),
            fail_cgroup_v1: flag_bool("fail-cgroupv1")
                .or(f.fail_cgroup_v1)
                .unwrap_or_default(),
            healthz: (
                ip(
                    flag("healthz-bind-address")
                        .or(f.healthz_bind_address.clone())
                        .unwrap_or_default(),
                    "healthzBindAddress",
                )?,
                flag_u16("healthz-port")
                    .or(f.healthz_port)
                    .unwrap_or_default(),
            ),
            server: (
                ip(
                    flag("address").or(f.address.clone()).unwrap_or_default(),
                    "address",
                )?,
                if f.enable_server == Some(false) {
                    0
                } else {
                    flag_u16("port").or(f.port).unwrap_or_default()
                },
            ),
            tls,
            node_status_update_frequency: status_update,
            node_status_report_frequency: dur(&f.node_status_report_frequency),
            node_lease_duration_seconds: f.node_lease_duration_seconds.unwrap_or_default(),
            api_qps_burst: (
                non_negative(
                    flag_i32("kube-api-qps").or(f.kube_api_qps),
                    "kubeAPIQPS (--kube-api-qps)",
                )? as f32,
                non_negative(
                    flag_i32("kube-api-burst").or(f.kube_api_burst),
                    "kubeAPIBurst (--kube-api-burst)",
                )? as u32,
            ),
            static_pod_path: flag_path("pod-manifest-path")
                .or(f.static_pod_path.clone().map(PathBuf::from)),
            file_check_frequency: dur_flag("file-check-frequency", &f.file_check_frequency)?,
            auth: ServerAuth::resolve(
                f.authentication.as_ref(),
                f.authorization.as_ref(),
                AuthFlags {
                    anonymous: flag_bool("anonymous-auth"),
                    webhook: flag_bool("authentication-token-webhook"),
                    client_ca_file: flag("client-ca-file").map(PathBuf::from),
                    authorization_mode: flag("authorization-mode"),
                },
            )?,
            kube_reserved: match flag("kube-reserved") {
                Some(s) => parse_map(&s, '=', "--kube-reserved")?,
                None => f.kube_reserved.clone().unwrap_or_default(),
            },
            system_reserved: match flag("system-reserved") {
                Some(s) => parse_map(&s, '=', "--system-reserved")?,
                None => f.system_reserved.clone().unwrap_or_default(),
            },
            eviction_hard: match flag("eviction-hard") {
                Some(s) => parse_map(&s, '<', "--eviction-hard")?,
                None => f.eviction_hard.clone().unwrap_or_default(),
            },
            enforce_node_allocatable: match flag("enforce-node-allocatable") {
                Some(s) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && *s != "none")
                    .map(str::to_string)
                    .collect(),
                None => f
                    .enforce_node_allocatable
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| s != "none")
                    .collect(),
            },
            eviction_pressure_transition_period: dur_flag(
                "eviction-pressure-transition-period",
                &f.eviction_pressure_transition_period,
            )?,
            eviction_max_pod_grace_period: flag_i32("eviction-max-pod-grace-period")
                .or(f.eviction_max_pod_grace_period)
                .unwrap_or(0)
                .into(),
            eviction_soft: crate::eviction::threshold::EvictionConfig {
                hard: BTreeMap::new(),
                soft: match flag("eviction-soft") {
                    Some(s) => parse_map(&s, '<', "--eviction-soft")?,
                    None => f.eviction_soft.clone().unwrap_or_default(),
                },
                soft_grace_period: match flag("eviction-soft-grace-period") {
                    Some(s) => parse_map(&s, '=', "--eviction-soft-grace-period")?,
                    None => f.eviction_soft_grace_period.clone().unwrap_or_default(),
                },
                minimum_reclaim: match flag("eviction-minimum-reclaim") {
                    Some(s) => parse_map(&s, '=', "--eviction-minimum-reclaim")?,
                    None => f.eviction_minimum_reclaim.clone().unwrap_or_default(),
                },
            },
            image_gc: {
                let flag_i64 = |id: &str| {
                    explicitly_set(m, id)
                        .then(|| m.get_one::<i64>(id).copied())
                        .flatten()
                };
                let p = crate::image::gc::policy::Policy {
                    high_threshold_percent: flag_i64("image-gc-high-threshold")
                        .or(f.image_gc_high_threshold_percent)
                        .unwrap_or_default(),
                    low_threshold_percent: flag_i64("image-gc-low-threshold")
                        .or(f.image_gc_low_threshold_percent)
                        .unwrap_or_default(),
                    min_age: dur_flag("minimum-image-ttl-duration", &f.image_minimum_gc_age)?,
                    max_age: dur(&f.image_maximum_gc_age),
                };
                p.validate()?;
                p
            },
            unimplemented,
        };
        options.validate()?;
        Ok(options)
    }

    /// Upstream's validation of the values the kubelet loops on: a zero period would spin
    /// (or panic a timer), so it is an error naming the field instead.
    fn validate(&self) -> Result<()> {
        for (field, period) in [
            (
                "nodeStatusUpdateFrequency (--node-status-update-frequency)",
                self.node_status_update_frequency,
            ),
            (
                "nodeStatusReportFrequency",
                self.node_status_report_frequency,
            ),
            (
                "fileCheckFrequency (--file-check-frequency)",
                self.file_check_frequency,
            ),
        ] {
            if period.is_zero() {
                bail!("invalid configuration: {field} must be greater than 0");
            }
        }
        if self.node_lease_duration_seconds <= 0 {
            bail!("invalid configuration: nodeLeaseDurationSeconds must be greater than 0");
        }
        if self.max_pods < 0 {
            bail!(
                "invalid configuration: maxPods (--max-pods) {} must not be a negative number",
                self.max_pods
            );
        }
        if self.node_status_max_images < -1 {
            bail!(
                "invalid configuration: nodeStatusMaxImages (--node-status-max-images) {} must be -1 or greater",
                self.node_status_max_images
            );
        }
        Ok(())
    }

    /// Checks the host against the settings, as upstream's start-up does.
    pub fn validate_host(&self) -> Result<()> {
        if self.fail_cgroup_v1 && crate::cgroups::is_v1() {
            bail!("kubelet is configured to not run on a host using cgroup v1. cgroup v1 support is in maintenance mode");
        }
        if self.fail_swap_on && swap_on(Path::new("/proc/swaps")) {
            bail!("running with swap on is not supported, please disable swap or set --fail-swap-on flag to false");
        }
        Ok(())
    }
}

fn swap_on(swaps: &Path) -> bool {
    std::fs::read_to_string(swaps).is_ok_and(|s| s.lines().count() > 1)
}

#[cfg(test)]
mod tests;
