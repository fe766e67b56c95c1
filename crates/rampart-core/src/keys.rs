//! Master keys, purpose-separated subkeys (HKDF-SHA256), HMAC and AEAD with key ids.
//!
//! # Security
//! - No two purposes share a key: every use derives its own subkey from the master key with
//!   HKDF and a distinct `info` label.
//! - Every ciphertext names the key that sealed it (an 8-byte key id), so values written under a
//!   previous master key still open after rotation while new writes use the current key.
//! - Associated data binds a ciphertext to where it lives (table, column, row); a ciphertext
//!   copied elsewhere fails to open.

use std::fmt;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

/// Minimum length of a master key once decoded.
pub const MIN_KEY_LEN: usize = 32;

/// Why a key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is neither base64url nor hex.
    #[error("the key is neither base64url nor hex")]
    Encoding,
    /// Too short once decoded.
    #[error("the key is {0} bytes once decoded; at least 32 are required")]
    TooShort(usize),
    /// A documented example or obviously weak value.
    #[error("the key is a well-known placeholder value")]
    Placeholder,
}

/// Why a ciphertext could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// Malformed or truncated ciphertext.
    #[error("malformed ciphertext")]
    Malformed,
    /// The ciphertext names a key this keyring does not hold.
    #[error("ciphertext sealed with an unknown key")]
    UnknownKey,
    /// Authentication failed: tampered, or bound to other associated data.
    #[error("ciphertext failed authentication")]
    Authentication,
}

/// What a subkey is for. Each purpose gets its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// Session id hashing and session data encryption.
    Session,
    /// CSRF tokens.
    Csrf,
    /// Audit checkpoint signatures.
    Audit,
    /// Encryption of values at rest in the database.
    Encryption,
    /// API key hashing.
    ApiKey,
    /// Signing keys for identity assertions.
    Signing,
    /// Rate-limit and regulation key hashing.
    RateLimit,
    /// Pseudonyms (used with the dedicated pseudonymization key, see [`crate::pseudonym`]).
    Pseudonym,
}

impl Purpose {
    const ALL: [Purpose; 8] = [
        Purpose::Session,
        Purpose::Csrf,
        Purpose::Audit,
        Purpose::Encryption,
        Purpose::ApiKey,
        Purpose::Signing,
        Purpose::RateLimit,
        Purpose::Pseudonym,
    ];

    fn index(self) -> usize {
        match self {
            Purpose::Session => 0,
            Purpose::Csrf => 1,
            Purpose::Audit => 2,
            Purpose::Encryption => 3,
            Purpose::ApiKey => 4,
            Purpose::Signing => 5,
            Purpose::RateLimit => 6,
            Purpose::Pseudonym => 7,
        }
    }

    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"rampart/v1/session",
            Purpose::Csrf => b"rampart/v1/csrf",
            Purpose::Audit => b"rampart/v1/audit",
            Purpose::Encryption => b"rampart/v1/encryption",
            Purpose::ApiKey => b"rampart/v1/api-key",
            Purpose::Signing => b"rampart/v1/signing",
            Purpose::RateLimit => b"rampart/v1/rate-limit",
            Purpose::Pseudonym => b"rampart/v1/pseudonym",
        }
    }
}

const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change-me",
    "secret",
    "your-secret-key",
    "replace-me",
    "example",
    "insecure",
    "password",
];

