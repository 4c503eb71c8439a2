//! Search in a Postgres collection: the dense list from the collection's
//! HNSW index (pgvector, cosine), the lexical list from full-text search
//! (any of the query's terms, ranked by `ts_rank`), fused by
//! `ragd_index::fuse` exactly as the in-memory store fuses its lists.

use std::collections::HashMap;

use pgvector::Vector;
use ragd_index::{check_vector, fuse, hybrid_window, ChunkId, Hit, IndexError, Query, SearchMode};
use tokio_postgres::types::ToSql;

use crate::collection::{object, storable_json, PgCollection};
use crate::filter::{compile, Param};
use crate::{tenant, Result};

/// pgvector's largest `hnsw.ef_search`.
const MAX_EF_SEARCH: usize = 1000;

impl PgCollection {
    /// The `top_k` best chunks for `q` (dense, lexical or hybrid), best
    /// first, among the documents its filter lets through.
    pub async fn query(&self, q: &Query<'_>) -> Result<Vec<Hit>> {
        match q.vector {
            Some(v) => check_vector(self.config.dim, v)?,
            None if q.mode.needs_vector() => {
                return Err(IndexError::InvalidInput(format!(
                    "a {} search needs the query's vector",
                    q.mode.as_str()
                ))
                .into())
            }
            None => {}
        }
        q.fusion.validate()?;
        if let Some(f) = q.filter {
            storable_json(
                "`filter`",
                &serde_json::to_value(f).map_err(|e| IndexError::InvalidInput(e.to_string()))?,
            )?;
        }
        if q.top_k == 0 {
            return Ok(Vec::new());
        }
        let window = match q.mode {
            SearchMode::Hybrid => hybrid_window(q.top_k),
            _ => q.top_k,
        };
        let filter = q.filter.filter(|f| !f.is_empty());
        // As in memory: ef_search at least the candidates wanted. A filter
        // keeps the index scan going until enough rows pass it.
        let ef = self.config.hnsw.ef_search.max(window).min(MAX_EF_SEARCH);
        let iterative = if filter.is_some() {
            "; SET LOCAL hnsw.iterative_scan = strict_order"
        } else {
            ""
        };
        let settings = format!("; SET LOCAL hnsw.ef_search = {ef}{iterative}");
        let mut client = self.pool.get().await?;
        let tx = tenant::transaction_with(&mut client, &self.tenant, &settings).await?;
        let dense = match q.vector {
            Some(v) if q.mode.needs_vector() => {
                let sql = self.dense_sql(filter, window);
                let vector: Param = Box::new(Vector::from(v.to_vec()));
                ranked(&tx, &sql.0, vector, sql.1).await?
            }
            _ => Vec::new(),
        };
        let lexical = if q.mode == SearchMode::Dense {
            Vec::new()
        } else {
            let sql = self.lexical_sql(filter, window);
            // NUL separates words like a space would (Postgres refuses it).
            ranked(&tx, &sql.0, Box::new(q.text.replace('\0', " ")), sql.1).await?
        };
        let fused = fuse(&dense, &lexical, q.mode, q.fusion, q.top_k);
        let ids: Vec<i64> = fused.iter().map(|f| f.chunk as i64).collect();
        let details = tx
            .prepare_cached(
                "SELECT c.id, c.doc_id, c.chunk_index, c.text, d.metadata
                 FROM ragd_chunks c
                 JOIN ragd_documents d ON d.collection_id = c.collection_id AND d.id = c.doc_id
                 WHERE c.id = ANY($1)",
            )
            .await?;
        let rows = tx.query(&details, &[&ids]).await?;
        tx.commit().await?;
        let mut found: HashMap<i64, _> = rows.into_iter().map(|r| (r.get::<_, i64>(0), r)).collect();
        Ok(fused
            .into_iter()
            .filter_map(|f| {
                let r = found.remove(&(f.chunk as i64))?;
                Some(Hit {
                    doc_id: r.get(1),
                    chunk_id: f.chunk,
                    chunk_index: r.get::<_, i32>(2) as usize,
                    score: f.score,
                    dense: f.dense,
                    lexical: f.lexical,
                    text: r.get(3),
                    metadata: object(r.get(4)),
                })
            })
            .collect())
    }

    /// The dense candidates: the collection's own HNSW index, which the
    /// planner picks because the statement repeats its expression and its
    /// `collection_id = <id>` predicate literally.
    fn dense_sql(&self, filter: Option<&ragd_index::MetadataFilter>, n: usize) -> (String, Vec<Param>) {
        let f = compile(filter, 2);
        let key = format!("c.embedding::vector({})", self.config.dim);
        let sql = format!(
            "SELECT c.id, (1 - ({key} <=> $1))::real FROM ragd_chunks c{}
             WHERE c.collection_id = {}{} ORDER BY {key} <=> $1 LIMIT {n}",
            f.join, self.id, f.conditions
        );
        (sql, f.params)
    }

    /// The lexical candidates: chunks sharing any term with the query (its
    /// terms OR-ed, as BM25 matches), best `ts_rank` first.
    fn lexical_sql(&self, filter: Option<&ragd_index::MetadataFilter>, n: usize) -> (String, Vec<Param>) {
        let f = compile(filter, 2);
        let sql = format!(
            "SELECT c.id, ts_rank(c.tsv, w.q) AS s FROM ragd_chunks c{}
             CROSS JOIN (SELECT replace(plainto_tsquery('english', $1)::text, ' & ', ' | ')::tsquery AS q) w
             WHERE c.collection_id = {} AND c.tsv @@ w.q{} ORDER BY s DESC, c.id LIMIT {n}",
            f.join, self.id, f.conditions
        );
        (sql, f.params)
    }
}

/// Runs a candidate query whose first parameter is `first`: `(chunk,
/// score)` best first.
async fn ranked(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    first: Param,
    rest: Vec<Param>,
) -> Result<Vec<(ChunkId, f32)>> {
    let params: Vec<&(dyn ToSql + Sync)> = std::iter::once(&first)
        .chain(&rest)
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx
        .query(&statement, &params)
        .await?
        .into_iter()
        .map(|r| (r.get::<_, i64>(0) as ChunkId, r.get::<_, f32>(1)))
        .collect())
}
