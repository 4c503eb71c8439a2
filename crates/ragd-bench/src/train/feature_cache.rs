//! Encoder features cached on disk by text: computing them is the slow
//! part of training (NanoGuard: ~135 ms a window on 2 cores), and a
//! second run with other head settings needs none of it again.
//!
//! One file per encoder and weights (`<kind>-<sha256 prefix>.f32`):
//! records of a 32-byte SHA-256 of the text and `dim` little-endian f32s,
//! appended as they are computed. A torn last record is ignored.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

pub struct FeatureCache {
    dim: usize,
    map: HashMap<[u8; 32], Vec<f32>>,
    file: Option<(PathBuf, File)>,
}

fn key(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl FeatureCache {
    /// No file: features live as long as the process.
    pub fn in_memory(dim: usize) -> Self {
        Self {
            dim,
            map: HashMap::new(),
            file: None,
        }
    }

    /// The cache at `path`, created if missing.
    pub fn open(path: &Path, dim: usize) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let record = 32 + 4 * dim;
        let mut map = HashMap::new();
        for r in bytes.chunks_exact(record) {
            let mut k = [0u8; 32];
            k.copy_from_slice(&r[..32]);
            let v = r[32..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            map.insert(k, v);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // Drop a torn last record so the next append starts on a boundary.
        let whole = (bytes.len() / record * record) as u64;
        if whole != bytes.len() as u64 {
            file.set_len(whole)?;
        }
        Ok(Self {
            dim,
            map,
            file: Some((path.to_path_buf(), file)),
        })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, text: &str) -> Option<&[f32]> {
        self.map.get(&key(text)).map(Vec::as_slice)
    }

    /// Stores the features of `texts` (in the file too, when there is one).
    pub fn insert(&mut self, texts: &[&str], features: Vec<Vec<f32>>) -> anyhow::Result<()> {
        let mut buf = Vec::new();
        for (text, f) in texts.iter().zip(features) {
            anyhow::ensure!(
                f.len() == self.dim,
                "a feature vector of {} values, expected {}",
                f.len(),
                self.dim
            );
            let k = key(text);
            buf.extend_from_slice(&k);
            f.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
            self.map.insert(k, f);
        }
        if let Some((path, file)) = &mut self.file {
            file.write_all(&buf)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_survive_a_reopen_and_a_torn_record_is_dropped() {
        let dir = std::env::temp_dir().join(format!("ragd-feature-cache-{}", std::process::id()));
        let path = dir.join("c.f32");
        let mut c = FeatureCache::open(&path, 2).unwrap();
        c.insert(&["a", "b"], vec![vec![1.0, 2.0], vec![3.0, 4.0]])
            .unwrap();
        drop(c);
        // A torn record at the end.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[7u8; 10]).unwrap();
        drop(f);
        let mut c = FeatureCache::open(&path, 2).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("b"), Some(&[3.0, 4.0][..]));
        c.insert(&["c"], vec![vec![5.0, 6.0]]).unwrap();
        drop(c);
        let c = FeatureCache::open(&path, 2).unwrap();
        assert_eq!(c.get("c"), Some(&[5.0, 6.0][..]));
        assert_eq!(c.get("a"), Some(&[1.0, 2.0][..]));
        assert!(FeatureCache::in_memory(2).get("a").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
