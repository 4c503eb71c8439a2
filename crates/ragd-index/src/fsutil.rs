//! File-system steps that durability depends on, and the permissions of
//! everything the store creates: files 0600 and folders 0700 (owner only:
//! they hold every tenant's documents), whatever the umask.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::{IndexError, Result};

/// Mode of every file the store creates.
#[cfg(unix)]
pub(crate) const FILE_MODE: u32 = 0o600;
/// Mode of every folder the store creates.
#[cfg(unix)]
pub(crate) const DIR_MODE: u32 = 0o700;

/// `OpenOptions` that create files owner-only (when they create).
pub(crate) fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options
}

/// Creates the folder `dir` (and, with `recursive`, its missing parents)
/// owner-only.
pub(crate) fn create_dir(dir: &Path, recursive: bool) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(recursive);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir).map_err(|e| IndexError::io(dir, e))
}

/// Makes an existing file or folder owner-only (data of older versions).
pub(crate) fn restrict(path: &Path, is_dir: bool) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if is_dir { DIR_MODE } else { FILE_MODE };
        let meta = std::fs::metadata(path).map_err(|e| IndexError::io(path, e))?;
        if meta.permissions().mode() & 0o777 != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| IndexError::io(path, e))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, is_dir);
    Ok(())
}

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
        let file = file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
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
