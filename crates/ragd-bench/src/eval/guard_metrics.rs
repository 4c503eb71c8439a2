//! A guard's detection figures from its scores: TPR, FPR, precision,
//! ROC-AUC and TPR at a fixed FPR, overall and per source, as a Markdown
//! table or JSON. Shared by `ragd eval guard` and the model card of
//! `ragd train guard`.

use std::collections::BTreeMap;

use ragd_models::guard::trained::threshold_at_fpr;
use serde::Serialize;

/// The false-positive rates whose TPR is reported.
pub const FPR_POINTS: [f64; 2] = [0.01, 0.05];

/// One scored text.
#[derive(Debug, Clone)]
pub struct Scored {
    pub source: String,
    pub attack: bool,
    pub score: f32,
}

/// The figures of a set of texts. A rate is `None` where it is undefined
/// (no attacks for a TPR, no benign texts for an FPR, nothing flagged for
/// precision).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rates {
    pub benign: usize,
    pub attacks: usize,
    pub tpr: Option<f64>,
    pub fpr: Option<f64>,
    pub precision: Option<f64>,
    pub roc_auc: Option<f64>,
    /// TPR at the thresholds that give 1% and 5% FPR on all benign texts.
    pub tpr_at_fpr_1: Option<f64>,
    pub tpr_at_fpr_5: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The operating threshold: a text is flagged at or above it.
    pub threshold: f32,
    /// The thresholds that flag 1% and 5% of all benign texts.
    pub threshold_at_fpr_1: f32,
    pub threshold_at_fpr_5: f32,
    pub overall: Rates,
    pub per_source: BTreeMap<String, Rates>,
}

fn share(hits: usize, of: usize) -> Option<f64> {
    (of > 0).then(|| hits as f64 / of as f64)
}

fn at_or_above(scores: &[f32], t: f32) -> usize {
    scores.iter().filter(|&&s| s >= t).count()
}

