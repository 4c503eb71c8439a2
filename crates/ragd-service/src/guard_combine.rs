//! How the verdicts of several guards (`--guard` repeated) make one: a
//! text is flagged when `any` guard flags it at its own threshold, when
//! `all` do, or when the highest score (`max`) reaches the policy's.

use serde::{Deserialize, Serialize};

/// How the verdicts of several guards make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardCombine {
    /// Flagged when any guard flags it (at its own threshold): fewest misses.
    #[default]
    Any,
    /// Flagged when every guard flags it: fewest false alarms.
    All,
    /// Flagged when the highest score reaches the policy's `threshold`.
    Max,
}

impl GuardCombine {
    /// The verdict on one text from each guard's `(score, threshold)`:
    /// `Some(score)` when flagged, the score being the highest.
    pub fn verdict(self, scores: &[(f32, f32)], threshold: f32) -> Option<f32> {
        let max = scores.iter().map(|&(s, _)| s).fold(f32::NEG_INFINITY, f32::max);
        let flags = |&(s, t): &(f32, f32)| s >= t;
        let flagged = match self {
            _ if scores.is_empty() => false,
            GuardCombine::Any => scores.iter().any(flags),
            GuardCombine::All => scores.iter().all(flags),
            GuardCombine::Max => max >= threshold,
        };
        flagged.then_some(max)
    }
}

impl std::str::FromStr for GuardCombine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("{s:?}: expected any, all or max"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_verdicts_make_one() {
        // (score, own threshold) of two guards: only the second flags.
        let split = [(0.6, 0.9), (0.4, 0.3)];
        assert_eq!(GuardCombine::Any.verdict(&split, 0.5), Some(0.6));
        assert_eq!(GuardCombine::All.verdict(&split, 0.5), None);
        assert_eq!(GuardCombine::Max.verdict(&split, 0.5), Some(0.6));
        assert_eq!(GuardCombine::Max.verdict(&split, 0.7), None);
        let both = [(0.95, 0.9), (0.4, 0.3)];
        assert_eq!(GuardCombine::All.verdict(&both, 0.5), Some(0.95));
        assert_eq!(GuardCombine::Any.verdict(&[], 0.0), None);
        assert_eq!("max".parse::<GuardCombine>(), Ok(GuardCombine::Max));
        assert!("most".parse::<GuardCombine>().is_err());
    }
}
