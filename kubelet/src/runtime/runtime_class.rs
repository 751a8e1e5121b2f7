//! A pod's `runtimeClassName` → the CRI runtime handler its sandbox runs with (upstream's
//! runtimeclass manager). No class is the runtime's default handler (`""`); a class that
//! cannot be read holds the sandbox back with a `FailedCreatePodSandBox` event carrying
//! upstream's message, and so does a handler the runtime lacks (the runtime's error). The
//! apiserver's RuntimeClass admission refuses pods naming a missing class, but a class can be
//! deleted after its pods were admitted.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::{Api, Client};

/// The class `pod` names, if any (an empty name is the default class).
pub fn class_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// The handler of `name` from the answer to reading it: a missing class is the API's
/// `runtimeclasses.node.k8s.io "<name>" not found`, any other failure
/// `failed to lookup RuntimeClass <name>: <error>`, as upstream words them.
pub fn handler_from(name: &str, got: kube::Result<RuntimeClass>) -> Result<String, String> {
    match got {
        Ok(rc) => Ok(rc.handler),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(e.message),
        Err(e) => Err(format!("failed to lookup RuntimeClass {name}: {e}")),
    }
}

/// The handler for `pod`'s sandbox: `None` when it names no class (the default handler).
pub async fn handler(client: &Client, pod: &Pod) -> Option<Result<String, String>> {
    let name = class_name(pod)?;
    let api: Api<RuntimeClass> = Api::all(client.clone());
    Some(handler_from(name, api.get(name).await))
}

/// The `FailedCreatePodSandBox` event's message for a sandbox that could not be made.
pub fn sandbox_failure_message(why: &str) -> String {
    format!("Failed to create pod sandbox: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(class: Option<&str>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                runtime_class_name: class.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn no_class_is_the_default_handler() {
        assert_eq!(class_name(&pod(None)), None);
        assert_eq!(class_name(&pod(Some(""))), None);
        assert_eq!(class_name(&pod(Some("gvisor"))), Some("gvisor"));
    }

    #[test]
    fn a_class_resolves_to_its_handler_or_upstreams_error() {
        let rc = RuntimeClass {
            handler: "runsc".into(),
            ..Default::default()
        };
        assert_eq!(handler_from("gvisor", Ok(rc)), Ok("runsc".into()));
        let missing = kube::Error::Api(
            kube::core::Status::failure(
                "runtimeclasses.node.k8s.io \"gvisor\" not found",
                "NotFound",
            )
            .with_code(404)
            .boxed(),
        );
        assert_eq!(
            handler_from("gvisor", Err(missing)).map_err(|e| sandbox_failure_message(&e)),
            Err(
                "Failed to create pod sandbox: runtimeclasses.node.k8s.io \"gvisor\" not found"
                    .into()
            )
        );
        let forbidden = kube::Error::Api(
            kube::core::Status::failure("forbidden", "Forbidden")
                .with_code(403)
                .boxed(),
        );
        let err = handler_from("gvisor", Err(forbidden)).unwrap_err();
        assert!(
            err.starts_with("failed to lookup RuntimeClass gvisor: "),
            "{err}"
        );
    }
}
