//! File-system steps that durability depends on.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::{IndexError, Result};

/// Makes the entries of `dir` (created, renamed or removed files) durable.
/// A rename is only crash-safe once its directory has been synced.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IndexError::io(dir, e))
}

/// Replaces `path` with the bytes `write` produces, atomically: a crash
/// leaves either the old file or the complete new one, never a mix.
/// (Write a temporary file, fsync it, rename it over `path`, fsync the dir.)
pub(crate) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut out = std::io::BufWriter::new(file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(IndexError::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| IndexError::io(path, e))?;
    sync_dir(dir)
}
