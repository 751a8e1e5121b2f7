//! Handlers of the kubelet API: pods, running pods, container logs and the streaming
//! endpoints, each finding the pod among the kubelet's own and its containers through CRI.

use super::logs::{self, Formatter, LogOptions};
use super::streaming::{proxy_upgrade, query_pairs, StreamOptions};
use crate::manager::Shared;
use crate::pod::observed::{ContainerState, ObservedContainer, ObservedPod};
use crate::runtime::observe;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

/// A refusal before any streaming starts (status and message).
type Refused = (StatusCode, String);

fn refuse(status: StatusCode, msg: impl Into<String>) -> Refused {
    (status, msg.into())
}

/// `/pods`: the pods this kubelet runs, as a PodList.
pub async fn pods(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": shared.pod_list(),
    }))
}

/// `/runningpods/`: the pods the runtime has, as upstream builds them from CRI.
pub async fn running_pods(State(shared): State<Arc<Shared>>) -> Response {
    let all = match observe::observe_all(shared.runtime.cri.as_ref()).await {
        Ok(a) => a,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    };
    let mut items: Vec<serde_json::Value> = all
        .values()
        .filter(|(_, o)| o.sandboxes.iter().any(|s| s.ready) || o.any_running())
        .map(|(r, o)| {
            let containers: Vec<_> = o
                .containers
                .iter()
                .filter(|c| c.state == ContainerState::Running)
                .map(|c| serde_json::json!({"name": c.name, "image": c.image}))
                .collect();
            serde_json::json!({
                "metadata": {"name": r.name, "namespace": r.namespace, "uid": r.uid, "creationTimestamp": null},
                "spec": {"containers": containers},
                "status": {},
            })
        })
        .collect();
    items.sort_by_key(|p| {
        (
            p["metadata"]["namespace"].to_string(),
            p["metadata"]["name"].to_string(),
        )
    });
    Json(serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
        .into_response()
}

/// The pod `ns/name` (and its UID when given) with what the runtime has of it.
async fn find(
    shared: &Shared,
    ns: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<(Pod, ObservedPod), Refused> {
    let pod = shared
        .find_pod(ns, name)
        .filter(|p| uid.is_none_or(|u| p.metadata.uid.as_deref() == Some(u)))
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, format!("pod {ns}/{name} not found")))?;
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    let observed = observe::observe_pod(shared.runtime.cri.as_ref(), &pod_uid)
        .await
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    Ok((pod, observed))
}

fn running(
    observed: &ObservedPod,
    pod: &str,
    container: &str,
) -> Result<ObservedContainer, Refused> {
    match observed.latest(container, None) {
        Some(c) if c.state == ContainerState::Running => Ok(c.clone()),
        Some(_) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running in pod {pod}"),
        )),
        None => Err(refuse(
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})"),
        )),
    }
}

/// `/containerLogs/{ns}/{pod}/{container}`.
pub async fn container_logs(
    State(shared): State<Arc<Shared>>,
    Path((ns, name, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let q: HashMap<String, String> = query_pairs(req.uri().query().unwrap_or(""))
        .into_iter()
        .collect();
    let opts = match LogOptions::from_query(&q, chrono::Utc::now()) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let (pod, observed) = match find(&shared, &ns, &name, None).await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let known = crate::pod::containers::find(&pod, &container).is_some();
    if !known {
        return error(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not valid for pod {name}"),
        );
    }
    let c = if opts.previous {
        observed.previous(&container).cloned().ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container {container:?} in pod {name:?} not found"),
            )
        })
    } else {
        observed.latest(&container, None).cloned().ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!("container {container:?} in pod {name:?} is waiting to start: ContainerCreating"),
            )
        })
    };
    let c = match c {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = crate::runtime::config::pod_ref(&pod);
    let path = crate::runtime::config::pod_log_dir(&shared.runtime.ctx, &r).join(
        crate::runtime::config::container_log_path(&c.name, c.restart_count),
    );
    let follow = opts.follow && c.state == ContainerState::Running;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(stream_log(
        path,
        opts,
        follow,
        shared.runtime.cri.clone(),
        c.id.clone(),
        tx,
    ));
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (b, rx))
    }));
    ([("content-type", "text/plain")], body).into_response()
}

async fn container_running(cri: &dyn crate::cri::CriService, id: &str) -> bool {
    cri.container_status_of(id)
        .await
        .ok()
        .flatten()
        .is_some_and(|s| s.state == cri::ContainerState::ContainerRunning as i32)
}

