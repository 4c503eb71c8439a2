//! A collection's write-ahead log: length-prefixed, CRC32-checksummed
//! records, each fsynced before the write that produced it returns.
//!
//! Frame: `len: u32 LE | crc: u32 LE | payload (len bytes)`, the CRC taken
//! over the length bytes and the payload, so a damaged length is caught too.
//!
//! Recovery reads records until the end of the file. A crash can only tear
//! the record being appended (every earlier one was fsynced), so a bad frame
//! with nothing valid after it is a torn tail: it is dropped and the file is
//! truncated to the last good record, never replayed half. A bad frame
//! followed by a valid one is damage in the middle of history and an error:
//! dropping it would silently lose acknowledged writes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{IndexError, Result};

const HEADER: usize = 8;
/// The smallest payload a real record has (sequence number + operation tag);
/// shorter frames are garbage.
const MIN_PAYLOAD: usize = 9;
/// Records above this size are refused (and a length above it is garbage).
pub(crate) const MAX_RECORD: usize = 1 << 30;

/// An open log, positioned at its end.
pub(crate) struct Wal {
    path: PathBuf,
    file: File,
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

/// Splits a log into its valid records; `Err(offset)` when a bad frame at
/// `offset` is followed by a valid one (damage in the middle).
fn parse(buf: &[u8]) -> std::result::Result<(Vec<Vec<u8>>, usize), usize> {
    let mut payloads = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match valid_frame(buf, pos) {
            Some(payload) => {
                payloads.push(payload.to_vec());
                pos += HEADER + payload.len();
            }
            None => {
                // Torn tail, unless a valid frame starts anywhere after it.
                // (A random 8-byte header passes the length and CRC checks
                // with odds far below 2^-32, so this cannot misfire.)
                if (pos + 1..buf.len()).any(|p| valid_frame(buf, p).is_some()) {
                    return Err(pos);
                }
                break;
            }
        }
    }
    Ok((payloads, pos))
}

impl Wal {
    /// Opens (creating if missing) the log at `path` and recovers its
    /// records, truncating a torn last record.
    pub fn open(path: &Path) -> Result<Recovered> {
        let io = |e| IndexError::io(path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut buf).map_err(io)?;
        let (payloads, good) = parse(&buf).map_err(|offset| {
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
                file,
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
        let written = self.file.write_all(&frame).and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                let rolled_back = self.file.set_len(self.len).and_then(|()| self.file.sync_all());
                if rolled_back.is_err() {
                    self.broken = true;
                }
                Err(IndexError::io(&self.path, e))
            }
        }
    }

    /// Empties the log (after a checkpoint made its records redundant).
    pub fn reset(&mut self) -> Result<()> {
        let done = self.file.set_len(0).and_then(|()| self.file.sync_all());
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

    fn payload(i: u8) -> Vec<u8> {
        vec![i; MIN_PAYLOAD + i as usize]
    }

    fn write_log(path: &Path, n: u8) -> Vec<u64> {
        let mut wal = Wal::open(path).unwrap().wal;
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
        let rec = Wal::open(&path).unwrap();
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
            let rec = Wal::open(&path).unwrap();
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
            let mut rec = Wal::open(&path).unwrap();
            assert_eq!(rec.payloads.len(), 3);
            // The log keeps working after the cut.
            rec.wal.append(&payload(9)).unwrap();
            assert_eq!(Wal::open(&path).unwrap().payloads.len(), 4);
        }
    }

    #[test]
    fn damage_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let ends = write_log(&path, 3);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[ends[0] as usize + HEADER + 1] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(Wal::open(&path), Err(IndexError::Corrupt { .. })));
    }

    #[test]
    fn reset_empties_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        write_log(&path, 2);
        let mut wal = Wal::open(&path).unwrap().wal;
        wal.reset().unwrap();
        wal.append(&payload(7)).unwrap();
        assert_eq!(Wal::open(&path).unwrap().payloads, vec![payload(7)]);
    }
}
