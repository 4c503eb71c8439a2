//! The special tokens a Hugging Face tokenizer puts around a single
//! sequence, read from `tokenizer.json`'s `post_processor`.

use serde_json::Value;

/// Ids before and after the content of a single sequence, or `None` when
/// the post-processor is absent or of a kind not understood here.
pub fn single_sequence_specials(tokenizer_json: &Value) -> Option<(Vec<u32>, Vec<u32>)> {
    from_processor(tokenizer_json.get("post_processor")?)
}

fn from_processor(p: &Value) -> Option<(Vec<u32>, Vec<u32>)> {
    match p.get("type")?.as_str()? {
        "TemplateProcessing" => from_template(p),
        "BertProcessing" | "RobertaProcessing" => {
            Some((vec![pair_id(p.get("cls")?)?], vec![pair_id(p.get("sep")?)?]))
        }
        "Sequence" => p.get("processors")?.as_array()?.iter().find_map(from_processor),
        _ => None,
    }
}

/// `["[CLS]", 1]` -> 1.
fn pair_id(v: &Value) -> Option<u32> {
    u32::try_from(v.as_array()?.get(1)?.as_u64()?).ok()
}

/// `single: [{SpecialToken: {id: "[CLS]"}}, {Sequence: {id: "A"}}, ...]`,
/// with each special token's ids in `special_tokens`.
fn from_template(p: &Value) -> Option<(Vec<u32>, Vec<u32>)> {
    let (mut prefix, mut suffix) = (Vec::new(), Vec::new());
    let mut seen_sequence = false;
    for piece in p.get("single")?.as_array()? {
        if piece.get("Sequence").is_some() {
            if seen_sequence {
                return None;
            }
            seen_sequence = true;
            continue;
        }
        let name = piece.get("SpecialToken")?.get("id")?.as_str()?;
        let ids = p.get("special_tokens")?.get(name)?.get("ids")?.as_array()?;
        let out = if seen_sequence { &mut suffix } else { &mut prefix };
        for id in ids {
            out.push(u32::try_from(id.as_u64()?).ok()?);
        }
    }
    seen_sequence.then_some((prefix, suffix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_template() {
        let t = json!({"post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}
            ],
            "pair": [],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}
            }
        }});
        assert_eq!(single_sequence_specials(&t), Some((vec![1], vec![2])));
    }

    #[test]
    fn reads_bert_roberta_and_sequences() {
        let t = json!({"post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel"},
            {"type": "RobertaProcessing", "cls": ["<s>", 0], "sep": ["</s>", 2]}
        ]}});
        assert_eq!(single_sequence_specials(&t), Some((vec![0], vec![2])));
        assert_eq!(single_sequence_specials(&json!({"post_processor": null})), None);
    }
}
