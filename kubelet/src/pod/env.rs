//! Container environments as upstream builds them: service variables first, then `envFrom`,
//! then `env` in order (later entries win), `valueFrom` resolved from the pod, its
//! configMaps and secrets, and `$(VAR)` references expanded.

use super::resource_field::{resource_value, NodeAllocatable};
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::{BTreeMap, HashMap};

/// What the environment may refer to besides the pod itself.
#[derive(Debug, Clone, Default)]
pub struct EnvSources {
    /// ConfigMaps of the pod's namespace, by name.
    pub config_maps: HashMap<String, BTreeMap<String, String>>,
    /// Secrets of the pod's namespace, by name (decoded).
    pub secrets: HashMap<String, BTreeMap<String, String>>,
    /// Service environment variables (`FOO_SERVICE_HOST`, …), already built.
    pub service_env: Vec<(String, String)>,
    /// The node's IP(s), for `status.hostIP(s)`.
    pub host_ips: Vec<String>,
    /// The pod's IP(s), for `status.podIP(s)`.
    pub pod_ips: Vec<String>,
    /// The node's allocatable resources, for resourceFieldRef defaults when a container
    /// has no limit.
    pub node_allocatable: NodeAllocatable,
}

/// A required reference could not be resolved: the container must not start
/// (upstream reports `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Expands `$(VAR)` in `input` from `env` as upstream's `expansion.Expand`: `$$` is a
/// literal `$`, an undefined `$(VAR)` stays as written.
pub fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == '$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                '$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                '(' => {
                    if let Some(end) = bytes[i + 2..].iter().position(|&c| c == ')') {
                        let name: String = bytes[i + 2..i + 2 + end].iter().collect();
                        match env(&name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&format!("$({name})")),
                        }
                        i += end + 3;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Resolves a `fieldRef` path against the pod.
pub fn field_ref(pod: &Pod, path: &str, src: &EnvSources) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = keyed("metadata.labels['", meta.labels.as_ref()) {
        return Ok(v);
    }
    if let Some(v) = keyed("metadata.annotations['", meta.annotations.as_ref()) {
        return Ok(v);
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => src.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => src.host_ips.join(","),
        "status.podIP" => src.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => src.pod_ips.join(","),
        other => {
            return Err(EnvError(format!(
                "unsupported fieldRef fieldPath {other:?}"
            )))
        }
    })
}

/// Builds the environment of container `c` of `pod`, in upstream's order and precedence.
pub fn container_env(
    pod: &Pod,
    c: &Container,
    src: &EnvSources,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = env.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            env.push((k, v));
        }
    };
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true)
    {
        for (k, v) in &src.service_env {
            set(&mut env, k.clone(), v.clone());
        }
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, optional, what) = if let Some(cm) = &from.config_map_ref {
            (
                src.config_maps.get(&cm.name),
                cm.optional.unwrap_or(false),
                format!("configmap {:?}", cm.name),
            )
        } else if let Some(s) = &from.secret_ref {
            (
                src.secrets.get(&s.name),
                s.optional.unwrap_or(false),
                format!("secret {:?}", s.name),
            )
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    set(&mut env, format!("{prefix}{k}"), v.clone());
                }
            }
            None if optional => {}
            None => return Err(EnvError(format!("{what} not found"))),
        }
    }
    for var in c.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                field_ref(pod, &f.field_path, src)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(pod, Some(c), r, &src.node_allocatable).map_err(EnvError)?
            } else if let Some(k) = &from.config_map_key_ref {
                match src.config_maps.get(&k.name).and_then(|m| m.get(&k.key)) {
                    Some(v) => v.clone(),
                    None if k.optional.unwrap_or(false) => continue,
                    None => {
                        return Err(EnvError(format!(
                            "couldn't find key {} in ConfigMap {}",
                            k.key, k.name
                        )))
                    }
                }
            } else if let Some(k) = &from.secret_key_ref {
                match src.secrets.get(&k.name).and_then(|m| m.get(&k.key)) {
                    Some(v) => v.clone(),
                    None if k.optional.unwrap_or(false) => continue,
                    None => {
                        return Err(EnvError(format!(
                            "couldn't find key {} in Secret {}",
                            k.key, k.name
                        )))
                    }
                }
            } else {
                continue;
            }
        } else {
            let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            expand(var.value.as_deref().unwrap_or(""), &lookup)
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// The command line of container `c`: `command`/`args` with `$(VAR)` expanded from `env`.
pub fn command_line(c: &Container, env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let exp = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter().flatten().map(|s| expand(s, &lookup)).collect()
    };
    (exp(&c.command), exp(&c.args))
}

