//! Random tokens: 256 bits from the operating system's RNG, encoded base64url.

use base64::Engine;
use rand::RngCore;

use crate::secret::SecretString;

/// 32 random bytes from the OS RNG.
pub fn random_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// `n` random bytes, base64url without padding. For public handles, ids and nonces: drawn from
/// the thread-local CSPRNG (seeded and periodically reseeded from the OS), which avoids a system
/// call per request. Secrets (session ids, tokens, keys) use the OS RNG directly.
pub fn random_id(n: usize) -> String {
    // Ids are short (request ids, nonces, handles): their bytes stay on the stack.
    let mut stack = [0u8; 64];
    let mut heap = Vec::new();
    let b: &mut [u8] = if n <= stack.len() {
        &mut stack[..n]
    } else {
        heap.resize(n, 0);
        &mut heap
    };
    rand::thread_rng().fill_bytes(b);
    b64url(b)
}

/// A fresh 256-bit secret token, base64url (43 characters).
pub fn random_token() -> SecretString {
    SecretString::new(b64url(&random_bytes()))
}

/// base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `None` on any other alphabet or padding.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(b64url_decode(a.expose_secret()).unwrap().len(), 32);
        assert!(b64url_decode("a+b/").is_none());
    }
}
