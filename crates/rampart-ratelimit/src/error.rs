//! Errors: [`RateLimitError`] at run time, [`RateLimitConfigError`] for quotas and rules.

use std::error::Error as StdError;
use std::sync::Arc;

/// A failure of a rate-limit or regulation store.
///
/// Cloneable (sources are shared) so that the layer can put it into a response's extensions
/// for the audit layer. Its text never reaches a client: the layer answers with a generic body.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The backend could not be reached or failed (connection, timeout, script error).
    #[error("rate-limit store unavailable")]
    Unavailable {
        /// The backend's error.
        #[source]
        source: Arc<dyn StdError + Send + Sync + 'static>,
    },
    /// The backend answered with data this crate cannot interpret.
    #[error("rate-limit store returned invalid data: {detail}")]
    InvalidState {
        /// What was wrong, without any key or value.
        detail: &'static str,
    },
}

impl RateLimitError {
    /// Wraps a backend error as [`RateLimitError::Unavailable`], keeping it as the source.
    pub fn unavailable(source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Unavailable { source: Arc::new(source) }
    }
}

/// `Result` with [`RateLimitError`].
pub type Result<T, E = RateLimitError> = std::result::Result<T, E>;

/// A quota, rule or regulation setting that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitConfigError {
    /// A quota's text or values are invalid.
    #[error("invalid quota {text:?}: {reason}")]
    InvalidQuota {
        /// The quota as given.
        text: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A rule is invalid.
    #[error("invalid rate-limit rule {name:?}: {reason}")]
    InvalidRule {
        /// The rule's name as given.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A login-regulation setting is invalid.
    #[error("invalid login regulation setting {setting}: {reason}")]
    InvalidRegulation {
        /// The setting's field name.
        setting: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_keeps_its_source_but_does_not_print_it() {
        let e = RateLimitError::unavailable(std::io::Error::other("10.0.0.5:6379 refused"));
        assert_eq!(e.to_string(), "rate-limit store unavailable");
        let source = e.source().map(ToString::to_string).unwrap_or_default();
        assert!(source.contains("refused"));
    }
}
