//! Metadata filters for search.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::Metadata;

/// Which documents a search may return: all `equals` entries must match the
/// document's metadata exactly (JSON equality; a missing key never matches),
/// and, when `doc_ids` is given, the document must be one of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataFilter {
    #[serde(default)]
    pub equals: Metadata,
    #[serde(default)]
    pub doc_ids: Option<Vec<String>>,
}

impl MetadataFilter {
    /// A filter on one metadata key.
    pub fn eq(key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        let mut equals = Metadata::new();
        equals.insert(key.into(), value.into());
        Self {
            equals,
            doc_ids: None,
        }
    }

    /// A filter on document ids.
    pub fn doc_ids(ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            equals: Metadata::new(),
            doc_ids: Some(ids.into_iter().map(Into::into).collect()),
        }
    }

    /// True when it lets every document through.
    pub fn is_empty(&self) -> bool {
        self.equals.is_empty() && self.doc_ids.is_none()
    }

    pub(crate) fn compile(&self) -> CompiledFilter<'_> {
        CompiledFilter {
            equals: &self.equals,
            doc_ids: self
                .doc_ids
                .as_ref()
                .map(|ids| ids.iter().map(String::as_str).collect()),
        }
    }
}

/// A filter ready to be evaluated many times per search.
pub(crate) struct CompiledFilter<'a> {
    equals: &'a Metadata,
    pub doc_ids: Option<HashSet<&'a str>>,
}

impl CompiledFilter<'_> {
    pub fn matches(&self, doc_id: &str, metadata: &Metadata) -> bool {
        self.doc_ids.as_ref().is_none_or(|ids| ids.contains(doc_id))
            && self.equals.iter().all(|(k, v)| metadata.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn all_conditions_must_hold() {
        let meta: Metadata = json!({"lang": "en", "year": 2024}).as_object().unwrap().clone();
        assert!(MetadataFilter::default().compile().matches("a", &meta));
        assert!(MetadataFilter::eq("lang", "en").compile().matches("a", &meta));
        assert!(!MetadataFilter::eq("lang", "fr").compile().matches("a", &meta));
        assert!(!MetadataFilter::eq("missing", json!(null))
            .compile()
            .matches("a", &meta));
        let mut f = MetadataFilter::eq("year", 2024);
        f.doc_ids = Some(vec!["b".into()]);
        assert!(!f.compile().matches("a", &meta));
        assert!(f.compile().matches("b", &meta));
        let parsed: MetadataFilter = serde_json::from_value(json!({"equals": {"lang": "en"}})).unwrap();
        assert_eq!(parsed, MetadataFilter::eq("lang", "en"));
    }
}
