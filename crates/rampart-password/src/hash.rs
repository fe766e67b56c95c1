//! Argon2id hashing and verification of current and legacy password hashes.
//!
//! # Security
//! - New hashes are always Argon2id (PHC string, version 0x13, 16-byte random salt from the OS,
//!   32-byte output). [`Argon2Params::MIN`] is the floor for production; smaller parameters are
//!   accepted here only so tests stay fast, and the server's configuration must refuse them.
//! - Verification accepts Argon2id/Argon2i/Argon2d PHC strings, bcrypt (`$2a$`, `$2b$`, `$2y$`)
//!   and legacy unsalted SHA-256 (64 hex characters). Anything but Argon2id with the current
//!   parameters reports [`Verification::needs_rehash`], so the caller can upgrade the stored hash
//!   right after a successful login, while it holds the plaintext.
//! - Passwords are compared exactly as received: no trimming, no case folding, no truncation.
//!   bcrypt only reads 72 bytes, so a longer password never matches a bcrypt hash.
//! - The legacy SHA-256 digest is compared in constant time.
//! - Stored hashes are trusted input: their cost parameters are used as found. Import hashes
//!   from elsewhere only after checking their costs.
//! - [`dummy_verify`] costs what a real Argon2 verify costs; call it when the user is unknown so
//!   that response time does not reveal which accounts exist.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rampart_core::SecretString;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{PasswordError, Result};

/// Argon2 output length in bytes for new hashes.
const OUTPUT_LEN: usize = 32;
/// Argon2 salt length in bytes for new hashes.
const SALT_LEN: usize = 16;
/// bcrypt reads at most this many bytes of the password.
const BCRYPT_MAX_PASSWORD_BYTES: usize = 72;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Argon2Params {
    /// Memory cost in KiB.
    pub m_kib: u32,
    /// Number of passes over memory.
    pub t: u32,
    /// Degree of parallelism (lanes).
    pub p: u32,
}

impl Argon2Params {
    /// The smallest parameters production may use: 19 MiB, 2 passes, 1 lane.
    pub const MIN: Self = Self { m_kib: 19_456, t: 2, p: 1 };

    /// Whether every cost is at least the one in [`Argon2Params::MIN`].
    pub fn is_at_least_min(&self) -> bool {
        self.m_kib >= Self::MIN.m_kib && self.t >= Self::MIN.t && self.p >= Self::MIN.p
    }

    fn to_argon2(self) -> Result<Argon2<'static>> {
        let params = Params::new(self.m_kib, self.t, self.p, Some(OUTPUT_LEN))
            .map_err(PasswordError::InvalidParams)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for Argon2Params {
    /// The same as [`Argon2Params::MIN`].
    fn default() -> Self {
        Self::MIN
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Verification {
    /// The password matches the stored hash.
    pub matched: bool,
    /// The stored hash is not Argon2id with the current parameters. Only act on this when
    /// `matched` is true: re-hash the password just verified and store the new hash.
    pub needs_rehash: bool,
}

/// Hashes a password with Argon2id and a fresh random salt, giving a PHC string
/// (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
pub fn hash_password(password: &SecretString, params: &Argon2Params) -> Result<String> {
    let argon2 = params.to_argon2()?;
    let mut salt_bytes = [0u8; SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(PasswordError::Hash)?;
    let hash = argon2
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map_err(PasswordError::Hash)?;
    Ok(hash.to_string())
}

/// Checks a password against a stored hash in any accepted format.
///
/// Returns an error only when the stored hash cannot be used (unknown format, malformed);
/// a wrong password is `Ok` with `matched: false`.
pub fn verify_password(
    password: &SecretString,
    stored: &str,
    current: &Argon2Params,
) -> Result<Verification> {
    if stored.starts_with("$argon2") {
        verify_argon2(password, stored, current)
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|prefix| stored.starts_with(prefix)) {
        verify_bcrypt(password, stored)
    } else if stored.len() == 64 && stored.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(verify_legacy_sha256(password, stored))
    } else {
        Err(PasswordError::UnknownHashFormat)
    }
}

/// Spends the time of one Argon2 verify with `params` and discards the result.
///
/// Call it when a login names an unknown user, so that the response takes as long as a wrong
/// password for a real user. The reference hash has the same algorithm, parameters, salt and
/// output lengths as one made by [`hash_password`], so the work done is the same.
pub fn dummy_verify(password: &SecretString, params: &Argon2Params) {
    let reference = dummy_hash(params);
    // The outcome is irrelevant; only the time spent matters.
    let _ = verify_password(password, &reference, params);
}

/// A fixed Argon2id PHC string with `params` whose output matches no password in practice.
///
/// Building it costs no hashing: verifying against it recomputes the full Argon2 output and
/// compares, exactly as for a real hash.
pub(crate) fn dummy_hash(params: &Argon2Params) -> String {
    // 16 fixed salt bytes and 32 fixed output bytes, unpadded standard Base64.
    const SALT_B64: &str = "cmFtcGFydC1kdW1teS1zYQ";
    const OUTPUT_B64: &str = "ZHVtbXktb3V0cHV0LW5vdC1hLXJlYWwtaGFzaC0wMDA";
    format!(
        "$argon2id$v=19$m={},t={},p={}${SALT_B64}${OUTPUT_B64}",
        params.m_kib, params.t, params.p
    )
}

fn verify_argon2(
    password: &SecretString,
    stored: &str,
    current: &Argon2Params,
) -> Result<Verification> {
    let parsed = PasswordHash::new(stored).map_err(PasswordError::Hash)?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        // A PHC string without salt or output cannot match anything: it is malformed.
        return Err(PasswordError::Hash(argon2::password_hash::Error::PhcStringField));
    }
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(PasswordError::Hash)?;
    let params = Params::try_from(&parsed).map_err(PasswordError::Hash)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(PasswordError::InvalidParams)?,
        None => Version::V0x10,
    };
    let needs_rehash = algorithm != Algorithm::Argon2id
        || version != Version::V0x13
        || params.m_cost() != current.m_kib
        || params.t_cost() != current.t
        || params.p_cost() != current.p
        || params.output_len() != Some(OUTPUT_LEN);
    // The verifier recomputes with the algorithm, version and parameters found in the hash and
    // compares the outputs in constant time.
    let matched =
        match Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed) {
            Ok(()) => true,
            Err(argon2::password_hash::Error::Password) => false,
            Err(e) => return Err(PasswordError::Hash(e)),
        };
    Ok(Verification { matched, needs_rehash })
}

fn verify_bcrypt(password: &SecretString, stored: &str) -> Result<Verification> {
    let bytes = password.expose_secret().as_bytes();
    let matched = if bytes.len() > BCRYPT_MAX_PASSWORD_BYTES {
        // bcrypt would silently ignore the tail; such a password never matches.
        false
    } else {
        bcrypt::verify(bytes, stored).map_err(PasswordError::Bcrypt)?
    };
    Ok(Verification { matched, needs_rehash: true })
}

fn verify_legacy_sha256(password: &SecretString, stored_hex: &str) -> Verification {
    let mut expected = [0u8; 32];
    // The caller checked 64 hex digits; decoding cannot fail, but a failure is a no-match.
    let decoded = hex::decode_to_slice(stored_hex, &mut expected).is_ok();
    let actual = Sha256::digest(password.expose_secret().as_bytes());
    let matched = rampart_core::ct::ct_eq(&expected, actual.as_slice()) && decoded;
    Verification { matched, needs_rehash: true }
}

#[cfg(test)]
mod tests;