/// A master key (32 bytes or more). Debug prints `[redacted]`.
///
/// The subkeys of every purpose are derived once, when the key is made, and kept (zeroized on
/// drop) so hot paths do not run HKDF per request.
#[derive(Clone)]
pub struct MasterKey {
    bytes: SecretBytes,
    id: [u8; 8],
    subkeys: std::sync::Arc<[Zeroizing<[u8; 32]>; 8]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &hex::encode(self.id)).finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Parses a key from base64url (padded or not) or hex text, and refuses short keys and
    /// well-known placeholders.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let lowered = text.to_ascii_lowercase();
        if PLACEHOLDERS.iter().any(|p| lowered.contains(p)) {
            return Err(KeyError::Placeholder);
        }
        let bytes = decode_key_text(text).ok_or(KeyError::Encoding)?;
        Self::from_bytes(bytes)
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort(bytes.len()));
        }
        let first = bytes[0];
        if bytes.iter().all(|b| *b == first) {
            return Err(KeyError::Placeholder);
        }
        let mut id = [0u8; 8];
        let hk = Hkdf::<Sha256>::new(Some(b"rampart key id"), &bytes);
        hk.expand(b"rampart/v1/key-id", &mut id).map_err(|_| KeyError::Encoding)?;
        let sub = Hkdf::<Sha256>::new(Some(b"rampart subkey"), &bytes);
        let subkeys = Purpose::ALL.map(|p| {
            let mut out = Zeroizing::new([0u8; 32]);
            // 32 bytes is far below HKDF-SHA256's output limit, so expand cannot fail.
            let _ = sub.expand(p.label(), out.as_mut());
            out
        });
        Ok(Self { bytes: SecretBytes::new(bytes), id, subkeys: std::sync::Arc::new(subkeys) })
    }

    /// Whether the key bytes look made by hand rather than drawn at random: fewer than 16
    /// different byte values, only printable ASCII (a text password used as a key), or one
    /// step repeated (`00 01 02 …`). A random 32-byte key is none of these except with
    /// negligible probability; production refuses such keys.
    pub fn looks_low_entropy(&self) -> bool {
        let b = self.bytes.expose_secret();
        let distinct = b.iter().collect::<std::collections::HashSet<_>>().len();
        let printable = b.iter().all(|c| (0x20..0x7f).contains(c));
        let step = b[1].wrapping_sub(b[0]);
        let progression = b.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step);
        distinct < 16 || printable || progression
    }

    /// A fresh random 32-byte key.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        // A random 32-byte key is never all one byte in practice; fall back to regenerate.
        match Self::from_bytes(bytes) {
            Ok(k) => k,
            Err(_) => Self::generate(),
        }
    }

    /// The key as base64url without padding (for writing a generated key file).
    pub fn to_base64url(&self) -> Zeroizing<String> {
        Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.bytes.expose_secret()),
        )
    }

    /// A public, stable identifier of this key (not secret).
    pub fn id(&self) -> [u8; 8] {
        self.id
    }

    /// Derives the 32-byte subkey for a purpose.
    pub fn subkey(&self, purpose: Purpose) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.subkeys[purpose.index()])
    }
}

fn decode_key_text(text: &str) -> Option<Vec<u8>> {
    let is_hex = text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        if let Ok(b) = hex::decode(text) {
            return Some(b);
        }
    }
    let trimmed = text.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .ok()
}

type HmacSha256 = Hmac<Sha256>;

/// The current master key plus previous ones accepted for verifying and decrypting only.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + 8 + NONCE_LEN;

