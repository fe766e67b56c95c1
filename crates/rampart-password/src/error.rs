//! The crate's error type.
//!
//! # Security
//! No variant carries a password. Messages name the kind of failure only; the underlying library
//! error is kept as the `source` for the operational log and is never meant for a client.

use crate::policy::PolicyViolation;

/// Everything that can go wrong while hashing, verifying or checking a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The stored hash is in none of the accepted formats (Argon2 PHC, bcrypt, legacy SHA-256 hex).
    #[error("stored password hash is in an unknown format")]
    UnknownHashFormat,
    /// The Argon2 parameters are outside what the algorithm accepts.
    #[error("invalid Argon2 parameters")]
    InvalidParams(#[source] argon2::Error),
    /// Argon2 hashing failed, or a stored Argon2 PHC string could not be parsed.
    #[error("Argon2 hashing failed")]
    Hash(#[source] argon2::password_hash::Error),
    /// A stored bcrypt hash could not be parsed or used.
    #[error("bcrypt verification failed")]
    Bcrypt(#[source] bcrypt::BcryptError),
    /// The hasher already has as many callers waiting as it allows; try again later.
    #[error("password hasher is busy")]
    Busy,
    /// The worker that ran the hash did not complete it (the work panicked).
    #[error("password hashing task failed")]
    Task,
    /// The password breaks the password policy.
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
}

/// Result alias for this crate.
pub type Result<T, E = PasswordError> = std::result::Result<T, E>;
