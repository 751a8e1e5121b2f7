//! Container lifecycle hooks (postStart, preStop), as upstream's handler runner: exec in
//! the container (no timeout of its own), an HTTP GET (any response is success, only a
//! transport error fails), or a sleep. The caller bounds preStop by the grace period and
//! kills a container whose postStart failed.

use crate::cri::CriService;
use crate::prober::action::{self, HttpRequest};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use std::time::Duration;

/// What a handler does, chosen from its fields (the API allows exactly one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAction {
    /// Run this command in the container.
    Exec(Vec<String>),
    /// GET this request.
    HttpGet(HttpRequest),
    /// Sleep this long.
    Sleep(Duration),
}

/// Why a hook failed; its text is upstream's message for the log (never put in events,
/// which could leak secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The handler cannot run at all (no action set, an httpGet without a pod IP, a bad
    /// port): running it again fails the same way.
    #[error("Cannot run handler: {0}")]
    Invalid(String),
    /// The exec command failed or exited non-zero, or the runtime could not run it.
    #[error("{0}")]
    Exec(String),
    /// The HTTP GET failed (transport error).
    #[error("{0}")]
    Http(String),
}

/// `name_namespace(uid)`, upstream's format.Pod.
pub fn pod_desc(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// Chooses the action of `handler` (pure); an httpGet without a host needs the pod IP.
pub fn select(
    handler: &LifecycleHandler,
    c: &Container,
    pod_ip: &str,
) -> Result<HookAction, String> {
    if let Some(e) = &handler.exec {
        return Ok(HookAction::Exec(e.command.clone().unwrap_or_default()));
    }
    if let Some(h) = &handler.http_get {
        let needs_ip = h.host.as_deref().unwrap_or("").is_empty();
        if needs_ip && pod_ip.is_empty() {
            return Err("failed to find networking container: the pod has no IP".into());
        }
        return action::http_request(h, c, pod_ip, "lifecycle").map(HookAction::HttpGet);
    }
    if let Some(s) = &handler.sleep {
        return Ok(HookAction::Sleep(Duration::from_secs(
            s.seconds.max(0) as u64
        )));
    }
    Err("invalid handler: none of exec, httpGet, sleep is set".into())
}

/// Runs a hook; a failure says which kind (see [`HookError`]).
pub async fn run(
    cri: &dyn CriService,
    pod: &Pod,
    c: &Container,
    container_id: &str,
    handler: &LifecycleHandler,
    pod_ip: &str,
) -> Result<(), HookError> {
    let action = select(handler, c, pod_ip).map_err(HookError::Invalid)?;
    let who = format!("for Container {:?} in Pod {:?}", c.name, pod_desc(pod));
    match action {
        HookAction::Exec(cmd) => {
            let request = cri::ExecSyncRequest {
                container_id: container_id.to_string(),
                cmd: cmd.clone(),
                timeout: 0,
            };
            match cri.exec_sync(request).await {
                Ok(r) => {
                    if r.exit_code == 0 {
                        return Ok(());
                    }
                    let mut output = r.stdout;
                    output.extend_from_slice(&r.stderr);
                    Err(HookError::Exec(format!(
                        "Exec lifecycle hook ({cmd:?}) {who} failed - error: command '{}' exited with {}: {}, message: {:?}",
                        cmd.join(" "),
                        r.exit_code,
                        String::from_utf8_lossy(&r.stderr),
                        String::from_utf8_lossy(&output)
                    )))
                }
                Err(s) => Err(HookError::Exec(format!(
                    "Exec lifecycle hook ({cmd:?}) {who} failed - error: {}, message: \"\"",
                    s.message()
                ))),
            }
        }
        HookAction::HttpGet(req) => match action::http_send(&req, None).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let path = handler
                    .http_get
                    .as_ref()
                    .and_then(|h| h.path.clone())
                    .unwrap_or_default();
                Err(HookError::Http(format!(
                    "HTTP lifecycle hook ({path}) {who} failed - error: {e}"
                )))
            }
        },
        HookAction::Sleep(d) => {
            tokio::time::sleep(d).await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(json: serde_json::Value) -> LifecycleHandler {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn selects_the_one_action_set() {
        let c = Container::default();
        assert_eq!(
            select(
                &handler(serde_json::json!({"exec": {"command": ["sh", "-c", "x"]}})),
                &c,
                ""
            ),
            Ok(HookAction::Exec(vec!["sh".into(), "-c".into(), "x".into()]))
        );
        assert_eq!(
            select(
                &handler(serde_json::json!({"sleep": {"seconds": 3}})),
                &c,
                ""
            ),
            Ok(HookAction::Sleep(Duration::from_secs(3)))
        );
        let http = handler(serde_json::json!({"httpGet": {"path": "/stop", "port": 8080}}));
        match select(&http, &c, "10.0.0.7") {
            Ok(HookAction::HttpGet(r)) => {
                assert_eq!(r.url, "http://10.0.0.7:8080/stop");
                assert!(r
                    .headers
                    .contains(&("User-Agent".into(), "kube-lifecycle/1.35".into())));
            }
            other => panic!("{other:?}"),
        }
        assert!(select(&http, &c, "").is_err(), "no pod IP, no default host");
        assert!(select(&LifecycleHandler::default(), &c, "").is_err());
    }

    #[tokio::test]
    async fn a_hook_that_cannot_run_is_invalid_and_a_failing_one_says_why() {
        let cri = crate::cri::fake::FakeCri::default();
        let (c, pod) = (Container::default(), Pod::default());
        let err = run(&cri, &pod, &c, "c1", &LifecycleHandler::default(), "")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            HookError::Invalid("invalid handler: none of exec, httpGet, sleep is set".into())
        );
        assert_eq!(
            err.to_string(),
            "Cannot run handler: invalid handler: none of exec, httpGet, sleep is set"
        );
        cri.fail_next("ExecSync", tonic::Status::unavailable("ttrpc: closed"));
        let exec = handler(serde_json::json!({"exec": {"command": ["true"]}}));
        let err = run(&cri, &pod, &c, "c1", &exec, "").await.unwrap_err();
        assert!(
            matches!(&err, HookError::Exec(m) if m.ends_with("failed - error: ttrpc: closed, message: \"\"")),
            "{err}"
        );
        assert_eq!(run(&cri, &pod, &c, "c1", &exec, "").await, Ok(()));
    }

    #[test]
    fn pods_are_described_as_upstream() {
        let p: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u"}}),
        )
        .unwrap();
        assert_eq!(pod_desc(&p), "web_ns(u)");
    }
}
