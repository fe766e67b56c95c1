//! Deterministic keyed pseudonyms for exporting data without identities.
//!
//! A pseudonym is HMAC-SHA256 of the value under a key derived for its purpose: the
//! pseudonymization subkey ([`Purpose::Pseudonym`]) of a dedicated key, expanded with HKDF over
//! the length-prefixed purpose label. The same value maps to the same pseudonym within a
//! purpose; pseudonyms of different purposes do not link, and nothing links them to the
//! session, encryption or API-key subkeys.
//!
//! # Security
//! - Use a key of its own (the server reads `RAMPART_PSEUDONYMIZATION_KEY`), never the master
//!   key: whoever holds it can test guesses of a value against a pseudonym.
//! - Low-entropy values (emails, phone numbers) are only as private as the key is secret.
//! - Changing the key changes every pseudonym.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::{MasterKey, Purpose};

/// The key of one purpose: HKDF-Expand of the pseudonym subkey over the purpose label.
fn purpose_key(key: &MasterKey, purpose: &str) -> Zeroizing<[u8; 32]> {
    let sub = key.subkey(Purpose::Pseudonym);
    let mut out = Zeroizing::new([0u8; 32]);
    if let Ok(hk) = Hkdf::<Sha256>::from_prk(sub.as_ref()) {
        let len = (purpose.len() as u64).to_be_bytes();
        // 32 bytes is far below HKDF-SHA256's output limit, so expand cannot fail.
        let _ = hk.expand_multi_info(
            &[b"rampart/v1/pseudonym-purpose\0", &len, purpose.as_bytes()],
            out.as_mut(),
        );
    }
    out
}

/// Maps `value` to its pseudonym for `purpose` (64 hex characters).
pub fn pseudonymize(key: &MasterKey, purpose: &str, value: &str) -> String {
    let pk = purpose_key(key, purpose);
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(pk.as_ref()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    m.update(value.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_within_a_purpose_and_unlinkable_across_purposes() {
        let k = MasterKey::from_bytes((1..=32).collect()).unwrap();
        let a = pseudonymize(&k, "analytics", "jane@example.com");
        assert_eq!(a, pseudonymize(&k, "analytics", "jane@example.com"));
        assert_ne!(a, pseudonymize(&k, "support", "jane@example.com"));
        assert_ne!(a, pseudonymize(&k, "analytics", "john@example.com"));
        // Length-prefixing the purpose keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(pseudonymize(&k, "ab", "c"), pseudonymize(&k, "a", "bc"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn another_key_gives_other_pseudonyms() {
        let k1 = MasterKey::from_bytes((1..=32).collect()).unwrap();
        let k2 = MasterKey::from_bytes((2..=33).collect()).unwrap();
        assert_ne!(pseudonymize(&k1, "p", "v"), pseudonymize(&k2, "p", "v"));
    }

    #[test]
    fn pseudonyms_are_not_a_mac_under_the_encryption_subkey() {
        let k = MasterKey::from_bytes((1..=32).collect()).unwrap();
        let enc = k.subkey(Purpose::Encryption);
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(enc.as_ref()).unwrap();
        m.update(b"v");
        assert_ne!(hex::encode(m.finalize().into_bytes()), pseudonymize(&k, "p", "v"));
    }
}
