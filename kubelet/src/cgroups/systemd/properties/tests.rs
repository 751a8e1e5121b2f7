use super::PropertyValue::*;
use super::*;

fn prop(name: &'static str, value: PropertyValue) -> UnitProperty {
    UnitProperty { name, value }
}

#[test]
fn start_properties_v1_and_v2() {
    let v2 = start_properties(
        "kubepods-burstable.slice",
        "kubepods.slice",
        CgroupVersion::V2,
    );
    assert_eq!(
        v2,
        vec![
            prop(
                "Description",
                Str("libcontainer container kubepods-burstable.slice".into())
            ),
            prop("Wants", StrList(vec!["kubepods.slice".into()])),
            prop("MemoryAccounting", Bool(true)),
            prop("CPUAccounting", Bool(true)),
            prop("IOAccounting", Bool(true)),
            prop("TasksAccounting", Bool(true)),
            prop("DefaultDependencies", Bool(false)),
        ]
    );
    let v1 = start_properties("kubepods.slice", "-.slice", CgroupVersion::V1);
    assert!(v1.contains(&prop("BlockIOAccounting", Bool(true))));
    assert!(v1.contains(&prop("Wants", StrList(vec!["-.slice".into()]))));
    assert!(!v1
        .iter()
        .any(|p| p.name == "IOAccounting" || p.name == "Delegate"));
}

fn limited() -> Limits {
    Limits {
        cpu_shares: 512,
        cpu_quota: Some(50_000),
        memory_limit: Some(64 << 20),
    }
}

#[test]
fn resources_v1() {
    let r = resource_properties(&limited(), CgroupVersion::V1, 252);
    assert_eq!(
        r.properties,
        vec![
            prop("MemoryLimit", U64(64 << 20)),
            prop("CPUShares", U64(512)),
            prop("CPUQuotaPeriodUSec", U64(100_000)),
            prop("CPUQuotaPerSecUSec", U64(500_000)),
        ]
    );
    assert_eq!(r.limits, limited());
}

#[test]
fn resources_v2() {
    let r = resource_properties(&limited(), CgroupVersion::V2, 252);
    assert_eq!(
        r.properties,
        vec![
            prop("MemoryMax", U64(64 << 20)),
            prop("CPUWeight", U64(20)),
            prop("CPUQuotaPeriodUSec", U64(100_000)),
            prop("CPUQuotaPerSecUSec", U64(500_000)),
        ]
    );
}

#[test]
fn unlimited_adds_only_the_cpu_weight() {
    let besteffort = Limits {
        cpu_shares: 2,
        ..Default::default()
    };
    let r = resource_properties(&besteffort, CgroupVersion::V2, 252);
    assert_eq!(r.properties, vec![prop("CPUWeight", U64(1))]);
    let r = resource_properties(&besteffort, CgroupVersion::V1, 252);
    assert_eq!(r.properties, vec![prop("CPUShares", U64(2))]);
    assert_eq!(r.limits, besteffort);
}

#[test]
fn weight_is_capped_at_ten_thousand() {
    let huge = Limits {
        cpu_shares: 1 << 20,
        ..Default::default()
    };
    let r = resource_properties(&huge, CgroupVersion::V2, 252);
    assert_eq!(r.properties, vec![prop("CPUWeight", U64(10_000))]);
}

#[test]
fn old_systemd_gets_no_quota_period() {
    let r = resource_properties(&limited(), CgroupVersion::V2, 239);
    assert!(!r.properties.iter().any(|p| p.name == "CPUQuotaPeriodUSec"));
    assert!(r
        .properties
        .contains(&prop("CPUQuotaPerSecUSec", U64(500_000))));
}

#[test]
fn quota_rounds_up_to_whole_percents() {
    // 0.25 CPU: exact.
    assert_eq!(cpu_quota_per_sec(25_000, 100_000), (250_000, 25_000));
    // 1m CPU (upstream's minimum quota, 1000µs per 100ms): 1% of a CPU.
    assert_eq!(cpu_quota_per_sec(1_000, 100_000), (10_000, 1_000));
    // 15m CPU → 1.5% → 2%, and the files get the rounded quota.
    assert_eq!(cpu_quota_per_sec(1_500, 100_000), (20_000, 2_000));
    assert_eq!(cpu_quota_per_sec(-1, 100_000), (USEC_INFINITY, -1));
    let r = resource_properties(
        &Limits {
            cpu_shares: 15,
            cpu_quota: Some(1_500),
            memory_limit: None,
        },
        CgroupVersion::V1,
        252,
    );
    assert_eq!(r.limits.cpu_quota, Some(2_000));
    assert!(r
        .properties
        .contains(&prop("CPUQuotaPerSecUSec", U64(20_000))));
}
