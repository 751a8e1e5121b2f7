//! Gathering what a pod's containers refer to from the apiserver: ConfigMaps and Secrets
//! named by env/envFrom, service environment variables, and the node's IPs.

use crate::pod::env::{service_env, EnvSources};
use crate::pod::resource_field::NodeAllocatable;
use crate::volumes::source::{config_map_bytes, secret_bytes};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{Api, ListParams};
use std::collections::{BTreeMap, BTreeSet};

fn to_strings(m: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    m.into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// Names of ConfigMaps and Secrets the pod's environment refers to.
pub fn referenced(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut cms, mut secrets) = (BTreeSet::new(), BTreeSet::new());
    for (_, c) in crate::pod::containers::all(pod) {
        for e in c.env_from.iter().flatten() {
            cms.extend(e.config_map_ref.as_ref().map(|r| r.name.clone()));
            secrets.extend(e.secret_ref.as_ref().map(|r| r.name.clone()));
        }
        for v in c.env.iter().flatten().filter_map(|v| v.value_from.as_ref()) {
            cms.extend(v.config_map_key_ref.as_ref().map(|r| r.name.clone()));
            secrets.extend(v.secret_key_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    (cms, secrets)
}

/// Builds the pod's [`EnvSources`] from the apiserver.
pub async fn env_sources(
    client: &kube::Client,
    pod: &Pod,
    host_ips: &[String],
    allocatable: NodeAllocatable,
) -> EnvSources {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let (cms, secrets) = referenced(pod);
    let mut src = EnvSources {
        host_ips: host_ips.to_vec(),
        node_allocatable: allocatable,
        ..Default::default()
    };
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for name in cms {
        if let Ok(Some(cm)) = cm_api.get_opt(&name).await {
            src.config_maps
                .insert(name, to_strings(config_map_bytes(&cm)));
        }
    }
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for name in secrets {
        if let Ok(Some(s)) = secret_api.get_opt(&name).await {
            src.secrets.insert(name, to_strings(secret_bytes(&s)));
        }
    }
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut services: Vec<Service> = Vec::new();
    if links {
        let api: Api<Service> = Api::namespaced(client.clone(), &ns);
        services.extend(
            api.list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default(),
        );
    }
    // The apiserver's own service is always visible, as upstream's master service.
    if ns != "default" || !links {
        let api: Api<Service> = Api::namespaced(client.clone(), "default");
        if let Ok(Some(k)) = api.get_opt("kubernetes").await {
            services.push(k);
        }
    }
    services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for s in services {
        let spec = s.spec.clone().unwrap_or_default();
        let ports: Vec<(Option<String>, i32, String)> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone(),
                    p.port,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                )
            })
            .collect();
        let name = s.metadata.name.clone().unwrap_or_default();
        src.service_env.extend(service_env(
            &name,
            spec.cluster_ip.as_deref().unwrap_or(""),
            &ports,
        ));
    }
    src
}
