//! How long the steps clients feel took on this cluster
//! (`reconcile/durations`), by kind (`restart`, `switchover-stop`, ...):
//! the last [`StepDurations::KEEP`] of each, which the impact plan turns
//! into estimates. Written by the leader when such a step succeeds.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Seconds per kind, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepDurations {
    /// The recorded seconds of each kind.
    #[serde(default)]
    pub kinds: BTreeMap<String, Vec<f64>>,
}

impl StepDurations {
    /// How many durations of a kind are kept.
    pub const KEEP: usize = 20;

    /// Records one duration.
    pub fn record(&mut self, kind: &str, seconds: f64) {
        let v = self.kinds.entry(kind.to_string()).or_default();
        v.push(seconds);
        if v.len() > Self::KEEP {
            let extra = v.len() - Self::KEEP;
            v.drain(..extra);
        }
    }

    /// The median of a kind's durations and how many there are.
    pub fn median(&self, kind: &str) -> Option<(f64, usize)> {
        let mut v = self.kinds.get(kind)?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let m = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some((m, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_durations_and_takes_their_median() {
        let mut d = StepDurations::default();
        assert_eq!(d.median("restart"), None);
        for s in [3.0, 1.0, 2.0] {
            d.record("restart", s);
        }
        assert_eq!(d.median("restart"), Some((2.0, 3)));
        d.record("restart", 10.0);
        assert_eq!(d.median("restart"), Some((2.5, 4)));
        for _ in 0..30 {
            d.record("restart", 1.0);
        }
        assert_eq!(d.kinds["restart"].len(), StepDurations::KEEP);
        assert_eq!(d.median("restart"), Some((1.0, StepDurations::KEEP)));
    }
}