impl Keyring {
    /// A keyring with a current key and previous keys (newest first).
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self { current, previous }
    }

    /// The current key.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// All keys, current first.
    pub fn all(&self) -> impl Iterator<Item = &MasterKey> {
        std::iter::once(&self.current).chain(self.previous.iter())
    }

    /// HMAC-SHA256 of `data` under the current key's subkey for `purpose`.
    pub fn mac(&self, purpose: Purpose, data: &[u8]) -> [u8; 32] {
        mac_with(&self.current, purpose, data)
    }

    /// HMAC-SHA256 of `data` under every key (current first), for lookups that must still find
    /// values written before a rotation.
    pub fn mac_all(&self, purpose: Purpose, data: &[u8]) -> Vec<[u8; 32]> {
        self.all().map(|k| mac_with(k, purpose, data)).collect()
    }

    /// Like [`Keyring::mac_all`], lazily: each tag is computed only when asked for, so a lookup
    /// that succeeds under the current key costs one MAC and no allocation.
    pub fn mac_each<'a>(
        &'a self,
        purpose: Purpose,
        data: &'a [u8],
    ) -> impl Iterator<Item = [u8; 32]> + Send + 'a {
        self.all().map(move |k| mac_with(k, purpose, data))
    }

    /// Verifies a tag made by [`Keyring::mac`] under any key, in constant time.
    pub fn verify_mac(&self, purpose: Purpose, data: &[u8], tag: &[u8]) -> bool {
        let mut ok = false;
        for k in self.all() {
            ok |= crate::ct::ct_eq(&mac_with(k, purpose, data), tag);
        }
        ok
    }

    /// Encrypts with the current key. `aad` binds the ciphertext to its place.
    pub fn seal(&self, purpose: Purpose, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let key = self.current.subkey(purpose);
        let cipher = XChaCha20Poly1305::new(key.as_ref().into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
        out.push(SEAL_VERSION);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        let full_aad = bind_aad(&self.current.id, aad);
        // Encryption with a valid key and nonce length cannot fail.
        if let Ok(ct) =
            cipher.encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: &full_aad })
        {
            out.extend_from_slice(&ct);
        }
        out
    }

    /// Decrypts a value sealed under any key of this ring.
    pub fn open(
        &self,
        purpose: Purpose,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < HEADER_LEN + 16 || sealed[0] != SEAL_VERSION {
            return Err(CryptoError::Malformed);
        }
        let key_id = &sealed[1..9];
        let nonce = &sealed[9..HEADER_LEN];
        let key = self.all().find(|k| k.id == key_id).ok_or(CryptoError::UnknownKey)?;
        let sub = key.subkey(purpose);
        let cipher = XChaCha20Poly1305::new(sub.as_ref().into());
        let full_aad = bind_aad(&key.id, aad);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload { msg: &sealed[HEADER_LEN..], aad: &full_aad },
            )
            .map_err(|_| CryptoError::Authentication)
    }

    /// The id of the key that sealed `sealed`, if it is well formed.
    pub fn sealed_key_id(sealed: &[u8]) -> Option<[u8; 8]> {
        if sealed.len() < HEADER_LEN || sealed[0] != SEAL_VERSION {
            return None;
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&sealed[1..9]);
        Some(id)
    }
}

fn bind_aad(key_id: &[u8; 8], aad: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + aad.len());
    v.push(SEAL_VERSION);
    v.extend_from_slice(key_id);
    v.extend_from_slice(aad);
    v
}

