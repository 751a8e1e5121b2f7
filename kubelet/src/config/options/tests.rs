use super::*;
use crate::config::flags::{command, table};

fn matches(args: &[&str]) -> ArgMatches {
    let argv: Vec<std::ffi::OsString> = std::iter::once("kubelet")
        .chain(args.iter().copied())
        .map(Into::into)
        .collect();
    component_base::flags::try_parse(&table(), command(), argv)
        .unwrap()
        .unwrap()
        .matches
}

fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.yaml");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

/// What kubeadm writes to /var/lib/kubelet/config.yaml (trimmed of nothing).
const KUBEADM: &str = r#"apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: cgroupfs
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
containerRuntimeEndpoint: ""
cpuManagerReconcilePeriod: 0s
evictionPressureTransitionPeriod: 0s
failSwapOn: false
fileCheckFrequency: 0s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
httpCheckFrequency: 0s
imageMinimumGCAge: 0s
imageMaximumGCAge: 0s
kind: KubeletConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
memorySwap: {}
nodeStatusReportFrequency: 0s
nodeStatusUpdateFrequency: 0s
rotateCertificates: true
runtimeRequestTimeout: 0s
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
staticPodPath: /etc/kubernetes/manifests
streamingConnectionIdleTimeout: 0s
syncFrequency: 0s
volumeStatsAggPeriod: 0s
"#;

#[test]
fn kubeadm_config_loads_and_flags_override_it() {
    let (_d, p) = config_file(KUBEADM);
    let f: KubeletConfiguration = component_base::config::load_strict(&p, CONFIG_TYPES).unwrap();
    let o = Options::resolve_with(
        &matches(&[
            "--cluster-domain=example.org",
            "--node-ip=10.200.0.5",
            "--node-labels=a=b,c=d",
            "--register-with-taints=k=v:NoSchedule,x:NoExecute",
        ]),
        Some(f),
    )
    .unwrap();
    assert_eq!(o.cluster_dns, vec!["10.96.0.10"]);
    assert_eq!(o.cluster_domain, "example.org", "flag wins over file");
    assert!(!o.fail_swap_on);
    assert!(
        !o.fail_cgroup_v1,
        "upstream 1.35 tree defaults failCgroupV1 to false"
    );
    assert_eq!(
        o.static_pod_path,
        Some(PathBuf::from("/etc/kubernetes/manifests"))
    );
    assert_eq!(o.node_ips, vec!["10.200.0.5".parse::<IpAddr>().unwrap()]);
    assert_eq!(o.node_labels["c"], "d");
    assert_eq!(o.register_with_taints.len(), 2);
    assert_eq!(o.register_with_taints[1].value, None);
    assert_eq!(o.healthz.1, 10248);
    assert!(!o.auth.anonymous && o.auth.webhook_authn && o.auth.webhook_authz);
    assert!(
        o.auth.client_ca_file.is_some(),
        "kubeadm's x509 clientCAFile"
    );
    assert!(!o.unimplemented.contains(&"authentication".to_string()));
    assert!(
        o.rotate_certificates,
        "kubeadm forces rotateCertificates on"
    );
    assert!(!o.server_tls_bootstrap);
    assert!(!o.unimplemented.iter().any(|f| f == "rotateCertificates"));
    assert_eq!(o.cert_dir, PathBuf::from("/var/lib/kubelet/pki"));
    assert_eq!(o.enforce_node_allocatable, vec!["pods"]);
    assert_eq!(o.eviction_hard["memory.available"], "100Mi");
    assert_eq!(o.file_check_frequency, std::time::Duration::from_secs(20));
    // kubeadm's zero durations are unset: upstream's defaults apply.
    assert_eq!(
        o.image_gc,
        crate::image::gc::policy::Policy::default(),
        "85/80, imageMinimumGCAge 2m, no maximum age"
    );
    assert_eq!(
        o.eviction_pressure_transition_period,
        std::time::Duration::from_secs(300)
    );
}

#[test]
fn image_gc_and_soft_eviction_settings_resolve_and_validate() {
    let (_d, p) = config_file(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
imageGCHighThresholdPercent: 100\nimageGCLowThresholdPercent: 70\nimageMinimumGCAge: 30s\nimageMaximumGCAge: 1h\n\
evictionSoft: {nodefs.available: 15%}\nevictionSoftGracePeriod: {nodefs.available: 1m}\n\
evictionMinimumReclaim: {nodefs.available: 1Gi}\n",
    );
    let f: KubeletConfiguration = component_base::config::load_strict(&p, CONFIG_TYPES).unwrap();
    let o = Options::resolve_with(
        &matches(&[
            "--image-gc-low-threshold=60",
            "--minimum-image-ttl-duration=45s",
        ]),
        Some(f.clone()),
    )
    .unwrap();
    assert_eq!(o.image_gc.high_threshold_percent, 100);
    assert_eq!(o.image_gc.low_threshold_percent, 60, "flag wins");
    assert_eq!(o.image_gc.min_age, std::time::Duration::from_secs(45));
    assert_eq!(o.image_gc.max_age, std::time::Duration::from_secs(3600));
    assert!(!o
        .unimplemented
        .iter()
        .any(|u| u.starts_with("image") || u.starts_with("eviction")));
    let t = crate::eviction::threshold::parse_all(&crate::eviction::threshold::EvictionConfig {
        hard: o.eviction_hard.clone(),
        ..o.eviction_soft.clone()
    })
    .unwrap();
    let soft = t.iter().find(|t| !t.hard).unwrap();
    assert_eq!(soft.grace_period, std::time::Duration::from_secs(60));
    assert!(soft.min_reclaim.is_some());

    let e = Options::resolve_with(&matches(&["--image-gc-low-threshold=100"]), Some(f))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("imageGCLowThresholdPercent (--image-gc-low-threshold) 100 must be less than"),
        "{e}"
    );
}

