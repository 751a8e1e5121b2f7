//! Issue 12's "Done means", as an operator would check it: `hack/local-up.sh --nodes 3` gives
//! three Ready nodes, each in its own network namespace with its own containerd, kubelet and
//! kube-proxy. A Deployment spreads over all of them; a pod reaches a pod on another node by
//! pod IP and by ClusterIP; a NodePort answers on every node's address from the host; a
//! DaemonSet runs one pod per node; the cluster DNS answers pods (issue 13's Done means in
//! local-up: names, the search path, headless Services, SRV, hostname.subdomain); a node
//! whose kubelet stops goes NotReady, is tainted unreachable and its pods are recreated
//! elsewhere after their tolerationSeconds, and it comes back Ready and untainted (issue 16's
//! node loss and return: `RECOVERY node-loss` and `node-return` lines); `hack/local-down.sh` leaves nothing.
//!
//! Needs root, containerd and the control-plane assets; skips loudly otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::local_cluster::{http_get, LocalCluster, UpError};

const NODES: u32 = 3;

/// `pod -> (node, podIP)` for the Running, not deleting pods labelled `app=<app>`.
fn placement(cluster: &LocalCluster, app: &str) -> BTreeMap<String, (String, String)> {
    cluster
        .kubectl_ok(&[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.nodeName} {.status.podIP} {.metadata.deletionTimestamp}{"\n"}{end}"#,
        ])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f[1] == "Running").then(|| (f[0].into(), (f[2].into(), f[3].into())))
        })
        .collect()
}

/// `node`'s taints, `key:effect` a line.
fn taints(cluster: &LocalCluster, node: &str) -> String {
    cluster.kubectl_ok(&[
        "get",
        "node",
        node,
        "-o",
        r#"jsonpath={range .spec.taints[*]}{.key}:{.effect}{"\n"}{end}"#,
    ])
}