fn mac_with(key: &MasterKey, purpose: Purpose, data: &[u8]) -> [u8; 32] {
    let sub = key.subkey(purpose);
    // HMAC accepts keys of any length.
    let mut m = match <HmacSha256 as Mac>::new_from_slice(sub.as_ref()) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    m.update(data);
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> MasterKey {
        let mut v: Vec<u8> = (0..32u8).collect();
        v[0] = b;
        MasterKey::from_bytes(v).unwrap()
    }

    #[test]
    fn hand_made_keys_look_low_entropy_and_generated_ones_do_not() {
        let hex = |t: &str| MasterKey::parse(t).unwrap();
        let b64 = |bytes: &[u8]| {
            MasterKey::parse(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
                .unwrap()
        };
        for weak in [
            hex(&"0102".repeat(16)),
            hex(&"deadbeef".repeat(8)),
            hex(&"0123456789abcdef".repeat(4)),
            hex(&hex::encode("your-secret-key-here-32-bytes!!!")),
            b64(&(0u8..32).collect::<Vec<_>>()),
            b64(&(0u8..32).map(|i| 200u8.wrapping_sub(i * 3)).collect::<Vec<_>>()),
            b64("password".repeat(4).as_bytes()),
            b64("changeme".repeat(4).as_bytes()),
        ] {
            assert!(weak.looks_low_entropy(), "{weak:?}");
        }
        for _ in 0..200 {
            assert!(!MasterKey::generate().looks_low_entropy());
        }
    }

    #[test]
    fn parses_base64url_and_hex_and_refuses_short_or_placeholder_keys() {
        let hex32 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert!(MasterKey::parse(hex32).is_ok());
        let k = MasterKey::generate();
        assert!(MasterKey::parse(&k.to_base64url()).is_ok());
        assert_eq!(MasterKey::parse("abcd").unwrap_err(), KeyError::TooShort(2));
        assert_eq!(
            MasterKey::parse("changeme-changeme-changeme-changeme-xx").unwrap_err(),
            KeyError::Placeholder
        );
        let zeros = "0".repeat(64);
        assert_eq!(MasterKey::parse(&zeros).unwrap_err(), KeyError::Placeholder);
        assert_eq!(MasterKey::parse("not a key!!").unwrap_err(), KeyError::Encoding);
    }

    #[test]
    fn purposes_get_distinct_subkeys() {
        let k = key(1);
        let labels = [
            Purpose::Session,
            Purpose::Csrf,
            Purpose::Audit,
            Purpose::Encryption,
            Purpose::ApiKey,
            Purpose::Signing,
            Purpose::RateLimit,
            Purpose::Pseudonym,
        ];
        let subkeys: std::collections::HashSet<[u8; 32]> =
            labels.iter().map(|p| *k.subkey(*p)).collect();
        assert_eq!(subkeys.len(), labels.len());
    }

    #[test]
    fn sealed_values_open_only_with_the_same_associated_data() {
        let ring = Keyring::new(key(1), vec![]);
        let ct = ring.seal(Purpose::Encryption, b"users/totp/42", b"payload");
        assert_eq!(ring.open(Purpose::Encryption, b"users/totp/42", &ct).unwrap(), b"payload");
        assert_eq!(
            ring.open(Purpose::Encryption, b"users/totp/43", &ct),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            ring.open(Purpose::Session, b"users/totp/42", &ct),
            Err(CryptoError::Authentication)
        );
        let mut tampered = ct.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            ring.open(Purpose::Encryption, b"users/totp/42", &tampered),
            Err(CryptoError::Authentication)
        );
        assert_eq!(ring.open(Purpose::Encryption, b"x", &ct[..10]), Err(CryptoError::Malformed));
    }

    #[test]
    fn values_sealed_under_a_previous_key_still_open_after_rotation() {
        let old = Keyring::new(key(1), vec![]);
        let ct = old.seal(Purpose::Encryption, b"aad", b"v");
        let rotated = Keyring::new(key(2), vec![key(1)]);
        assert_eq!(rotated.open(Purpose::Encryption, b"aad", &ct).unwrap(), b"v");
        let new_ct = rotated.seal(Purpose::Encryption, b"aad", b"v");
        assert_eq!(Keyring::sealed_key_id(&new_ct), Some(key(2).id()));
        let dropped = Keyring::new(key(2), vec![]);
        assert_eq!(dropped.open(Purpose::Encryption, b"aad", &ct), Err(CryptoError::UnknownKey));
    }

    #[test]
    fn mac_verifies_under_previous_keys_and_rejects_others() {
        let old = Keyring::new(key(1), vec![]);
        let tag = old.mac(Purpose::Csrf, b"x");
        let rotated = Keyring::new(key(2), vec![key(1)]);
        assert!(rotated.verify_mac(Purpose::Csrf, b"x", &tag));
        assert!(!rotated.verify_mac(Purpose::Csrf, b"y", &tag));
        assert!(!rotated.verify_mac(Purpose::Session, b"x", &tag));
        assert_eq!(rotated.mac_all(Purpose::Csrf, b"x")[1], tag);
    }

    #[test]
    fn debug_never_prints_key_material() {
        let k = key(7);
        let shown = format!("{k:?} {:?}", Keyring::new(k.clone(), vec![]));
        assert!(!shown.contains(&*k.to_base64url()));
    }
}
