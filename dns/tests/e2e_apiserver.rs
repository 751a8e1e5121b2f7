//! e2e: ferrokube-dns against a real kube-apiserver (e2e harness). The objects
//! `hack/lib/dns.sh` renders are applied with kubectl (so the kube-dns Service gets
//! 10.96.0.10 and the system:coredns ClusterRole exists); ferrokube-dns runs as a process
//! authenticated as the coredns ServiceAccount's user (so kubeadm's RBAC rules are proven
//! sufficient), and `dig` checks its answers as Services and EndpointSlices are created,
//! changed and deleted.

mod common;

use common::{dig, http_status, Dig};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

async fn ask(server: SocketAddr, args: &[&str]) -> Dig {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        dig(server, &refs)
    })
    .await
    .unwrap()
}

/// Polls until `dig <args>` satisfies `ok`.
async fn eventually(server: SocketAddr, args: &[&str], ok: impl Fn(&Dig) -> bool) -> Dig {
    let mut last = None;
    for _ in 0..50 {
        let d = ask(server, args).await;
        if ok(&d) {
            return d;
        }
        last = Some(d);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("dig {args:?} never matched; last:\n{}", last.unwrap().raw);
}

fn slice(name: &str, service: &str, endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}]
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_services_and_endpointslices_from_a_real_apiserver() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();

    // kubeadm's objects, as hack/lib/dns.sh renders them.
    let manifest = std::process::Command::new("bash")
        .arg("-c")
        .arg("source hack/lib/dns.sh && dns::manifest ferrokube:test 10.96.0.10")
        .current_dir(e2e::binaries::workspace_root())
        .output()
        .unwrap();
    assert!(manifest.status.success());
    let path = cluster.dir().join("dns.yaml");
    std::fs::write(&path, &manifest.stdout).unwrap();
    let applied = cluster
        .kubectl(&["apply", "--server-side", "-f", path.to_str().unwrap()])
        .unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .unwrap();
    let web = services.create(&pp, &web).await.unwrap();
    let web_ip = web.spec.unwrap().cluster_ip.unwrap();
    let db: Service = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "ports": [{"name": "sql", "port": 5432}]}
    }))
    .unwrap();
    services.create(&pp, &db).await.unwrap();
    slices
        .create(
            &pp,
            &slice(
                "db-1",
                "db",
                json!([{"addresses": ["10.1.0.1"], "hostname": "db-0", "conditions": {"ready": true}},
                       {"addresses": ["10.1.0.9"], "conditions": {"ready": false}}]),
            ),
        )
        .await
        .unwrap();
    let ext: Service = serde_json::from_value(json!({
        "metadata": {"name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}
    }))
    .unwrap();
    services.create(&pp, &ext).await.unwrap();

    // As the coredns ServiceAccount's user: only system:coredns's rules.
    let kubeconfig = cluster
        .kubeconfig_for(&e2e::Identity::User {
            name: "system:serviceaccount:kube-system:coredns".into(),
            group: None,
        })
        .unwrap();
    let dns_port = e2e::ports::free_port().unwrap();
    let ready_port = e2e::ports::free_port().unwrap();
    let metrics_port = e2e::ports::free_port().unwrap();
    let mut process = cluster
        .spawn_component(
            "ferrokube-dns",
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                "--dns-bind-address=127.0.0.1".into(),
                format!("--dns-port={dns_port}"),
                "--http-bind-address=127.0.0.1".into(),
                "--health-port=0".into(),
                format!("--ready-port={ready_port}"),
                format!("--metrics-port={metrics_port}"),
                "--resolv-conf=".into(),
            ],
        )
        .unwrap();
    let ready: SocketAddr = ([127, 0, 0, 1], ready_port).into();
    e2e::wait::until_running(
        "ferrokube-dns /ready",
        Duration::from_secs(60),
        Duration::from_millis(200),
        &mut [&mut process],
        || async move {
            let code = tokio::task::spawn_blocking(move || http_status(ready, "/ready"))
                .await
                .unwrap();
            Ok((code == 200).then_some(()))
        },
    )
    .await
    .unwrap();

    let dns: SocketAddr = ([127, 0, 0, 1], dns_port).into();
    let a = ask(dns, &["web.default.svc.cluster.local", "A"]).await;
    assert_eq!(a.answer_data(), vec![web_ip.clone()], "{}", a.raw);
    let tcp = ask(
        dns,
        &["+tcp", "_http._tcp.web.default.svc.cluster.local", "SRV"],
    )
    .await;
    assert_eq!(
        tcp.answer_data(),
        vec!["0 100 80 web.default.svc.cluster.local."]
    );
    let headless = ask(dns, &["db.default.svc.cluster.local", "A"]).await;
    assert_eq!(
        headless.answer_data(),
        vec!["10.1.0.1"],
        "not-ready endpoint excluded"
    );
    let host = ask(dns, &["db-0.db.default.svc.cluster.local", "A"]).await;
    assert_eq!(host.answer_data(), vec!["10.1.0.1"]);
    let cname = ask(dns, &["ext.default.svc.cluster.local", "A"]).await;
    assert_eq!(
        cname.answer_data(),
        vec![web_ip.clone(), "web.default.svc.cluster.local.".to_string()]
    );
    let ptr = ask(dns, &["-x", &web_ip]).await;
    assert_eq!(ptr.answer_data(), vec!["web.default.svc.cluster.local."]);
    let ns = ask(dns, &["ns.dns.cluster.local", "A"]).await;
    assert_eq!(
        ns.answer_data(),
        vec!["10.96.0.10"],
        "the kube-dns Service's IP"
    );
    let kubernetes = ask(dns, &["kubernetes.default.svc.cluster.local", "A"]).await;
    assert_eq!(
        kubernetes.answer_data(),
        vec![e2e::apiserver::KUBERNETES_SERVICE_IP]
    );

    // Changes arrive through the watches.
    let mut s = slices.get("db-1").await.unwrap();
    s.endpoints[1].conditions.as_mut().unwrap().ready = Some(true);
    slices.replace("db-1", &pp, &s).await.unwrap();
    eventually(dns, &["db.default.svc.cluster.local", "A"], |d| {
        d.answer_data() == vec!["10.1.0.1", "10.1.0.9"]
    })
    .await;
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let gone = eventually(dns, &["web.default.svc.cluster.local", "A"], |d| {
        d.status == "NXDOMAIN"
    })
    .await;
    assert_eq!(gone.authority.len(), 1, "{}", gone.raw);
    // The ExternalName's in-zone target is gone: the CNAME stays, NXDOMAIN.
    let dangling = ask(dns, &["ext.default.svc.cluster.local", "A"]).await;
    assert_eq!(dangling.status, "NXDOMAIN");
    assert!(process.is_running(), "{}", process.log_tail(20));
}
