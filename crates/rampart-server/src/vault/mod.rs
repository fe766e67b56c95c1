//! The token vault: third-party OAuth tokens held for users, encrypted at rest, handed out
//! fresh, refreshed single-flight.
//!
//! # Security
//! - Both tokens are sealed with XChaCha20-Poly1305 under the encryption subkey of the current
//!   master key. The ciphertext names its key, and the associated data binds it to its table,
//!   column and row (`vault_tokens/access_token/<row id>`), so a ciphertext copied to another
//!   row or column does not open. Values under a previous key (`RAMPART_PREVIOUS_SECRET_KEYS`)
//!   still open; `rampart keys rotate` re-seals them under the current key ([`rotate`]).
//! - A refresh runs at most once at a time per user and provider across every instance: a
//!   lease in `vault_locks` with a fencing token (see `rampart_store_sql::vault`). Concurrent
//!   callers wait for the holder and then read its result; a holder that crashed loses the lease
//!   when it expires. The refreshed tokens are written only while the fence is still the
//!   holder's and the row has not changed meanwhile.
//! - Refresh calls go only to the operator-configured token endpoint with the configured client
//!   credentials ([`refresh`]); after the configured number of failed attempts the answer is 502
//!   `token_refresh_failed`, and callers that waited on that failure get the same answer instead
//!   of retrying again.

pub mod refresh;
pub mod rotate;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use rampart_core::{CryptoError, Keyring, Purpose, SecretString};
use rampart_store_sql::{to_micros, SealedTokens, VaultLock, VaultRow};
use rand::Rng;
use time::OffsetDateTime;

use crate::config::vault::{ProviderSettings, VaultSettings};
use crate::error::{store_error, ApiError, ApiResult};
use crate::state::AppState;

/// Longest token accepted for storage, in bytes.
pub const MAX_TOKEN_LEN: usize = 8192;

/// The vault's configuration and HTTP client.
#[derive(Debug, Clone)]
pub struct Vault {
    settings: Arc<VaultSettings>,
    http: reqwest::Client,
}

impl Vault {
    /// A vault over `settings`, with an HTTP client that follows no redirects and times out
    /// after `refresh_timeout`.
    pub fn new(settings: VaultSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.refresh_timeout)
            .connect_timeout(settings.refresh_timeout)
            .user_agent("rampart-vault")
            .build()?;
        Ok(Self { settings: Arc::new(settings), http })
    }

    /// The settings.
    pub fn settings(&self) -> &VaultSettings {
        &self.settings
    }

    /// A configured provider.
    pub fn provider(&self, name: &str) -> Option<&ProviderSettings> {
        self.settings.providers.get(name)
    }

    /// How long a refresh may hold the lock: every attempt timing out plus the backoff between
    /// them, plus slack.
    pub fn lease(&self) -> Duration {
        let s = &self.settings;
        let backoff: Duration = (1..s.refresh_attempts)
            .map(|n| s.refresh_backoff * 3 / 2 * (1u32 << (n - 1).min(10)))
            .sum();
        s.refresh_timeout * s.refresh_attempts + backoff + Duration::from_secs(5)
    }
}

/// The associated data of a sealed column of a vault row.
pub fn aad(column: &str, row_id: &str) -> Vec<u8> {
    format!("vault_tokens/{column}/{row_id}").into_bytes()
}

/// Plain tokens of a row.
#[derive(Debug)]
pub struct Tokens {
    /// The access token.
    pub access_token: SecretString,
    /// The refresh token.
    pub refresh_token: Option<SecretString>,
    /// Access token expiry.
    pub expires_at: Option<OffsetDateTime>,
}

/// Seals `tokens` for row `row_id` under the current key.
pub fn seal(keyring: &Keyring, row_id: &str, tokens: &Tokens) -> SealedTokens {
    let seal_one = |column: &str, v: &SecretString| {
        keyring.seal(Purpose::Encryption, &aad(column, row_id), v.expose_secret().as_bytes())
    };
    SealedTokens {
        access_token: seal_one("access_token", &tokens.access_token),
        refresh_token: tokens.refresh_token.as_ref().map(|r| seal_one("refresh_token", r)),
        expires_at: tokens.expires_at,
        key_id: hex::encode(keyring.current().id()),
    }
}

/// Opens a row's tokens with any key of the ring.
pub fn open(keyring: &Keyring, row: &VaultRow) -> Result<Tokens, CryptoError> {
    let open_one = |column: &str, v: &[u8]| {
        let plain = keyring.open(Purpose::Encryption, &aad(column, &row.id), v)?;
        String::from_utf8(plain).map(SecretString::new).map_err(|_| CryptoError::Malformed)
    };
    Ok(Tokens {
        access_token: open_one("access_token", &row.access_token)?,
        refresh_token: row
            .refresh_token
            .as_deref()
            .map(|r| open_one("refresh_token", r))
            .transpose()?,
        expires_at: row.expires_at,
    })
}

