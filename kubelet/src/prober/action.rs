//! Running one probe or hook action — exec through CRI's ExecSync, an HTTP(S) GET, a TCP
//! connect, a grpc.health.v1 Check — with upstream's request shape, result rules and
//! output messages (pkg/probe).

use crate::cri::CriService;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::sync::OnceLock;
use std::time::Duration;

/// At most this much output or body is kept (upstream's 10 KiB).
const MAX_OUTPUT: usize = 10 << 10;

/// What one run of an action found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Healthy, with output (exec output, response body).
    Success(String),
    /// Healthy, but worth a `ProbeWarning` event (a redirect that was not followed).
    Warning(String),
    /// Unhealthy, with upstream's message.
    Failure(String),
    /// The action could not be run (bad port name, runtime error): no result.
    Error(String),
}

/// `kube-probe/<major>.<minor>`, upstream's probe User-Agent.
pub fn user_agent() -> String {
    let v = component_base::version::KUBERNETES_VERSION.trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("0");
    format!("kube-probe/{major}.{minor}")
}

/// A port given by number or by the name of one of the container's ports (a numeric
/// string is accepted too), as upstream's ResolveContainerPort.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    let n: i64 = match port {
        IntOrString::Int(n) => *n as i64,
        IntOrString::String(name) => {
            let named = c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port as i64);
            match named {
                Some(n) => n,
                None => name
                    .parse::<i64>()
                    .map_err(|_| format!("port {name} not found"))?,
            }
        }
    };
    if (1..65536).contains(&n) {
        Ok(n as u16)
    } else {
        Err(format!("invalid port number: {n}"))
    }
}

/// `host:port`, bracketing IPv6 addresses.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The request an httpGet action makes: URL and headers (User-Agent and Accept defaulted
/// as upstream; an empty Accept given by the user removes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `scheme://host:port/path`.
    pub url: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
}

/// Builds the request of an httpGet action; `host` defaults to the pod IP.
/// `agent` is `probe` for probes (`kube-probe/…`) and `lifecycle` for hooks.
pub fn http_request(
    action: &HTTPGetAction,
    c: &Container,
    pod_ip: &str,
    agent: &str,
) -> Result<HttpRequest, String> {
    let scheme = action
        .scheme
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("http")
        .to_ascii_lowercase();
    let host = action
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or(pod_ip);
    let port = resolve_port(&action.port, c)?;
    let path = action.path.as_deref().unwrap_or("");
    let path = if path.is_empty() || path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let url = format!("{scheme}://{}{path}", join_host_port(host, port));
    let mut headers: Vec<(String, String)> = action
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    let has = |h: &[(String, String)], n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has(&headers, "User-Agent") {
        let ua = user_agent().replace("probe", agent);
        headers.push(("User-Agent".into(), ua));
    }
    if !has(&headers, "Accept") {
        headers.push(("Accept".into(), "*/*".into()));
    } else if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("Accept") && v.is_empty())
    {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("Accept"));
    }
    Ok(HttpRequest { url, headers })
}

