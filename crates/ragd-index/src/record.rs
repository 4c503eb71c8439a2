//! The records of a collection's write-ahead log and snapshot.
//!
//! A log record carries everything a write changed, vectors included, so
//! replay needs no model and gives back bit-identical vectors. Chunk ids are
//! assigned before the record is written and stored in it, so replaying a
//! record twice gives the same ids (replay is idempotent).

use crate::codec::{DecodeError, DecodeResult, Decoder, Encoder};
use crate::Metadata;

/// A chunk as stored on disk; its index in the document is its position.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ChunkRecord {
    pub id: u64,
    pub text: String,
    pub vector: Vec<f32>,
}

/// A document as stored on disk.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DocRecord {
    pub id: String,
    pub metadata: Metadata,
    pub chunks: Vec<ChunkRecord>,
}

/// One write, as logged.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum WalOp {
    /// Insert or replace these documents (all of them or none).
    Upsert(Vec<DocRecord>),
    /// Delete these documents (missing ids are ignored).
    Delete(Vec<String>),
}

/// A log record: the write and its sequence number. Records whose sequence
/// number is not above the snapshot's are already in the snapshot.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WalEntry {
    pub seq: u64,
    pub op: WalOp,
}

/// A metadata map as JSON text (a map of JSON values always serialises).
pub(crate) fn metadata_json(metadata: &Metadata) -> String {
    serde_json::to_string(metadata).unwrap_or_else(|_| "{}".into())
}

const OP_UPSERT: u8 = 1;
const OP_DELETE: u8 = 2;

impl DocRecord {
    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.id);
        // Metadata is arbitrary JSON: stored as its JSON text.
        e.str(&metadata_json(&self.metadata));
        e.len(self.chunks.len());
        for c in &self.chunks {
            e.u64(c.id);
            e.str(&c.text);
            e.f32s(&c.vector);
        }
    }

    pub fn decode(d: &mut Decoder<'_>) -> DecodeResult<Self> {
        let id = d.str()?;
        let metadata = match serde_json::from_str(&d.str()?) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                return Err(DecodeError(format!(
                    "metadata of document `{id}` is not a JSON object"
                )))
            }
        };
        // Each chunk takes at least 24 bytes (id and two lengths).
        let n = d.len(24)?;
        let mut chunks = Vec::with_capacity(n);
        for _ in 0..n {
            chunks.push(ChunkRecord {
                id: d.u64()?,
                text: d.str()?,
                vector: d.f32s()?,
            });
        }
        Ok(Self { id, metadata, chunks })
    }
}

impl WalEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.u64(self.seq);
        match &self.op {
            WalOp::Upsert(docs) => {
                e.u8(OP_UPSERT);
                e.len(docs.len());
                docs.iter().for_each(|d| d.encode(&mut e));
            }
            WalOp::Delete(ids) => {
                e.u8(OP_DELETE);
                e.len(ids.len());
                ids.iter().for_each(|id| e.str(id));
            }
        }
        e.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> DecodeResult<Self> {
        let mut d = Decoder::new(bytes);
        let seq = d.u64()?;
        let op = match d.u8()? {
            OP_UPSERT => {
                let n = d.len(24)?;
                let mut docs = Vec::with_capacity(n);
                for _ in 0..n {
                    docs.push(DocRecord::decode(&mut d)?);
                }
                WalOp::Upsert(docs)
            }
            OP_DELETE => {
                let n = d.len(8)?;
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(d.str()?);
                }
                WalOp::Delete(ids)
            }
            tag => return Err(DecodeError(format!("unknown operation tag {tag}"))),
        };
        d.finish()?;
        Ok(Self { seq, op })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let mut metadata = Metadata::new();
        metadata.insert("lang".into(), "en".into());
        metadata.insert("n".into(), serde_json::json!([1, {"a": null}]));
        let entries = [
            WalEntry {
                seq: 3,
                op: WalOp::Upsert(vec![DocRecord {
                    id: "doc-1".into(),
                    metadata,
                    chunks: vec![
                        ChunkRecord {
                            id: 10,
                            text: "hello".into(),
                            vector: vec![0.25, -1.0],
                        },
                        ChunkRecord {
                            id: 11,
                            text: String::new(),
                            vector: vec![1.0, 0.0],
                        },
                    ],
                }]),
            },
            WalEntry {
                seq: 4,
                op: WalOp::Delete(vec!["doc-1".into(), "x".into()]),
            },
        ];
        for entry in entries {
            assert_eq!(WalEntry::decode(&entry.encode()).unwrap(), entry);
        }
    }
}
