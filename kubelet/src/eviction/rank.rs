//! Which pod to evict first, as upstream ranks them: pods using more than they requested
//! first, then lower priority, then the larger usage above the request.

use std::cmp::Ordering;

/// What ranking needs of one pod for the resource under pressure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The pod's UID.
    pub uid: String,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// Current usage (bytes, or processes for PIDs).
    pub usage: i64,
    /// The sum of its containers' requests (0 when none, as for PIDs).
    pub request: i64,
}

impl Candidate {
    fn exceeds(&self) -> bool {
        self.usage > self.request
    }
}

/// Upstream's order (the first is evicted first).
pub fn compare(a: &Candidate, b: &Candidate) -> Ordering {
    b.exceeds()
        .cmp(&a.exceeds())
        .then(a.priority.cmp(&b.priority))
        .then((b.usage - b.request).cmp(&(a.usage - a.request)))
        .then_with(|| a.uid.cmp(&b.uid))
}

/// `candidates` in eviction order.
pub fn rank(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates.sort_by(compare);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(uid: &str, priority: i32, usage: i64, request: i64) -> Candidate {
        Candidate {
            uid: uid.into(),
            priority,
            usage,
            request,
        }
    }

    #[test]
    fn over_request_then_priority_then_usage_above_request() {
        let ranked = rank(vec![
            c("within-low-prio", -10, 50, 100),
            c("over-high-prio", 1000, 300, 100),
            c("over-small", 0, 120, 100),
            c("over-big", 0, 900, 100),
            c("besteffort", 0, 10, 0),
        ]);
        let order: Vec<_> = ranked.iter().map(|c| c.uid.as_str()).collect();
        assert_eq!(
            order,
            vec![
                "over-big",
                "over-small",
                "besteffort",
                "over-high-prio",
                "within-low-prio"
            ]
        );
    }
}
