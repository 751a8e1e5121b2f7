//! Component test: a forwarding loop (an "upstream" that relays every query back to the
//! server, as a node whose resolv.conf points at the cluster DNS does) is detected at
//! start-up and stops the process with CoreDNS's loop message; without a loop the
//! process keeps running.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn empty_objects(dir: &std::path::Path) -> String {
    let path = dir.join("objects.json");
    std::fs::write(&path, r#"{"apiVersion":"v1","kind":"List","items":[]}"#).unwrap();
    path.display().to_string()
}

fn spawn_dns(dir: &std::path::Path, dns_port: u16, resolv: &str) -> std::process::Child {
    let binary = e2e::binaries::ferrokube_binary("ferrokube-dns").unwrap();
    Command::new(binary)
        .args([
            "--dns-bind-address=127.0.0.1".to_string(),
            format!("--dns-port={dns_port}"),
            "--health-port=0".into(),
            "--ready-port=0".into(),
            "--metrics-port=0".into(),
            format!("--resolv-conf={resolv}"),
            format!("--static-objects={}", empty_objects(dir)),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_exit(
    child: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_loop_is_detected_and_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let dns_port = e2e::ports::free_port().unwrap();
    let dns_addr: SocketAddr = ([127, 0, 0, 1], dns_port).into();
    // The relay: queries from anyone go to the DNS server; its answers go back to the
    // last client.
    let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut client: Option<SocketAddr> = None;
        while let Ok((n, peer)) = relay.recv_from(&mut buf).await {
            if peer == dns_addr {
                if let Some(c) = client {
                    let _ = relay.send_to(&buf[..n], c).await;
                }
            } else {
                client = Some(peer);
                let _ = relay.send_to(&buf[..n], dns_addr).await;
            }
        }
    });
    let resolv = common::resolv_conf(dir.path(), relay_addr);
    let mut child = spawn_dns(dir.path(), dns_port, &resolv);
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut child, Duration::from_secs(20));
        if status.is_none() {
            let _ = child.kill();
        }
        let mut stderr = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    })
    .await
    .unwrap();
    let (status, stderr) = status;
    let status = status.unwrap_or_else(|| panic!("no exit on a loop; log:\n{stderr}"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("detected for zone"), "{stderr}");
    assert!(
        stderr.contains("coredns.io/plugins/loop#troubleshooting"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sane_upstream_is_no_loop() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = common::FakeUpstream::start().await;
    let resolv = common::resolv_conf(dir.path(), upstream.addr);
    let dns_port = e2e::ports::free_port().unwrap();
    let mut child = spawn_dns(dir.path(), dns_port, &resolv);
    let (exited, probed) = tokio::task::spawn_blocking({
        let queries = upstream.queries.clone();
        move || {
            let exited = wait_exit(&mut child, Duration::from_secs(3));
            let _ = child.kill();
            let _ = child.wait();
            (exited, queries.load(std::sync::atomic::Ordering::SeqCst))
        }
    })
    .await
    .unwrap();
    assert!(exited.is_none(), "exited without a loop: {exited:?}");
    assert_eq!(
        probed, 1,
        "the probe reached the upstream once and was answered"
    );
}