/// Probability that a random attack scores above a random benign text
/// (ties count half): the area under the ROC curve.
pub fn roc_auc(attacks: &[f32], benign: &[f32]) -> Option<f64> {
    if attacks.is_empty() || benign.is_empty() {
        return None;
    }
    let mut all: Vec<(f32, bool)> = attacks
        .iter()
        .map(|&s| (s, true))
        .chain(benign.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the attacks' ranks (1-based, ties averaged).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let mid = (i + 1 + j) as f64 / 2.0;
        rank_sum += mid * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let (a, b) = (attacks.len() as f64, benign.len() as f64);
    Some((rank_sum - a * (a + 1.0) / 2.0) / (a * b))
}

/// Figures of `attacks` and `benign` scores at `threshold` and at the
/// fixed-FPR thresholds `fixed`; the AUC is taken against `other_attacks`
/// / `other_benign` where one side is empty (a source with one class).
fn rates(
    attacks: &[f32],
    benign: &[f32],
    threshold: f32,
    fixed: [f32; 2],
    all_attacks: &[f32],
    all_benign: &[f32],
) -> Rates {
    let tp = at_or_above(attacks, threshold);
    let fp = at_or_above(benign, threshold);
    let auc_attacks = if attacks.is_empty() { all_attacks } else { attacks };
    let auc_benign = if benign.is_empty() { all_benign } else { benign };
    Rates {
        benign: benign.len(),
        attacks: attacks.len(),
        tpr: share(tp, attacks.len()),
        fpr: share(fp, benign.len()),
        precision: share(tp, tp + fp),
        roc_auc: roc_auc(auc_attacks, auc_benign),
        tpr_at_fpr_1: share(at_or_above(attacks, fixed[0]), attacks.len()),
        tpr_at_fpr_5: share(at_or_above(attacks, fixed[1]), attacks.len()),
    }
}

impl Report {
    pub fn new(scored: &[Scored], threshold: f32) -> Self {
        let split = |rows: &mut dyn Iterator<Item = &Scored>| -> (Vec<f32>, Vec<f32>) {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for r in rows {
                if r.attack {
                    a.push(r.score)
                } else {
                    b.push(r.score)
                }
            }
            (a, b)
        };
        let (attacks, benign) = split(&mut scored.iter());
        let fixed = FPR_POINTS.map(|f| threshold_at_fpr(&benign, f));
        let mut sources: BTreeMap<&str, ()> = BTreeMap::new();
        for r in scored {
            sources.insert(&r.source, ());
        }
        let per_source = sources
            .keys()
            .map(|&s| {
                let (a, b) = split(&mut scored.iter().filter(|r| r.source == s));
                (s.to_string(), rates(&a, &b, threshold, fixed, &attacks, &benign))
            })
            .collect();
        Self {
            threshold,
            threshold_at_fpr_1: fixed[0],
            threshold_at_fpr_5: fixed[1],
            overall: rates(&attacks, &benign, threshold, fixed, &attacks, &benign),
            per_source,
        }
    }

    /// The report as a Markdown table, one row per source and one for all.
    pub fn table(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let mut out = String::from(
            "| source | benign | attacks | TPR | FPR | precision | ROC-AUC | TPR@FPR1% | TPR@FPR5% |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let rows = self.per_source.iter().map(|(s, r)| (s.as_str(), r));
        for (source, r) in rows.chain([("**all**", &self.overall)]) {
            out += &format!(
                "| {source} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.benign,
                r.attacks,
                f(r.tpr),
                f(r.fpr),
                f(r.precision),
                f(r.roc_auc),
                f(r.tpr_at_fpr_1),
                f(r.tpr_at_fpr_5),
            );
        }
        out
    }

    /// One line on how to read the table.
    pub fn legend(&self) -> String {
        format!(
            "TPR, FPR and precision at threshold {:.4}; TPR@FPR1%/5% at the thresholds that flag 1% / 5% of all \
             benign texts ({:.4} / {:.4}); a source with one class has its ROC-AUC against all texts of the other.",
            self.threshold, self.threshold_at_fpr_1, self.threshold_at_fpr_5
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(source: &str, attack: bool, scores: &[f32]) -> Vec<Scored> {
        scores
            .iter()
            .map(|&score| Scored {
                source: source.into(),
                attack,
                score,
            })
            .collect()
    }

    #[test]
    fn auc_counts_ordered_pairs_and_half_ties() {
        assert_eq!(roc_auc(&[0.9, 0.8], &[0.1, 0.2]), Some(1.0));
        assert_eq!(roc_auc(&[0.1], &[0.9]), Some(0.0));
        assert_eq!(roc_auc(&[0.5], &[0.5]), Some(0.5));
        // Pairs: (0.9 > 0.5), (0.9 > 0.7), (0.6 > 0.5), (0.6 < 0.7): 3 of 4.
        assert_eq!(roc_auc(&[0.9, 0.6], &[0.5, 0.7]), Some(0.75));
        assert_eq!(roc_auc(&[], &[0.5]), None);
    }

    #[test]
    fn rates_per_source_and_overall() {
        let mut rows = scored("attacks", true, &[0.9, 0.8, 0.3]);
        rows.extend(scored("benign", false, &[0.1, 0.2, 0.6, 0.05]));
        let r = Report::new(&rows, 0.5);
        assert_eq!(r.overall.attacks, 3);
        assert_eq!(r.overall.tpr, Some(2.0 / 3.0));
        assert_eq!(r.overall.fpr, Some(0.25));
        assert_eq!(r.overall.precision, Some(2.0 / 3.0));
        let a = &r.per_source["attacks"];
        assert_eq!((a.fpr, a.tpr), (None, Some(2.0 / 3.0)));
        // Against all benign texts: 0.9 and 0.8 beat all 4, 0.3 beats 3.
        assert_eq!(a.roc_auc, Some(11.0 / 12.0));
        let b = &r.per_source["benign"];
        assert_eq!((b.tpr, b.fpr, b.precision), (None, Some(0.25), Some(0.0)));
        // 1% of 4 benign: none may be flagged: above 0.6.
        assert!(r.threshold_at_fpr_1 > 0.6);
        assert_eq!(r.overall.tpr_at_fpr_1, Some(2.0 / 3.0));
        let table = r.table();
        assert!(table.contains("| attacks | 0 | 3 | 0.667 | - |"), "{table}");
        assert!(table.contains("| **all** | 4 | 3 |"), "{table}");
    }
}
