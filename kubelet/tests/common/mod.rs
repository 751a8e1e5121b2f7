//! Shared setup of the kubelet's tests: a private containerd and a PodRuntime whose logs
//! and cgroups live under names of their own ([`Rig`]), and the kubelet binary as a process
//! against a real apiserver ([`process::KubeletProcess`]).

#![allow(dead_code)]

pub mod process;

use kubelet::cgroups::{self, CgroupManager, Hierarchy};
use kubelet::runtime::config::NodeContext;
use kubelet::runtime::PodRuntime;
use kubelet::testing::{containerd::unavailable_reason, TestContainerd};
use std::sync::Arc;

/// A containerd plus a runtime for one test.
pub struct Rig {
    pub containerd: TestContainerd,
    pub runtime: PodRuntime,
    pub cgroup_root: String,
}

impl Rig {
    /// Starts containerd, or records a loud skip and returns `None`.
    pub async fn start(test: &str) -> Option<Rig> {
        if let Some(reason) = unavailable_reason() {
            e2e::skip::record_skip(test, &reason);
            return None;
        }
        let containerd = TestContainerd::start().await.expect("start containerd");
        let cri = kubelet::cri::Cri::connect(&containerd.endpoint())
            .await
            .unwrap();
        let cgroup_root = format!(
            "/ferrokube-test-{}",
            std::process::id() as u64 * 1000 + rand_suffix()
        );
        let ctx = NodeContext {
            pod_logs_dir: containerd.dir().join("pods-logs"),
            cgroups: Hierarchy::new(&cgroup_root),
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: "nameserver 10.96.0.10\n".into(),
            memory_capacity: 8 << 30,
        };
        let runtime = PodRuntime {
            cri,
            cgroups: Arc::from(cgroups::detect()),
            ctx,
            root_dir: containerd.dir().join("kubelet"),
            image_manager: Default::default(),
        };
        runtime
            .ensure_qos_cgroups(2000)
            .expect("create kubepods cgroups");
        Some(Rig {
            containerd,
            runtime,
            cgroup_root,
        })
    }

    pub fn cgroups(&self) -> &dyn CgroupManager {
        self.runtime.cgroups.as_ref()
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        % 1000
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Remove what the test left of its cgroup tree (deepest first).
        let h = Hierarchy::new(&self.cgroup_root);
        let m = self.runtime.cgroups.clone();
        for q in [
            h.qos(kubelet::pod::qos::QosClass::Burstable),
            h.qos(kubelet::pod::qos::QosClass::BestEffort),
            h.kubepods(),
            self.cgroup_root.clone(),
        ] {
            let _ = m.remove(&q);
        }
    }
}

/// A pod from JSON with defaults filled in.
pub fn pod(json: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json).unwrap()
}
