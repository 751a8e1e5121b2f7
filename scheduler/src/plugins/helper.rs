//! Score helpers shared by plugins (upstream's helper.DefaultNormalizeScore).

use crate::framework::MAX_NODE_SCORE;

/// Scales scores so the highest becomes `max_priority`; with `reverse`, higher raw scores
/// become lower. If all scores are zero, reverse makes them all `max_priority`.
pub fn default_normalize(max_priority: i64, reverse: bool, scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max_priority);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = max_priority * *s / max;
        if reverse {
            *s = max_priority - *s;
        }
    }
}

/// [`default_normalize`] with MAX_NODE_SCORE.
pub fn normalize(reverse: bool, scores: &mut [i64]) {
    default_normalize(MAX_NODE_SCORE, reverse, scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_reverses() {
        let mut s = vec![0, 5, 10];
        normalize(false, &mut s);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        normalize(true, &mut s);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        normalize(true, &mut s);
        assert_eq!(s, vec![100, 100]);
    }
}
