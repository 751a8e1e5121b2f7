//! The image garbage collector's decision, as a pure function of what it knows of each
//! image and of the image filesystem: which unused images go, in which order, and how many
//! bytes must be freed (upstream's `realImageGCManager`).

use std::time::{Duration, Instant};

/// `imageGCHighThresholdPercent`, `imageGCLowThresholdPercent`, `imageMinimumGCAge`,
/// `imageMaximumGCAge` (upstream's defaults: 85, 80, 2m, 0 = off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Usage (percent of the image filesystem) at or above which images are collected.
    pub high_threshold_percent: i64,
    /// The usage collection frees down to.
    pub low_threshold_percent: i64,
    /// Images first seen more recently than this are never collected.
    pub min_age: Duration,
    /// Unused images last used longer ago than this are collected regardless of usage
    /// (zero: off).
    pub max_age: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
            max_age: Duration::ZERO,
        }
    }
}

impl Policy {
    /// Checks the policy as upstream's configuration validation does.
    pub fn validate(&self) -> anyhow::Result<()> {
        let range = |v: i64, field: &str, flag: &str| {
            anyhow::ensure!(
                (0..=100).contains(&v),
                "invalid configuration: {field} (--{flag}) {v} must be between 0 and 100, inclusive"
            );
            Ok(())
        };
        range(
            self.high_threshold_percent,
            "imageGCHighThresholdPercent",
            "image-gc-high-threshold",
        )?;
        range(
            self.low_threshold_percent,
            "imageGCLowThresholdPercent",
            "image-gc-low-threshold",
        )?;
        anyhow::ensure!(
            self.low_threshold_percent < self.high_threshold_percent,
            "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) {} must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) {}",
            self.low_threshold_percent,
            self.high_threshold_percent
        );
        anyhow::ensure!(
            self.max_age.is_zero() || self.max_age > self.min_age,
            "invalid configuration: imageMaximumGCAge {:?} must be greater than imageMinimumGCAge {:?}",
            self.max_age,
            self.min_age
        );
        Ok(())
    }

    /// Whether periodic collection is off (upstream: high threshold 100 and no max age).
    pub fn disabled(&self) -> bool {
        self.high_threshold_percent >= 100 && self.max_age.is_zero()
    }
}

/// What the collector knows of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The image ID (`sha256:…`).
    pub id: String,
    /// Size in bytes, as the runtime reports it.
    pub size: i64,
    /// Pinned by the runtime (or the sandbox image): never collected.
    pub pinned: bool,
    /// Used by a container (any state) right now: never collected.
    pub in_use: bool,
    /// When the kubelet first saw it.
    pub first_detected: Instant,
    /// When a container last used it (`None`: never seen in use).
    pub last_used: Option<Instant>,
}

/// The image filesystem: bytes available out of capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// Available bytes.
    pub available: i64,
    /// Capacity in bytes.
    pub capacity: i64,
}

impl FsUsage {
    /// Used percent, rounded as upstream (`100 - available*100/capacity`).
    pub fn used_percent(&self) -> i64 {
        100 - self.available.min(self.capacity) * 100 / self.capacity.max(1)
    }
}

/// Why an image is removed (the `reason` label of `kubelet_image_garbage_collected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Unused for longer than `imageMaximumGCAge`.
    Age,
    /// To bring usage down to the low threshold.
    Space,
}

/// The collector's decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Images past `imageMaximumGCAge`, removed first.
    pub by_age: Vec<String>,
    /// Unused images old enough to go, least recently used first: removed in this order
    /// until `bytes_to_free` are freed.
    pub by_space: Vec<(String, i64)>,
    /// Bytes to free to reach the low threshold (0: usage is below the high threshold).
    pub bytes_to_free: i64,
    /// Usage of the image filesystem when deciding.
    pub used_percent: i64,
}

impl Plan {
    /// The images of `by_space` that free `bytes_to_free` if every removal succeeds.
    pub fn space_victims(&self) -> Vec<&str> {
        let mut freed = 0;
        let mut out = Vec::new();
        for (id, size) in &self.by_space {
            if freed >= self.bytes_to_free {
                break;
            }
            out.push(id.as_str());
            freed += size;
        }
        out
    }
}

/// Unused, unpinned images in upstream's eviction order: least recently used first, ties
/// broken by first detection.
pub fn eviction_order(records: &[ImageRecord]) -> Vec<&ImageRecord> {
    let mut out: Vec<&ImageRecord> = records.iter().filter(|r| !r.in_use && !r.pinned).collect();
    out.sort_by(|a, b| {
        a.last_used
            .cmp(&b.last_used)
            .then(a.first_detected.cmp(&b.first_detected))
            .then_with(|| a.id.cmp(&b.id))
    });
    out
}

/// Unused images that may be removed to free space at `now` (old enough), in order.
pub fn space_candidates(
    records: &[ImageRecord],
    policy: &Policy,
    now: Instant,
) -> Vec<(String, i64)> {
    eviction_order(records)
        .into_iter()
        .filter(|r| now.saturating_duration_since(r.first_detected) >= policy.min_age)
        .map(|r| (r.id.clone(), r.size))
        .collect()
}

