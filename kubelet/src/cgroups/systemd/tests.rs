//! The systemd driver against the recording fake bus and a directory laid out like a
//! cgroup mount (no systemd on the machine the tests run on).

use super::bus::{BusCall, RecordingBus};
use super::properties::PropertyValue::*;
use super::properties::UnitProperty;
use super::*;
use crate::cgroups::{CgroupDriver, CgroupV1, CgroupV2, Hierarchy};
use crate::pod::qos::QosClass;
use std::path::Path;
use std::sync::Arc;

fn v2_manager(mount: &Path, systemd_version: u32) -> (SystemdCgroups, Arc<RecordingBus>) {
    std::fs::write(mount.join("cgroup.subtree_control"), "").unwrap();
    let bus = Arc::new(RecordingBus::new(
        systemd_version,
        Some(mount.to_path_buf()),
    ));
    let files = Box::new(CgroupV2::new(mount.to_path_buf()));
    let m = SystemdCgroups::new(Box::new(bus.clone()), files).unwrap();
    (m, bus)
}

fn started(calls: &[BusCall]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| match c {
            BusCall::Start(unit, _) => Some(unit.clone()),
            _ => None,
        })
        .collect()
}

fn property<'a>(
    props: &'a [UnitProperty],
    name: &str,
) -> Option<&'a super::properties::PropertyValue> {
    props.iter().find(|p| p.name == name).map(|p| &p.value)
}

#[test]
fn top_slices_are_started_with_their_parents_wanted() {
    let mount = tempfile::tempdir().unwrap();
    let (m, bus) = v2_manager(mount.path(), 255);
    let h = Hierarchy::with_driver("/", CgroupDriver::Systemd);
    h.ensure_top(&m, 4000, Some(8 << 30)).unwrap();
    let calls = bus.calls();
    assert_eq!(
        started(&calls),
        [
            "kubepods.slice",
            "kubepods-burstable.slice",
            "kubepods-besteffort.slice"
        ]
    );
    let BusCall::Start(_, props) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(
        property(props, "Wants"),
        Some(&StrList(vec!["-.slice".into()]))
    );
    assert_eq!(
        property(props, "Description"),
        Some(&Str("libcontainer container kubepods.slice".into()))
    );
    let BusCall::Set(unit, props) = &calls[1] else {
        panic!("{calls:?}")
    };
    assert_eq!(unit, "kubepods.slice");
    assert_eq!(property(props, "MemoryMax"), Some(&U64(8 << 30)));
    // 4 CPUs: 4096 shares → weight 157.
    assert_eq!(property(props, "CPUWeight"), Some(&U64(157)));
    let BusCall::Start(_, props) = &calls[2] else {
        panic!("{calls:?}")
    };
    assert_eq!(
        property(props, "Wants"),
        Some(&StrList(vec!["kubepods.slice".into()]))
    );
    // The files systemd would hold are written too, at the slice's path.
    let be = mount
        .path()
        .join("kubepods.slice/kubepods-besteffort.slice");
    assert_eq!(std::fs::read_to_string(be.join("cpu.weight")).unwrap(), "1");
    assert_eq!(
        std::fs::read_to_string(be.join("cpu.max")).unwrap(),
        "max 100000"
    );
}

