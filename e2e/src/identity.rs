//! The identities components use towards the apiserver, as upstream's bootstrap RBAC and the
//! Node authorizer expect them.

/// Who a kubeconfig authenticates as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// `kubernetes-admin` in `system:masters`: unrestricted.
    Admin,
    /// `system:kube-scheduler` (bound to the `system:kube-scheduler` ClusterRole).
    Scheduler,
    /// `system:kube-controller-manager`.
    ControllerManager,
    /// `system:kube-proxy` (bound to `system:node-proxier`).
    KubeProxy,
    /// `system:node:<name>` in `system:nodes`, as the Node authorizer requires.
    Node(String),
    /// Any other user with an optional group.
    User {
        /// The user name (certificate CN).
        name: String,
        /// The group (certificate O).
        group: Option<String>,
    },
}

impl Identity {
    /// The user name the apiserver sees.
    pub fn user(&self) -> String {
        match self {
            Identity::Admin => "kubernetes-admin".into(),
            Identity::Scheduler => "system:kube-scheduler".into(),
            Identity::ControllerManager => "system:kube-controller-manager".into(),
            Identity::KubeProxy => "system:kube-proxy".into(),
            Identity::Node(node) => format!("system:node:{node}"),
            Identity::User { name, .. } => name.clone(),
        }
    }

    /// The group the apiserver sees, if any.
    pub fn group(&self) -> Option<String> {
        match self {
            Identity::Admin => Some("system:masters".into()),
            Identity::Node(_) => Some("system:nodes".into()),
            Identity::User { group, .. } => group.clone(),
            _ => None,
        }
    }

    /// A file-name-safe stem for this identity's certificate and kubeconfig.
    pub fn file_stem(&self) -> String {
        match self {
            Identity::Admin => "admin".into(),
            Identity::Scheduler => "kube-scheduler".into(),
            Identity::ControllerManager => "kube-controller-manager".into(),
            Identity::KubeProxy => "kube-proxy".into(),
            Identity::Node(node) => format!("node-{}", sanitize(node)),
            Identity::User { name, .. } => format!("user-{}", sanitize(name)),
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_upstream_bootstrap_rbac() {
        assert_eq!(Identity::Scheduler.user(), "system:kube-scheduler");
        assert_eq!(
            Identity::ControllerManager.user(),
            "system:kube-controller-manager"
        );
        assert_eq!(Identity::KubeProxy.user(), "system:kube-proxy");
        let node = Identity::Node("worker-1".into());
        assert_eq!(node.user(), "system:node:worker-1");
        assert_eq!(node.group().as_deref(), Some("system:nodes"));
        assert_eq!(Identity::Admin.group().as_deref(), Some("system:masters"));
        assert_eq!(Identity::Scheduler.group(), None);
    }

    #[test]
    fn file_stems_are_path_safe() {
        let user = Identity::User {
            name: "a/b:c".into(),
            group: None,
        };
        assert_eq!(user.file_stem(), "user-a_b_c");
    }
}
