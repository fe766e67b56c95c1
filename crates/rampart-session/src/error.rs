//! The crate's error type.

/// A boxed error source from a store backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong with a session operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store is down or did not answer in time. Servers answer 503
    /// `session_store_unavailable`, never "not logged in".
    #[error("session store unavailable")]
    Unavailable(#[source] Option<BoxError>),
    /// A session already exists under this key (insert-if-absent refused).
    #[error("a session already exists under this key")]
    Collision,
    /// A stored record could not be decoded, decrypted or authenticated.
    #[error("stored session record is corrupt")]
    Corrupt(#[source] Option<BoxError>),
    /// The session no longer exists (revoked or expired while being used).
    #[error("session not found")]
    NotFound,
    /// The store answered with an error other than unavailability.
    #[error("session store error")]
    Backend(#[source] BoxError),
}

impl SessionError {
    /// Whether this is [`SessionError::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SessionError::Unavailable(_))
    }
}

/// `Result` with [`SessionError`].
pub type Result<T, E = SessionError> = std::result::Result<T, E>;
