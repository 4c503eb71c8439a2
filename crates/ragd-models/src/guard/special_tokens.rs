//! The special tokens a Hugging Face tokenizer puts around a single
//! sequence or a pair, read from `tokenizer.json`'s `post_processor`.

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

/// Special tokens of a text pair: `prefix A middle B suffix`, and the
/// token type of `B` (the types of `A`'s part are 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSpecials {
    pub prefix: Vec<u32>,
    pub middle: Vec<u32>,
    pub suffix: Vec<u32>,
    pub second_type: u32,
}

/// The pair layout of the post-processor, or `None` when it is absent or
/// of a kind not understood here.
pub fn pair_specials(tokenizer_json: &Value) -> Option<PairSpecials> {
    pair_from_processor(tokenizer_json.get("post_processor")?)
}

fn pair_from_processor(p: &Value) -> Option<PairSpecials> {
    let cls_sep = || Some((pair_id(p.get("cls")?)?, pair_id(p.get("sep")?)?));
    match p.get("type")?.as_str()? {
        "TemplateProcessing" => pair_from_template(p),
        "BertProcessing" => {
            let (cls, sep) = cls_sep()?;
            Some(PairSpecials {
                prefix: vec![cls],
                middle: vec![sep],
                suffix: vec![sep],
                second_type: 1,
            })
        }
        "RobertaProcessing" => {
            let (cls, sep) = cls_sep()?;
            Some(PairSpecials {
                prefix: vec![cls],
                middle: vec![sep, sep],
                suffix: vec![sep],
                second_type: 0,
            })
        }
        "Sequence" => p
            .get("processors")?
            .as_array()?
            .iter()
            .find_map(pair_from_processor),
        _ => None,
    }
}

/// `pair: [{SpecialToken: {id: "[CLS]"}}, {Sequence: {id: "A"}}, ...,
/// {Sequence: {id: "B", type_id: 1}}, ...]`.
fn pair_from_template(p: &Value) -> Option<PairSpecials> {
    let mut parts: [Vec<u32>; 3] = Default::default();
    let (mut sequences, mut second_type) = (0, 0);
    for piece in p.get("pair")?.as_array()? {
        if let Some(seq) = piece.get("Sequence") {
            sequences += 1;
            if sequences == 2 {
                second_type = u32::try_from(seq.get("type_id")?.as_u64()?).ok()?;
            }
            continue;
        }
        let name = piece.get("SpecialToken")?.get("id")?.as_str()?;
        let ids = p.get("special_tokens")?.get(name)?.get("ids")?.as_array()?;
        for id in ids {
            parts.get_mut(sequences)?.push(u32::try_from(id.as_u64()?).ok()?);
        }
    }
    let [prefix, middle, suffix] = parts;
    (sequences == 2).then_some(PairSpecials {
        prefix,
        middle,
        suffix,
        second_type,
    })
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
        assert_eq!(pair_specials(&t), None, "no pair template");
    }

    #[test]
    fn reads_pair_layouts() {
        let t = json!({"post_processor": {
            "type": "TemplateProcessing",
            "single": [],
            "pair": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 1}}
            ],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [101], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [102], "tokens": ["[SEP]"]}
            }
        }});
        let bert = PairSpecials {
            prefix: vec![101],
            middle: vec![102],
            suffix: vec![102],
            second_type: 1,
        };
        assert_eq!(pair_specials(&t), Some(bert.clone()));
        let t = json!({"post_processor": {"type": "BertProcessing", "cls": ["[CLS]", 101], "sep": ["[SEP]", 102]}});
        assert_eq!(pair_specials(&t), Some(bert));
        let t = json!({"post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel"},
            {"type": "RobertaProcessing", "cls": ["<s>", 0], "sep": ["</s>", 2]}
        ]}});
        assert_eq!(
            pair_specials(&t),
            Some(PairSpecials {
                prefix: vec![0],
                middle: vec![2, 2],
                suffix: vec![2],
                second_type: 0
            })
        );
        assert_eq!(pair_specials(&json!({"post_processor": null})), None);
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
