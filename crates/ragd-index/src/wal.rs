//! A collection's write-ahead log: length-prefixed, CRC32-checksummed
//! records, each fsynced before the write that produced it returns.
//!
//! Frame: `len: u32 LE | crc: u32 LE | payload (len bytes)`, the CRC taken
//! over the length bytes and the payload, so a damaged length is caught too.
//! Every payload starts with the record's sequence number (`u64 LE`), one
//! more than the record before it.
//!
//! Recovery reads records until the end of the file. A crash can only tear
//! the record being appended (every earlier one was fsynced), so a bad frame
//! at the end is a torn tail: it is dropped and the file is truncated to
//! the last good record, never replayed half. A bad frame is instead damage
//! in the middle of history, an error (dropping it would silently lose
//! acknowledged writes), when what follows it proves later records exist:
//!
//! - its length is intact and a valid frame starts right where it ends (the
//!   record was damaged in place; a torn record always reaches past the end
//!   of the file, so this never mistakes one); or
//! - a chain of valid frames, their sequence numbers consecutive and above
//!   every earlier record's, runs from somewhere after it exactly to the end
//!   of the file (a damaged length).
//!
//! A valid-looking frame alone proves nothing: the torn record's payload
//! holds client data (document ids, texts), which may contain frame bytes.
//! (A client can still craft a chain ending exactly where a crash happens
//! to tear the file; that only makes its own collection fail to open, and
//! the store quarantines it without touching the others.)

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::fsutil::file_options;
use crate::{IndexError, Result};

const HEADER: usize = 8;
/// The smallest payload a real record has (sequence number + operation tag);
/// shorter frames are garbage.
const MIN_PAYLOAD: usize = 9;
/// Records above this size are refused (and a length above it is garbage).
pub(crate) const MAX_RECORD: usize = 1 << 30;

/// A log, appended to at its end. It holds no open file: each append (and
/// reset) opens the file, writes, fsyncs and closes it, so an idle
/// collection costs no file descriptor (the fsync dominates the cost of a
/// write anyway).
pub(crate) struct Wal {
    path: PathBuf,
    len: u64,
    /// Set when a failed append could not be rolled back: the file may end
    /// in a partial record, so appending more would bury it in the middle.
    broken: bool,
}

/// What [`Wal::open`] found.
pub(crate) struct Recovered {
    pub wal: Wal,
    /// Payloads of the valid records, oldest first.
    pub payloads: Vec<Vec<u8>>,
    /// Bytes of a torn last record that were cut off (0 after a clean stop).
    pub dropped_bytes: u64,
}

fn frame_crc(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len_bytes);
    h.update(payload);
    h.finalize()
}

