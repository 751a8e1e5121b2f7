//! The apiserver's view of kinds and their schemas: discovery maps a resource to its kind,
//! `/openapi/v3` gives the kind's schema (built-in kinds and CRDs alike), as upstream's
//! type checker gets them from its RESTMapper and schema resolver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde_json::{Map, Value};

use super::policy::{Gvk, Gvr};
use super::types::ObjectType;

/// Resolves resources to kinds and kinds to schemas over one client, caching each
/// OpenAPI group-version document by its content-addressed URL.
pub struct Schemas {
    client: kube::Client,
    /// `serverRelativeURL` (with its hash) → the document's `components.schemas`.
    documents: Mutex<HashMap<String, Arc<Map<String, Value>>>>,
}

fn discovery_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// The kind `resource` has in an `APIResourceList` document.
pub fn kind_in_resource_list(list: &Value, resource: &str) -> Option<String> {
    list.get("resources")?
        .as_array()?
        .iter()
        .find(|r| r.get("name").and_then(Value::as_str) == Some(resource))?
        .get("kind")?
        .as_str()
        .map(str::to_string)
}

/// The entry of `schemas` (`components.schemas`) tagged with `gvk`
/// (`x-kubernetes-group-version-kind`).
pub fn schema_of_kind(schemas: &Map<String, Value>, gvk: &Gvk) -> Option<Value> {
    schemas
        .values()
        .find(|s| {
            s.get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
                .is_some_and(|tags| {
                    tags.iter().any(|t| {
                        t.get("group").and_then(Value::as_str).unwrap_or_default() == gvk.group
                            && t.get("version").and_then(Value::as_str) == Some(&gvk.version)
                            && t.get("kind").and_then(Value::as_str) == Some(&gvk.kind)
                    })
                })
        })
        .cloned()
}

impl Schemas {
    /// A resolver reading with `client`.
    pub fn new(client: kube::Client) -> Self {
        Schemas {
            client,
            documents: Mutex::new(HashMap::new()),
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let req = http::Request::get(path)
            .body(Vec::new())
            .with_context(|| format!("building GET {path}"))?;
        match self.client.request::<Value>(req).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("GET {path}"))),
        }
    }

    /// The kinds `gvr` is served as (none when the group-version or resource is unknown).
    pub async fn kinds_for(&self, gvr: &Gvr) -> anyhow::Result<Vec<Gvk>> {
        let list = self.get(&discovery_path(&gvr.group, &gvr.version)).await?;
        Ok(list
            .and_then(|l| kind_in_resource_list(&l, &gvr.resource))
            .map(|kind| Gvk {
                group: gvr.group.clone(),
                version: gvr.version.clone(),
                kind,
            })
            .into_iter()
            .collect())
    }

    /// The schema of `gvk`, or `None` when the apiserver publishes none.
    pub async fn schema_for(&self, gvk: &Gvk) -> anyhow::Result<Option<ObjectType>> {
        let Some(index) = self.get("/openapi/v3").await? else {
            return Ok(None);
        };
        let key = discovery_path(&gvk.group, &gvk.version);
        let Some(url) = index
            .get("paths")
            .and_then(|p| p.get(key.trim_start_matches('/')))
            .and_then(|p| p.get("serverRelativeURL"))
            .and_then(Value::as_str)
        else {
            return Ok(None);
        };
        let cached = self.lock().get(url).cloned();
        let schemas = match cached {
            Some(s) => s,
            None => {
                let Some(doc) = self.get(url).await? else {
                    return Ok(None);
                };
                let schemas = Arc::new(
                    doc.pointer("/components/schemas")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                );
                let mut docs = self.lock();
                // Documents of older hashes are never asked for again.
                let live: Vec<&str> = index
                    .get("paths")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|p| p.values())
                    .filter_map(|p| p.get("serverRelativeURL").and_then(Value::as_str))
                    .collect();
                docs.retain(|u, _| live.contains(&u.as_str()));
                docs.insert(url.to_string(), schemas.clone());
                schemas
            }
        };
        Ok(schema_of_kind(&schemas, gvk).map(|root| ObjectType::new(schemas.clone(), root)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Map<String, Value>>>> {
        self.documents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_map_to_kinds_and_kinds_to_schemas() {
        let list = json!({"resources": [{"name": "deployments", "kind": "Deployment"},
            {"name": "deployments/scale", "kind": "Scale"}]});
        assert_eq!(
            kind_in_resource_list(&list, "deployments").as_deref(),
            Some("Deployment")
        );
        assert_eq!(kind_in_resource_list(&list, "pods"), None);
        let schemas = json!({
            "io.k8s.api.apps.v1.Deployment": {"type": "object",
                "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}]},
            "io.k8s.api.core.v1.Pod": {"type": "object",
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]}
        });
        let schemas = schemas.as_object().unwrap();
        let pod = Gvk {
            group: "".into(),
            version: "v1".into(),
            kind: "Pod".into(),
        };
        assert!(schema_of_kind(schemas, &pod).is_some());
        let missing = Gvk {
            kind: "Secret".into(),
            ..pod
        };
        assert!(schema_of_kind(schemas, &missing).is_none());
        assert_eq!(discovery_path("", "v1"), "/api/v1");
        assert_eq!(discovery_path("apps", "v1"), "/apis/apps/v1");
    }
}
