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
//!   too short to be worth stealing. Upstreams should allow a few seconds of clock skew.
//! - **Keys.** The Ed25519 key is the HKDF subkey of the master key for the signing purpose,
//!   used as the 32-byte seed; it is derived per use and never stored. Rotating
//!   `RAMPART_SECRET_KEY` (keeping the old one in `RAMPART_PREVIOUS_SECRET_KEYS`) keeps the old
//!   public key in the JWKS, so upstreams that cache it keep verifying during the change.
//! - `sid` is the public session handle, never the session cookie; API-key requests have none.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ed25519_dalek::{Signer, SigningKey};
use rampart_core::token::b64url;
use rampart_core::{MasterKey, Purpose};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::AuthenticatedUser;
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

/// The audience of assertions: `RAMPART_ASSERTION_AUDIENCE`, else the public origin.
pub fn audience(state: &AppState) -> String {
    state
        .config
        .assertion_audience
        .clone()
        .unwrap_or_else(|| state.config.public_origin.to_origin_string())
}

/// A fresh assertion for `user`, signed with the current key.
pub fn assertion(state: &AppState, user: &AuthenticatedUser) -> String {
    let key = signing_key(state.keyring.current());
    let (_, kid) = public_parts(&key);
    let iat = state.clock.now().unix_timestamp();
    let mut claims = json!({
        "sub": user.user_id,
        "email": user.email,
        "role": user.role.as_str(),
        "iss": state.config.public_origin.to_origin_string(),
        "aud": audience(state),
        "iat": iat,
        "exp": iat + ASSERTION_TTL_SECS,
    });
    if let (Some(sid), Some(map)) = (&user.session_handle, claims.as_object_mut()) {
        map.insert("sid".into(), json!(sid));
    }
    sign_jwt(&key, &kid, &claims)
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

/// The identity headers for `user`: `Remote-User`, `Remote-Email`, `Remote-Groups` and
/// `X-Rampart-Assertion` (marked sensitive).
pub fn identity_headers(state: &AppState, user: &AuthenticatedUser) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, text) in [
        (&REMOTE_USER, user.user_id.as_str()),
        (&REMOTE_EMAIL, user.email.as_str()),
        (&REMOTE_GROUPS, user.role.as_str()),
    ] {
        if let Some(v) = value(text) {
            h.insert(name.clone(), v);
        }
    }
    if let Ok(mut v) = HeaderValue::from_str(&assertion(state, user)) {
        v.set_sensitive(true);
        h.insert(X_RAMPART_ASSERTION.clone(), v);
    }
    h
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
