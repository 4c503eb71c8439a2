//! One tenant's collection in Postgres: writes (all-or-nothing upserts and
//! deletes, each one transaction that also bumps the collection's version)
//! and reads of its documents. Searches are in [`crate::search`].

use std::collections::HashSet;

use deadpool_postgres::{Pool, Transaction};
use pgvector::Vector;
use ragd_index::{
    check_ids, check_vector, Cancel, CollectionConfig, CollectionStats, CollectionVersion, DocumentInfo,
    DocumentSummary, EmbeddedDocument, IndexError, Metadata, UpsertOutcome,
};
use serde_json::Value;

use crate::store::sizes;
use crate::{tenant, Result};

/// A handle on one tenant's collection. Cheap to clone; every call is its
/// own transaction of that tenant, so a handle on a collection deleted
/// meanwhile answers `NotFound`.
#[derive(Clone)]
pub struct PgCollection {
    pub(crate) pool: Pool,
    pub(crate) tenant: String,
    pub(crate) name: String,
    pub(crate) id: i64,
    pub(crate) config: CollectionConfig,
    incarnation: i64,
    max_documents: usize,
}

impl std::fmt::Debug for PgCollection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCollection")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PgCollection {
    pub(crate) fn new(
        pool: Pool,
        tenant: &str,
        name: &str,
        id: i64,
        config: CollectionConfig,
        incarnation: i64,
        max_documents: usize,
    ) -> Self {
        Self {
            pool,
            tenant: tenant.to_string(),
            name: name.to_string(),
            id,
            config,
            incarnation,
            max_documents,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &CollectionConfig {
        &self.config
    }

    fn not_found(&self) -> IndexError {
        IndexError::NotFound(self.name.clone())
    }

    /// Locks the collection's row for this transaction (writes to one
    /// collection go one at a time, on every replica) and bumps its
    /// version; `NotFound` once it is deleted.
    async fn bump(&self, tx: &Transaction<'_>) -> Result<()> {
        let bumped = tx
            .execute(
                "UPDATE ragd_collections SET seq = seq + 1 WHERE id = $1",
                &[&self.id],
            )
            .await?;
        if bumped == 0 {
            return Err(self.not_found().into());
        }
        Ok(())
    }

    /// Fails with `NotFound` once the collection is deleted.
    async fn check_exists(&self, tx: &Transaction<'_>) -> Result<()> {
        let found = tx
            .query_opt("SELECT 1 FROM ragd_collections WHERE id = $1", &[&self.id])
            .await?;
        found.map(|_| ()).ok_or_else(|| self.not_found().into())
    }

    /// The version of the collection's content: its incarnation (random at
    /// creation) and the count of its writes, the same on every replica.
    pub async fn version(&self) -> Result<CollectionVersion> {
        let mut client = self.pool.get().await?;
        let tx = tenant::transaction(&mut client, &self.tenant).await?;
        let select = tx
            .prepare_cached("SELECT seq FROM ragd_collections WHERE id = $1")
            .await?;
        let seq: i64 = tx
            .query_opt(&select, &[&self.id])
            .await?
            .ok_or_else(|| self.not_found())?
            .get(0);
        tx.commit().await?;
        Ok(CollectionVersion {
            incarnation: self.incarnation as u64,
            seq: seq as u64,
        })
    }

    /// Inserts or replaces documents, all of them or none, in one
    /// transaction; durable (committed) when it returns `Ok`. Gives up
    /// with `Cancelled`, having written nothing, if `cancel` is set before
    /// the commit.
    pub async fn upsert(&self, docs: Vec<EmbeddedDocument>, cancel: &Cancel) -> Result<UpsertOutcome> {
        check_ids(docs.iter().map(|d| d.id.as_str()))?;
        for doc in &docs {
            cancel.check()?;
            storable("a document id", &doc.id)?;
            storable_json("a document's metadata", &Value::Object(doc.metadata.clone()))?;
            for chunk in &doc.chunks {
                storable("a document's text", &chunk.text)?;
                check_vector(self.config.dim, &chunk.vector)?;
            }
        }
        if docs.is_empty() {
            return Ok(UpsertOutcome::default());
        }
        let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        let mut client = self.pool.get().await?;
        let tx = tenant::transaction(&mut client, &self.tenant).await?;
        self.bump(&tx).await?;
        cancel.check()?;
        let existing: HashSet<String> = tx
            .query(
                "SELECT id FROM ragd_documents WHERE collection_id = $1 AND id = ANY($2)",
                &[&self.id, &ids],
            )
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let held: i64 = tx
            .query_one(
                "SELECT count(*) FROM ragd_documents WHERE collection_id = $1",
                &[&self.id],
            )
            .await?
            .get(0);
        if held as usize + docs.len() - existing.len() > self.max_documents {
            return Err(IndexError::LimitExceeded {
                what: "documents per collection",
                limit: self.max_documents,
            }
            .into());
        }
        // Replaced documents go with their chunks (the foreign key cascades).
        tx.execute(
            "DELETE FROM ragd_documents WHERE collection_id = $1 AND id = ANY($2)",
            &[&self.id, &ids],
        )
        .await?;
        let metadata: Vec<Value> = docs.iter().map(|d| Value::Object(d.metadata.clone())).collect();
        tx.execute(
            "INSERT INTO ragd_documents (collection_id, tenant, id, metadata)
             SELECT $1, $2, * FROM unnest($3::text[], $4::jsonb[])",
            &[&self.id, &self.tenant, &ids, &metadata],
        )
        .await?;
        let mut outcome = UpsertOutcome {
            documents: docs.len(),
            replaced: existing.len(),
            ..UpsertOutcome::default()
        };
        let (mut doc_ids, mut indexes, mut texts, mut vectors) = (vec![], vec![], vec![], vec![]);
        for doc in docs {
            for (i, chunk) in doc.chunks.into_iter().enumerate() {
                doc_ids.push(doc.id.clone());
                indexes.push(i as i32);
                texts.push(chunk.text);
                vectors.push(Vector::from(chunk.vector));
            }
        }
        outcome.chunks = texts.len();
        tx.execute(
            "INSERT INTO ragd_chunks (collection_id, tenant, doc_id, chunk_index, text, embedding)
             SELECT $1, $2, * FROM unnest($3::text[], $4::int4[], $5::text[], $6::vector[])",
            &[&self.id, &self.tenant, &doc_ids, &indexes, &texts, &vectors],
        )
        .await?;
        cancel.check()?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Deletes documents by id; returns how many existed. Durable when it
    /// returns `Ok`.
    pub async fn delete(&self, doc_ids: &[String]) -> Result<usize> {
        // An id Postgres cannot store is not there.
        let doc_ids: Vec<&str> = (doc_ids.iter().map(String::as_str))
            .filter(|id| !id.contains('\0'))
            .collect();
        let mut client = self.pool.get().await?;
        let tx = tenant::transaction(&mut client, &self.tenant).await?;
        self.bump(&tx).await?;
        let n = tx
            .execute(
                "DELETE FROM ragd_documents WHERE collection_id = $1 AND id = ANY($2)",
                &[&self.id, &doc_ids],
            )
            .await?;
        tx.commit().await?;
        Ok(n as usize)
    }

    /// A stored document with its chunk texts in order; `None` if absent.
    pub async fn document(&self, id: &str) -> Result<Option<DocumentInfo>> {
        let mut client = self.pool.get().await?;
        let tx = tenant::transaction(&mut client, &self.tenant).await?;
        self.check_exists(&tx).await?;
        if id.contains('\0') {
            return Ok(None); // never stored
        }
        let Some(doc) = tx
            .query_opt(
                "SELECT metadata FROM ragd_documents WHERE collection_id = $1 AND id = $2",
                &[&self.id, &id],
            )
            .await?
        else {
            return Ok(None);
        };
        let chunks = tx
            .query(
                "SELECT text FROM ragd_chunks WHERE collection_id = $1 AND doc_id = $2 ORDER BY chunk_index",
                &[&self.id, &id],
            )
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit().await?;
        Ok(Some(DocumentInfo {
            id: id.to_string(),
            metadata: object(doc.get(0)),
            chunks,
        }))
    }

    /// Up to `limit` documents after the id `after`, in id order (bytewise,
    /// as the in-memory store orders them: the ids are `COLLATE "C"`).
    pub async fn list_documents(&self, after: Option<&str>, limit: usize) -> Result<Vec<DocumentSummary>> {
        storable("`after`", after.unwrap_or_default())?;
        let mut client = self.pool.get().await?;
        let tx = tenant::transaction(&mut client, &self.tenant).await?;
        self.check_exists(&tx).await?;
        let rows = tx
            .query(
                "SELECT d.id, d.metadata,
                        (SELECT count(*) FROM ragd_chunks c WHERE c.collection_id = d.collection_id AND c.doc_id = d.id)
                 FROM ragd_documents d
                 WHERE d.collection_id = $1 AND ($2::text IS NULL OR d.id > $2)
                 ORDER BY d.id LIMIT $3",
                &[&self.id, &after, &(limit as i64)],
            )
            .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| DocumentSummary {
                id: r.get(0),
                metadata: object(r.get(1)),
                chunks: r.get::<_, i64>(2) as usize,
            })
            .collect())
    }

    /// Its documents and chunks.
    pub async fn stats(&self) -> Result<CollectionStats> {
        let mut client = self.pool.get().await?;
        let tx = tenant::transaction(&mut client, &self.tenant).await?;
        self.check_exists(&tx).await?;
        let row = tx
            .query_one(
                "SELECT (SELECT count(*) FROM ragd_documents WHERE collection_id = $1),
                        (SELECT count(*) FROM ragd_chunks WHERE collection_id = $1)",
                &[&self.id],
            )
            .await?;
        tx.commit().await?;
        Ok(sizes(row.get(0), row.get(1)))
    }
}

/// Postgres `text` and `jsonb` cannot hold U+0000 (the in-memory store
/// can): a value with one is refused up front as the caller's error (a
/// 400), never sent to fail in the database (a 500).
pub(crate) fn storable(what: &str, text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(IndexError::InvalidInput(format!(
            "{what} contains a NUL character, which Postgres cannot store"
        ))
        .into());
    }
    Ok(())
}

/// [`storable`] for JSON (its strings and keys).
pub(crate) fn storable_json(what: &str, value: &Value) -> Result<()> {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if has_nul(value) {
        return storable(what, "\0");
    }
    Ok(())
}

/// A stored JSON object as metadata (anything else, which ragd never
/// writes, as empty).
pub(crate) fn object(v: Value) -> Metadata {
    match v {
        Value::Object(m) => m,
        _ => Metadata::new(),
    }
}
