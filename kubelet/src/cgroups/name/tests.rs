//! Cases from upstream's cgroup_manager_linux_test.go (TestCgroupNameToSystemdBasename,
//! TestCgroupNameToSystemd, TestCgroupNameToCgroupfs, TestParseSystemdToCgroupName) and
//! from runc's ExpandSlice tests, plus the kubelet's own names.

use super::*;

fn name(parts: &[&str]) -> CgroupName {
    parts
        .iter()
        .fold(CgroupName::root(), |n, p| n.child(p).unwrap())
}

#[test]
fn systemd_basename_matches_upstream() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "/"),
        (&["system"], "system.slice"),
        (&["system", "Burstable"], "system-Burstable.slice"),
        (&["Burstable", "pod-123"], "Burstable-pod_123.slice"),
        (&["test", "a", "b"], "test-a-b.slice"),
        (&["test", "a", "b", "Burstable"], "test-a-b-Burstable.slice"),
        (&["Burstable"], "Burstable.slice"),
        (
            &["BestEffort", "pod-6c1a4e95-6bb6-11e6-bc26-28d2444e470d"],
            "BestEffort-pod_6c1a4e95_6bb6_11e6_bc26_28d2444e470d.slice",
        ),
    ];
    for (parts, want) in cases {
        let full = name(parts).to_systemd();
        let base = full
            .rsplit('/')
            .next()
            .filter(|b| !b.is_empty())
            .unwrap_or("/");
        assert_eq!(base, *want, "{parts:?}");
    }
}

#[test]
fn systemd_expanded_matches_upstream() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "/"),
        (&["Burstable"], "/Burstable.slice"),
        (&["Burstable", "pod-123"], "/Burstable.slice/Burstable-pod_123.slice"),
        (
            &["BestEffort", "pod-6c1a4e95-6bb6-11e6-bc26-28d2444e470d"],
            "/BestEffort.slice/BestEffort-pod_6c1a4e95_6bb6_11e6_bc26_28d2444e470d.slice",
        ),
        (&["kubepods"], "/kubepods.slice"),
        (
            &["kubepods", "burstable", "pod1234-abcd"],
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_abcd.slice",
        ),
        // kind's cgroupRoot: /kubelet.
        (
            &["kubelet", "kubepods", "besteffort", "podu-1"],
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-podu_1.slice",
        ),
    ];
    for (parts, want) in cases {
        assert_eq!(name(parts).to_systemd(), *want, "{parts:?}");
        assert_eq!(CgroupDriver::Systemd.literal(&name(parts)), *want);
    }
}

#[test]
fn cgroupfs_matches_upstream() {
    assert_eq!(CgroupName::root().to_cgroupfs(), "/");
    assert_eq!(name(&["Burstable"]).to_cgroupfs(), "/Burstable");
    assert_eq!(
        CgroupDriver::Cgroupfs.literal(&name(&["kubepods", "burstable", "pod1-2"])),
        "/kubepods/burstable/pod1-2"
    );
}

#[test]
fn parse_systemd_matches_upstream() {
    assert_eq!(CgroupName::parse_systemd("/test"), name(&["test"]));
    assert_eq!(CgroupName::parse_systemd("/test.slice"), name(&["test"]));
    assert_eq!(
        CgroupName::parse_systemd(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_abcd.slice"
        ),
        name(&["kubepods", "burstable", "pod1234-abcd"])
    );
    assert_eq!(CgroupName::parse_systemd("-.slice"), CgroupName::root());
    assert_eq!(
        CgroupDriver::Systemd.parse_literal("kubepods-besteffort.slice"),
        name(&["kubepods", "besteffort"])
    );
}

#[test]
fn parse_cgroupfs_drops_empty_components() {
    assert_eq!(CgroupName::parse_cgroupfs("/"), CgroupName::root());
    assert_eq!(CgroupName::parse_cgroupfs(""), CgroupName::root());
    assert_eq!(CgroupName::parse_cgroupfs("/a/"), name(&["a"]));
    assert_eq!(CgroupName::parse_cgroupfs("/a//b"), name(&["a", "b"]));
    assert_eq!(
        CgroupDriver::Cgroupfs.parse_literal("/kubepods/podx"),
        name(&["kubepods", "podx"])
    );
}

#[test]
fn names_round_trip_through_both_drivers() {
    let n = name(&["kubepods", "burstable", "pod6c1a4e95-6bb6-11e6"]);
    for d in [CgroupDriver::Cgroupfs, CgroupDriver::Systemd] {
        assert_eq!(d.parse_literal(&d.literal(&n)), n, "{d}");
    }
}

#[test]
fn child_refuses_what_cannot_map_back() {
    for bad in ["", "a/b", "a_b"] {
        let err = CgroupName::root().child(bad).unwrap_err();
        assert!(err.0.contains("component"), "{err}");
    }
}

#[test]
fn expand_slice_as_systemd() {
    assert_eq!(expand_slice("-.slice").unwrap(), "/");
    assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
    assert_eq!(
        expand_slice("test-a-b.slice").unwrap(),
        "/test.slice/test-a.slice/test-a-b.slice"
    );
    for bad in [
        "",
        ".slice",
        "a.scope",
        "a/b.slice",
        "a--b.slice",
        "-a.slice",
        "a-.slice",
    ] {
        assert!(expand_slice(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn slice_of_path_splits_unit_and_parent() {
    assert_eq!(
        slice_of_path("/kubepods.slice").unwrap(),
        ("kubepods.slice".into(), "-.slice".into())
    );
    assert_eq!(
        slice_of_path("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podu.slice")
            .unwrap(),
        (
            "kubepods-burstable-podu.slice".into(),
            "kubepods-burstable.slice".into()
        )
    );
    let err = slice_of_path("/kubepods/burstable").unwrap_err();
    assert!(
        err.0.contains("/kubepods/burstable") && err.0.contains(".slice"),
        "{err}"
    );
    assert!(slice_of_path("/").is_err());
}

#[test]
fn driver_parse_names_the_field() {
    assert_eq!(
        CgroupDriver::parse("systemd", "cgroupDriver"),
        Ok(CgroupDriver::Systemd)
    );
    assert_eq!(
        CgroupDriver::parse("cgroupfs", "cgroupDriver"),
        Ok(CgroupDriver::Cgroupfs)
    );
    let err = CgroupDriver::parse("SystemD", "--cgroup-driver").unwrap_err();
    assert!(
        err.0.starts_with("--cgroup-driver: ") && err.0.contains("SystemD"),
        "{err}"
    );
}

#[test]
fn container_cgroups_of_each_runtime() {
    let id = "0123abcd";
    assert!(is_container_cgroup("0123abcd", id));
    assert!(is_container_cgroup("cri-containerd-0123abcd.scope", id));
    assert!(is_container_cgroup("crio-0123abcd.scope", id));
    assert!(!is_container_cgroup("crio-conmon-0123abcd.scope", id));
    assert!(!is_container_cgroup("cri-containerd-ff0123abcd.scope", id));
    assert!(!is_container_cgroup("0123abcd.scope", id));
    assert!(!is_container_cgroup("x-.scope", ""));
}
