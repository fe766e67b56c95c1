//! Session ids (the secret in the cookie) and store keys (what stores index by).
//!
//! # Security
//! - A [`SessionId`] is 256 bits from the operating system's RNG. It is a bearer credential:
//!   its `Debug` prints `[redacted]`, it has no `Display` or `Serialize`, it is zeroized on drop
//!   and compared in constant time.
//! - Stores never see the id. They key sessions by a [`StoreKey`], the hex HMAC-SHA256 of the id
//!   under the keyring's session subkey, so a dump of a store yields no usable cookie.
//! - [`SessionId::parse`] is strict (exactly 43 characters of the base64url alphabet, no padding,
//!   canonical trailing bits), so there is a single text form per id.

use std::fmt;

use base64::Engine;
use rampart_core::{Keyring, Purpose, SecretString};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a session id in bytes.
pub const SESSION_ID_LEN: usize = 32;

/// Length of a session id's cookie text (base64url, no padding).
pub const SESSION_ID_TEXT_LEN: usize = 43;

/// A session id: 32 random bytes. Debug prints `[redacted]`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionId([u8; SESSION_ID_LEN]);

impl SessionId {
    /// A fresh id from the operating system's RNG.
    pub fn generate() -> Self {
        Self(rampart_core::token::random_bytes())
    }

    /// Parses a cookie value: exactly 43 characters of the url-safe base64 alphabet, no
    /// padding, decoding to 32 bytes. Anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != SESSION_ID_TEXT_LEN
            || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        // The engine rejects non-canonical trailing bits, so each id has one text form. Decoded
        // on the stack (no allocation per request); the buffer has room for the engine's
        // estimate and is wiped when dropped.
        let mut buf = Zeroizing::new([0u8; SESSION_ID_LEN + 3]);
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(text.as_bytes(), buf.as_mut_slice())
            .ok()?;
        let bytes: [u8; SESSION_ID_LEN] = buf.get(..n)?.try_into().ok()?;
        Some(Self(bytes))
    }

    /// The raw id bytes. Every call site is a place where the secret leaves its box.
    pub fn expose_bytes(&self) -> &[u8; SESSION_ID_LEN] {
        &self.0
    }

    /// The cookie value (base64url without padding, 43 characters).
    pub fn to_cookie_value(&self) -> SecretString {
        SecretString::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        rampart_core::ct::ct_eq(&self.0, &other.0)
    }
}

impl Eq for SessionId {}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The key a store files a session under: lowercase hex of HMAC-SHA256(session subkey, id).
///
/// Not a credential: knowing it does not let anyone present the session. Held inline (bytes
/// and their hex digits), so deriving one on every request allocates nothing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey {
    bytes: [u8; 32],
    hex: [u8; 64],
}

impl StoreKey {
    /// The key for `id` under the keyring's current master key.
    pub fn derive(keyring: &Keyring, id: &SessionId) -> Self {
        Self::from_bytes(&keyring.mac(Purpose::Session, id.expose_bytes()))
    }

