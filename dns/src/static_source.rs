//! A test-only source of objects: a JSON `List` of Services and EndpointSlices read once
//! at start-up (`--static-objects`), for benchmarks and tests without an apiserver. It is
//! not how the server runs in a cluster.

use crate::model;
use crate::store::Store;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Loads the Services and EndpointSlices of the JSON list at `path` into `store` and marks
/// it synced. Returns how many of each were loaded.
pub fn load(path: &str, store: &Store) -> anyhow::Result<(usize, usize)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("invalid --static-objects {path}: {e}"))?;
    let list: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid --static-objects {path}: {e}"))?;
    let items = list
        .get("items")
        .and_then(|i| i.as_array())
        .ok_or_else(|| anyhow::anyhow!("invalid --static-objects {path}: no items list"))?;
    let (mut services, mut slices) = (Vec::new(), Vec::new());
    for item in items {
        match item.get("kind").and_then(|k| k.as_str()) {
            Some("Service") => {
                let svc: Service = serde_json::from_value(item.clone())
                    .map_err(|e| anyhow::anyhow!("invalid Service in {path}: {e}"))?;
                services.extend(model::service_info(&svc));
            }
            Some("EndpointSlice") => {
                let slice: EndpointSlice = serde_json::from_value(item.clone())
                    .map_err(|e| anyhow::anyhow!("invalid EndpointSlice in {path}: {e}"))?;
                slices.extend(model::slice_info(&slice));
            }
            other => anyhow::bail!("invalid --static-objects {path}: unexpected kind {other:?}"),
        }
    }
    let counts = (services.len(), slices.len());
    store.replace_services(services);
    store.replace_slices(slices);
    store.mark_services_synced();
    store.mark_slices_synced();
    Ok(counts)
}