/// `GET url` from inside `pod` (busybox wget under `timeout`: its own -T crashes here).
fn fetch_from(cluster: &LocalCluster, pod: &str, url: &str) -> Option<String> {
    let out = cluster.kubectl(&[
        "exec", pod, "--", "timeout", "5", "wget", "-q", "-O", "-", url,
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn local_up_runs_a_three_node_cluster() {
    let started = Instant::now();
    let mut cluster = match LocalCluster::up_with_nodes(NODES, Duration::from_secs(90)) {
        Ok(c) => c,
        Err(UpError::Skip(why)) => e2e::skip_test!("{why}"),
        Err(UpError::Failed(why)) => panic!("{why}"),
    };
    let no_context = String::new;
    let nodes = cluster.node_names();
    assert_eq!(
        nodes,
        ["ferrokube-worker", "ferrokube-worker2", "ferrokube-worker3"],
        "kind's worker names"
    );
    for node in &nodes {
        assert!(cluster.node_ready(node), "{node} Ready after local-up");
    }
    let addresses = cluster.kubectl_ok(&[
        "get",
        "nodes",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.status.addresses[?(@.type=="InternalIP")].address} {.spec.podCIDR}{"\n"}{end}"#,
    ]);
    let node_ips: BTreeMap<String, String> = addresses
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| (f[0].to_string(), f[1].to_string()))
        })
        .collect();
    assert_eq!(
        node_ips.values().cloned().collect::<BTreeSet<_>>(),
        ["10.200.0.2", "10.200.0.3", "10.200.0.4"]
            .map(String::from)
            .into(),
        "each node's own address, with a podCIDR: {addresses}"
    );
    // The `kubernetes` Service has the apiserver's advertised address as its endpoint.
    let endpoints = cluster.kubectl_ok(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[0].addresses[0].ip}",
    ]);
    assert_eq!(endpoints, cluster.api_host(), "kubernetes Endpoints");
    eprintln!("{NODES} nodes Ready after {:?}", started.elapsed());

    // A 6-replica Deployment spreads over all three nodes; each pod tolerates an unreachable
    // or not-ready node for 5 s only, so node loss below evicts them quickly.
    cluster.apply(
        "web",
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - name: httpd
        image: busybox:1.35
        command: [httpd, -f, -p, "8080", -h, /etc]
        ports: [{containerPort: 8080}]
"#,
    );
    let web = cluster.eventually(
        "6 Running pods of deployment web",
        Duration::from_secs(180),
        || {
            let p = placement(&cluster, "web");
            (p.len() == 6).then_some(p)
        },
        no_context,
    );
    let used: BTreeSet<&String> = web.values().map(|(node, _)| node).collect();
    assert_eq!(used.len(), 3, "6 replicas spread over all 3 nodes: {web:?}");

    // Pod to pod across nodes, by pod IP: each answer names the pod that served it.
    let (client, (client_node, _)) = web.iter().next().expect("a web pod");
    let (server, (_, server_ip)) = web
        .iter()
        .find(|(_, (node, _))| node != client_node)
        .expect("a web pod on another node");
    let answer = cluster.eventually(
        &format!("{client} on {client_node} to reach {server} at {server_ip}"),
        Duration::from_secs(30),
        || {
            fetch_from(
                &cluster,
                client,
                &format!("http://{server_ip}:8080/hostname"),
            )
        },
        no_context,
    );
    assert_eq!(
        &answer, server,
        "pod IP {server_ip} answered as another pod"
    );

    // By ClusterIP, from a pod: over a few tries the answers come from several nodes' pods.
    cluster.kubectl_ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    let cluster_ip =
        cluster.kubectl_ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let mut via_service = BTreeSet::new();
    cluster.eventually(
        &format!("{client} to reach backends on other nodes through {cluster_ip} (so far {via_service:?})"),
        Duration::from_secs(60),
        || {
            if let Some(name) = fetch_from(&cluster, client, &format!("http://{cluster_ip}/hostname")) {
                via_service.insert(name);
            }
            via_service
                .iter()
                .any(|pod| web.get(pod).is_some_and(|(node, _)| node != client_node))
                .then_some(())
        },
        no_context,
    );
    assert!(
        via_service.iter().all(|pod| web.contains_key(pod)),
        "the ClusterIP answered from pods that are not its backends: {via_service:?}"
    );

    // A NodePort answers on every node's address, from the host.
    cluster.kubectl_ok(&[
        "expose",
        "deployment",
        "web",
        "--name=web-nodeport",
        "--type=NodePort",
        "--port=80",
        "--target-port=8080",
    ]);
    let node_port: u16 = cluster
        .kubectl_ok(&[
            "get",
            "service",
            "web-nodeport",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .parse()
        .expect("nodePort");
    for (node, ip) in &node_ips {
        let name = cluster.eventually(
            &format!("NodePort {node_port} on {node} ({ip}) to answer from the host"),
            Duration::from_secs(60),
            || http_get(ip, node_port, "/hostname"),
            no_context,
        );
        assert!(
            web.contains_key(&name),
            "{ip}:{node_port} answered as {name}"
        );
    }

    // A DaemonSet runs one pod on each node.
    cluster.create_agent_daemonset();
    let agents = cluster.eventually(
        "one agent pod Running on each node",
        Duration::from_secs(120),
        || {
            let p = placement(&cluster, "agent");
            (p.len() == 3).then_some(p)
        },
        no_context,
    );
    let agent_nodes: BTreeSet<&String> = agents.values().map(|(node, _)| node).collect();
    assert_eq!(agent_nodes.len(), 3, "one agent per node: {agents:?}");

    // The cluster DNS (ferrokube-dns, deployed by local-up as kubeadm deploys CoreDNS),
    // asked from a pod through its resolv.conf: names, the search path (busybox's ping
    // resolves with glibc's resolver, which applies it; its nslookup does not), a headless
    // Service's endpoints, its SRV record and a pod's hostname.subdomain record.
    cluster.apply(
        "dns",
        r#"apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: sub}
spec:
  clusterIP: None
  selector: {app: named}
---
apiVersion: v1
kind: Pod
metadata: {name: named, labels: {app: named}}
spec:
  hostname: named
  subdomain: sub
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: "busybox:1.35", command: [sleep, "3600"]}
"#,
    );
    // stdout of `args` run in the client pod (the exit code is beside the point: nslookup
    // fails on NXDOMAIN, ping on the ClusterIP that answers no ICMP).
    let ask = |args: &[&str]| -> String {
        let mut cmd = vec!["exec", client.as_str(), "--"];
        cmd.extend_from_slice(args);
        String::from_utf8_lossy(&cluster.kubectl(&cmd).stdout).into_owned()
    };
    let lookup = |name: &str| ask(&["nslookup", name]);
    cluster.eventually(
        "kubernetes.default.svc.cluster.local to resolve to 10.96.0.1",
        Duration::from_secs(60),
        || {
            lookup("kubernetes.default.svc.cluster.local")
                .contains("Address: 10.96.0.1")
                .then_some(())
        },
        || lookup("kubernetes.default.svc.cluster.local"),
    );
    let ping = |name: &str| ask(&["ping", "-c1", "-W1", name]);
    assert!(
        ping("kubernetes.default").starts_with("PING kubernetes.default (10.96.0.1)"),
        "kubernetes.default through the search path: {}",
        ping("kubernetes.default")
    );
    assert!(
        ping("web").starts_with(&format!("PING web ({cluster_ip})")),
        "the short name web through the search path: {}",
        ping("web")
    );
    let headless = cluster.eventually(
        "the headless Service to list every web pod",
        Duration::from_secs(30),
        || {
            let out = lookup("web-headless.default.svc.cluster.local");
            web.values()
                .all(|(_, ip)| out.contains(&format!("Address: {ip}")))
                .then_some(out)
        },
        || lookup("web-headless.default.svc.cluster.local"),
    );
    assert!(
        !headless.contains(&format!("Address: {cluster_ip}")),
        "a headless Service answers with endpoints: {headless}"
    );
    let srv = ask(&[
        "nslookup",
        "-type=SRV",
        "_http._tcp.web-headless.default.svc.cluster.local",
    ]);
    assert!(
        srv.contains(" 8080 ") && srv.contains(".web-headless.default.svc.cluster.local"),
        "SRV of the named port: {srv}"
    );
    let named_ip = cluster.eventually(
        "pod named Running with an IP",
        Duration::from_secs(60),
        || {
            let ip = cluster.kubectl_ok(&["get", "pod", "named", "-o", "jsonpath={.status.podIP}"]);
            (!ip.is_empty()).then_some(ip)
        },
        no_context,
    );
    cluster.eventually(
        "named.sub.default.svc.cluster.local to resolve to the pod",
        Duration::from_secs(30),
        || {
            lookup("named.sub.default.svc.cluster.local")
                .contains(&format!("Address: {named_ip}"))
                .then_some(())
        },
        || lookup("named.sub.default.svc.cluster.local"),
    );
    let missing = lookup("no-such-service.default.svc.cluster.local");
    assert!(
        missing.contains("NXDOMAIN"),
        "an unknown Service: {missing}"
    );

    // Node loss: the kubelet of a node with web pods stops; the node goes NotReady, its pods
    // are evicted after their 5 s tolerations and the Deployment runs 6 again on the others.
    let lost = web
        .values()
        .map(|(node, _)| node.clone())
        .find(|node| node != &nodes[0])
        .expect("a web pod on a node other than the first");
    let stopped = Instant::now();
    cluster.local_node(&["stop", &lost, "kubelet"]);
    cluster.eventually(
        &format!("{lost} NotReady or Unknown"),
        Duration::from_secs(120),
        || (!cluster.node_ready(&lost)).then_some(()),
        no_context,
    );
    let not_ready = stopped.elapsed();
    // As upstream's node lifecycle controller: the node that stopped reporting is tainted
    // unreachable (NoExecute), which evicts its pods after their tolerationSeconds.
    cluster.eventually(
        &format!("{lost} tainted node.kubernetes.io/unreachable:NoExecute"),
        Duration::from_secs(30),
        || {
            taints(&cluster, &lost)
                .contains("node.kubernetes.io/unreachable:NoExecute")
                .then_some(())
        },
        || taints(&cluster, &lost),
    );
    let moved = cluster.eventually(
        &format!("6 Running web pods, none on {lost}"),
        Duration::from_secs(180),
        || {
            let p = placement(&cluster, "web");
            let elsewhere = p.values().filter(|(node, _)| node != &lost).count();
            (elsewhere == 6).then_some(p)
        },
        no_context,
    );
    println!(
        "RECOVERY node-loss: {:.1} s (kubelet of {lost} stopped to 6 web pods Running on the \
         other nodes; not Ready after {:.1} s, pods tolerate 5 s): {moved:?}",
        stopped.elapsed().as_secs_f64(),
        not_ready.as_secs_f64()
    );
    // And back: the kubelet starts, the node is Ready again and its taints are lifted.
    let started = Instant::now();
    cluster.local_node(&["start", &lost, "kubelet"]);
    assert!(
        cluster.node_ready(&lost),
        "{lost} Ready after its kubelet started"
    );
    cluster.eventually(
        &format!("{lost}'s node.kubernetes.io taints lifted"),
        Duration::from_secs(30),
        || (!taints(&cluster, &lost).contains("node.kubernetes.io/")).then_some(()),
        || taints(&cluster, &lost),
    );
    println!(
        "RECOVERY node-return: {:.1} s (kubelet of {lost} started to the node Ready and \
         untainted)",
        started.elapsed().as_secs_f64()
    );

    // local-down leaves nothing of the cluster on this machine.
    let recorded = cluster.down();
    assert!(
        recorded.len() >= 4 + 3 * NODES as usize,
        "the pids file recorded the control plane and every node's components: {recorded:?}"
    );
    let left = cluster.leftovers(&recorded, &nodes);
    assert!(left.is_empty(), "left after hack/local-down.sh: {left:#?}");
}