/// Sends the log file's entries to `tx`; when following, waits for more until the
/// container stops or the caller goes away.
async fn stream_log(
    path: PathBuf,
    opts: LogOptions,
    follow: bool,
    cri: crate::cri::CriHandle,
    container_id: String,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let start = match opts.tail_lines {
        Some(n) => logs::tail_offset(&path, n),
        None => Ok(0),
    };
    let file = match start {
        Ok(start) => tokio::fs::File::open(&path).await.map(|f| (f, start)),
        Err(e) => Err(e),
    };
    let (mut file, start) = match file {
        Ok(x) => x,
        // No log file yet (never started) reads as empty, as upstream.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    use tokio::io::AsyncSeekExt;
    if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
        let _ = tx.send(Err(e)).await;
        return;
    }
    let mut reader = tokio::io::BufReader::new(file);
    let mut fmt = Formatter::new(opts);
    let mut line = Vec::new();
    let mut idle = 0u32;
    loop {
        let n = match reader.read_until(b'\n', &mut line).await {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if n > 0 && line.ends_with(b"\n") {
            idle = 0;
            line.pop();
            if let Ok(e) = logs::parse_line(&line) {
                let out = fmt.format(&e);
                if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                    return;
                }
            }
            line.clear();
            if fmt.done() {
                return;
            }
            continue;
        }
        // End of what is written so far.
        if !follow || tx.is_closed() {
            return;
        }
        idle += 1;
        // Check the container about once a second; one more read after it stopped.
        if idle.is_multiple_of(5) && !container_running(cri.as_ref(), &container_id).await {
            if idle > 5 {
                return;
            }
            idle = 5;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

enum Stream {
    Exec,
    Attach,
}

async fn stream(
    shared: Arc<Shared>,
    ns: String,
    name: String,
    uid: Option<String>,
    container: String,
    kind: Stream,
    req: Request,
) -> Response {
    let pairs = query_pairs(req.uri().query().unwrap_or(""));
    let opts = match StreamOptions::from_pairs(&pairs) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let (_, observed) = match find(&shared, &ns, &name, uid.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let c = match running(&observed, &name, &container) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let rt = &shared.runtime.cri;
    let url = match kind {
        Stream::Exec => {
            if opts.command.is_empty() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "you must specify at least one command for the container",
                );
            }
            rt.exec(cri::ExecRequest {
                container_id: c.id,
                cmd: opts.command,
                tty: opts.tty,
                stdin: opts.stdin,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
            .map(|r| r.url)
        }
        Stream::Attach => rt
            .attach(cri::AttachRequest {
                container_id: c.id,
                stdin: opts.stdin,
                tty: opts.tty,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
            .map(|r| r.url),
    };
    match url {
        Ok(url) => proxy_upgrade(req, &url).await,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

/// `/exec/{ns}/{pod}/{container}`.
pub async fn exec(
    State(s): State<Arc<Shared>>,
    Path((ns, pod, c)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    stream(s, ns, pod, None, c, Stream::Exec, req).await
}

/// `/exec/{ns}/{pod}/{uid}/{container}`.
pub async fn exec_uid(
    State(s): State<Arc<Shared>>,
    Path((ns, pod, uid, c)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    stream(s, ns, pod, Some(uid), c, Stream::Exec, req).await
}

/// `/attach/{ns}/{pod}/{container}`.
pub async fn attach(
    State(s): State<Arc<Shared>>,
    Path((ns, pod, c)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    stream(s, ns, pod, None, c, Stream::Attach, req).await
}

/// `/attach/{ns}/{pod}/{uid}/{container}`.
pub async fn attach_uid(
    State(s): State<Arc<Shared>>,
    Path((ns, pod, uid, c)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    stream(s, ns, pod, Some(uid), c, Stream::Attach, req).await
}

async fn forward(
    shared: Arc<Shared>,
    ns: String,
    name: String,
    uid: Option<String>,
    req: Request,
) -> Response {
    let (_, observed) = match find(&shared, &ns, &name, uid.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let Some(sandbox) = observed.sandbox().filter(|s| s.ready) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("pod {name} has no ready sandbox"),
        );
    };
    let ports: Vec<i32> = query_pairs(req.uri().query().unwrap_or(""))
        .into_iter()
        .filter(|(k, _)| k == "port")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let url = shared
        .runtime
        .cri
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: sandbox.id.clone(),
            port: ports,
        })
        .await;
    match url {
        Ok(r) => proxy_upgrade(req, &r.url).await,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

/// `/portForward/{ns}/{pod}`.
pub async fn port_forward(
    State(s): State<Arc<Shared>>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    forward(s, ns, pod, None, req).await
}

/// `/portForward/{ns}/{pod}/{uid}`.
pub async fn port_forward_uid(
    State(s): State<Arc<Shared>>,
    Path((ns, pod, uid)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    forward(s, ns, pod, Some(uid), req).await
}