/// 502 `token_refresh_failed`.
pub fn refresh_failed() -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "token_refresh_failed",
        "the provider did not refresh the token; try again later",
    )
}

fn undecryptable(e: &CryptoError) -> ApiError {
    ApiError::internal_from("a vault row does not decrypt with any configured key", e)
}

/// Stores (or replaces) `user_id`'s tokens for `provider`.
pub async fn store(
    state: &AppState,
    user_id: &str,
    provider: &str,
    tokens: &Tokens,
) -> ApiResult<()> {
    let now = state.clock.now();
    for _ in 0..3 {
        match state.db.vault_get(user_id, provider).await.map_err(|e| store_error(&e))? {
            Some(row) => {
                let sealed = seal(&state.keyring, &row.id, tokens);
                if state
                    .db
                    .vault_replace(&row.id, &sealed, now)
                    .await
                    .map_err(|e| store_error(&e))?
                {
                    return Ok(());
                }
            }
            None => {
                let id = format!("vt_{}", rampart_core::token::random_id(12));
                let sealed = seal(&state.keyring, &id, tokens);
                let inserted = state.db.vault_insert(&id, user_id, provider, &sealed, now).await;
                if inserted.map_err(|e| store_error(&e))? {
                    return Ok(());
                }
            }
        }
    }
    Err(ApiError::new(StatusCode::CONFLICT, "conflict", "the tokens changed concurrently; retry"))
}

fn fresh(expires_at: Option<OffsetDateTime>, now: OffsetDateTime, margin: Duration) -> bool {
    expires_at.is_none_or(|t| t - margin > now)
}