    /// The keys `id` may be filed under, current master key first, then each previous key, so
    /// sessions created before a key rotation are still found. Lazy: a key is derived only when
    /// the one before it found nothing.
    pub fn candidates<'a>(
        keyring: &'a Keyring,
        id: &'a SessionId,
    ) -> impl Iterator<Item = StoreKey> + Send + 'a {
        keyring.mac_each(Purpose::Session, id.expose_bytes()).map(|tag| Self::from_bytes(&tag))
    }

    /// Rebuilds a key read back from a store (64 lowercase hex digits), or `None`.
    pub fn parse(text: &str) -> Option<Self> {
        // Lowercase only, so each key has one text form.
        if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self::from_bytes(&bytes))
    }

    /// The key text (64 lowercase hex digits).
    pub fn as_str(&self) -> &str {
        // Always ASCII hex digits, written by `from_bytes`.
        std::str::from_utf8(&self.hex).unwrap_or_default()
    }

    /// The 32 bytes the key's hex digits spell.
    pub(crate) fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }

    /// The key whose bytes are `bytes`.
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> Self {
        let mut hex = [0u8; 64];
        // 64 bytes hold the hex of 32: this cannot fail.
        let _ = hex::encode_to_slice(bytes, &mut hex);
        Self { bytes: *bytes, hex }
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to correlate log lines.
        write!(f, "StoreKey({}…)", self.as_str().get(..12).unwrap_or_default())
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use rampart_core::MasterKey;

    use super::*;

    #[test]
    fn generated_ids_round_trip_through_the_cookie_value() {
        let id = SessionId::generate();
        let text = id.to_cookie_value();
        assert_eq!(text.len(), SESSION_ID_TEXT_LEN);
        assert_eq!(SessionId::parse(text.expose_secret()), Some(id.clone()));
        assert_ne!(SessionId::generate(), id);
    }

    #[test]
    fn parse_rejects_everything_but_43_canonical_base64url_characters() {
        let good = SessionId::generate().to_cookie_value().expose_secret().to_owned();
        let cases: Vec<(String, bool)> = vec![
            (good.clone(), true),
            (String::new(), false),
            (good[..42].to_owned(), false),
            (format!("{good}A"), false),
            (format!("{good}="), false),
            (format!("{}=", &good[..42]), false),
            (format!("{}+", &good[..42]), false),
            (format!("{}/", &good[..42]), false),
            (format!("{} ", &good[..42]), false),
            (format!("{}é", &good[..41]), false),
            (format!("{}.", &good[..42]), false),
            // 43 chars carry 258 bits; the last character must leave the 2 spare bits zero.
            ("A".repeat(42) + "B", false),
            ("A".repeat(42) + "E", true),
            ("_".repeat(42) + "8", true),
        ];
        for (text, ok) in cases {
            assert_eq!(SessionId::parse(&text).is_some(), ok, "{text:?}");
        }
    }

    #[test]
    fn store_keys_convert_to_their_bytes_and_back() {
        let keyring = Keyring::new(MasterKey::generate(), vec![]);
        let key = StoreKey::derive(&keyring, &SessionId::generate());
        let bytes = key.to_bytes();
        assert_eq!(hex::encode(bytes), key.as_str());
        assert_eq!(StoreKey::from_bytes(&bytes), key);
        assert_eq!(StoreKey::parse(key.as_str()), Some(key.clone()));
        assert_eq!(StoreKey::parse(&("0".repeat(63) + "g")), None);
        assert_eq!(StoreKey::parse(&key.as_str().to_uppercase()), None);
        assert_eq!(StoreKey::parse("ab"), None);
    }

    #[test]
    fn debug_never_shows_the_id() {
        let id = SessionId::generate();
        let text = id.to_cookie_value();
        let shown = format!("{id:?} {:?} {:?}", Some(&id), text);
        assert!(!shown.contains(text.expose_secret()), "{shown}");
        assert!(!shown.contains(&hex::encode(id.expose_bytes())), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn store_keys_are_keyed_hashes_and_survive_rotation() {
        let old = MasterKey::generate();
        let id = SessionId::generate();
        let before = Keyring::new(old.clone(), vec![]);
        let key = StoreKey::derive(&before, &id);
        assert_eq!(key.as_str().len(), 64);
        assert!(!key.as_str().contains(&hex::encode(id.expose_bytes())));
        assert_eq!(StoreKey::parse(key.as_str()), Some(key.clone()));
        assert_eq!(StoreKey::parse(&key.as_str().to_uppercase()), None);
        assert_eq!(StoreKey::parse("abc"), None);

        let rotated = Keyring::new(MasterKey::generate(), vec![old]);
        let candidates: Vec<_> = StoreKey::candidates(&rotated, &id).collect();
        assert_eq!(candidates.len(), 2);
        assert_eq!(candidates[0], StoreKey::derive(&rotated, &id));
        assert_eq!(candidates[1], key);
        assert!(!format!("{key:?}").contains(key.as_str()));
    }
}
