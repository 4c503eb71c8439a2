//! JSONL: one document per line, `{"id", "text", "metadata"}`; the id
//! defaults to `FILE:LINE`.

use serde_json::{json, Value};

use crate::{DocError, ExtractedDoc};

pub fn documents(name: &str, text: &str) -> Result<Vec<ExtractedDoc>, DocError> {
    (text.lines().enumerate())
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let at = |what: &str| DocError::Parse(format!("line {}: {what}", i + 1));
            let v: Value = serde_json::from_str(line).map_err(|_| at("not JSON"))?;
            let text = v["text"].as_str().ok_or_else(|| at("no `text` string"))?;
            let id = v["id"]
                .as_str()
                .map_or_else(|| format!("{name}:{}", i + 1), str::to_string);
            let mut metadata = v["metadata"].as_object().cloned().unwrap_or_default();
            metadata.entry("source").or_insert_with(|| json!(name));
            Ok(ExtractedDoc {
                id,
                text: text.to_string(),
                metadata,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_become_documents_and_bad_lines_name_themselves() {
        let docs = super::documents(
            "d.jsonl",
            "{\"id\": \"a\", \"text\": \"x\"}\n\n{\"text\": \"y\"}\n",
        )
        .unwrap();
        assert_eq!((docs[0].id.as_str(), docs[1].id.as_str()), ("a", "d.jsonl:3"));
        let err = super::documents("d.jsonl", "{\"id\": 1}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
