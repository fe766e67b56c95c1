//! API keys: the key format, generation, and authentication of `Authorization: Bearer rk_…`.
//!
//! A key reads `rk_<id>_<secret>`: `id` is 16 lowercase hex characters (public; it names the
//! key in listings and the audit log), `secret` is 256 random bits in base64url (43 characters).
//!
//! # Security
//! - The database keeps only `HMAC-SHA256(api-key subkey, full key text)` and the id of the
//!   master key that made it; verification tries every key of the ring in constant time. A key
//!   hashed under a previous master key is re-hashed under the current one when it is next used.
//! - A key acts as its creator with the creator's role *as stored now*, read on every request
//!   together with the key, so demoting, disabling or deleting the creator takes effect at
//!   once. Nothing about a key is cached, so a revocation is effective on the next request.
//! - A presented `rk_` bearer decides the request: if it does not authenticate, the answer is
//!   401 `invalid_api_key` (audited as `api_key_auth_failed`, rate-bounded), never a fall-back to
//!   the session cookie. Keys and session ids have different formats, so neither works as the
//!   other.
//! - `last_used_at` is written at most once a minute per key.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use rampart_audit::{EventKind, NewEvent, Outcome};
use rampart_core::{Purpose, SecretString};
use serde_json::json;

use crate::audit::{NewEventExt, RequestMeta};
use crate::auth::{AuthMethod, AuthenticatedUser};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Every key starts with this.
pub const KEY_PREFIX: &str = "rk_";
/// Length of the public id in hex characters.
pub const ID_LEN: usize = 16;
/// Length of the secret part (256 bits, base64url).
pub const SECRET_LEN: usize = 43;
/// `last_used_at` is written at most this often per key.
pub const LAST_USED_INTERVAL: Duration = Duration::from_secs(60);

/// A freshly generated key.
#[derive(Debug)]
pub struct GeneratedKey {
    /// Public id.
    pub id: String,
    /// The full key text, shown once.
    pub key: SecretString,
}

/// Generates a key: a random 64-bit id and a 256-bit secret.
pub fn generate() -> GeneratedKey {
    let raw = rampart_core::token::random_bytes();
    let id = hex::encode(&raw[..ID_LEN / 2]);
    let secret = rampart_core::token::random_token();
    let key = SecretString::new(format!("{KEY_PREFIX}{id}_{}", secret.expose_secret()));
    GeneratedKey { id, key }
}

/// The display prefix of a key id (`rk_<id>`), safe to show.
pub fn display_prefix(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// The public id of a well-formed key text, or `None` if malformed.
pub fn parse(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_at_checked(ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let id_ok = id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let secret_ok = secret.len() == SECRET_LEN
        && rampart_core::token::b64url_decode(secret).is_some_and(|b| b.len() == 32);
    (id_ok && secret_ok).then_some(id)
}

/// The keyed hash stored for a key text, hex.
pub fn hash(state: &AppState, text: &str) -> String {
    hex::encode(state.keyring.mac(Purpose::ApiKey, text.as_bytes()))
}

/// Hex id of the current master key.
pub fn current_key_id(state: &AppState) -> String {
    hex::encode(state.keyring.current().id())
}

/// The `rk_…` bearer token of a request, if it carries one. Other bearer tokens are not
/// API keys and are left alone.
pub fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && token.starts_with(KEY_PREFIX)).then_some(token)
}

/// 401 `invalid_api_key`.
pub fn invalid_api_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "the API key is invalid, expired or revoked",
    )
    .with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    )
}

async fn refuse(state: &AppState, meta: &RequestMeta, reason: &str, id: Option<&str>) -> ApiError {
    let mut ev = NewEvent::new(EventKind::ApiKeyAuthFailed, Outcome::Failure)
        .with(json!({"reason": reason}));
    if let Some(id) = id {
        ev = ev.resource("api_key", id);
    }
    state.audit_bounded(meta, ev).await;
    invalid_api_key()
}

/// Authenticates the request's `rk_` bearer key: `Ok(None)` when there is none, `Ok(Some)` with
/// the caller, or the error response (401 `invalid_api_key`, or 503 when the database does not
/// answer).
pub async fn authenticate_request(
    state: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
) -> ApiResult<Option<AuthenticatedUser>> {
    let Some(text) = bearer_key(headers) else { return Ok(None) };
    let Some(id) = parse(text) else {
        return Err(refuse(state, meta, "malformed", None).await);
    };
    let cred = state.db.api_key_credential(id).await.map_err(|e| crate::error::store_error(&e))?;
    let Some(cred) = cred else {
        return Err(refuse(state, meta, "unknown", Some(id)).await);
    };
    let tag = hex::decode(&cred.key_hash).unwrap_or_default();
    if !state.keyring.verify_mac(Purpose::ApiKey, text.as_bytes(), &tag) {
        return Err(refuse(state, meta, "bad_secret", Some(id)).await);
    }
    let now = state.clock.now();
    if cred.record.expires_at.is_some_and(|t| t <= now) {
        return Err(refuse(state, meta, "expired", Some(id)).await);
    }
    if cred.creator_disabled {
        return Err(refuse(state, meta, "creator_disabled", Some(id)).await);
    }
    let stale = cred.record.last_used_at.is_none_or(|t| now - t >= LAST_USED_INTERVAL);
    if stale {
        if let Err(e) = state.db.touch_api_key(id, now, LAST_USED_INTERVAL).await {
            tracing::warn!(error = %crate::error::ErrorChain(&e), "could not record API key use");
        }
    }
    let current = current_key_id(state);
    if cred.hash_key_id != current {
        let new_hash = hash(state, text);
        let rehashed = state.db.rehash_api_key(id, &cred.key_hash, &new_hash, &current).await;
        if let Err(e) = rehashed {
            tracing::warn!(error = %crate::error::ErrorChain(&e), "could not re-hash an API key");
        }
    }
    Ok(Some(AuthenticatedUser {
        user_id: cred.record.created_by,
        email: cred.creator_email,
        role: cred.creator_role,
        session_handle: None,
        authenticated_at: now,
        method: AuthMethod::ApiKey,
        api_key_id: Some(id.to_owned()),
    }))
}

/// Audits an API-key action by `user` on key `id`.
pub fn key_event(kind: EventKind, user: &AuthenticatedUser, id: &str) -> NewEvent {
    NewEvent::new(kind, Outcome::Success).by(user).resource("api_key", id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_to_their_id() {
        let k = generate();
        assert_eq!(parse(k.key.expose_secret()), Some(k.id.as_str()));
        assert_eq!(k.key.len(), KEY_PREFIX.len() + ID_LEN + 1 + SECRET_LEN);
        assert_ne!(generate().key.expose_secret(), k.key.expose_secret());
        assert!(!format!("{k:?}").contains(&k.key.expose_secret()[20..]));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let k = generate();
        let text = k.key.expose_secret();
        for bad in [
            "",
            "rk_",
            "rk_0123",
            &text[..text.len() - 1],
            &format!("{text}x"),
            &text.replacen("rk_", "rx_", 1),
            &text.replacen(&k.id, &k.id.to_uppercase(), 1),
            &format!("rk_{}-{}", k.id, &text[20..]),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_rk_bearer_tokens_are_api_keys() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_key(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer other-token"));
        assert_eq!(bearer_key(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic rk_abc"));
        assert_eq!(bearer_key(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  rk_abc "));
        assert_eq!(bearer_key(&h), Some("rk_abc"));
    }
}
