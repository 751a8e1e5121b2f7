//! node-ipam-controller (range allocator): gives every Node a `spec.podCIDR` carved from
//! `--cluster-cidr` in blocks of `--node-cidr-mask-size`, skipping
//! `--service-cluster-ip-range`. IPv4; for dual-stack only the IPv4 range is allocated.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use futures::future::FutureExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::Informer;
use crate::machinery::ControllerDescriptor;
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "nodeipam",
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

/// An IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    /// Network address.
    pub base: u32,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`; the error names `flag`.
    pub fn parse(s: &str, flag: &str) -> anyhow::Result<Cidr> {
        let (ip, prefix) = s
            .trim()
            .split_once('/')
            .with_context(|| format!("{flag}: {s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .with_context(|| format!("{flag}: {s:?} is not an IPv4 CIDR"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .with_context(|| format!("{flag}: bad prefix length in {s:?}"))?;
        Ok(Cidr {
            base: u32::from(ip) & mask(prefix),
            prefix,
        })
    }

    fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    fn overlaps(&self, other: &Cidr) -> bool {
        let (a_end, b_end) = (
            self.base as u64 + self.size(),
            other.base as u64 + other.size(),
        );
        (self.base as u64) < b_end && (other.base as u64) < a_end
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// The first block of `/mask_size` inside `cluster` that is neither in `used` nor overlapping
/// `reserved`, or `None` when the range is exhausted.
pub fn allocate(
    cluster: Cidr,
    mask_size: u8,
    reserved: Option<Cidr>,
    used: &BTreeSet<Cidr>,
) -> Option<Cidr> {
    if mask_size < cluster.prefix || mask_size > 32 {
        return None;
    }
    let count = 1u64 << (mask_size - cluster.prefix);
    let step = 1u64 << (32 - mask_size);
    (0..count)
        .map(|i| Cidr {
            base: (cluster.base as u64 + i * step) as u32,
            prefix: mask_size,
        })
        .find(|c| !used.iter().any(|u| u.overlaps(c)) && !reserved.is_some_and(|r| r.overlaps(c)))
}

struct State {
    client: kube::Client,
    nodes: Informer<Node>,
    cluster: Cidr,
    mask_size: u8,
    reserved: Option<Cidr>,
    /// Allocations written but maybe not yet in the cache.
    pending: Mutex<BTreeSet<Cidr>>,
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let opts = ctx.options.clone();
    if !opts.allocate_node_cidrs {
        tracing::info!("--allocate-node-cidrs is false: node-ipam-controller does nothing");
        ctx.shutdown.cancelled().await;
        return Ok(());
    }
    let raw = opts
        .cluster_cidr
        .as_deref()
        .context("--cluster-cidr: required with --allocate-node-cidrs")?;
    let v4 = raw
        .split(',')
        .find(|c| !c.contains(':'))
        .context("--cluster-cidr: no IPv4 range (IPv6 allocation is not implemented)")?;
    let cluster = Cidr::parse(v4, "--cluster-cidr")?;
    let mask_size = opts
        .node_cidr_mask_size_ipv4
        .or(opts.node_cidr_mask_size)
        .unwrap_or(24);
    if mask_size < cluster.prefix {
        anyhow::bail!(
            "--node-cidr-mask-size: {mask_size} is shorter than --cluster-cidr's prefix {}",
            cluster.prefix
        );
    }
    let reserved = match opts
        .service_cluster_ip_range
        .as_deref()
        .and_then(|r| r.split(',').find(|c| !c.contains(':')))
    {
        Some(r) => Some(Cidr::parse(r, "--service-cluster-ip-range")?),
        None => None,
    };
    let queue: WorkQueue<String> =
        WorkQueue::new().with_metrics(&ctx.metrics, "cidrallocator_node");
    let q = queue.clone();
    let nodes = ctx.informers().informer::<Node>();
    informer::on(&nodes, move |n: &Node, change| {
        let unassigned = n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none();
        if let (true, informer::Change::Applied, Some(name)) =
            (unassigned, change, &n.metadata.name)
        {
            q.add(name.clone());
        }
    });
    informer::wait_synced(&ctx.shutdown, async {
        nodes.wait_synced().await;
    })
    .await?;
    let state = Arc::new(State {
        client: ctx.client_for("node-controller").await?,
        nodes,
        cluster,
        mask_size,
        reserved,
        pending: Mutex::default(),
    });
    // One worker: allocations must not race.
    queue
        .run("node-ipam", 1, ctx.shutdown.clone(), move |name| {
            sync(state.clone(), name)
        })
        .await;
    Ok(())
}

async fn sync(state: Arc<State>, name: String) -> anyhow::Result<()> {
    let Some(node) = state.nodes.get("", &name) else {
        return Ok(());
    };
    if node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some()
    {
        return Ok(());
    }
    let mut used: BTreeSet<Cidr> = state
        .nodes
        .list()
        .iter()
        .flat_map(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.pod_cidrs.clone())
                .unwrap_or_default()
        })
        .filter_map(|c| Cidr::parse(&c, "spec.podCIDRs").ok())
        .collect();
    used.extend(
        state
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied(),
    );
    let Some(cidr) = allocate(state.cluster, state.mask_size, state.reserved, &used) else {
        anyhow::bail!(
            "node {name}: no pod CIDR left in --cluster-cidr {} (CIDRNotAvailable)",
            state.cluster
        );
    };
    let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    Api::<Node>::all(state.client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    state
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(cidr);
    tracing::info!(node = %name, pod_cidr = %cidr, "Allocated pod CIDR");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s, "test").unwrap()
    }

    #[test]
    fn allocates_in_order_skipping_used_and_reserved() {
        let cluster = c("10.244.0.0/16");
        let mut used = BTreeSet::new();
        assert_eq!(allocate(cluster, 24, None, &used), Some(c("10.244.0.0/24")));
        used.insert(c("10.244.0.0/24"));
        assert_eq!(
            allocate(cluster, 24, Some(c("10.244.1.0/25")), &used),
            Some(c("10.244.2.0/24"))
        );
    }

    #[test]
    fn exhaustion_and_bad_input() {
        let cluster = c("10.0.0.0/30");
        let used = BTreeSet::from([c("10.0.0.0/31"), c("10.0.0.2/31")]);
        assert_eq!(allocate(cluster, 31, None, &used), None);
        assert_eq!(allocate(cluster, 29, None, &BTreeSet::new()), None);
        let err = Cidr::parse("10.0.0.0", "--cluster-cidr")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--cluster-cidr"), "{err}");
        assert!(Cidr::parse("10.0.0.0/33", "x").is_err());
        assert_eq!(c("10.1.2.3/16").to_string(), "10.1.0.0/16");
    }
}
