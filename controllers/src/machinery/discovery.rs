//! Which resources the apiserver serves, via aggregated discovery (two requests).

use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};

/// One served resource (preferred version of its group) and what it supports.
#[derive(Debug, Clone)]
pub struct Served {
    /// Group, version, kind, plural.
    pub resource: ApiResource,
    /// Scope and verbs.
    pub caps: ApiCapabilities,
}

impl Served {
    /// Whether the resource lives in namespaces.
    pub fn namespaced(&self) -> bool {
        matches!(self.caps.scope, Scope::Namespaced)
    }

    /// Whether it supports `verb`.
    pub fn supports(&self, verb: &str) -> bool {
        self.caps.supports_operation(verb)
    }

    /// `group/resource` (or `resource` for the core group), as upstream logs it.
    pub fn group_resource(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }
}

/// Every resource in its group's preferred version.
pub async fn served(client: &kube::Client) -> Result<Vec<Served>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run_aggregated().await?;
    Ok(discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .map(|(resource, caps)| Served { resource, caps })
        .collect())
}

/// Namespaced resources that can be listed and deleted (what namespace deletion empties).
pub fn deletable_namespaced(all: &[Served]) -> Vec<Served> {
    all.iter()
        .filter(|s| s.namespaced() && s.supports(verbs::LIST) && s.supports(verbs::DELETE))
        .cloned()
        .collect()
}

/// What unit tests build `Served` values with.
#[cfg(test)]
pub mod testing {
    use super::Served;
    use kube::discovery::{ApiCapabilities, ApiResource, Scope};

    /// A namespaced resource of `group` (version v1) and `kind` (plural: the kind in lower
    /// case with an `s`) that supports `verbs`.
    pub fn served(group: &str, kind: &str, verbs: &[&str]) -> Served {
        Served {
            resource: ApiResource {
                group: group.into(),
                version: "v1".into(),
                api_version: if group.is_empty() {
                    "v1".into()
                } else {
                    format!("{group}/v1")
                },
                kind: kind.into(),
                plural: format!("{}s", kind.to_lowercase()),
            },
            caps: ApiCapabilities {
                scope: Scope::Namespaced,
                subresources: Vec::new(),
                operations: verbs.iter().map(|v| v.to_string()).collect(),
            },
        }
    }
}
