//! Reading static pods from `staticPodPath`: one Pod manifest (YAML or JSON) per file,
//! dotfiles ignored, defaulted as upstream's file source does — name suffixed with the
//! node name, namespace `default`, a UID hashed from the manifest, the node name and the
//! file, the `kubernetes.io/config.{hash,source}` annotations and a toleration of every
//! NoExecute taint.

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Pod, Toleration};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// `kubernetes.io/config.hash`: the static pod's UID (and its mirror pod's `config.mirror`).
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// `kubernetes.io/config.mirror`: marks a mirror pod, holding its static pod's hash.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
/// `kubernetes.io/config.source`: where a pod came from (`file`, `api`).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// `kubernetes.io/config.seen`: when the kubelet first saw this version.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";

/// Whether `pod` is a static pod (not from the API).
pub fn is_static(pod: &Pod) -> bool {
    annotation(pod, CONFIG_SOURCE).is_some_and(|s| s != "api")
}

/// Whether `pod` is a mirror pod (the API's copy of a static pod).
pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, CONFIG_MIRROR).is_some()
}

/// The annotation `key` of `pod`.
pub fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Parses one manifest and applies upstream's static pod defaults.
pub fn parse_manifest(bytes: &[u8], file: &Path, node_name: &str) -> Result<Pod> {
    let value: serde_json::Value =
        serde_yaml::from_slice(bytes).context("not a YAML or JSON document")?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "Pod" {
        bail!("kind: want \"Pod\", got {kind:?}");
    }
    let mut pod: Pod = serde_json::from_value(value).context("invalid Pod")?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        bail!("metadata.name: required");
    }
    if pod.spec.is_none() {
        bail!("spec: required");
    }
    let node = node_name.to_lowercase();
    pod.metadata.name = Some(format!("{name}-{node}"));
    if pod.metadata.namespace.as_deref().unwrap_or("").is_empty() {
        pod.metadata.namespace = Some("default".into());
    }
    if pod.metadata.uid.as_deref().unwrap_or("").is_empty() {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&pod).unwrap_or_default());
        h.update(format!("host:{node_name}").as_bytes());
        h.update(format!("file:{}", file.display()).as_bytes());
        let digest = h.finalize();
        pod.metadata.uid = Some(digest[..16].iter().map(|b| format!("{b:02x}")).collect());
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_HASH.into(), uid);
    annotations.insert(CONFIG_SOURCE.into(), "file".into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node_name.to_string());
    spec.tolerations
        .get_or_insert_with(Vec::new)
        .push(Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        });
    apply_spec_defaults(&mut pod);
    Ok(pod)
}

/// The defaults the apiserver would have applied to a pod it stored.
fn apply_spec_defaults(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.enable_service_links.get_or_insert(true);
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        let latest = c.image.as_deref().is_some_and(|i| {
            let last = i.rsplit('/').next().unwrap_or(i);
            !last.contains(':') && !i.contains('@') || last.ends_with(":latest")
        });
        c.image_pull_policy
            .get_or_insert_with(|| if latest { "Always" } else { "IfNotPresent" }.into());
        c.termination_message_path
            .get_or_insert_with(|| "/dev/termination-log".into());
        c.termination_message_policy
            .get_or_insert_with(|| "File".into());
    }
}

/// Every static pod in `dir` (a file or a directory), in file order; unreadable or invalid
/// manifests are logged and skipped, as upstream. A missing path is no pods.
pub fn read_path(path: &Path, node_name: &str) -> Vec<Pod> {
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let mut files: Vec<_> = match std::fs::read_dir(path) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| !n.starts_with('.'))
                        && p.is_file()
                })
                .collect(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Unable to read the static pod path");
                return Vec::new();
            }
        };
        files.sort();
        files
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        return Vec::new();
    };
    let mut pods: Vec<Pod> = Vec::new();
    for file in files {
        let parsed = std::fs::read(&file)
            .context("unreadable")
            .and_then(|b| parse_manifest(&b, &file, node_name));
        match parsed {
            Ok(pod) => {
                let key = (&pod.metadata.namespace, &pod.metadata.name);
                if pods
                    .iter()
                    .any(|p| (&p.metadata.namespace, &p.metadata.name) == key)
                {
                    tracing::warn!(file = %file.display(), pod = ?pod.metadata.name, "Duplicate static pod name; ignoring this file");
                } else {
                    pods.push(pod);
                }
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %format!("{e:#}"), "Could not process a static pod manifest")
            }
        }
    }
    pods
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.9\n  - name: side\n    image: busybox\n";

    #[test]
    fn manifests_get_upstreams_static_defaults() {
        let pod = parse_manifest(MANIFEST.as_bytes(), Path::new("/m/etcd.yaml"), "Node-A").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("etcd-node-a"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
        let uid = pod.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        assert_eq!(annotation(&pod, CONFIG_HASH), Some(uid.as_str()));
        assert_eq!(annotation(&pod, CONFIG_SOURCE), Some("file"));
        assert!(is_static(&pod) && !is_mirror(&pod));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("Node-A"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        let t = &spec.tolerations.unwrap()[0];
        assert_eq!(
            (t.operator.as_deref(), t.effect.as_deref()),
            (Some("Exists"), Some("NoExecute"))
        );
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
        assert_eq!(
            spec.containers[1].image_pull_policy.as_deref(),
            Some("Always")
        );
    }

    #[test]
    fn the_uid_follows_content_node_and_file() {
        let a = |m: &str, f: &str, n: &str| {
            parse_manifest(m.as_bytes(), Path::new(f), n)
                .unwrap()
                .metadata
                .uid
                .unwrap()
        };
        let base = a(MANIFEST, "/m/etcd.yaml", "n");
        assert_eq!(base, a(MANIFEST, "/m/etcd.yaml", "n"), "stable");
        assert_ne!(
            base,
            a(&MANIFEST.replace("3.5.9", "3.5.10"), "/m/etcd.yaml", "n")
        );
        assert_ne!(base, a(MANIFEST, "/m/other.yaml", "n"));
        assert_ne!(base, a(MANIFEST, "/m/etcd.yaml", "m"));
        let given = parse_manifest(
            MANIFEST
                .replace(
                    "name: etcd\n  namespace",
                    "name: etcd\n  uid: fixed\n  namespace",
                )
                .as_bytes(),
            Path::new("/x"),
            "n",
        )
        .unwrap();
        assert_eq!(given.metadata.uid.as_deref(), Some("fixed"));
    }

    #[test]
    fn bad_manifests_name_the_problem_and_are_skipped() {
        let e = parse_manifest(b"kind: Deployment\n", Path::new("/x"), "n").unwrap_err();
        assert!(e.to_string().contains("kind"), "{e}");
        let e = parse_manifest(
            b"kind: Pod\nmetadata: {}\nspec: {containers: []}\n",
            Path::new("/x"),
            "n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("metadata.name"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), MANIFEST).unwrap();
        std::fs::write(dir.path().join("b.yaml"), "kind: [").unwrap();
        std::fs::write(
            dir.path().join(".hidden.yaml"),
            MANIFEST.replace("etcd", "h"),
        )
        .unwrap();
        std::fs::write(dir.path().join("c.json"), r#"{"kind":"Pod","metadata":{"name":"web"},"spec":{"containers":[{"name":"c","image":"busybox:1"}]}}"#).unwrap();
        let pods = read_path(dir.path(), "n");
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, vec!["etcd-n", "web-n"]);
        assert_eq!(pods[1].metadata.namespace.as_deref(), Some("default"));
        assert!(read_path(&dir.path().join("missing"), "n").is_empty());
    }
}
