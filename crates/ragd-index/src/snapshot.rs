//! A collection's snapshot: every live document with its chunks and their
//! vectors, plus the sequence number of the last log record it includes.
//!
//! The HNSW graph is not saved: it is rebuilt from the vectors on load,
//! which keeps the format ours (independent of hnsw_rs's dump format), lets
//! a rebuilt graph drop all tombstones, and costs only build time at start.
//!
//! Layout: `MAGIC | seq: u64 | next_chunk_id: u64 | n: u64 | n DocRecords |
//! crc32 of everything before: u32`, written with [`write_atomic`].

use std::path::Path;

use crate::codec::{Decoder, Encoder};
use crate::fsutil::write_atomic;
use crate::record::DocRecord;
use crate::{IndexError, Result};

const MAGIC: &[u8; 8] = b"RAGDSNP1";

/// The durable content of a collection at one point of its log.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// Log records up to this sequence number are included.
    pub seq: u64,
    /// The next chunk id to hand out (ids are never reused).
    pub next_chunk_id: u64,
    pub docs: Vec<DocRecord>,
}

/// Writes `docs` as the snapshot at `path` (atomically, fsynced).
pub(crate) fn write<'a>(
    path: &Path,
    seq: u64,
    next_chunk_id: u64,
    docs: impl ExactSizeIterator<Item = DocRecordRef<'a>>,
) -> Result<()> {
    write_atomic(path, |out| {
        let mut crc = crc32fast::Hasher::new();
        let mut put = |bytes: &[u8], out: &mut dyn std::io::Write| {
            crc.update(bytes);
            out.write_all(bytes)
        };
        let mut head = Encoder::default();
        head.u64(seq);
        head.u64(next_chunk_id);
        head.len(docs.len());
        put(MAGIC, out)?;
        put(&head.into_bytes(), out)?;
        // One document at a time, so the snapshot is never in memory twice.
        for doc in docs {
            let mut e = Encoder::default();
            doc.encode(&mut e);
            put(&e.into_bytes(), out)?;
        }
        out.write_all(&crc.finalize().to_le_bytes())
    })
}

/// Reads the snapshot at `path`; `None` when there is none yet.
pub(crate) fn read(path: &Path) -> Result<Option<Snapshot>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IndexError::io(path, e)),
    };
    // The snapshot was renamed into place only once complete and synced, so
    // any damage here is real corruption, never a torn write.
    let body_len = bytes
        .len()
        .checked_sub(4)
        .filter(|&n| n >= MAGIC.len() && &bytes[..MAGIC.len()] == MAGIC)
        .ok_or_else(|| IndexError::corrupt(path, "not a ragd snapshot"))?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(IndexError::corrupt(path, "checksum mismatch"));
    }
    let decode = || {
        let mut d = Decoder::new(&body[MAGIC.len()..]);
        let seq = d.u64()?;
        let next_chunk_id = d.u64()?;
        let n = d.len(24)?;
        let mut docs = Vec::with_capacity(n);
        for _ in 0..n {
            docs.push(DocRecord::decode(&mut d)?);
        }
        d.finish()?;
        Ok(Snapshot {
            seq,
            next_chunk_id,
            docs,
        })
    };
    decode()
        .map(Some)
        .map_err(|e: crate::codec::DecodeError| IndexError::corrupt(path, e))
}

/// A document borrowed from the live state, encoded like a [`DocRecord`]
/// without copying its chunks' texts and vectors first.
pub(crate) struct DocRecordRef<'a> {
    pub id: &'a str,
    pub metadata: &'a crate::Metadata,
    pub chunks: Vec<(u64, &'a str, &'a [f32])>,
}

impl DocRecordRef<'_> {
    fn encode(&self, e: &mut Encoder) {
        // Must match `DocRecord::encode`.
        e.str(self.id);
        e.str(&crate::record::metadata_json(self.metadata));
        e.len(self.chunks.len());
        for (id, text, vector) in &self.chunks {
            e.u64(*id);
            e.str(text);
            e.f32s(vector);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ChunkRecord;

    #[test]
    fn round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.bin");
        assert_eq!(read(&path).unwrap(), None);
        let mut metadata = crate::Metadata::new();
        metadata.insert("k".into(), "v".into());
        let doc = DocRecord {
            id: "d".into(),
            metadata: metadata.clone(),
            chunks: vec![ChunkRecord {
                id: 4,
                text: "t".into(),
                vector: vec![0.5, 0.25],
            }],
        };
        let view = DocRecordRef {
            id: "d",
            metadata: &metadata,
            chunks: vec![(4, "t", &[0.5, 0.25])],
        };
        write(&path, 9, 5, vec![view].into_iter()).unwrap();
        let snap = read(&path).unwrap().unwrap();
        assert_eq!(
            snap,
            Snapshot {
                seq: 9,
                next_chunk_id: 5,
                docs: vec![doc]
            }
        );

        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(read(&path), Err(IndexError::Corrupt { .. })));
    }
}
