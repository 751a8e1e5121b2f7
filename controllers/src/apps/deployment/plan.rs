//! The arithmetic of a rollout as pure functions over ReplicaSet sizes: how far the new
//! ReplicaSet may grow, how far the old ones may shrink, and proportional scaling.

use std::cmp::Ordering;

use k8s_openapi::jiff::Timestamp;

/// What planning needs to know of one ReplicaSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsView {
    /// Name (for stable ordering and results).
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// Creation time.
    pub created: Timestamp,
    /// The max-replicas annotation, if valid.
    pub max_replicas: Option<i32>,
}

/// Size the new ReplicaSet should have now (upstream's `NewRSNewReplicas`).
pub fn new_rs_replicas(
    desired: i32,
    max_surge: i32,
    rolling: bool,
    new: i32,
    all_total: i32,
) -> i32 {
    if !rolling {
        return desired;
    }
    let max_total = desired + max_surge;
    if all_total >= max_total {
        return new;
    }
    let up = (max_total - all_total).min(desired - new).max(0);
    new + up
}

fn oldest_first(a: &RsView, b: &RsView) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

/// New sizes for old ReplicaSets in a rolling update (upstream's
/// `reconcileOldReplicaSets`): first drop unhealthy replicas, then scale down available
/// ones while at least `desired - max_unavailable` pods stay available. Returns
/// `(name, new replicas)` for every ReplicaSet to change.
pub fn scale_down_old(
    desired: i32,
    max_unavailable: i32,
    new: Option<&RsView>,
    old: &[RsView],
) -> Vec<(String, i32)> {
    let old_total: i32 = old.iter().map(|r| r.replicas).sum();
    if old_total == 0 {
        return Vec::new();
    }
    let all_total = old_total + new.map_or(0, |n| n.replicas);
    let min_available = desired - max_unavailable;
    let new_unavailable = new.map_or(0, |n| (n.replicas - n.available).max(0));
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut sizes: Vec<RsView> = old.to_vec();
    sizes.sort_by(oldest_first);
    // 1. Unhealthy replicas cost no availability: remove them first.
    let mut cleaned = 0;
    for rs in sizes.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = rs.replicas - rs.available;
        if rs.replicas == 0 || unhealthy <= 0 {
            continue;
        }
        let n = unhealthy.min(max_scaled_down - cleaned);
        rs.replicas -= n;
        cleaned += n;
    }
    // 2. Scale down available replicas, keeping minAvailable.
    let available: i32 = sizes
        .iter()
        .map(|r| r.available.min(r.replicas))
        .sum::<i32>()
        + new.map_or(0, |n| n.available);
    if available > min_available {
        let mut left = available - min_available;
        for rs in sizes.iter_mut() {
            if left <= 0 {
                break;
            }
            if rs.replicas == 0 {
                continue;
            }
            let n = rs.replicas.min(left);
            rs.replicas -= n;
            left -= n;
        }
    }
    sizes
        .into_iter()
        .filter(|s| {
            old.iter()
                .any(|o| o.name == s.name && o.replicas != s.replicas)
        })
        .map(|s| (s.name, s.replicas))
        .collect()
}

/// Proportional scaling of active ReplicaSets when a rolling Deployment is resized
/// mid-rollout (upstream's `scale` for RollingUpdate). `prev_replicas` stands in for a
/// missing max-replicas annotation. Returns the new size of each ReplicaSet, same order.
pub fn proportional(desired: i32, max_surge: i32, prev_replicas: i32, rss: &[RsView]) -> Vec<i32> {
    let total: i32 = rss.iter().map(|r| r.replicas).sum();
    let allowed = if desired > 0 { desired + max_surge } else { 0 };
    let to_add = allowed - total;
    let mut order: Vec<usize> = (0..rss.len()).collect();
    // Scaling up: largest (then newest) first; scaling down: largest (then oldest) first.
    order.sort_by(|&a, &b| {
        let (ra, rb) = (&rss[a], &rss[b]);
        rb.replicas.cmp(&ra.replicas).then_with(|| {
            if to_add > 0 {
                rb.created.cmp(&ra.created)
            } else {
                ra.created.cmp(&rb.created)
            }
        })
    });
    let mut sizes: Vec<i32> = rss.iter().map(|r| r.replicas).collect();
    if to_add == 0 {
        return sizes;
    }
    let mut added = 0;
    for &i in &order {
        let rs = &rss[i];
        let fraction = if desired == 0 {
            -rs.replicas
        } else {
            let annotated = rs.max_replicas.unwrap_or(prev_replicas);
            if annotated == 0 {
                0
            } else {
                let target = (f64::from(rs.replicas) * f64::from(desired + max_surge)
                    / f64::from(annotated))
                .round() as i32;
                target - rs.replicas
            }
        };
        let allowed_left = to_add - added;
        if allowed_left == 0 || rs.replicas == 0 {
            continue;
        }
        let p = if to_add > 0 {
            fraction.min(allowed_left)
        } else {
            fraction.max(allowed_left)
        };
        sizes[i] += p;
        added += p;
    }
    // Rounding leftovers go to the largest ReplicaSet.
    if let Some(&first) = order.first() {
        sizes[first] = (sizes[first] + to_add - added).max(0);
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, replicas: i32, available: i32, created: i64) -> RsView {
        RsView {
            name: name.into(),
            replicas,
            available,
            created: Timestamp::from_second(created).unwrap(),
            max_replicas: None,
        }
    }

    #[test]
    fn new_rs_grows_within_surge() {
        // 10 desired, surge 3, everything still old: new may get 3.
        assert_eq!(new_rs_replicas(10, 3, true, 0, 10), 3);
        assert_eq!(new_rs_replicas(10, 3, true, 3, 13), 3);
        assert_eq!(new_rs_replicas(10, 3, true, 8, 11), 10);
        assert_eq!(new_rs_replicas(10, 3, false, 0, 10), 10);
    }

    #[test]
    fn old_scale_down_keeps_min_available() {
        // 10 desired, maxUnavailable 2, new has 3 unavailable pods: old (10 available) may
        // shrink by 13 - 8 - 3 = 2.
        let new = rs("new", 3, 0, 2);
        assert_eq!(
            scale_down_old(10, 2, Some(&new), &[rs("old", 10, 10, 1)]),
            vec![("old".to_string(), 8)]
        );
        // Unhealthy old pods go first, beyond the availability budget.
        let new = rs("new", 3, 3, 2);
        let got = scale_down_old(10, 0, Some(&new), &[rs("a", 5, 2, 1), rs("b", 5, 5, 3)]);
        assert_eq!(got, vec![("a".to_string(), 2)]);
    }

    #[test]
    fn proportional_scaling_splits_by_size() {
        // 10 replicas (surge 3) rolling 8 old / 5 new, scaled to 20 (surge 5): +12 split
        // by their share of the old 13.
        let mut old = rs("old", 8, 8, 1);
        old.max_replicas = Some(13);
        let mut new = rs("new", 5, 0, 2);
        new.max_replicas = Some(13);
        let sizes = proportional(20, 5, 10, &[old, new]);
        assert_eq!(sizes.iter().sum::<i32>(), 25);
        assert_eq!(sizes, vec![15, 10]);
        // To zero: everything goes.
        assert_eq!(
            proportional(0, 0, 10, &[rs("a", 3, 3, 1), rs("b", 2, 0, 2)]),
            vec![0, 0]
        );
    }
}
