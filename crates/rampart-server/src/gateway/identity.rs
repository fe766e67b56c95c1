//! The identity Rampart asserts to upstream apps: plain headers plus a short-lived signed JWT.
//!
//! After a request is allowed, the upstream receives:
//!
//! | header | value |
//! |---|---|
//! | `Remote-User` | the user id |
//! | `Remote-Email` | the email |
//! | `Remote-Groups` | the role (`admin` or `user`) |
//! | `X-Rampart-Assertion` | a JWT (EdDSA / Ed25519): `sub`, `email`, `role`, `sid`, `iss`, `aud`, `iat`, `exp` |
//!
//! The public keys are at `GET /.well-known/jwks.json`, one per master key (current and
//! previous), identified by their RFC 7638 thumbprint as `kid`.
//!
//! # Security considerations
//! - **The plain headers are only as trustworthy as the network path.** An upstream reachable
//!   other than through Rampart (or the proxy that asked Rampart) can be sent any header by
//!   anyone. Bind upstreams to a private address, or verify the assertion: its signature,
//!   `iss`, `aud` (set `RAMPART_ASSERTION_AUDIENCE` per app so an assertion for one app is
//!   useless at another) and `exp`.
//! - **Lifetime.** An assertion is valid for 60 seconds: enough for the request it rides on,
//!   too short to be worth stealing. Upstreams should allow a few seconds of clock skew, and
//!   must not require `iat` to be the time of the request: a reused assertion's `iat` may be up
//!   to 30 seconds old (it then still has at least 30 seconds left).
//! - **Reuse.** Signing costs more than the rest of a proxied request, so [`Assertions`] keeps
//!   the last assertion per session handle (per API key for key requests) and sends it again
//!   while at least [`REUSE_MIN_REMAINING_SECS`] of its lifetime remain. An entry is reused only
//!   when every claim it was signed with (`sub`, `email`, `role`, `sid`) equals the caller's as
//!   just loaded from the session or key, so a role or email change is asserted at once; a
//!   revoked session never gets that far. `exp` stays `iat` + 60 s. The cache holds at most
//!   [`ASSERTION_CACHE_CAPACITY`] entries (when full, stale ones go, then all).
//! - **Keys.** The Ed25519 key is the HKDF subkey of the master key for the signing purpose,
//!   used as the 32-byte seed; the current one is derived once at startup and held in memory
//!   beside the master key, never written anywhere. Rotating
//!   `RAMPART_SECRET_KEY` (keeping the old one in `RAMPART_PREVIOUS_SECRET_KEYS`) keeps the old
//!   public key in the JWKS, so upstreams that cache it keep verifying during the change.
//! - `sid` is the public session handle, never the session cookie; API-key requests have none.

use std::collections::HashMap;
use std::fmt;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ed25519_dalek::{Signer, SigningKey};
use parking_lot::Mutex;
use rampart_core::token::b64url;
use rampart_core::{MasterKey, Purpose};
use rampart_store_sql::Role;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::AuthenticatedUser;
use crate::config::Config;
use crate::state::AppState;

/// `Remote-User`: the user id.
pub static REMOTE_USER: HeaderName = HeaderName::from_static("remote-user");
/// `Remote-Email`.
pub static REMOTE_EMAIL: HeaderName = HeaderName::from_static("remote-email");
/// `Remote-Groups`: the role.
pub static REMOTE_GROUPS: HeaderName = HeaderName::from_static("remote-groups");
/// `X-Rampart-Assertion`: the signed JWT.
pub static X_RAMPART_ASSERTION: HeaderName = HeaderName::from_static("x-rampart-assertion");

/// Seconds an assertion stays valid.
pub const ASSERTION_TTL_SECS: i64 = 60;

/// A signed assertion is sent again only while at least this many seconds of its lifetime
/// remain.
pub const REUSE_MIN_REMAINING_SECS: i64 = 30;

/// Most assertions kept for reuse.
pub const ASSERTION_CACHE_CAPACITY: usize = 4096;

/// The JWKS path.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The JWKS route.
pub fn routes() -> Router<AppState> {
    Router::new().route(JWKS_PATH, get(jwks_handler))
}

