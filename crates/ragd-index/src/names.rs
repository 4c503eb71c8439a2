//! Tenant ids and collection names become directory names, so they are
//! restricted to a set that is safe as a path component on every file
//! system: no `/`, no `.` (so no `..` and no hidden files, which the store
//! keeps for its own staging folders), no case-folding surprises beyond
//! what the caller chose.

use crate::{IndexError, Result};

/// Longest accepted tenant id or collection name.
pub const MAX_NAME_LEN: usize = 64;

/// Checks that `name` is `[A-Za-z0-9_-]{1,64}`; `what` names it in the error.
pub(crate) fn validate(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("must be at most 64 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Some("may only contain ASCII letters, digits, `_` and `-`")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(IndexError::InvalidName {
            what,
            name: name.chars().take(MAX_NAME_LEN + 1).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A tenant id: `[A-Za-z0-9_-]{1,64}`.
pub fn validate_tenant(tenant: &str) -> Result<()> {
    validate("tenant id", tenant)
}

/// A collection name: `[A-Za-z0-9_-]{1,64}`.
pub fn validate_collection(name: &str) -> Result<()> {
    validate("collection name", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_safe_names_and_rejects_path_tricks() {
        for ok in ["a", "tenant-1", "Docs_2024", &"x".repeat(64)] {
            assert!(validate("name", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a.b",
            " a",
            "é",
            &"x".repeat(65),
            "a\0",
        ] {
            assert!(
                matches!(validate("name", bad), Err(IndexError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}
