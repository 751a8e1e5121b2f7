//! Every container of a pod spec — app, init and ephemeral — seen as a `Container`, and
//! which list each comes from. Ephemeral containers (`kubectl debug`) are added to a running
//! pod through the `ephemeralcontainers` subresource; they carry every field of a container
//! (the API forbids probes, ports, lifecycle and resources on them) plus the name of a target
//! container whose process namespace they join, as upstream's `EphemeralContainerCommon`.

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod};
use std::borrow::Cow;

/// The list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecList {
    /// `spec.containers`.
    App,
    /// `spec.initContainers` (regular and sidecars).
    Init,
    /// `spec.ephemeralContainers`.
    Ephemeral,
}

impl SpecList {
    /// The field name upstream's `GenerateContainerRef` uses in an event's `fieldPath`.
    pub fn field(self) -> &'static str {
        match self {
            SpecList::App => "spec.containers",
            SpecList::Init => "spec.initContainers",
            SpecList::Ephemeral => "spec.ephemeralContainers",
        }
    }
}

/// An ephemeral container as the container it runs as (upstream converts
/// `EphemeralContainerCommon` to `Container` the same way); the target name is dropped.
pub fn ephemeral_as_container(ec: &EphemeralContainer) -> Container {
    let EphemeralContainer {
        args,
        command,
        env,
        env_from,
        image,
        image_pull_policy,
        lifecycle,
        liveness_probe,
        name,
        ports,
        readiness_probe,
        resize_policy,
        resources,
        restart_policy,
        restart_policy_rules,
        security_context,
        startup_probe,
        stdin,
        stdin_once,
        target_container_name: _,
        termination_message_path,
        termination_message_policy,
        tty,
        volume_devices,
        volume_mounts,
        working_dir,
    } = ec.clone();
    Container {
        args,
        command,
        env,
        env_from,
        image,
        image_pull_policy,
        lifecycle,
        liveness_probe,
        name,
        ports,
        readiness_probe,
        resize_policy,
        resources,
        restart_policy,
        restart_policy_rules,
        security_context,
        startup_probe,
        stdin,
        stdin_once,
        termination_message_path,
        termination_message_policy,
        tty,
        volume_devices,
        volume_mounts,
        working_dir,
    }
}

/// The pod's ephemeral containers, as containers, in spec order.
pub fn ephemeral(pod: &Pod) -> Vec<Container> {
    pod.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .map(ephemeral_as_container)
        .collect()
}

/// Every container of the pod with its list: app, then init, then ephemeral.
pub fn all(pod: &Pod) -> Vec<(SpecList, Cow<'_, Container>)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let app = spec
        .containers
        .iter()
        .map(|c| (SpecList::App, Cow::Borrowed(c)));
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| (SpecList::Init, Cow::Borrowed(c)));
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|ec| (SpecList::Ephemeral, Cow::Owned(ephemeral_as_container(ec))));
    app.chain(init).chain(ephemeral).collect()
}

/// The container named `name` in any of the pod's lists, and which list.
pub fn find<'a>(pod: &'a Pod, name: &str) -> Option<(SpecList, Cow<'a, Container>)> {
    let spec = pod.spec.as_ref()?;
    if let Some(c) = spec.containers.iter().find(|c| c.name == name) {
        return Some((SpecList::App, Cow::Borrowed(c)));
    }
    if let Some(c) = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == name)
    {
        return Some((SpecList::Init, Cow::Borrowed(c)));
    }
    spec.ephemeral_containers
        .iter()
        .flatten()
        .find(|ec| ec.name == name)
        .map(|ec| (SpecList::Ephemeral, Cow::Owned(ephemeral_as_container(ec))))
}

/// The container whose process namespace ephemeral container `name` joins, if it names one.
pub fn ephemeral_target<'a>(pod: &'a Pod, name: &str) -> Option<&'a str> {
    pod.spec
        .as_ref()?
        .ephemeral_containers
        .iter()
        .flatten()
        .find(|ec| ec.name == name)?
        .target_container_name
        .as_deref()
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod() -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    ..Default::default()
                }],
                init_containers: Some(vec![Container {
                    name: "init".into(),
                    ..Default::default()
                }]),
                ephemeral_containers: Some(vec![EphemeralContainer {
                    name: "debugger".into(),
                    image: Some("busybox".into()),
                    command: Some(vec!["sh".into()]),
                    stdin: Some(true),
                    tty: Some(true),
                    target_container_name: Some("app".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_ephemeral_container_keeps_its_fields() {
        let c = &ephemeral(&pod())[0];
        assert_eq!(c.name, "debugger");
        assert_eq!(c.image.as_deref(), Some("busybox"));
        assert_eq!(c.command, Some(vec!["sh".to_string()]));
        assert_eq!((c.stdin, c.tty), (Some(true), Some(true)));
    }

    #[test]
    fn every_list_is_searched_and_named() {
        let p = pod();
        let names: Vec<_> = all(&p)
            .into_iter()
            .map(|(l, c)| (l, c.name.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                (SpecList::App, "app".to_string()),
                (SpecList::Init, "init".to_string()),
                (SpecList::Ephemeral, "debugger".to_string()),
            ]
        );
        let (list, c) = find(&p, "debugger").unwrap();
        assert_eq!(
            (list.field(), c.name.as_str()),
            ("spec.ephemeralContainers", "debugger")
        );
        assert_eq!(find(&p, "init").unwrap().0.field(), "spec.initContainers");
        assert!(find(&p, "nope").is_none());
        assert_eq!(ephemeral_target(&p, "debugger"), Some("app"));
        assert_eq!(ephemeral_target(&p, "app"), None);
    }
}
