//! Rampart core: the synchronous building blocks every other Rampart crate uses.
//!
//! - [`secret`]: [`SecretString`] and [`SecretBytes`] that print `[redacted]` and zeroize on drop.
//! - [`clock`]: an injectable [`Clock`] with [`SystemClock`] and a [`ManualClock`] for tests.
//! - [`keys`]: master keys, HKDF subkeys per [`Purpose`], HMAC and AEAD with key ids.
//! - [`token`]: 256-bit random tokens from the OS RNG.
//! - [`ct`]: constant-time comparison.
//! - [`client_ip`]: the client address behind [`TrustedProxies`].
//! - [`redact`]: masking of emails for logs.
//! - [`pseudonym`]: keyed, purpose-separated pseudonyms.
//!
//! ```
//! use rampart_core::{Keyring, MasterKey, Purpose};
//!
//! let ring = Keyring::new(MasterKey::generate(), vec![]);
//! let sealed = ring.seal(Purpose::Encryption, b"table/column/row-1", b"secret value");
//! assert_eq!(ring.open(Purpose::Encryption, b"table/column/row-1", &sealed).unwrap(), b"secret value");
//! // Bound to its row: the same ciphertext does not open elsewhere.
//! assert!(ring.open(Purpose::Encryption, b"table/column/row-2", &sealed).is_err());
//! ```

pub mod client_ip;
pub mod clock;
pub mod ct;
pub mod keys;
pub mod pseudonym;
pub mod redact;
pub mod secret;
pub mod token;

pub use client_ip::{ClientIp, TrustedProxies};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use keys::{CryptoError, KeyError, Keyring, MasterKey, Purpose};
pub use secret::{SecretBytes, SecretString};
