//! The crate's error type.

use std::error::Error as StdError;

/// A `Result` whose error is [`AuditError`].
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A hash or MAC was not 64 hexadecimal characters.
    #[error("malformed {0}: expected 64 hexadecimal characters")]
    MalformedHex(&'static str),
    /// The text names no known event kind or outcome.
    #[error("unknown audit event kind or outcome")]
    UnknownName,
    /// `audit_checkpoint` events are written only by [`crate::Chain::checkpoint`].
    #[error("the audit_checkpoint event kind is reserved for the chain itself")]
    ReservedKind,
    /// A timestamp could not be represented (outside the years 0000 to 9999).
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    /// Writing an event failed.
    #[error("could not write audit event")]
    Io(#[from] std::io::Error),
    /// Encoding or decoding JSON failed.
    #[error("could not encode audit event")]
    Json(#[from] serde_json::Error),
    /// The storage backend behind a sink failed.
    #[error("audit store failed")]
    Store(#[source] Box<dyn StdError + Send + Sync + 'static>),
    /// A lock guarding a sink was poisoned by a panic in another thread.
    #[error("audit sink lock poisoned")]
    Poisoned,
}

impl AuditError {
    /// Wraps a storage backend's error, keeping it as the source.
    pub fn store(err: impl StdError + Send + Sync + 'static) -> Self {
        Self::Store(Box::new(err))
    }
}