/// The frame starting at `pos`, if it is complete and its checksum holds.
fn valid_frame(buf: &[u8], pos: usize) -> Option<&[u8]> {
    let header = buf.get(pos..pos.checked_add(HEADER)?)?;
    let len_bytes = [header[0], header[1], header[2], header[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(MIN_PAYLOAD..=MAX_RECORD).contains(&len) {
        return None;
    }
    let payload = buf.get(pos + HEADER..pos + HEADER + len)?;
    (frame_crc(len_bytes, payload) == crc).then_some(payload)
}

/// The sequence number a payload starts with.
fn seq_of(payload: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&payload[..8]);
    u64::from_le_bytes(b)
}

/// Splits a log into its valid records; `Err(offset)` when the bad frame
/// at `offset` is damage in the middle (see the module documentation).
/// `after_seq`: the sequence number the records continue from (the
/// snapshot's).
fn parse(buf: &[u8], after_seq: u64) -> std::result::Result<(Vec<Vec<u8>>, usize), usize> {
    let mut payloads = Vec::new();
    let mut last_seq = after_seq;
    let mut pos = 0;
    while pos < buf.len() {
        match valid_frame(buf, pos) {
            Some(payload) => {
                last_seq = last_seq.max(seq_of(payload));
                payloads.push(payload.to_vec());
                pos += HEADER + payload.len();
            }
            None => {
                if damaged_in_place(buf, pos) || chain_after(buf, pos, last_seq) {
                    return Err(pos);
                }
                break;
            }
        }
    }
    Ok((payloads, pos))
}

/// Whether the bad frame at `pos` has a plausible length that ends before
/// the end of the file, right where a valid frame starts.
fn damaged_in_place(buf: &[u8], pos: usize) -> bool {
    let Some(header) = buf.get(pos..pos + HEADER) else {
        return false;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let next = pos + HEADER + len;
    (MIN_PAYLOAD..=MAX_RECORD).contains(&len) && next < buf.len() && valid_frame(buf, next).is_some()
}

/// Whether, somewhere after `pos`, valid frames with consecutive sequence
/// numbers above `last_seq` follow each other exactly to the end of `buf`.
/// Each frame's chain is walked once.
fn chain_after(buf: &[u8], pos: usize, last_seq: u64) -> bool {
    // Frames whose chain is known to break before the end.
    let mut failed = std::collections::HashSet::new();
    for start in pos + 1..buf.len() {
        let Some(first) = valid_frame(buf, start) else {
            continue;
        };
        if seq_of(first) <= last_seq {
            continue;
        }
        // Walk the chain until the end, a break or a known verdict.
        let mut walked = vec![start];
        let mut p = start;
        let verdict = loop {
            let payload = valid_frame(buf, p).expect("walked frames are valid");
            let next = p + HEADER + payload.len();
            if next == buf.len() {
                break true;
            }
            if failed.contains(&next) {
                break false;
            }
            match valid_frame(buf, next) {
                Some(n) if seq_of(payload).checked_add(1) == Some(seq_of(n)) => {
                    walked.push(next);
                    p = next;
                }
                _ => break false,
            }
        };
        if verdict {
            return true;
        }
        // Every frame walked from here fails too (its chain is this one).
        failed.extend(walked);
    }
    false
}

impl Wal {
    /// Opens (creating if missing) the log at `path` and recovers its
    /// records, truncating a torn last record. `after_seq` is the sequence
    /// number of the snapshot the records follow (0 without one).
    pub fn open(path: &Path, after_seq: u64) -> Result<Recovered> {
        let io = |e| IndexError::io(path, e);
        let mut file = file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut buf).map_err(io)?;
        let (payloads, good) = parse(&buf, after_seq).map_err(|offset| {
            IndexError::corrupt(
                path,
                format!("damaged record at byte {offset} is followed by valid records"),
            )
        })?;
        let dropped_bytes = (buf.len() - good) as u64;
        if dropped_bytes > 0 {
            file.set_len(good as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(Recovered {
            wal: Wal {
                path: path.to_path_buf(),
                len: good as u64,
                broken: false,
            },
            payloads,
            dropped_bytes,
        })
    }

    /// Size of the log in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and fsyncs it: when this returns `Ok`, the record
    /// survives a crash. On failure the file is cut back to its old length.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        if self.broken {
            return Err(IndexError::io(
                &self.path,
                std::io::Error::other("an earlier failed write could not be rolled back"),
            ));
        }
        if payload.len() < MIN_PAYLOAD || payload.len() > MAX_RECORD {
            return Err(IndexError::InvalidInput(format!(
                "a write of {} bytes exceeds the {MAX_RECORD}-byte record limit",
                payload.len()
            )));
        }
        let len_bytes = (payload.len() as u32).to_le_bytes();
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&len_bytes);
        frame.extend_from_slice(&frame_crc(len_bytes, payload).to_le_bytes());
        frame.extend_from_slice(payload);
        // The file must exist (a missing log is not silently restarted).
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| IndexError::io(&self.path, e))?;
        let written = file.write_all(&frame).and_then(|()| file.sync_data());
        match written {
            Ok(()) => {
                self.len += frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                let rolled_back = file.set_len(self.len).and_then(|()| file.sync_all());
                if rolled_back.is_err() {
                    self.broken = true;
                }
                Err(IndexError::io(&self.path, e))
            }
        }
    }

    /// Empties the log (after a checkpoint made its records redundant).
    pub fn reset(&mut self) -> Result<()> {
        // Failing to open changes nothing; failing to cut may leave a part.
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| IndexError::io(&self.path, e))?;
        let done = file.set_len(0).and_then(|()| file.sync_all());
        match done {
            Ok(()) => {
                self.len = 0;
                self.broken = false;
                Ok(())
            }
            Err(e) => {
                // The snapshot already holds every record, so replaying the
                // old ones is harmless; only appending is unsafe now.
                self.broken = true;
                Err(IndexError::io(&self.path, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Record `i`'s payload: sequence number `i + 1`, then filler.
    fn payload(i: u8) -> Vec<u8> {
        let mut p = (u64::from(i) + 1).to_le_bytes().to_vec();
        p.resize(MIN_PAYLOAD + i as usize, i);
        p
    }

    /// A complete frame of `payload`.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let len_bytes = (payload.len() as u32).to_le_bytes();
        let mut f = len_bytes.to_vec();
        f.extend_from_slice(&frame_crc(len_bytes, payload).to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn write_log(path: &Path, n: u8) -> Vec<u64> {
        let mut wal = Wal::open(path, 0).unwrap().wal;
        let mut ends = vec![];
        for i in 0..n {
            wal.append(&payload(i)).unwrap();
            ends.push(wal.len());
        }
        ends
    }

    #[test]
    fn recovers_every_record_after_a_clean_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        write_log(&path, 5);
        let rec = Wal::open(&path, 0).unwrap();
        assert_eq!(rec.payloads, (0..5).map(payload).collect::<Vec<_>>());
        assert_eq!(rec.dropped_bytes, 0);
    }

    #[test]
    fn every_cut_of_the_last_record_drops_only_that_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let ends = write_log(&path, 4);
        let full = std::fs::read(&path).unwrap();
        for cut in ends[2] + 1..ends[3] {
            std::fs::write(&path, &full[..cut as usize]).unwrap();
            let rec = Wal::open(&path, 0).unwrap();
            assert_eq!(rec.payloads.len(), 3, "cut at {cut}");
            assert_eq!(rec.dropped_bytes, cut - ends[2]);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[2]);
        }
    }

    #[test]
    fn garbage_after_the_last_record_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let ends = write_log(&path, 3);
        let mut bytes = std::fs::read(&path).unwrap();
        for tail in [vec![0u8; 4096], vec![0xff; 3], (0..=255).collect::<Vec<u8>>()] {
            bytes.truncate(ends[2] as usize);
            bytes.extend_from_slice(&tail);
            std::fs::write(&path, &bytes).unwrap();
            let mut rec = Wal::open(&path, 0).unwrap();
            assert_eq!(rec.payloads.len(), 3);
            // The log keeps working after the cut.
            rec.wal.append(&payload(3)).unwrap();
            assert_eq!(Wal::open(&path, 0).unwrap().payloads.len(), 4);
        }
    }

    #[test]
    fn damage_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let ends = write_log(&path, 4);
        let log = std::fs::read(&path).unwrap();
        let mut bytes = log.clone();
        bytes[ends[0] as usize + HEADER + 1] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(Wal::open(&path, 0), Err(IndexError::Corrupt { .. })));
        // Still an error when, besides, the last record was torn: its
        // successor starts right where the damaged record ends.
        std::fs::write(&path, &bytes[..ends[3] as usize - 3]).unwrap();
        assert!(matches!(Wal::open(&path, 0), Err(IndexError::Corrupt { .. })));
        // A damaged length: the records after it still chain to the end.
        let mut bytes = log.clone();
        bytes[ends[0] as usize] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(Wal::open(&path, 0), Err(IndexError::Corrupt { .. })));
    }

    /// Regression (security review, issue 10): a client made a document id
    /// that is itself a valid frame; a crash then tore the record holding
    /// it, and recovery took the frame inside the torn record for proof of
    /// damage in the middle ("damaged record at byte 0 is followed by valid
    /// records"), so the whole store refused to open.
    #[test]
    fn a_frame_inside_a_torn_record_is_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        for records in [0u8, 2] {
            let _ = std::fs::remove_file(&path);
            let good = write_log(&path, records).last().copied().unwrap_or(0);
            let next = u64::from(records) + 1;
            // The torn record: its own sequence number, then client bytes
            // holding a frame (numbered like a real successor, even).
            let mut torn = next.to_le_bytes().to_vec();
            torn.extend_from_slice(b"\x01client id: ");
            let hidden_at = good as usize + HEADER + torn.len();
            let hidden = frame(&[(next + 1).to_le_bytes().as_slice(), b"\x02 forged"].concat());
            torn.extend_from_slice(&hidden);
            torn.extend_from_slice(&[b'x'; 40]);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend_from_slice(&frame(&torn));
            for cut in good as usize + 1..bytes.len() {
                std::fs::write(&path, &bytes[..cut]).unwrap();
                if cut == hidden_at + hidden.len() {
                    // The one cut where the forged frame ends the file, so a
                    // chain runs to the end: taken for damage (a crash must
                    // tear exactly there; see the module documentation).
                    assert!(Wal::open(&path, 0).is_err());
                    continue;
                }
                let rec = Wal::open(&path, 0).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
                assert_eq!(rec.payloads.len(), usize::from(records), "cut at {cut}");
                assert_eq!(rec.dropped_bytes, cut as u64 - good);
            }
        }
        // A forged frame numbered at or below the records before it is
        // never their successor, wherever the cut.
        let good = std::fs::metadata(&path).unwrap().len();
        let mut torn = 3u64.to_le_bytes().to_vec();
        torn.extend_from_slice(&frame(&[2u64.to_le_bytes().as_slice(), b"\x02 forged"].concat()));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&frame(&torn));
        for cut in good as usize + 1..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert_eq!(Wal::open(&path, 0).unwrap().payloads.len(), 2, "cut at {cut}");
        }
        // Nor is one at or below the snapshot the log follows.
        let hidden = frame(&[5u64.to_le_bytes().as_slice(), b"\x02 forged"].concat());
        let mut torn = 6u64.to_le_bytes().to_vec();
        torn.extend_from_slice(&hidden);
        torn.extend_from_slice(b"more");
        let cut = HEADER + 8 + hidden.len();
        std::fs::write(&path, &frame(&torn)[..cut]).unwrap();
        assert!(Wal::open(&path, 0).is_err());
        std::fs::write(&path, &frame(&torn)[..cut]).unwrap();
        assert_eq!(Wal::open(&path, 5).unwrap().dropped_bytes, cut as u64);
    }

    #[test]
    fn reset_empties_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        write_log(&path, 2);
        let mut wal = Wal::open(&path, 0).unwrap().wal;
        wal.reset().unwrap();
        wal.append(&payload(7)).unwrap();
        assert_eq!(Wal::open(&path, 0).unwrap().payloads, vec![payload(7)]);
    }
}
