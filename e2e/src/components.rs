//! Command lines for running the control-plane components against a [`TestCluster`] the way
//! kubeadm runs upstream's: their own identity's kubeconfig (also for delegated
//! authentication/authorization), secure serving on 127.0.0.1 at a port the test chooses.

use anyhow::Result;

use crate::cluster::TestCluster;
use crate::identity::Identity;

/// The scheduler binary's name.
pub const KUBE_SCHEDULER: &str = "kube-scheduler";
/// The controller-manager binary's name.
pub const KUBE_CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// The cluster CIDR handed to the controller-manager's node IPAM.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// Flags for kube-scheduler serving on `secure_port`, with or without leader election.
pub fn scheduler_args(
    cluster: &TestCluster,
    secure_port: u16,
    leader_elect: bool,
) -> Result<Vec<String>> {
    let kubeconfig = cluster.kubeconfig_for(&Identity::Scheduler)?;
    let kc = kubeconfig.display();
    Ok(vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        format!("--leader-elect={leader_elect}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={secure_port}"),
    ])
}

/// Flags for kube-controller-manager serving on `secure_port`, with the cluster's CA as
/// signer and root CA and its service-account key.
pub fn controller_manager_args(
    cluster: &TestCluster,
    secure_port: u16,
    leader_elect: bool,
) -> Result<Vec<String>> {
    let kubeconfig = cluster.kubeconfig_for(&Identity::ControllerManager)?;
    let kc = kubeconfig.display();
    let pki = cluster.pki();
    Ok(vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        format!("--leader-elect={leader_elect}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={secure_port}"),
        format!("--cluster-signing-cert-file={}", pki.ca_cert().display()),
        format!("--cluster-signing-key-file={}", pki.ca_key().display()),
        format!("--root-ca-file={}", pki.ca_cert().display()),
        format!(
            "--service-account-private-key-file={}",
            cluster.service_account_keys().private.display()
        ),
        format!(
            "--service-cluster-ip-range={}",
            crate::apiserver::SERVICE_CLUSTER_IP_RANGE
        ),
        format!("--cluster-cidr={CLUSTER_CIDR}"),
        "--allocate-node-cidrs=true".into(),
    ])
}