async fn jwks_handler(State(state): State<AppState>) -> Response {
    let mut res = Json(jwks(&state)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    res
}

/// The signing key of one master key.
fn signing_key(master: &MasterKey) -> SigningKey {
    SigningKey::from_bytes(&master.subkey(Purpose::Signing))
}

/// `x` (base64url public key) and `kid` (RFC 7638 thumbprint) of a signing key.
fn public_parts(key: &SigningKey) -> (String, String) {
    let x = b64url(key.verifying_key().as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let kid = b64url(&Sha256::digest(canonical.as_bytes()));
    (x, kid)
}

/// The JSON Web Key Set: the public key of the current master key first, then of each previous
/// one.
pub fn jwks(state: &AppState) -> Value {
    let keys: Vec<Value> = state
        .keyring
        .all()
        .map(|m| {
            let (x, kid) = public_parts(&signing_key(m));
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"})
        })
        .collect();
    json!({ "keys": keys })
}

/// Signs assertions with the current key, once per caller and half-lifetime: see the
/// [module docs](self). One per application ([`AppState`]).
pub struct Assertions {
    key: SigningKey,
    kid: String,
    issuer: String,
    audience: String,
    cache: Mutex<HashMap<String, Cached>>,
}

/// A signed assertion and the claims it was signed with.
struct Cached {
    user_id: String,
    email: String,
    role: Role,
    sid: Option<String>,
    iat: i64,
    value: HeaderValue,
}

impl Cached {
    /// Whether this assertion says exactly what a fresh one for `user` would, and at `now` has
    /// at least [`REUSE_MIN_REMAINING_SECS`] left.
    fn serves(&self, user: &AuthenticatedUser, now: i64) -> bool {
        let age = now - self.iat;
        (0..=ASSERTION_TTL_SECS - REUSE_MIN_REMAINING_SECS).contains(&age)
            && self.role == user.role
            && self.user_id == user.user_id
            && self.email == user.email
            && self.sid == user.session_handle
    }
}

impl fmt::Debug for Assertions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assertions")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("cached", &self.cache.lock().len())
            .finish_non_exhaustive()
    }
}

impl Assertions {
    /// The signer for `master` (the current key), with the issuer and audience of `config`.
    pub fn new(master: &MasterKey, config: &Config) -> Self {
        let issuer = config.public_origin.to_origin_string();
        let audience = config.assertion_audience.clone().unwrap_or_else(|| issuer.clone());
        Self::with_claims(master, issuer, audience)
    }

    fn with_claims(master: &MasterKey, issuer: String, audience: String) -> Self {
        let key = signing_key(master);
        let (_, kid) = public_parts(&key);
        Self { key, kid, issuer, audience, cache: Mutex::new(HashMap::new()) }
    }

    /// The assertion for `user` at `now` (Unix seconds), as a sensitive header value: the one
    /// signed earlier for the same claims while it has enough life left, else a fresh one.
    pub fn header_value(&self, user: &AuthenticatedUser, now: i64) -> Option<HeaderValue> {
        let slot =
            user.session_handle.as_deref().or(user.api_key_id.as_deref()).unwrap_or(&user.user_id);
        if let Some(c) = self.cache.lock().get(slot) {
            if c.serves(user, now) {
                return Some(c.value.clone());
            }
        }
        let mut value = HeaderValue::from_str(&self.sign(user, now)).ok()?;
        value.set_sensitive(true);
        let entry = Cached {
            user_id: user.user_id.clone(),
            email: user.email.clone(),
            role: user.role,
            sid: user.session_handle.clone(),
            iat: now,
            value: value.clone(),
        };
        let mut cache = self.cache.lock();
        if cache.len() >= ASSERTION_CACHE_CAPACITY && !cache.contains_key(slot) {
            let oldest = now - (ASSERTION_TTL_SECS - REUSE_MIN_REMAINING_SECS);
            cache.retain(|_, c| c.iat >= oldest && c.iat <= now);
            if cache.len() >= ASSERTION_CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(slot.to_owned(), entry);
        Some(value)
    }

    /// A fresh assertion for `user` issued at `now`.
    fn sign(&self, user: &AuthenticatedUser, now: i64) -> String {
        let mut claims = json!({
            "sub": user.user_id,
            "email": user.email,
            "role": user.role.as_str(),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + ASSERTION_TTL_SECS,
        });
        if let (Some(sid), Some(map)) = (&user.session_handle, claims.as_object_mut()) {
            map.insert("sid".into(), json!(sid));
        }
        sign_jwt(&self.key, &self.kid, &claims)
    }

    /// How many assertions are kept.
    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.lock().len()
    }
}

