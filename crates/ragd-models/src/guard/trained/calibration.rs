//! Thresholds for a target false-positive rate: what a trained guard's
//! calibration records, and how `--guard-threshold fpr:0.01` is resolved.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ragd_core::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// The scores a trained guard gave the benign texts held out of its
/// training, so that a threshold can be chosen for any false-positive rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Which texts the scores are of (`validation`: held out of training).
    pub split: String,
    /// Injection scores of those benign texts, ascending.
    pub benign_scores: Vec<f32>,
    /// The false-positive rate the training aimed at, and its threshold.
    pub target_fpr: f64,
    pub threshold: f32,
}

impl Calibration {
    pub fn new(split: &str, mut benign_scores: Vec<f32>, target_fpr: f64) -> Self {
        benign_scores.sort_by(f32::total_cmp);
        Self {
            split: split.to_string(),
            threshold: threshold_at_fpr(&benign_scores, target_fpr),
            benign_scores,
            target_fpr,
        }
    }

    /// The threshold that flags at most `fpr` of the held-out benign texts.
    pub fn threshold_for_fpr(&self, fpr: f64) -> f32 {
        threshold_at_fpr(&self.benign_scores, fpr)
    }
}

/// The lowest threshold (a text is flagged when its score is at or above
/// it) that flags at most a share `fpr` of `benign` scores (any order).
/// With no scores, or `fpr` of 1 or more, 0: everything is flagged.
pub fn threshold_at_fpr(benign: &[f32], fpr: f64) -> f32 {
    let mut desc = benign.to_vec();
    desc.sort_by(|a, b| b.total_cmp(a));
    // The most benign texts that may be flagged (a small tolerance: 0.01 *
    // 300 is 2.9999999999999996 in f64).
    let allowed = (fpr.max(0.0) * desc.len() as f64 + 1e-9).floor() as usize;
    match desc.get(allowed) {
        // Just above the highest score that must not be flagged.
        Some(&s) => s.next_up(),
        None => 0.0,
    }
}

/// `--guard-threshold`: a score (`0.5`) or a false-positive rate the
/// guard's calibration turns into a score (`fpr:0.01`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GuardThreshold {
    Score(f32),
    Fpr(f64),
}

impl FromStr for GuardThreshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is neither a score in [0, 1] (0.5) nor a false-positive rate (fpr:0.01)");
        match s.trim().strip_prefix("fpr:") {
            Some(rate) => match rate.trim().parse::<f64>() {
                Ok(r) if r > 0.0 && r < 1.0 => Ok(Self::Fpr(r)),
                _ => Err(bad()),
            },
            None => match s.trim().parse::<f32>() {
                Ok(v) if (0.0..=1.0).contains(&v) => Ok(Self::Score(v)),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for GuardThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Score(v) => write!(f, "{v}"),
            Self::Fpr(r) => write!(f, "fpr:{r}"),
        }
    }
}

impl GuardThreshold {
    /// The score threshold: as given, or from the calibration of the
    /// guard in `guard_dir` (only guards trained by `ragd train guard`
    /// carry one).
    pub fn resolve(&self, guard_dir: Option<&Path>) -> Result<f32> {
        let rate = match *self {
            Self::Score(v) => return Ok(v),
            Self::Fpr(rate) => rate,
        };
        let Some(dir) = guard_dir else {
            return Err(ModelError::load(
                format!("fpr:{rate}"),
                "a false-positive-rate threshold needs a guard, and none is configured",
            ));
        };
        match super::read_config(dir)?.and_then(|c| c.calibration) {
            Some(c) => Ok(c.threshold_for_fpr(rate)),
            None => Err(ModelError::load(
                dir.display(),
                format!(
                    "this guard has no calibration, so `fpr:{rate}` cannot be resolved (only guards trained by \
                     `ragd train guard` carry one): give the threshold as a score, such as 0.5"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_flags_at_most_the_share_asked_for() {
        let benign: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        // 1% of 100: only the highest (0.99) may be flagged.
        let t = threshold_at_fpr(&benign, 0.01);
        assert_eq!(benign.iter().filter(|&&s| s >= t).count(), 1);
        assert!(t > 0.98 && t <= 0.99);
        // 5%: 0.95..0.99.
        let t = threshold_at_fpr(&benign, 0.05);
        assert_eq!(benign.iter().filter(|&&s| s >= t).count(), 5);
        // 0: nothing benign is flagged.
        let t = threshold_at_fpr(&benign, 0.0);
        assert_eq!(benign.iter().filter(|&&s| s >= t).count(), 0);
        assert_eq!(threshold_at_fpr(&[], 0.01), 0.0);
        assert_eq!(threshold_at_fpr(&benign, 1.0), 0.0);
    }

    #[test]
    fn ties_are_never_split() {
        // Flagging one 0.9 would flag all three: none may be flagged at 1/4.
        let t = threshold_at_fpr(&[0.9, 0.9, 0.9, 0.1], 0.25);
        assert!(t > 0.9);
    }

    #[test]
    fn thresholds_parse_as_scores_or_rates() {
        assert_eq!("0.5".parse(), Ok(GuardThreshold::Score(0.5)));
        assert_eq!("fpr:0.01".parse(), Ok(GuardThreshold::Fpr(0.01)));
        assert_eq!(GuardThreshold::Fpr(0.01).to_string(), "fpr:0.01");
        for bad in ["1.5", "fpr:0", "fpr:1", "fpr:x", "x", "-0.1"] {
            assert!(bad.parse::<GuardThreshold>().is_err(), "{bad}");
        }
        assert_eq!(GuardThreshold::Score(0.7).resolve(None).unwrap(), 0.7);
        assert!(GuardThreshold::Fpr(0.01).resolve(None).is_err());
    }

    #[test]
    fn a_calibration_sorts_its_scores_and_keeps_its_target() {
        let c = Calibration::new("validation", vec![0.3, 0.1, 0.2], 0.34);
        assert_eq!(c.benign_scores, vec![0.1, 0.2, 0.3]);
        // A third of three: the highest (0.3) may be flagged.
        assert_eq!(c.threshold, 0.2f32.next_up());
        assert_eq!(c.threshold_for_fpr(0.0), 0.3f32.next_up());
    }
}