#[test]
fn bad_files_name_the_field_and_file() {
    let (_d, p) = config_file(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDomian: x\n",
    );
    let err = component_base::config::load_strict::<KubeletConfiguration>(&p, CONFIG_TYPES)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("clusterDomian") && err.contains("config.yaml"),
        "{err}"
    );
    let (_d, p) = config_file("apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n");
    let err = component_base::config::load_strict::<KubeletConfiguration>(&p, CONFIG_TYPES)
        .unwrap_err()
        .to_string();
    assert!(err.contains("apiVersion") || err.contains("v1"), "{err}");
    let (_d, p) = config_file(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: many\n",
    );
    let err = component_base::config::load_strict::<KubeletConfiguration>(&p, CONFIG_TYPES)
        .unwrap_err()
        .to_string();
    assert!(err.contains("maxPods"), "{err}");
}

#[test]
fn taints_and_labels_parse_strictly() {
    assert!(parse_taints("k=v:Bogus").is_err());
    assert!(parse_taints("novalue").is_err());
    assert!(parse_labels("a").is_err());
    assert_eq!(parse_taints("").unwrap(), vec![]);
}

#[test]
fn cgroup_driver_from_file_and_flag() {
    use crate::cgroups::CgroupDriver;
    let load = |text: &str| -> Option<KubeletConfiguration> {
        let (_d, p) = config_file(text);
        Some(component_base::config::load_strict(&p, CONFIG_TYPES).unwrap())
    };
    let header = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
    let o = Options::resolve_with(&matches(&[]), load(KUBEADM)).unwrap();
    assert_eq!(o.cgroup_driver, CgroupDriver::Cgroupfs);
    // kind's configuration.
    let kind = format!("{header}cgroupDriver: systemd\ncgroupRoot: /kubelet\n");
    let o = Options::resolve_with(&matches(&[]), load(&kind)).unwrap();
    assert_eq!(o.cgroup_driver, CgroupDriver::Systemd);
    assert_eq!(o.cgroup_root, "/kubelet");
    assert!(
        !o.unimplemented.iter().any(|f| f.contains("cgroupDriver")),
        "{:?}",
        o.unimplemented
    );
    let o = Options::resolve_with(&matches(&["--cgroup-driver=cgroupfs"]), load(&kind)).unwrap();
    assert_eq!(
        o.cgroup_driver,
        CgroupDriver::Cgroupfs,
        "flag wins over file"
    );
    let err = Options::resolve_with(
        &matches(&[]),
        load(&format!("{header}cgroupDriver: sytemd\n")),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("cgroupDriver") && err.to_string().contains("sytemd"),
        "{err}"
    );
    let err = Options::resolve_with(&matches(&["--cgroup-driver=none"]), load(header)).unwrap_err();
    assert!(err.to_string().contains("--cgroup-driver"), "{err}");
}

#[test]
fn certificate_flags_resolve_over_the_file() {
    let (_d, p) = config_file(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nrotateCertificates: true\nserverTLSBootstrap: true\n",
    );
    let f: KubeletConfiguration = component_base::config::load_strict(&p, CONFIG_TYPES).unwrap();
    let o = Options::resolve_with(
        &matches(&[
            "--rotate-certificates=false",
            "--root-dir=/srv/kubelet",
            "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
        ]),
        Some(f),
    )
    .unwrap();
    assert!(!o.rotate_certificates, "flag wins over file");
    assert!(o.server_tls_bootstrap);
    assert_eq!(o.cert_dir, PathBuf::from("/srv/kubelet/pki"));
    assert_eq!(
        o.kubeconfig,
        Some(PathBuf::from("/etc/kubernetes/kubelet.conf")),
        "a missing kubeconfig is no longer replaced by the bootstrap one"
    );
    assert_eq!(
        o.bootstrap_kubeconfig,
        Some(PathBuf::from("/etc/kubernetes/bootstrap-kubelet.conf"))
    );
    let o = Options::resolve_with(
        &matches(&[
            "--cert-dir=/etc/kubelet-pki",
            "--rotate-server-certificates",
        ]),
        Some(KubeletConfiguration::default()),
    )
    .unwrap();
    assert_eq!(o.cert_dir, PathBuf::from("/etc/kubelet-pki"));
    assert!(o.server_tls_bootstrap && !o.rotate_certificates);
}
