//! Completion indexes of Indexed Jobs: the pod annotations that carry them and the
//! `completedIndexes` / `failedIndexes` interval strings of the Job status.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

/// Label and annotation carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Annotation counting the failures of an index that counted towards backoffLimitPerIndex.
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// Annotation counting the failures of an index that a pod failure policy ignored.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

fn annotation_i32(pod: &Pod, key: &str) -> Option<i32> {
    pod.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// A pod's completion index, if its annotation holds a valid (non-negative) one.
pub fn index_of(pod: &Pod) -> Option<i32> {
    annotation_i32(pod, COMPLETION_INDEX).filter(|i| *i >= 0)
}

/// A pod's index within `0..completions`, if any.
pub fn valid_index(pod: &Pod, completions: i32) -> Option<i32> {
    index_of(pod).filter(|i| *i < completions)
}

/// The index failure count of a pod (0 when absent or malformed, as upstream).
pub fn failure_count(pod: &Pod) -> i32 {
    annotation_i32(pod, INDEX_FAILURE_COUNT)
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

/// The ignored index failure count of a pod.
pub fn ignored_failure_count(pod: &Pod) -> i32 {
    annotation_i32(pod, INDEX_IGNORED_FAILURE_COUNT)
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

/// Counted plus ignored failures of the index, as seen on this pod.
pub fn absolute_failure_count(pod: &Pod) -> i32 {
    failure_count(pod) + ignored_failure_count(pod)
}

/// Parses an interval list (`"1,3-5"`), keeping only indexes below `completions`.
/// Malformed parts are skipped, as upstream's parser does.
pub fn parse(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(a), Ok(b)) = (a, b) {
            if a < 0 || a > b {
                continue;
            }
            out.extend(a..=b.min(completions - 1));
        }
    }
    out
}

/// Formats indexes as upstream does: runs of three or more as `a-b`, pairs as `a,b`.
pub fn format(set: &BTreeSet<i32>) -> String {
    let v: Vec<i32> = set.iter().copied().collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(match j - i {
            0 => v[i].to_string(),
            1 => format!("{},{}", v[i], v[j]),
            _ => format!("{}-{}", v[i], v[j]),
        });
        i = j + 1;
    }
    parts.join(",")
}

/// The first `count` indexes below `completions` that are not in `taken`.
pub fn first_pending(taken: &BTreeSet<i32>, count: usize, completions: i32) -> Vec<i32> {
    (0..completions)
        .filter(|i| !taken.contains(i))
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let s = parse("0,2-4,7", 10);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![0, 2, 3, 4, 7]);
        assert_eq!(format(&s), "0,2-4,7");
        assert_eq!(format(&[1, 2].into()), "1,2");
        assert_eq!(format(&BTreeSet::new()), "");
        // Out of range and malformed parts are dropped.
        assert_eq!(parse("1,5-9,x,3-2", 7), [1, 5, 6].into());
    }

    #[test]
    fn pending_skips_taken() {
        assert_eq!(first_pending(&[0, 2].into(), 2, 5), vec![1, 3]);
        assert_eq!(first_pending(&[0, 1].into(), 3, 2), Vec::<i32>::new());
    }
}