/// Docker-link-style variables for one service, as upstream's `envvars.FromServices`.
pub fn service_env(
    name: &str,
    cluster_ip: &str,
    ports: &[(Option<String>, i32, String)],
) -> Vec<(String, String)> {
    if cluster_ip.is_empty() || cluster_ip == "None" || ports.is_empty() {
        return Vec::new();
    }
    let prefix = name.to_uppercase().replace('-', "_");
    let (_, first_port, first_proto) = &ports[0];
    let mut out = vec![
        (format!("{prefix}_SERVICE_HOST"), cluster_ip.to_string()),
        (format!("{prefix}_SERVICE_PORT"), first_port.to_string()),
    ];
    for (pname, port, _) in ports {
        if let Some(pname) = pname.as_deref().filter(|n| !n.is_empty()) {
            let pn = pname.to_uppercase().replace('-', "_");
            out.push((format!("{prefix}_SERVICE_PORT_{pn}"), port.to_string()));
        }
    }
    out.push((
        format!("{prefix}_PORT"),
        format!("{}://{cluster_ip}:{first_port}", first_proto.to_lowercase()),
    ));
    for (_, port, proto) in ports {
        let p = proto.to_uppercase();
        let base = format!("{prefix}_PORT_{port}_{p}");
        out.push((
            base.clone(),
            format!("{}://{cluster_ip}:{port}", proto.to_lowercase()),
        ));
        out.push((format!("{base}_PROTO"), proto.to_lowercase()));
        out.push((format!("{base}_PORT"), port.to_string()));
        out.push((format!("{base}_ADDR"), cluster_ip.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn expansion_matches_upstream_rules() {
        let env = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand("$(A)-$(B)", &env), "x-$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("a$", &env), "a$");
        assert_eq!(expand("$(A", &env), "$(A");
    }

    #[test]
    fn env_resolves_fields_and_references() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            ..Default::default()
        };
        let c = Container {
            name: "c".into(),
            env: Some(vec![
                EnvVar {
                    name: "POD".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                EnvVar {
                    name: "GREETING".into(),
                    value: Some("hi $(POD) in $(FOO_SERVICE_HOST)".into()),
                    ..Default::default()
                },
            ]),
            command: Some(vec!["echo".into(), "$(GREETING)".into()]),
            ..Default::default()
        };
        let src = EnvSources {
            service_env: service_env("foo", "10.0.0.1", &[(None, 80, "TCP".into())]),
            ..Default::default()
        };
        let env = container_env(&pod, &c, &src).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("GREETING"), Some("hi p in 10.0.0.1"));
        assert_eq!(get("FOO_PORT"), Some("tcp://10.0.0.1:80"));
        assert_eq!(get("FOO_PORT_80_TCP_ADDR"), Some("10.0.0.1"));
        let (cmd, _) = command_line(&c, &env);
        assert_eq!(cmd, vec!["echo", "hi p in 10.0.0.1"]);
    }

    #[test]
    fn missing_required_configmap_key_is_an_error() {
        let pod = Pod::default();
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]
        }))
        .unwrap();
        let err = container_env(&pod, &c, &EnvSources::default()).unwrap_err();
        assert!(err.0.contains("ConfigMap cm"), "{err}");
    }
}
