//! e2e: the kubelet API on 10250 behind the real kube-apiserver — `kubectl logs` (tail,
//! timestamps, follow) and `kubectl exec` (stdout and stdin) reach the kubelet with the
//! apiserver's client certificate (x509 authentication, webhook authorization), while
//! callers without credentials get 401 and callers without `nodes/proxy` get 403.

#[macro_use]
mod common;

use common::process::{wait, KubeletProcess};
use common::{
    create_pod, default_pods, delete_pod_and_wait_gone, kubelet_get, kubelet_request,
    wait_pod_phase,
};
use std::process::{Command, Stdio};
use std::time::Duration;

fn stdout(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn logs_and_exec_through_the_apiserver() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "srv")
        .webhook_auth()
        .start();
    let node_name = kubelet.node_name.clone();
    let port = kubelet.port;
    let client = cluster.client();
    let pods = default_pods(&client).await;
    create_pod(
        &pods,
        serde_json::json!({
            "metadata": {"name": "chatty"},
            "spec": {
                "nodeName": node_name, "hostNetwork": true, "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "app", "image": "busybox:1.35",
                    "command": ["sh", "-c", "echo one; echo two; echo three; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.3; done"]}]
            }
        }),
    )
    .await;
    wait_pod_phase(&pods, "chatty", "Running", Duration::from_secs(60)).await;

    // kubectl logs: whole log, tail, timestamps, limit-bytes.
    let all = wait("log lines", Duration::from_secs(20), || async {
        let o = cluster.kubectl(&["logs", "chatty"]).ok()?;
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        (o.status.success() && s.contains("tick-2")).then_some(s)
    })
    .await;
    assert!(all.starts_with("one\ntwo\nthree\ntick-1\n"), "{all}");
    let tail = stdout(&cluster.kubectl(&["logs", "chatty", "--tail=2"]).unwrap());
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(tail.lines().all(|l| l.starts_with("tick-")), "{tail}");
    let stamped = stdout(
        &cluster
            .kubectl(&["logs", "chatty", "--timestamps", "--limit-bytes=40"])
            .unwrap(),
    );
    let (ts, rest) = stamped.split_once(' ').unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
        "{stamped}"
    );
    assert!(rest.starts_with("one"), "{stamped}");
    assert_eq!(stamped.len(), 40, "limitBytes: {stamped:?}");

    // kubectl logs -f keeps streaming new lines.
    let kubectl = cluster.assets().kubectl.clone().unwrap();
    let follow = Command::new("timeout")
        .arg("3")
        .arg(&kubectl)
        .arg(format!("--kubeconfig={}", cluster.kubeconfig().display()))
        .args(["logs", "-f", "--tail=1", "chatty"])
        .output()
        .unwrap();
    let followed = String::from_utf8_lossy(&follow.stdout);
    assert!(
        followed.lines().count() >= 4,
        "follow streamed new lines: {followed:?}"
    );
    let nums: Vec<u32> = followed
        .lines()
        .filter_map(|l| l.strip_prefix("tick-")?.parse().ok())
        .collect();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, none lost: {nums:?}"
    );

    // kubectl exec: a command's output, then stdin through.
    let hi = stdout(
        &cluster
            .kubectl(&["exec", "chatty", "--", "echo", "hi"])
            .unwrap(),
    );
    assert_eq!(hi, "hi\n");
    let mut cat = Command::new(&kubectl)
        .arg(format!("--kubeconfig={}", cluster.kubeconfig().display()))
        .args([
            "exec",
            "-i",
            "chatty",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z; echo done >&2; exit 3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut cat.stdin.take().unwrap(), b"piped input\n").unwrap();
    let out = cat.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED INPUT\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("done"));
    assert_eq!(out.status.code(), Some(3), "exit code reaches kubectl");

    // Straight to the kubelet: no credentials → 401; a user without nodes/proxy → 403.
    let url = format!("https://127.0.0.1:{port}/pods");
    let anon = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&anon.stdout), "401");
    let proxy_user = cluster.pki().client_cert("nobody", "nobody", None).unwrap();
    let (code, denied) = kubelet_request(port, "/pods", &proxy_user);
    assert!(
        code == 403 && denied.contains("user=nobody"),
        "{code} {denied}"
    );
    // The apiserver's identity (kubeadm's apiserver-kubelet-client, system:masters) may
    // list pods. (The apiserver itself refuses nodes/proxy to a loopback node address.)
    let listed = kubelet_get(&cluster, port, "/pods");
    assert!(
        listed.contains("\"PodList\"") && listed.contains("\"chatty\""),
        "{listed}"
    );
    // A bearer token is checked with TokenReview, then authorized as its user.
    let token = stdout(&cluster.kubectl(&["create", "token", "default"]).unwrap());
    let sa = Command::new("curl")
        .args(["-sk", "-w", " %{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .arg(&url)
        .output()
        .unwrap();
    let sa = String::from_utf8_lossy(&sa.stdout).into_owned();
    assert!(
        sa.ends_with(" 403") && sa.contains("user=system:serviceaccount:default:default"),
        "{sa}"
    );
    let bad = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Authorization: Bearer not-a-token",
        ])
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "401");

    delete_pod_and_wait_gone(&pods, "chatty", Duration::from_secs(30)).await;
    kubelet.stop();
}
