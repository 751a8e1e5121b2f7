//! The downward API's `resourceFieldRef` (env, downwardAPI and projected volumes), as
//! upstream's `ExtractContainerResourceValue` after `defaultPodLimitsForDownwardAPI`: a
//! limit the container does not set is the node's allocatable, and the value is divided by
//! the `divisor` (default `1`) and rounded up.

use super::qos::Resources;
use api_helpers::quantity;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

/// The node's allocatable resources: the limits of a container that sets none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeAllocatable {
    /// CPU, millicores.
    pub cpu_milli: i64,
    /// Memory, bytes.
    pub memory: i64,
    /// Ephemeral storage, bytes.
    pub ephemeral_storage: i64,
}

/// The container a selector refers to: its `containerName` among the pod's containers and
/// init containers, else `own` (an env var refers to its own container).
fn target<'a>(
    pod: &'a Pod,
    own: Option<&'a Container>,
    sel: &ResourceFieldSelector,
) -> Result<&'a Container, String> {
    match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| format!("resourceFieldRef.containerName: container {name:?} not found")),
        None => own.ok_or_else(|| "resourceFieldRef.containerName is required".to_string()),
    }
}

fn ephemeral_storage(c: &Container, limits: bool) -> Option<i64> {
    let r = c.resources.as_ref()?;
    let map = if limits {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    };
    let q = map?.get("ephemeral-storage")?;
    quantity::value(&q.0).ok()
}

/// The value `sel` selects, as the decimal string upstream writes.
pub fn resource_value(
    pod: &Pod,
    own: Option<&Container>,
    sel: &ResourceFieldSelector,
    alloc: &NodeAllocatable,
) -> Result<String, String> {
    let c = target(pod, own, sel)?;
    let r = Resources::of(c);
    let storage_limit = ephemeral_storage(c, true);
    // (value, its unit: 1000 when the value is in millicores, else 1)
    let (value, scale) = match sel.resource.as_str() {
        "limits.cpu" => (r.cpu_limit.unwrap_or(alloc.cpu_milli), 1000),
        "requests.cpu" => (r.cpu_request.unwrap_or(0), 1000),
        "limits.memory" => (r.memory_limit.unwrap_or(alloc.memory), 1),
        "requests.memory" => (r.memory_request.unwrap_or(0), 1),
        "limits.ephemeral-storage" => (storage_limit.unwrap_or(alloc.ephemeral_storage), 1),
        "requests.ephemeral-storage" => (
            ephemeral_storage(c, false).or(storage_limit).unwrap_or(0),
            1,
        ),
        other => {
            return Err(format!(
                "resourceFieldRef.resource: unsupported container resource {other:?}"
            ))
        }
    };
    let divisor = match sel.divisor.as_ref().map(|d| d.0.as_str()) {
        None => 0,
        Some(d) => {
            let divisor = if scale == 1000 {
                quantity::milli_value(d)
            } else {
                quantity::value(d)
            };
            divisor.map_err(|e| format!("resourceFieldRef.divisor: {e}"))?
        }
    };
    // A zero divisor means 1, as upstream.
    let divisor = if divisor == 0 { scale } else { divisor };
    if divisor < 0 {
        return Err(format!(
            "resourceFieldRef.divisor: must be positive, got {:?}",
            sel.divisor
                .as_ref()
                .map(|d| d.0.as_str())
                .unwrap_or_default()
        ));
    }
    Ok(ceil_div(value, divisor).to_string())
}

/// `value / divisor` rounded up (`divisor > 0`), as upstream's `math.Ceil` of the quotient.
fn ceil_div(value: i64, divisor: i64) -> i64 {
    value.div_euclid(divisor) + i64::from(value.rem_euclid(divisor) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "limited", "resources": {
                    "requests": {"cpu": "250m", "memory": "32Mi", "ephemeral-storage": "1Gi"},
                    "limits": {"cpu": "1250m", "memory": "64Mi", "ephemeral-storage": "2Gi"}}},
                {"name": "free"}
            ],
            "initContainers": [{"name": "init", "resources": {"limits": {"memory": "1Mi"}}}]}
        }))
        .unwrap()
    }

    const ALLOC: NodeAllocatable = NodeAllocatable {
        cpu_milli: 3500,
        memory: 8 << 30,
        ephemeral_storage: 100 << 30,
    };

    fn value(container: &str, resource: &str, divisor: Option<&str>) -> Result<String, String> {
        let sel = ResourceFieldSelector {
            container_name: Some(container.into()),
            resource: resource.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
        };
        resource_value(&pod(), None, &sel, &ALLOC)
    }

    #[test]
    fn limits_and_requests_with_divisors_round_up() {
        assert_eq!(value("limited", "limits.cpu", None).unwrap(), "2");
        assert_eq!(value("limited", "limits.cpu", Some("1m")).unwrap(), "1250");
        assert_eq!(value("limited", "requests.cpu", Some("1m")).unwrap(), "250");
        assert_eq!(value("limited", "requests.cpu", Some("1")).unwrap(), "1");
        assert_eq!(value("limited", "limits.memory", None).unwrap(), "67108864");
        assert_eq!(
            value("limited", "limits.memory", Some("1Mi")).unwrap(),
            "64"
        );
        assert_eq!(
            value("limited", "requests.memory", Some("1M")).unwrap(),
            "34"
        );
        assert_eq!(
            value("limited", "requests.memory", Some("0")).unwrap(),
            "33554432"
        );
        assert_eq!(
            value("limited", "limits.ephemeral-storage", Some("1Mi")).unwrap(),
            "2048"
        );
        assert_eq!(
            value("limited", "requests.ephemeral-storage", Some("1Gi")).unwrap(),
            "1"
        );
        assert_eq!(value("init", "limits.memory", Some("1Ki")).unwrap(), "1024");
    }

    #[test]
    fn unset_limits_are_node_allocatable() {
        assert_eq!(value("free", "limits.cpu", None).unwrap(), "4");
        assert_eq!(value("free", "limits.cpu", Some("1m")).unwrap(), "3500");
        assert_eq!(value("free", "limits.memory", Some("1Mi")).unwrap(), "8192");
        assert_eq!(
            value("free", "limits.ephemeral-storage", Some("1Gi")).unwrap(),
            "100"
        );
        assert_eq!(value("free", "requests.cpu", None).unwrap(), "0");
        assert_eq!(value("free", "requests.memory", None).unwrap(), "0");
    }

    #[test]
    fn env_refers_to_its_own_container_by_default() {
        let p = pod();
        let own = &p.spec.as_ref().unwrap().containers[0];
        let sel = ResourceFieldSelector {
            resource: "limits.cpu".into(),
            divisor: Some(Quantity("1m".into())),
            ..Default::default()
        };
        assert_eq!(resource_value(&p, Some(own), &sel, &ALLOC).unwrap(), "1250");
        assert!(resource_value(&p, None, &sel, &ALLOC)
            .unwrap_err()
            .contains("containerName"));
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = value("nope", "limits.cpu", None).unwrap_err();
        assert!(e.contains("containerName") && e.contains("nope"), "{e}");
        let e = value("free", "limits.gpu", None).unwrap_err();
        assert!(e.starts_with("resourceFieldRef.resource"), "{e}");
        let e = value("free", "limits.cpu", Some("abc")).unwrap_err();
        assert!(e.starts_with("resourceFieldRef.divisor"), "{e}");
        let e = value("free", "limits.cpu", Some("-1")).unwrap_err();
        assert!(e.starts_with("resourceFieldRef.divisor"), "{e}");
    }
}
