use super::*;
use crate::model::{EndpointInfo, PortInfo, ServiceInfo, ServiceKey, ServiceKind, SliceInfo};
use crate::store::Store;

fn port(name: &str, port: u16) -> PortInfo {
    PortInfo {
        name: name.into(),
        protocol: "tcp".into(),
        port,
    }
}

fn service(ns: &str, name: &str, kind: ServiceKind, ports: Vec<PortInfo>) -> ServiceInfo {
    ServiceInfo {
        key: ServiceKey::new(ns, name),
        kind,
        ports,
    }
}

/// web (ClusterIP, dual-stack), db (headless, db-0 with a hostname), ext (ExternalName out
/// of the cluster), alias (ExternalName to web), dangling (ExternalName to a missing
/// Service), kube-dns.
pub(crate) fn fixture() -> Store {
    let store = Store::new(vec![names::fqdn("cluster.local").unwrap()], 30);
    store.apply_service(service(
        "default",
        "web",
        ServiceKind::ClusterIp(vec![
            "10.96.0.20".parse().unwrap(),
            "fd00::20".parse().unwrap(),
        ]),
        vec![port("http", 80)],
    ));
    store.apply_service(service(
        "default",
        "db",
        ServiceKind::Headless,
        vec![port("sql", 5432)],
    ));
    store.apply_slice(SliceInfo {
        name: "db-abc".into(),
        service: ServiceKey::new("default", "db"),
        endpoints: vec![
            EndpointInfo {
                addresses: vec!["10.1.0.1".parse().unwrap()],
                hostname: Some("db-0".into()),
                ready: true,
            },
            EndpointInfo {
                addresses: vec!["10.1.0.2".parse().unwrap()],
                hostname: None,
                ready: true,
            },
        ],
        ports: vec![port("sql", 5432)],
    });
    store.apply_service(service(
        "default",
        "ext",
        ServiceKind::ExternalName("example.com".into()),
        vec![],
    ));
    store.apply_service(service(
        "default",
        "alias",
        ServiceKind::ExternalName("web.default.svc.cluster.local".into()),
        vec![],
    ));
    store.apply_service(service(
        "default",
        "dangling",
        ServiceKind::ExternalName("nope.default.svc.cluster.local".into()),
        vec![],
    ));
    store.apply_service(service(
        "kube-system",
        "kube-dns",
        ServiceKind::ClusterIp(vec!["10.96.0.10".parse().unwrap()]),
        vec![port("dns", 53)],
    ));
    store
}

pub(crate) fn ask(store: &Store, name: &str, qtype: RecordType) -> Outcome {
    let state = store.read();
    let ns = || state.cluster_ips(&ServiceKey::new("kube-system", "kube-dns"));
    let auth = Authority {
        zones: store.zones(),
        zone_keys: store.zone_keys(),
        soa_names: store.soa_names(),
        ttl: store.ttl(),
        index: &state.index,
        serial: state.serial,
        ns_addresses: &ns,
    };
    resolve(&auth, &Name::from_ascii(name).unwrap(), qtype)
}

fn answer(store: &Store, name: &str, qtype: RecordType) -> Answer {
    match ask(store, name, qtype) {
        Outcome::Answer(a) => a,
        Outcome::Forward => panic!("{name} {qtype} was forwarded"),
    }
}

fn data(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    v.sort();
    v
}

fn assert_negative(a: &Answer, rcode: ResponseCode) {
    assert_eq!(a.rcode, rcode, "{a:?}");
    assert!(a.answers.is_empty(), "{a:?}");
    assert_eq!(a.authorities.len(), 1, "{a:?}");
    let soa = &a.authorities[0];
    assert_eq!(soa.name.to_ascii(), "cluster.local.");
    assert_eq!(soa.ttl, 30);
    let RData::SOA(soa) = &soa.data else {
        panic!("not an SOA: {soa:?}")
    };
    assert_eq!(soa.mname.to_ascii(), "ns.dns.cluster.local.");
    assert_eq!(soa.rname.to_ascii(), "hostmaster.cluster.local.");
    assert_eq!(soa.minimum, 30);
}