/// The assertion for `user`: signed with the current key, reused while it has at least
/// [`REUSE_MIN_REMAINING_SECS`] left.
pub fn assertion(state: &AppState, user: &AuthenticatedUser) -> Option<HeaderValue> {
    state.assertions.header_value(user, state.clock.now().unix_timestamp())
}

fn sign_jwt(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&signature.to_bytes()))
}

fn value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).or_else(|_| HeaderValue::from_bytes(text.as_bytes())).ok()
}

/// Sets the identity headers for `user` in `h`, replacing any of the same names:
/// `Remote-User`, `Remote-Email`, `Remote-Groups` and `X-Rampart-Assertion` (marked sensitive).
pub fn insert_identity_headers(state: &AppState, user: &AuthenticatedUser, h: &mut HeaderMap) {
    for (name, text) in [
        (&REMOTE_USER, user.user_id.as_str()),
        (&REMOTE_EMAIL, user.email.as_str()),
        (&REMOTE_GROUPS, user.role.as_str()),
    ] {
        if let Some(v) = value(text) {
            h.insert(name.clone(), v);
        }
    }
    if let Some(v) = assertion(state, user) {
        h.insert(X_RAMPART_ASSERTION.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    #[test]
    fn signed_jwt_verifies_with_the_published_key_and_fails_when_altered() {
        let master = MasterKey::from_bytes((7u8..39).collect()).unwrap();
        let key = signing_key(&master);
        let (x, kid) = public_parts(&key);
        let token = sign_jwt(&key, &kid, &json!({"sub": "u_1"}));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&rampart_core::token::b64url_decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}));
        let pk_bytes: [u8; 32] =
            rampart_core::token::b64url_decode(&x).unwrap().try_into().unwrap();
        let pk = VerifyingKey::from_bytes(&pk_bytes).unwrap();
        let sig_bytes: [u8; 64] =
            rampart_core::token::b64url_decode(parts[2]).unwrap().try_into().unwrap();
        let sig = Signature::from_bytes(&sig_bytes);
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(pk.verify(input.as_bytes(), &sig).is_ok());
        let forged = format!("{}.{}", parts[0], b64url(br#"{"sub":"admin"}"#));
        assert!(pk.verify(forged.as_bytes(), &sig).is_err());
    }

    fn user(role: Role, sid: Option<&str>) -> AuthenticatedUser {
        AuthenticatedUser {
            user_id: "u_1".into(),
            email: "ann@example.com".into(),
            role,
            session_handle: sid.map(str::to_owned),
            authenticated_at: time::OffsetDateTime::UNIX_EPOCH,
            method: crate::auth::AuthMethod::Session,
            api_key_id: None,
        }
    }

    fn signer() -> (Assertions, VerifyingKey) {
        let master = MasterKey::from_bytes((7u8..39).collect()).unwrap();
        let pk = signing_key(&master).verifying_key();
        (Assertions::with_claims(&master, "https://id.example".into(), "app".into()), pk)
    }

    /// The claims of `jwt` after checking its signature with `pk`.
    fn verified_claims(jwt: &HeaderValue, pk: &VerifyingKey) -> Value {
        assert!(jwt.is_sensitive());
        let parts: Vec<&str> = jwt.to_str().unwrap().split('.').collect();
        let sig_bytes: [u8; 64] =
            rampart_core::token::b64url_decode(parts[2]).unwrap().try_into().unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        pk.verify(input.as_bytes(), &Signature::from_bytes(&sig_bytes)).unwrap();
        serde_json::from_slice(&rampart_core::token::b64url_decode(parts[1]).unwrap()).unwrap()
    }

    #[test]
    fn a_reused_assertion_verifies_and_keeps_at_least_half_its_lifetime() {
        let (signer, pk) = signer();
        let ann = user(Role::User, Some("h_1"));
        let first = signer.header_value(&ann, 1_000).unwrap();
        let claims = verified_claims(&first, &pk);
        assert_eq!(claims["iat"], 1_000);
        assert_eq!(claims["exp"], 1_000 + ASSERTION_TTL_SECS);
        assert_eq!(claims["sid"], "h_1");
        assert_eq!(claims["role"], "user");
        assert_eq!(
            (claims["iss"].as_str(), claims["aud"].as_str()),
            (Some("https://id.example"), Some("app"))
        );
        // Reused while at least REUSE_MIN_REMAINING_SECS remain …
        let reuse_until = 1_000 + ASSERTION_TTL_SECS - REUSE_MIN_REMAINING_SECS;
        for now in [1_000, 1_001, reuse_until] {
            let again = signer.header_value(&ann, now).unwrap();
            assert_eq!(again, first, "at {now}");
            let c = verified_claims(&again, &pk);
            let exp = c["exp"].as_i64().unwrap();
            assert!(exp - now >= REUSE_MIN_REMAINING_SECS, "at {now}");
            assert!(exp - c["iat"].as_i64().unwrap() <= ASSERTION_TTL_SECS);
        }
        // … then signed afresh.
        let later = signer.header_value(&ann, reuse_until + 1).unwrap();
        assert_ne!(later, first);
        assert_eq!(verified_claims(&later, &pk)["iat"], reuse_until + 1);
        // A clock that went back never gets an assertion issued in its future.
        let back = signer.header_value(&ann, 900).unwrap();
        assert_eq!(verified_claims(&back, &pk)["iat"], 900);
    }

    #[test]
    fn a_role_or_email_change_is_asserted_at_once() {
        let (signer, pk) = signer();
        let as_user = user(Role::User, Some("h_1"));
        let first = signer.header_value(&as_user, 1_000).unwrap();
        assert_eq!(verified_claims(&first, &pk)["role"], "user");
        // Same session handle, the role just loaded from the session changed.
        let as_admin = user(Role::Admin, Some("h_1"));
        let promoted = signer.header_value(&as_admin, 1_001).unwrap();
        assert_eq!(verified_claims(&promoted, &pk)["role"], "admin");
        let demoted = signer.header_value(&as_user, 1_002).unwrap();
        assert_eq!(verified_claims(&demoted, &pk)["role"], "user");
        let mut renamed = as_user;
        renamed.email = "bob@example.com".into();
        let c = verified_claims(&signer.header_value(&renamed, 1_003).unwrap(), &pk);
        assert_eq!(c["email"], "bob@example.com");
        // Another session of the same user gets its own `sid`; an API key none.
        let other = verified_claims(
            &signer.header_value(&user(Role::User, Some("h_2")), 1_003).unwrap(),
            &pk,
        );
        assert_eq!(other["sid"], "h_2");
        let mut by_key = user(Role::User, None);
        by_key.api_key_id = Some("h_1".into());
        let c = verified_claims(&signer.header_value(&by_key, 1_003).unwrap(), &pk);
        assert!(c.get("sid").is_none(), "{c}");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let (signer, pk) = signer();
        for i in 0..ASSERTION_CACHE_CAPACITY {
            signer.header_value(&user(Role::User, Some(&format!("h_{i}"))), 1_000).unwrap();
        }
        assert_eq!(signer.cached(), ASSERTION_CACHE_CAPACITY);
        // Full of fresh entries: they all go.
        signer.header_value(&user(Role::User, Some("h_more")), 1_000).unwrap();
        assert_eq!(signer.cached(), 1);
        for i in 0..ASSERTION_CACHE_CAPACITY - 1 {
            signer.header_value(&user(Role::User, Some(&format!("h_{i}"))), 1_000).unwrap();
        }
        assert_eq!(signer.cached(), ASSERTION_CACHE_CAPACITY);
        // Stale entries go first when it is full.
        let late = 1_000 + ASSERTION_TTL_SECS;
        let v = signer.header_value(&user(Role::User, Some("h_new")), late).unwrap();
        assert_eq!(signer.cached(), 1);
        assert_eq!(verified_claims(&v, &pk)["iat"], late);
    }

    #[test]
    fn each_master_key_gives_its_own_stable_key_id() {
        let a = MasterKey::from_bytes((1u8..33).collect()).unwrap();
        let b = MasterKey::from_bytes((2u8..34).collect()).unwrap();
        let (xa, kida) = public_parts(&signing_key(&a));
        let (_, kida2) = public_parts(&signing_key(&a));
        let (xb, kidb) = public_parts(&signing_key(&b));
        assert_eq!(kida, kida2);
        assert_ne!(kida, kidb);
        assert_ne!(xa, xb);
        assert_eq!(kida.len(), 43);
        // The signing seed is a subkey, never the master key itself.
        assert_ne!(signing_key(&a).to_bytes().to_vec(), (1u8..33).collect::<Vec<u8>>());
    }
}
