//! Index calls, which are synchronous and may wait on locks or disks, run
//! on the blocking pool.

use ragd_index::IndexError;

use crate::error::ServiceError;

/// Runs an index call on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::task("knowledge base", e))?
        .map_err(ServiceError::from)
}