#[test]
fn cluster_ip_service_a_and_aaaa() {
    let store = fixture();
    let a = answer(&store, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_eq!(
        data(&a.answers),
        vec!["web.default.svc.cluster.local. 30 IN A 10.96.0.20"]
    );
    let aaaa = answer(&store, "web.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(
        data(&aaaa.answers),
        vec!["web.default.svc.cluster.local. 30 IN AAAA fd00::20"]
    );
}

#[test]
fn headless_service_answers_every_ready_endpoint() {
    let a = answer(&fixture(), "db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        data(&a.answers),
        vec![
            "db.default.svc.cluster.local. 30 IN A 10.1.0.1",
            "db.default.svc.cluster.local. 30 IN A 10.1.0.2"
        ]
    );
}

#[test]
fn srv_for_cluster_ip_and_headless_services_with_additional_addresses() {
    let store = fixture();
    let a = answer(
        &store,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        data(&a.answers),
        vec!["_http._tcp.web.default.svc.cluster.local. 30 IN SRV 0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(
        data(&a.additionals),
        vec![
            "web.default.svc.cluster.local. 30 IN A 10.96.0.20",
            "web.default.svc.cluster.local. 30 IN AAAA fd00::20"
        ]
    );
    let h = answer(
        &store,
        "_sql._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        data(&h.answers),
        vec![
            "_sql._tcp.db.default.svc.cluster.local. 30 IN SRV 0 50 5432 10-1-0-2.db.default.svc.cluster.local.",
            "_sql._tcp.db.default.svc.cluster.local. 30 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        data(&h.additionals),
        vec![
            "10-1-0-2.db.default.svc.cluster.local. 30 IN A 10.1.0.2",
            "db-0.db.default.svc.cluster.local. 30 IN A 10.1.0.1"
        ]
    );
    // An unknown port name under an existing Service: NXDOMAIN.
    assert_negative(
        &answer(
            &store,
            "_nope._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
        ),
        ResponseCode::NXDomain,
    );
}

#[test]
fn pod_hostname_under_its_subdomain_service() {
    let a = answer(
        &fixture(),
        "db-0.db.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(
        data(&a.answers),
        vec!["db-0.db.default.svc.cluster.local. 30 IN A 10.1.0.1"]
    );
}

#[test]
fn external_name_is_a_cname_and_in_zone_targets_are_followed() {
    let store = fixture();
    let ext = answer(&store, "ext.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ext.rcode, ResponseCode::NoError);
    assert_eq!(
        data(&ext.answers),
        vec!["ext.default.svc.cluster.local. 30 IN CNAME example.com."]
    );
    let alias = answer(&store, "alias.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        data(&alias.answers),
        vec![
            "alias.default.svc.cluster.local. 30 IN CNAME web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. 30 IN A 10.96.0.20"
        ]
    );
    let cname = answer(
        &store,
        "alias.default.svc.cluster.local.",
        RecordType::CNAME,
    );
    assert_eq!(cname.answers.len(), 1);
    let dangling = answer(&store, "dangling.default.svc.cluster.local.", RecordType::A);
    assert_eq!(dangling.rcode, ResponseCode::NXDomain);
    assert_eq!(dangling.answers.len(), 1, "the CNAME stays in the answer");
    assert_eq!(dangling.authorities.len(), 1);
}

#[test]
fn pod_records_in_insecure_mode() {
    let store = fixture();
    let a = answer(
        &store,
        "10-244-1-7.default.pod.cluster.local.",
        RecordType::A,
    );
    assert_eq!(
        data(&a.answers),
        vec!["10-244-1-7.default.pod.cluster.local. 30 IN A 10.244.1.7"]
    );
    let v6 = answer(&store, "fd00--7.any.pod.cluster.local.", RecordType::AAAA);
    assert_eq!(
        data(&v6.answers),
        vec!["fd00--7.any.pod.cluster.local. 30 IN AAAA fd00::7"]
    );
    assert_negative(
        &answer(
            &store,
            "10-244-1-7.default.pod.cluster.local.",
            RecordType::AAAA,
        ),
        ResponseCode::NoError,
    );
    assert_negative(
        &answer(
            &store,
            "not-an-ip.default.pod.cluster.local.",
            RecordType::A,
        ),
        ResponseCode::NXDomain,
    );
}

#[test]
fn ptr_for_cluster_ips_and_endpoint_addresses() {
    let store = fixture();
    let svc = answer(&store, "20.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        data(&svc.answers),
        vec!["20.0.96.10.in-addr.arpa. 30 IN PTR web.default.svc.cluster.local."]
    );
    let ep = answer(&store, "1.0.1.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        data(&ep.answers),
        vec!["1.0.1.10.in-addr.arpa. 30 IN PTR db-0.db.default.svc.cluster.local."]
    );
    let v6 = names::reverse_name("fd00::20".parse().unwrap());
    match ask(&store, &v6.to_ascii(), RecordType::PTR) {
        Outcome::Answer(a) => assert_eq!(a.answers.len(), 1),
        Outcome::Forward => panic!("v6 PTR forwarded"),
    }
    // Unknown addresses fall through to the upstream resolvers, as kubeadm configures.
    assert_eq!(
        ask(&store, "9.9.9.9.in-addr.arpa.", RecordType::PTR),
        Outcome::Forward
    );
}

#[test]
fn nxdomain_versus_nodata_carry_the_soa() {
    let store = fixture();
    assert_negative(
        &answer(&store, "missing.default.svc.cluster.local.", RecordType::A),
        ResponseCode::NXDomain,
    );
    // The name exists with other types only.
    assert_negative(
        &answer(&store, "web.default.svc.cluster.local.", RecordType::TXT),
        ResponseCode::NoError,
    );
    assert_negative(
        &answer(&store, "db.default.svc.cluster.local.", RecordType::AAAA),
        ResponseCode::NoError,
    );
    // Empty non-terminals and namespaces.
    assert_negative(
        &answer(
            &store,
            "_tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
        ),
        ResponseCode::NoError,
    );
    assert_negative(
        &answer(&store, "default.svc.cluster.local.", RecordType::A),
        ResponseCode::NoError,
    );
    assert_negative(
        &answer(&store, "nothing.here.cluster.local.", RecordType::A),
        ResponseCode::NXDomain,
    );
}

#[test]
fn names_are_case_insensitive_and_echo_the_question_case() {
    let a = answer(&fixture(), "WEB.Default.SVC.Cluster.Local.", RecordType::A);
    assert_eq!(
        data(&a.answers),
        vec!["WEB.Default.SVC.Cluster.Local. 30 IN A 10.96.0.20"]
    );
}

#[test]
fn apex_soa_ns_and_schema_version() {
    let store = fixture();
    let soa = answer(&store, "cluster.local.", RecordType::SOA);
    assert_eq!(soa.answers.len(), 1);
    assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
    let ns = answer(&store, "cluster.local.", RecordType::NS);
    assert_eq!(
        data(&ns.answers),
        vec!["cluster.local. 30 IN NS ns.dns.cluster.local."]
    );
    assert_eq!(
        data(&ns.additionals),
        vec!["ns.dns.cluster.local. 30 IN A 10.96.0.10"]
    );
    let txt = answer(&store, "dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(
        data(&txt.answers),
        vec!["dns-version.cluster.local. 28800 IN TXT 1.1.0"]
    );
    assert_negative(
        &answer(&store, "cluster.local.", RecordType::A),
        ResponseCode::NoError,
    );
}

#[test]
fn names_outside_the_cluster_zones_are_forwarded() {
    let store = fixture();
    assert_eq!(ask(&store, "example.com.", RecordType::A), Outcome::Forward);
    assert_eq!(ask(&store, "local.", RecordType::A), Outcome::Forward);
}