#[test]
fn pod_slice_created_updated_read_and_removed() {
    let mount = tempfile::tempdir().unwrap();
    let (m, bus) = v2_manager(mount.path(), 255);
    let h = Hierarchy::with_driver("/", CgroupDriver::Systemd);
    let pod = h.pod(QosClass::Burstable, "1234-abcd");
    let limits = Limits {
        cpu_shares: 512,
        cpu_quota: Some(1_500),
        memory_limit: Some(64 << 20),
    };
    m.apply(&pod, &limits).unwrap();
    assert!(m.exists(&pod));
    let back = m.read(&pod).unwrap();
    // The quota as systemd applies it: 1.5% of a CPU rounds up to 2%.
    assert_eq!(back.cpu_quota, Some(2_000));
    assert_eq!(back.memory_limit, Some(64 << 20));
    // Updating: the slice exists, so start is UnitExists (ignored) and properties are set.
    m.apply(
        &pod,
        &Limits {
            memory_limit: Some(32 << 20),
            ..limits
        },
    )
    .unwrap();
    assert_eq!(m.read(&pod).unwrap().memory_limit, Some(32 << 20));
    let calls = bus.calls();
    let unit = "kubepods-burstable-pod1234_abcd.slice";
    assert_eq!(started(&calls), [unit, unit]);
    let BusCall::Start(_, props) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(
        property(props, "Wants"),
        Some(&StrList(vec!["kubepods-burstable.slice".into()]))
    );
    let BusCall::Set(_, props) = &calls[3] else {
        panic!("{calls:?}")
    };
    assert_eq!(property(props, "MemoryMax"), Some(&U64(32 << 20)));
    assert_eq!(property(props, "CPUQuotaPeriodUSec"), Some(&U64(100_000)));
    assert_eq!(property(props, "CPUQuotaPerSecUSec"), Some(&U64(20_000)));

    // Files left in the fake's directory: remove stops the unit then reports the leftover.
    let removed = m.remove(&pod);
    let calls = bus.calls();
    assert_eq!(calls[4], BusCall::Stop(unit.into()));
    assert_eq!(calls[5], BusCall::ResetFailed(unit.into()));
    // A real cgroup directory with no processes goes; plain files in a tempdir do not.
    assert!(removed.is_err());
}

#[test]
fn removing_an_unknown_slice_is_fine() {
    let mount = tempfile::tempdir().unwrap();
    let (m, bus) = v2_manager(mount.path(), 255);
    m.remove("/kubepods.slice/kubepods-podgone.slice").unwrap();
    assert_eq!(
        bus.calls(),
        [
            BusCall::Stop("kubepods-podgone.slice".into()),
            BusCall::ResetFailed("kubepods-podgone.slice".into())
        ]
    );
}

#[test]
fn v1_uses_legacy_properties_and_files() {
    let mount = tempfile::tempdir().unwrap();
    for c in ["cpu", "memory"] {
        std::fs::create_dir(mount.path().join(c)).unwrap();
    }
    let bus = Arc::new(RecordingBus::new(239, None));
    let files = Box::new(CgroupV1::new(mount.path().to_path_buf()));
    let m = SystemdCgroups::new(Box::new(bus.clone()), files).unwrap();
    assert_eq!(m.version(), "v1");
    assert_eq!(m.systemd_version(), 239);
    let path = "/kubepods.slice/kubepods-podu.slice";
    m.apply(
        path,
        &Limits {
            cpu_shares: 1024,
            cpu_quota: Some(100_000),
            memory_limit: Some(1 << 30),
        },
    )
    .unwrap();
    let calls = bus.calls();
    let BusCall::Start(_, start) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(property(start, "BlockIOAccounting"), Some(&Bool(true)));
    let BusCall::Set(unit, props) = &calls[1] else {
        panic!("{calls:?}")
    };
    assert_eq!(unit, "kubepods-podu.slice");
    assert_eq!(
        props.iter().map(|p| p.name).collect::<Vec<_>>(),
        ["MemoryLimit", "CPUShares", "CPUQuotaPerSecUSec"],
        "systemd 239 has no CPUQuotaPeriodUSec"
    );
    assert_eq!(property(props, "CPUQuotaPerSecUSec"), Some(&U64(1_000_000)));
    let cpu = mount.path().join("cpu/kubepods.slice/kubepods-podu.slice");
    assert_eq!(
        std::fs::read_to_string(cpu.join("cpu.shares")).unwrap(),
        "1024"
    );
    assert_eq!(
        std::fs::read_to_string(cpu.join("cpu.cfs_quota_us")).unwrap(),
        "100000"
    );
}

#[test]
fn a_path_that_is_not_a_slice_is_refused_before_any_call() {
    let mount = tempfile::tempdir().unwrap();
    let (m, bus) = v2_manager(mount.path(), 255);
    let err = m
        .apply("/kubepods/burstable", &Limits::default())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("/kubepods/burstable"), "{err}");
    assert!(m.remove("/kubepods").is_err());
    assert!(bus.calls().is_empty());
}