/// The shared HTTP client: no proxy, no keep-alive, any server certificate (probes do not
/// verify, as upstream), and redirects followed only on the same host, at most 10.
fn http_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let first_host = attempt.previous().first().and_then(|u| u.host_str());
            if attempt.url().host_str() != first_host {
                attempt.stop()
            } else if attempt.previous().len() >= 10 {
                attempt.error("stopped after 10 redirects")
            } else {
                attempt.follow()
            }
        });
        reqwest::Client::builder()
            .no_proxy()
            .redirect(policy)
            .pool_max_idle_per_host(0)
            .danger_accept_invalid_certs(true)
            .build()
            .expect("build the probe HTTP client")
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// Sends a GET and reads at most 10 KiB of the body: (status code, body), or the
/// transport error in Go's shape (`Get "<url>": …`).
pub async fn http_send(
    req: &HttpRequest,
    timeout: Option<Duration>,
) -> Result<(u16, String), String> {
    let mut builder = http_client().get(&req.url);
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let mut response = builder.send().await.map_err(|e| {
        let detail = if e.is_timeout() {
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".to_string()
        } else {
            error_chain(&e)
        };
        format!("Get \"{}\": {detail}", req.url)
    })?;
    let code = response.status().as_u16();
    let mut body = Vec::new();
    while body.len() < MAX_OUTPUT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err(error_chain(&e)),
        }
    }
    body.truncate(MAX_OUTPUT);
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// Runs an HTTP GET probe: 200–399 is success (3xx, a redirect that was not followed, a
/// warning), anything else a failure whose message holds only the status code.
pub async fn http_get(req: &HttpRequest, timeout: Duration) -> Outcome {
    match http_send(req, Some(timeout)).await {
        Err(e) => Outcome::Failure(e),
        Ok((200..=299, body)) => Outcome::Success(body),
        Ok((300..=399, body)) => {
            Outcome::Warning(format!("Probe terminated redirects, Response body: {body}"))
        }
        Ok((code, _)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
    }
}

/// Connects to `host:port` and closes the connection.
pub async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = join_host_port(host, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Outcome::Success(String::new()),
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: connect: {}", go_errno(&e))),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// An OS error as Go prints it (`connection refused`, not `Connection refused (os error 111)`).
pub fn go_errno(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Asks the grpc.health.v1 Health service at `host:port` about `service`.
pub async fn grpc_check(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let addr = join_host_port(host, port);
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    let endpoint = endpoint
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(user_agent())
        .expect("static user agent is a valid header");
    let connect = tokio::time::timeout(timeout, endpoint.connect()).await;
    let channel = match connect {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at \"{addr}\": {}",
                error_chain(&e)
            ))
        }
        Err(_) => {
            return Outcome::Failure(format!(
            "timeout: failed to connect service \"{addr}\" within {}s: context deadline exceeded",
            timeout.as_secs()
        ))
        }
    };
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let answer = tokio::time::timeout(timeout, HealthClient::new(channel).check(request)).await;
    match answer {
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {}s",
            timeout.as_secs()
        )),
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => Outcome::Failure(format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            s.message()
        )),
        Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {}s",
            timeout.as_secs()
        )),
        Ok(Err(s)) => Outcome::Failure(format!(
            "error: health rpc probe failed: rpc error: code = {:?} desc = {}",
            s.code(),
            s.message()
        )),
        Ok(Ok(r)) => {
            let status = r.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                Outcome::Success("service healthy".into())
            } else {
                let name = ServingStatus::try_from(status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("UNKNOWN");
                Outcome::Failure(format!("service unhealthy (responded with \"{name}\")"))
            }
        }
    }
}

