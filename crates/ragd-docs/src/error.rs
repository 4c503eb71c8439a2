//! The one error type of ragd-docs.

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// The file's extension names no format ragd reads.
    #[error("`{0}` is not a supported file (read: {exts})", exts = crate::EXTENSIONS)]
    Unsupported(String),
    /// The file is not what its extension says, or is damaged.
    #[error("cannot read the file: {0}")]
    Parse(String),
}
