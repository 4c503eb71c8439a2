//! Metadata filters as SQL: the same rule as the in-memory store's
//! (`ragd_index::MetadataFilter`): every `equals` key present with exactly
//! that JSON value, and the document among `doc_ids` when given.

use ragd_index::MetadataFilter;
use tokio_postgres::types::ToSql;

/// A parameter of a statement.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// The SQL of a filter over chunks `c` (and their documents `d`, joined
/// when metadata is compared), with its parameters.
#[derive(Default)]
pub(crate) struct SqlFilter {
    /// The join to add after `FROM ragd_chunks c` ("" when none is needed).
    pub join: &'static str,
    /// ` AND ...` conditions ("" for none).
    pub conditions: String,
    pub params: Vec<Param>,
}

/// `filter` as SQL whose parameters are numbered from `first` (`$first`).
pub(crate) fn compile(filter: Option<&MetadataFilter>, first: usize) -> SqlFilter {
    let mut out = SqlFilter::default();
    let Some(filter) = filter.filter(|f| !f.is_empty()) else {
        return out;
    };
    let mut n = first;
    if !filter.equals.is_empty() {
        out.join = " JOIN ragd_documents d ON d.collection_id = c.collection_id AND d.id = c.doc_id";
    }
    for (key, value) in &filter.equals {
        // `->` gives SQL NULL for a missing key: never equal, as in memory.
        out.conditions += &format!(" AND d.metadata -> ${n}::text = ${}::jsonb", n + 1);
        out.params.push(Box::new(key.clone()));
        out.params.push(Box::new(value.clone()) as Param);
        n += 2;
    }
    if let Some(ids) = &filter.doc_ids {
        out.conditions += &format!(" AND c.doc_id = ANY(${n}::text[])");
        out.params.push(Box::new(ids.clone()));
    }
    out
}
