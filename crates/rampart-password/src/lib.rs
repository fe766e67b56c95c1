//! Rampart password: hashing, legacy upgrade, policy and a bounded async hasher.
//!
//! - [`hash`]: Argon2id hashing ([`hash_password`]), verification of Argon2, bcrypt and legacy
//!   unsalted SHA-256 hashes with a [`Verification::needs_rehash`] flag ([`verify_password`]),
//!   and [`dummy_verify`] so unknown users cost the same time as known ones.
//! - [`policy`]: [`PasswordPolicy`] — length 12..=256 characters by default, a bundled list of
//!   30,000 common passwords, no part of the account's email; no composition rules.
//! - [`hasher`]: [`AsyncHasher`] runs the work on low-priority worker threads behind a semaphore and
//!   fails fast with [`PasswordError::Busy`] when its queue is full.
//!
//! ```
//! use rampart_core::SecretString;
//! use rampart_password::{hash_password, verify_password, Argon2Params, PasswordPolicy};
//!
//! let params = Argon2Params::default();
//! let password = SecretString::new("lantern harbour velvet");
//! PasswordPolicy::default().check(&password, "alice@example.com")?;
//!
//! let stored = hash_password(&password, &params)?;
//! let outcome = verify_password(&password, &stored, &params)?;
//! assert!(outcome.matched && !outcome.needs_rehash);
//!
//! // A legacy unsalted SHA-256 hash still verifies, and asks to be upgraded.
//! let legacy = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // "test"
//! let outcome = verify_password(&SecretString::new("test"), legacy, &params)?;
//! assert!(outcome.matched && outcome.needs_rehash);
//! # Ok::<(), rampart_password::PasswordError>(())
//! ```

pub mod error;
pub mod hash;
pub mod hasher;
pub mod policy;

pub use error::{PasswordError, Result};
pub use hash::{dummy_verify, hash_password, verify_password, Argon2Params, Verification};
pub use hasher::AsyncHasher;
pub use policy::{PasswordPolicy, PolicyViolation};
