//! Persistent storage on a real node (issue 18): a StatefulSet whose volumeClaimTemplates
//! ask a WaitForFirstConsumer `local` class binds to pre-made `local` PersistentVolumes
//! (node affinity to the node): the scheduler picks the smallest that fits, the
//! persistentvolume-binder binds it, the kubelet bind-mounts it; what the pod wrote is still
//! there for the pod the StatefulSet starts after it is deleted.
//!
//! Needs root, containerd and the control-plane assets; skips otherwise. Takes the shared
//! local-cluster lock for about a minute.

use std::time::Duration;

use e2e::local_cluster::{LocalCluster, UpError};

#[test]
fn statefulset_claims_bind_to_local_volumes_and_survive_a_pod_restart() {
    let cluster = match LocalCluster::up(Duration::from_secs(90)) {
        Ok(c) => c,
        Err(UpError::Skip(why)) => e2e::skip_test!("{why}"),
        Err(UpError::Failed(why)) => panic!("{why}"),
    };
    let node = cluster.wait_node_ready("the node to be Ready", Duration::from_secs(60));
    let hostname = cluster.kubectl_ok(&[
        "get",
        "node",
        &node,
        "-o",
        r#"jsonpath={.metadata.labels.kubernetes\.io/hostname}"#,
    ]);
    let disks = cluster.scratch().join("disks");
    for d in ["small", "big"] {
        std::fs::create_dir_all(disks.join(d)).unwrap();
    }
    let pv = |name: &str, size: &str| {
        format!(
            r#"
apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-{name}
spec:
  capacity: {{storage: {size}}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-storage
  local: {{path: {path}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: In, values: ["{hostname}"]}}
"#,
            path = disks.join(name).display()
        )
    };
    let manifest = format!(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-storage
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---{}---{}---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 1
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: busybox:1.35
        command: [sh, -c, "echo started >> /data/log; sleep 3600"]
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: local-storage
      resources: {{requests: {{storage: 100Mi}}}}
"#,
        pv("big", "2Gi"),
        pv("small", "1Gi")
    );
    cluster.apply("local-storage", &manifest);

    let no_context = String::new;
    let first = cluster.eventually(
        "db-0 Running",
        Duration::from_secs(120),
        || {
            cluster
                .running("db")
                .contains(&"db-0".to_string())
                .then(|| {
                    cluster.kubectl_ok(&["get", "pod", "db-0", "-o", "jsonpath={.metadata.uid}"])
                })
        },
        no_context,
    );
    // The smallest fitting volume, bound both ways.
    let bound = cluster.kubectl_ok(&[
        "get",
        "pvc",
        "data-db-0",
        "-o",
        "jsonpath={.status.phase} {.spec.volumeName}",
    ]);
    assert_eq!(bound, "Bound local-small");
    let pv_phase = cluster.kubectl_ok(&[
        "get",
        "pv",
        "local-small",
        "-o",
        "jsonpath={.status.phase} {.spec.claimRef.name}",
    ]);
    assert_eq!(pv_phase, "Bound data-db-0");
    let log = disks.join("small").join("log");
    cluster.eventually(
        "the pod's write on the local disk",
        Duration::from_secs(30),
        || (std::fs::read_to_string(&log).ok()? == "started\n").then_some(()),
        no_context,
    );

    cluster.kubectl_ok(&["delete", "pod", "db-0", "--wait=false"]);
    cluster.eventually(
        "a new db-0 Running",
        Duration::from_secs(120),
        || {
            let out = cluster.kubectl(&["get", "pod", "db-0", "-o", "jsonpath={.metadata.uid}"]);
            let uid = String::from_utf8_lossy(&out.stdout).to_string();
            (out.status.success()
                && uid != first
                && cluster.running("db").contains(&"db-0".to_string()))
            .then_some(())
        },
        no_context,
    );
    // The new pod sees the file the first one wrote (and appended to it).
    let seen = cluster.eventually(
        "the restarted pod's view of /data/log",
        Duration::from_secs(30),
        || {
            let out = cluster.kubectl(&["exec", "db-0", "--", "cat", "/data/log"]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            (text == "started\nstarted\n").then_some(text)
        },
        no_context,
    );
    assert_eq!(seen, "started\nstarted\n");
    assert_eq!(
        std::fs::read_to_string(disks.join("big").join("log")).ok(),
        None,
        "the bigger volume stays untouched"
    );
}