/// Runs `cmd` in the container through CRI ExecSync with `timeout`: exit 0 is success,
/// any other exit a failure with the combined output; a timeout is a failure
/// (`command timed out: "…" timed out after 1s`), any other runtime error leaves no result.
pub async fn exec(
    cri: &dyn CriService,
    container_id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Outcome {
    let request = cri::ExecSyncRequest {
        container_id: container_id.to_string(),
        cmd: cmd.to_vec(),
        timeout: timeout.as_secs().max(1) as i64,
    };
    let timed_out = || {
        Outcome::Failure(format!(
            "command timed out: {:?} timed out after {}",
            cmd.join(" "),
            crate::events::go_duration(timeout)
        ))
    };
    // The runtime enforces the timeout; a margin guards against a runtime that does not.
    let call = cri.exec_sync(request);
    let response = match tokio::time::timeout(timeout + Duration::from_secs(5), call).await {
        Err(_) => return timed_out(),
        Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded => return timed_out(),
        Ok(Err(s)) if s.message().contains("timeout") && s.message().contains("exceeded") => {
            return timed_out()
        }
        Ok(Err(s)) => return Outcome::Error(s.message().to_string()),
        Ok(Ok(r)) => r,
    };
    let mut output = response.stdout;
    output.extend_from_slice(&response.stderr);
    output.truncate(MAX_OUTPUT);
    let output = String::from_utf8_lossy(&output).into_owned();
    if response.exit_code == 0 {
        Outcome::Success(output)
    } else {
        Outcome::Failure(output)
    }
}

/// Expands `$(VAR)` in an exec command with the container's literal env values only
/// (upstream's ExpandContainerCommandOnlyStatic).
pub fn expand_static(cmd: &[String], c: &Container) -> Vec<String> {
    let env: Vec<(&str, &str)> = c
        .env
        .iter()
        .flatten()
        .filter(|e| e.value_from.is_none())
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
        .collect();
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    cmd.iter()
        .map(|arg| crate::pod::env::expand(arg, &lookup))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPHeader};

    fn container() -> Container {
        Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn ports_by_number_name_or_numeric_string() {
        let c = container();
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &c), Ok(81));
        assert_eq!(
            resolve_port(&IntOrString::String("grpc".into()), &c),
            Err("port grpc not found".into())
        );
        assert!(resolve_port(&IntOrString::Int(0), &c).is_err());
    }

    #[test]
    fn http_requests_default_like_upstream() {
        let action = HTTPGetAction {
            path: Some("healthz?x=1".into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        };
        let r = http_request(&action, &container(), "10.1.2.3", "probe").unwrap();
        assert_eq!(r.url, "http://10.1.2.3:8080/healthz?x=1");
        assert_eq!(
            r.headers,
            vec![
                ("User-Agent".into(), "kube-probe/1.35".into()),
                ("Accept".into(), "*/*".into())
            ]
        );
        let action = HTTPGetAction {
            scheme: Some("HTTPS".into()),
            host: Some("fd00::1".into()),
            port: IntOrString::Int(443),
            http_headers: Some(vec![
                HTTPHeader {
                    name: "Accept".into(),
                    value: String::new(),
                },
                HTTPHeader {
                    name: "X-Custom".into(),
                    value: "v".into(),
                },
            ]),
            ..Default::default()
        };
        let r = http_request(&action, &container(), "10.1.2.3", "lifecycle").unwrap();
        assert_eq!(r.url, "https://[fd00::1]:443");
        assert_eq!(
            r.headers,
            vec![
                ("X-Custom".into(), "v".into()),
                ("User-Agent".into(), "kube-lifecycle/1.35".into())
            ]
        );
    }

    #[test]
    fn exec_commands_expand_static_env_only() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "env": [{"name": "F", "value": "/tmp/ready"},
                    {"name": "S", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
        }))
        .unwrap();
        let cmd = vec!["cat".to_string(), "$(F)".into(), "$(S)".into()];
        assert_eq!(expand_static(&cmd, &c), vec!["cat", "/tmp/ready", "$(S)"]);
    }

    /// A loopback HTTP server: /ok 200, /missing 404, /away redirects to another host,
    /// /slow answers after 3s.
    async fn http_server() -> u16 {
        use axum::response::Redirect;
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/headers",
                get(|h: axum::http::HeaderMap| async move {
                    format!(
                        "{:?} {:?}",
                        h.get("user-agent").unwrap(),
                        h.get("x-probe").unwrap()
                    )
                }),
            )
            .route(
                "/away",
                get(|| async { Redirect::to("http://127.0.0.2:9/") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "late"
                }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await });
        port
    }

    fn get_action(path: &str, port: u16) -> HTTPGetAction {
        HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port as i32),
            http_headers: Some(vec![HTTPHeader {
                name: "X-Probe".into(),
                value: "yes".into(),
            }]),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn http_probes_on_loopback() {
        let port = http_server().await;
        let c = container();
        let probe = |path: &str| {
            let req = http_request(&get_action(path, port), &c, "127.0.0.1", "probe").unwrap();
            async move { http_get(&req, Duration::from_secs(1)).await }
        };
        assert_eq!(probe("/ok").await, Outcome::Success("fine".into()));
        assert_eq!(
            probe("/headers").await,
            Outcome::Success("\"kube-probe/1.35\" \"yes\"".into())
        );
        assert_eq!(
            probe("/missing").await,
            Outcome::Failure("HTTP probe failed with statuscode: 404".into())
        );
        match probe("/away").await {
            Outcome::Warning(m) => assert!(m.starts_with("Probe terminated redirects"), "{m}"),
            other => panic!("a redirect to another host is not followed: {other:?}"),
        }
        match probe("/slow").await {
            Outcome::Failure(m) => assert!(
                m.starts_with(&format!(
                    "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded"
                )),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn tcp_probes_on_loopback() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap().port();
        assert!(matches!(
            tcp_connect("127.0.0.1", open, Duration::from_secs(1)).await,
            Outcome::Success(_)
        ));
        drop(l);
        assert_eq!(
            tcp_connect("127.0.0.1", open, Duration::from_secs(1)).await,
            Outcome::Failure(format!(
                "dial tcp 127.0.0.1:{open}: connect: connection refused"
            ))
        );
    }

    #[tokio::test]
    async fn grpc_probes_on_loopback() {
        use tonic_health::ServingStatus;
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("up", ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("down", ServingStatus::NotServing)
            .await;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let incoming = tonic::transport::server::TcpIncoming::from(l);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        let t = Duration::from_secs(1);
        assert_eq!(
            grpc_check("127.0.0.1", port, "", t).await,
            Outcome::Success("service healthy".into())
        );
        assert_eq!(
            grpc_check("127.0.0.1", port, "up", t).await,
            Outcome::Success("service healthy".into())
        );
        assert_eq!(
            grpc_check("127.0.0.1", port, "down", t).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        match grpc_check("127.0.0.1", port, "nope", t).await {
            Outcome::Failure(m) => assert!(
                m.starts_with("error: health rpc probe failed: rpc error: code = NotFound"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        match grpc_check("127.0.0.1", closed, "", t).await {
            Outcome::Failure(m) => assert!(
                m.starts_with(&format!(
                    "error: failed to connect service at \"127.0.0.1:{closed}\""
                )),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