/// A valid access token of `user_id` for `provider`, refreshed first when it expires within
/// the configured margin. `Ok(None)` when nothing is stored.
pub async fn access_token(
    state: &AppState,
    user_id: &str,
    name: &str,
    provider: &ProviderSettings,
) -> ApiResult<Option<(SecretString, Option<OffsetDateTime>)>> {
    let vault = &state.vault;
    let margin = vault.settings().refresh_margin;
    let started = to_micros(state.clock.now());
    let deadline = tokio::time::Instant::now() + vault.lease() + Duration::from_secs(2);
    let mut wait = Duration::from_millis(20);
    loop {
        let Some(row) = state.db.vault_get(user_id, name).await.map_err(|e| store_error(&e))?
        else {
            return Ok(None);
        };
        let tokens = open(&state.keyring, &row).map_err(|e| undecryptable(&e))?;
        let now = state.clock.now();
        if fresh(row.expires_at, now, margin) {
            return Ok(Some((tokens.access_token, row.expires_at)));
        }
        if tokens.refresh_token.is_none() {
            tracing::warn!(
                provider = name,
                "the stored access token expired and there is no refresh token"
            );
            return Err(refresh_failed());
        }
        let lock_state =
            state.db.vault_lock_state(user_id, name).await.map_err(|e| store_error(&e))?;
        let held = lock_state.is_some_and(|l| l.lease_until > to_micros(now));
        if !held && lock_state.and_then(|l| l.failed_at).is_some_and(|f| f >= started) {
            // The refresh this request waited for failed: share its answer.
            return Err(refresh_failed());
        }
        if !held {
            let holder = rampart_core::token::random_id(16);
            let claim = state.db.vault_lock_claim(user_id, name, &holder, now, vault.lease()).await;
            if let Some(lock) = claim.map_err(|e| store_error(&e))? {
                match refresh_locked(state, &lock, provider).await {
                    Ok(Some(done)) => return Ok(Some(done)),
                    // The row changed meanwhile: read it again (after the deadline check).
                    Ok(None) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(provider = name, "gave up waiting for a token refresh held elsewhere");
            return Err(refresh_failed());
        }
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        tokio::time::sleep(wait.mul_f64(jitter)).await;
        wait = (wait * 2).min(Duration::from_millis(500));
    }
}

/// Holding `lock`: re-reads the row (another holder may have refreshed it just before), then
/// refreshes and writes under the fence. `Ok(None)`: the row changed meanwhile, read again.
async fn refresh_locked(
    state: &AppState,
    lock: &VaultLock,
    provider: &ProviderSettings,
) -> ApiResult<Option<(SecretString, Option<OffsetDateTime>)>> {
    let result = refresh_locked_inner(state, lock, provider).await;
    let failed = matches!(&result, Err(e) if e.code == "token_refresh_failed");
    if let Err(e) = state.db.vault_lock_release(lock, failed, state.clock.now()).await {
        tracing::warn!(error = %crate::error::ErrorChain(&e), "could not release a vault lock; it expires with its lease");
    }
    result
}

async fn refresh_locked_inner(
    state: &AppState,
    lock: &VaultLock,
    provider: &ProviderSettings,
) -> ApiResult<Option<(SecretString, Option<OffsetDateTime>)>> {
    let settings = state.vault.settings();
    let Some(row) =
        state.db.vault_get(&lock.user_id, &lock.provider).await.map_err(|e| store_error(&e))?
    else {
        return Ok(None);
    };
    let tokens = open(&state.keyring, &row).map_err(|e| undecryptable(&e))?;
    if fresh(row.expires_at, state.clock.now(), settings.refresh_margin) {
        return Ok(Some((tokens.access_token, row.expires_at)));
    }
    let Some(refresh_token) = tokens.refresh_token else { return Ok(None) };
    let clock = state.clock.clone();
    let refreshed =
        refresh::refresh(&state.vault.http, settings, provider, &refresh_token, || clock.now())
            .await
            .map_err(|e| {
                tracing::warn!(provider = %lock.provider, error = %e, "token refresh failed");
                refresh_failed()
            })?;
    let new = Tokens {
        access_token: refreshed.access_token,
        refresh_token: refreshed.refresh_token.or(Some(refresh_token)),
        expires_at: refreshed.expires_at,
    };
    let sealed = seal(&state.keyring, &row.id, &new);
    let written = state
        .db
        .vault_write_fenced(&row.id, row.revision, lock, &sealed, state.clock.now())
        .await
        .map_err(|e| store_error(&e))?;
    if !written {
        // The user replaced the tokens meanwhile, or the lease lapsed: theirs win.
        return Ok(None);
    }
    tracing::info!(provider = %lock.provider, "refreshed a vault token");
    Ok(Some((new.access_token, new.expires_at)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::MasterKey;

    fn ring(b: u8) -> Keyring {
        let mut v: Vec<u8> = (0..32u8).collect();
        v[0] = b;
        Keyring::new(MasterKey::from_bytes(v).unwrap(), vec![])
    }

    fn row(id: &str, sealed: &SealedTokens) -> VaultRow {
        VaultRow {
            id: id.into(),
            user_id: "u".into(),
            provider: "p".into(),
            access_token: sealed.access_token.clone(),
            refresh_token: sealed.refresh_token.clone(),
            expires_at: None,
            key_id: sealed.key_id.clone(),
            revision: 1,
        }
    }

    fn tokens() -> Tokens {
        Tokens {
            access_token: SecretString::new("access-1"),
            refresh_token: Some(SecretString::new("refresh-1")),
            expires_at: None,
        }
    }

    #[test]
    fn sealed_tokens_open_only_in_their_own_row_and_column() {
        let k = ring(1);
        let sealed = seal(&k, "vt_a", &tokens());
        let opened = open(&k, &row("vt_a", &sealed)).unwrap();
        assert_eq!(opened.access_token.expose_secret(), "access-1");
        assert_eq!(opened.refresh_token.unwrap().expose_secret(), "refresh-1");
        assert_eq!(open(&k, &row("vt_b", &sealed)).unwrap_err(), CryptoError::Authentication);
        let mut swapped = row("vt_a", &sealed);
        swapped.access_token = sealed.refresh_token.clone().unwrap();
        assert!(open(&k, &swapped).is_err(), "columns are bound too");
        assert!(!sealed.access_token.windows(8).any(|w| w == b"access-1"));
    }

    #[test]
    fn values_under_a_previous_key_open_and_new_ones_use_the_current_key() {
        let old = ring(1);
        let sealed = seal(&old, "vt_a", &tokens());
        let rotated = Keyring::new(ring(2).current().clone(), vec![old.current().clone()]);
        assert!(open(&rotated, &row("vt_a", &sealed)).is_ok());
        let resealed = seal(&rotated, "vt_a", &tokens());
        assert_eq!(resealed.key_id, hex::encode(rotated.current().id()));
        assert_eq!(Keyring::sealed_key_id(&resealed.access_token), Some(rotated.current().id()));
        assert!(open(&ring(2), &row("vt_a", &sealed)).is_err(), "the old key was dropped");
    }

    #[test]
    fn tokens_count_as_fresh_until_the_margin() {
        let now = time::macros::datetime!(2030-01-01 00:00:00 UTC);
        let m = Duration::from_secs(60);
        assert!(fresh(None, now, m));
        assert!(fresh(Some(now + Duration::from_secs(61)), now, m));
        assert!(!fresh(Some(now + Duration::from_secs(60)), now, m));
        assert!(!fresh(Some(now - Duration::from_secs(1)), now, m));
    }
}