/// The periodic collection at `now` for a kubelet that began collecting at `began`:
/// images past the maximum age (once the kubelet itself has run that long), then — when
/// usage is at or above the high threshold — enough of the rest to reach the low one.
pub fn plan(
    records: &[ImageRecord],
    usage: FsUsage,
    policy: &Policy,
    now: Instant,
    began: Instant,
) -> Plan {
    let mut by_age = Vec::new();
    if !policy.max_age.is_zero() && now.saturating_duration_since(began) > policy.max_age {
        for r in eviction_order(records) {
            let idle = r
                .last_used
                .map_or(Duration::MAX, |u| now.saturating_duration_since(u));
            if idle > policy.max_age {
                by_age.push(r.id.clone());
            }
        }
    }
    let used_percent = usage.used_percent();
    let mut out = Plan {
        used_percent,
        ..Plan::default()
    };
    if used_percent >= policy.high_threshold_percent {
        out.bytes_to_free = usage.capacity * (100 - policy.low_threshold_percent) / 100
            - usage.available.min(usage.capacity);
        out.by_space = space_candidates(records, policy, now)
            .into_iter()
            .filter(|(id, _)| !by_age.contains(id))
            .collect();
    }
    out.by_age = by_age;
    out
}

/// Upstream's human size in FreeDiskSpaceFailed (`12.3 GiB`).
pub fn format_size(bytes: i64) -> String {
    const UNITS: [(&str, f64); 4] = [
        ("TiB", (1u64 << 40) as f64),
        ("GiB", (1u64 << 30) as f64),
        ("MiB", (1u64 << 20) as f64),
        ("KiB", 1024.0),
    ];
    let b = bytes as f64;
    for (unit, size) in UNITS {
        if b >= size {
            return format!("{:.1} {unit}", b / size);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, size: i64, detected: Instant, used: Option<Instant>) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            size,
            pinned: false,
            in_use: false,
            first_detected: detected,
            last_used: used,
        }
    }

    #[test]
    fn frees_least_recently_used_down_to_the_low_threshold() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(3600);
        let mut records = vec![
            rec("recent", 30, t0, Some(t0 + Duration::from_secs(3000))),
            rec("old", 20, t0, Some(t0 + Duration::from_secs(100))),
            rec("never-used", 10, t0 + Duration::from_secs(5), None),
            rec("young", 50, now - Duration::from_secs(60), None),
            rec("pinned", 50, t0, None),
            rec("running", 50, t0, Some(now)),
        ];
        records[4].pinned = true;
        records[5].in_use = true;
        let policy = Policy::default();
        // 90% used of 1000: free down to 80% → 100 bytes.
        let usage = FsUsage {
            available: 100,
            capacity: 1000,
        };
        let p = plan(&records, usage, &policy, now, t0);
        assert_eq!(p.used_percent, 90);
        assert_eq!(p.bytes_to_free, 100);
        let order: Vec<&str> = p.by_space.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(
            order,
            vec!["never-used", "old", "recent"],
            "young, pinned and in-use images stay"
        );
        assert_eq!(p.space_victims(), vec!["never-used", "old", "recent"]);
        assert!(p.by_age.is_empty(), "max age is off by default");

        // Below the high threshold nothing goes.
        let calm = FsUsage {
            available: 200,
            capacity: 1000,
        };
        assert_eq!(plan(&records, calm, &policy, now, t0).by_space, vec![]);
        // Only as many as needed.
        let slight = FsUsage {
            available: 150,
            capacity: 1000,
        };
        let p = plan(&records, slight, &policy, now, t0);
        assert_eq!(p.bytes_to_free, 50);
        assert_eq!(p.space_victims(), vec!["never-used", "old", "recent"]);
        let p = plan(
            &records,
            FsUsage {
                available: 140,
                capacity: 1000,
            },
            &Policy {
                high_threshold_percent: 85,
                low_threshold_percent: 84,
                ..policy
            },
            now,
            t0,
        );
        assert_eq!(p.bytes_to_free, 20);
        assert_eq!(p.space_victims(), vec!["never-used", "old"]);
    }

    #[test]
    fn maximum_age_removes_idle_images_once_the_kubelet_ran_that_long() {
        let t0 = Instant::now();
        let policy = Policy {
            max_age: Duration::from_secs(600),
            ..Policy::default()
        };
        let records = vec![
            rec("idle", 1, t0, Some(t0)),
            rec("fresh", 1, t0, Some(t0 + Duration::from_secs(500))),
        ];
        let calm = FsUsage {
            available: 900,
            capacity: 1000,
        };
        assert!(
            plan(&records, calm, &policy, t0 + Duration::from_secs(600), t0)
                .by_age
                .is_empty(),
            "not before the kubelet has run max age"
        );
        let p = plan(&records, calm, &policy, t0 + Duration::from_secs(700), t0);
        assert_eq!(p.by_age, vec!["idle".to_string()]);
        assert!(p.by_space.is_empty());
    }

    #[test]
    fn validation_and_format_follow_upstream() {
        assert!(Policy::default().validate().is_ok());
        let e = Policy {
            low_threshold_percent: 90,
            ..Policy::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "imageGCLowThresholdPercent (--image-gc-low-threshold) 90 must be less than"
            ),
            "{e}"
        );
        assert!(Policy {
            high_threshold_percent: 101,
            ..Policy::default()
        }
        .validate()
        .is_err());
        assert!(Policy {
            high_threshold_percent: 100,
            ..Policy::default()
        }
        .disabled());
        assert_eq!(format_size(250 << 30), "250.0 GiB");
        assert_eq!(format_size(512), "512 B");
        assert_eq!(
            FsUsage {
                available: 135,
                capacity: 1000
            }
            .used_percent(),
            87
        );
    }
}
