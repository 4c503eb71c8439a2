//! SQuAD-format data and its official answer scoring (exact match and
//! token F1 after normalisation: lower case, no punctuation, no articles,
//! single spaces).

use std::collections::HashMap;

use anyhow::Context;
use serde_json::Value;

/// One context paragraph; its id is its position in the file (`p<N>`).
#[derive(Debug, Clone)]
pub struct Paragraph {
    pub id: String,
    pub title: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Question {
    pub id: String,
    pub text: String,
    /// Id of the paragraph that holds the answer.
    pub paragraph: String,
    pub answers: Vec<String>,
}

/// Reads a SQuAD v1.1 JSON file (`data[].paragraphs[].{context, qas[]}`).
pub fn parse(json: &Value) -> anyhow::Result<(Vec<Paragraph>, Vec<Question>)> {
    let mut paragraphs = Vec::new();
    let mut questions = Vec::new();
    let articles = json["data"]
        .as_array()
        .context("no `data` array: not a SQuAD file")?;
    for article in articles {
        let title = article["title"].as_str().unwrap_or_default().replace('_', " ");
        for p in article["paragraphs"].as_array().into_iter().flatten() {
            let id = format!("p{}", paragraphs.len());
            let text = p["context"].as_str().context("a paragraph without `context`")?;
            for qa in p["qas"].as_array().into_iter().flatten() {
                questions.push(Question {
                    id: qa["id"].as_str().unwrap_or_default().to_string(),
                    text: qa["question"]
                        .as_str()
                        .context("a question without text")?
                        .to_string(),
                    paragraph: id.clone(),
                    answers: qa["answers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a["text"].as_str().map(str::to_string))
                        .collect(),
                });
            }
            paragraphs.push(Paragraph {
                id,
                title: title.clone(),
                text: text.to_string(),
            });
        }
    }
    Ok((paragraphs, questions))
}

/// SQuAD's `normalize_answer`.
pub fn normalize(s: &str) -> String {
    let lower: String = s
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    lower
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn exact_match(prediction: &str, gold: &str) -> bool {
    normalize(prediction) == normalize(gold)
}

/// Token-overlap F1 of the normalised strings.
pub fn f1(prediction: &str, gold: &str) -> f64 {
    let (p, g) = (normalize(prediction), normalize(gold));
    let (p, g): (Vec<&str>, Vec<&str>) = (p.split(' ').collect(), g.split(' ').collect());
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for w in &g {
        *counts.entry(w).or_default() += 1;
    }
    let mut common = 0;
    for w in &p {
        if let Some(c) = counts.get_mut(w) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// The best score over the gold answers (SQuAD's `metric_max_over_ground_truths`).
pub fn best(prediction: &str, answers: &[String]) -> (bool, f64) {
    let em = answers.iter().any(|a| exact_match(prediction, a));
    let f = answers.iter().map(|a| f1(prediction, a)).fold(0.0, f64::max);
    (em, f)
}

/// Whether an answer declines ("I don't know", ...).
pub fn is_dont_know(answer: &str) -> bool {
    let a = answer.to_lowercase().replace('’', "'");
    [
        "don't know",
        "do not know",
        "not sure",
        "cannot answer",
        "can't answer",
        "no information",
    ]
    .iter()
    .any(|p| a.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_scores_follow_the_official_script() {
        assert_eq!(normalize("The  Denver Broncos!"), "denver broncos");
        assert!(exact_match("the Denver Broncos.", "Denver Broncos"));
        assert_eq!(f1("Denver Broncos won", "Denver Broncos"), 0.8);
        assert_eq!(f1("nothing", "Denver Broncos"), 0.0);
        let (em, f) = best("Broncos", &["Denver Broncos".into(), "Broncos".into()]);
        assert!(em && f == 1.0);
    }

    #[test]
    fn parses_paragraphs_and_questions() {
        let json = serde_json::json!({"data": [{"title": "Super_Bowl", "paragraphs": [
            {"context": "Denver won.", "qas": [{"id": "q1", "question": "Who won?", "answers": [{"text": "Denver", "answer_start": 0}]}]},
            {"context": "It rained.", "qas": []}
        ]}]});
        let (p, q) = parse(&json).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].title, "Super Bowl");
        assert_eq!(q[0].paragraph, "p0");
        assert_eq!(q[0].answers, vec!["Denver".to_string()]);
        assert!(parse(&serde_json::json!({"x": 1})).is_err());
    }

    #[test]
    fn recognises_declines() {
        assert!(is_dont_know("I don't know."));
        assert!(is_dont_know("I do not know the answer"));
        assert!(!is_dont_know("Denver Broncos"));
    }
}
