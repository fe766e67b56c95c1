//! The OAuth 2.0 refresh grant (RFC 6749 §6): a form-encoded POST to the provider's token
//! endpoint with the client credentials, retried with exponential backoff and jitter.
//!
//! # Security
//! - The request goes only to the configured endpoint; redirects are not followed (a redirect
//!   could carry the client secret elsewhere), and each call has a timeout.
//! - The response body is read up to 64 KiB and never logged: it holds tokens. Logs name the
//!   provider and the HTTP status only.
//! - A 4xx answer other than 429 (e.g. `invalid_grant`: the refresh token was revoked) is final;
//!   only timeouts, connection errors, 5xx and 429 are retried.

use std::time::Duration;

use rampart_core::SecretString;
use rand::Rng;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::config::vault::{ClientAuth, ProviderSettings, VaultSettings};

/// Largest token response read.
const MAX_RESPONSE: usize = 64 * 1024;

/// New tokens from the provider.
#[derive(Debug)]
pub struct Refreshed {
    /// The new access token.
    pub access_token: SecretString,
    /// A new refresh token, when the provider rotates them.
    pub refresh_token: Option<SecretString>,
    /// When the new access token expires, if the provider said.
    pub expires_at: Option<OffsetDateTime>,
}

/// Why a refresh failed (for the operational log; clients see 502 `token_refresh_failed`).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The provider refused the grant (final).
    #[error("the token endpoint refused the refresh (HTTP {0})")]
    Refused(u16),
    /// The provider failed or did not answer, on every attempt.
    #[error("the token endpoint failed after {attempts} attempt(s): {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

enum Attempt {
    Final(u16),
    Retry(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    expires_in: Option<serde_json::Value>,
}

/// Form-encodes one component (`application/x-www-form-urlencoded`).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn body_for(provider: &ProviderSettings, refresh_token: &SecretString) -> String {
    let mut body = format!(
        "grant_type=refresh_token&refresh_token={}",
        form_encode(refresh_token.expose_secret())
    );
    if provider.client_auth == ClientAuth::Post {
        body.push_str(&format!(
            "&client_id={}&client_secret={}",
            form_encode(&provider.client_id),
            form_encode(provider.client_secret.expose_secret())
        ));
    }
    body
}

async fn read_limited(mut res: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| format!("reading the response: {e}"))? {
        if buf.len() + chunk.len() > MAX_RESPONSE {
            return Err("response too large".into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn expires_at(v: Option<&serde_json::Value>, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let secs = match v? {
        serde_json::Value::Number(n) => n.as_i64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (secs > 0).then(|| now + Duration::from_secs(secs.unsigned_abs()))
}

async fn attempt(
    client: &reqwest::Client,
    provider: &ProviderSettings,
    refresh_token: &SecretString,
    now: OffsetDateTime,
) -> Result<Refreshed, Attempt> {
    let mut req = client
        .post(&provider.token_endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body_for(provider, refresh_token));
    if provider.client_auth == ClientAuth::Basic {
        req = req.basic_auth(
            form_encode(&provider.client_id),
            Some(form_encode(provider.client_secret.expose_secret())),
        );
    }
    let res = req.send().await.map_err(|e| {
        Attempt::Retry(if e.is_timeout() { "timed out".into() } else { "connection failed".into() })
    })?;
    let status = res.status().as_u16();
    if status == 429 || res.status().is_server_error() {
        return Err(Attempt::Retry(format!("HTTP {status}")));
    }
    if !res.status().is_success() {
        return Err(Attempt::Final(status));
    }
    let body = read_limited(res).await.map_err(Attempt::Retry)?;
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|_| Attempt::Retry("the response is not a token response".into()))?;
    if parsed.access_token.is_empty() {
        return Err(Attempt::Retry("the response has an empty access token".into()));
    }
    Ok(Refreshed {
        access_token: parsed.access_token,
        refresh_token: parsed.refresh_token.filter(|t| !t.is_empty()),
        expires_at: expires_at(parsed.expires_in.as_ref(), now),
    })
}

/// The delay before retry `n` (1-based): `base · 2^(n-1)`, times a random factor in [0.5, 1.5).
pub fn backoff(base: Duration, n: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << n.saturating_sub(1).min(10));
    exp.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

/// Runs the refresh grant, up to `settings.refresh_attempts` calls. `now` dates the expiry.
pub async fn refresh(
    client: &reqwest::Client,
    settings: &VaultSettings,
    provider: &ProviderSettings,
    refresh_token: &SecretString,
    now: impl Fn() -> OffsetDateTime,
) -> Result<Refreshed, RefreshError> {
    let mut last = String::new();
    for n in 1..=settings.refresh_attempts {
        match attempt(client, provider, refresh_token, now()).await {
            Ok(r) => return Ok(r),
            Err(Attempt::Final(status)) => return Err(RefreshError::Refused(status)),
            Err(Attempt::Retry(why)) => {
                last = why;
                if n < settings.refresh_attempts {
                    tokio::time::sleep(backoff(settings.refresh_backoff, n)).await;
                }
            }
        }
    }
    Err(RefreshError::Exhausted { attempts: settings.refresh_attempts, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_everything_but_unreserved_characters() {
        assert_eq!(form_encode("a b+c/d=é"), "a+b%2Bc%2Fd%3D%C3%A9");
        assert_eq!(form_encode("Az09-._*"), "Az09-._*");
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        for n in 1..=4u32 {
            let d = backoff(base, n);
            let nominal = base * 2u32.pow(n - 1);
            assert!(d >= nominal / 2 && d < nominal * 3 / 2, "{n}: {d:?}");
        }
    }

    #[test]
    fn expiry_is_read_from_numbers_or_numeric_strings() {
        let now = time::macros::datetime!(2030-01-01 00:00:00 UTC);
        let hour = now + Duration::from_secs(3600);
        assert_eq!(expires_at(Some(&serde_json::json!(3600)), now), Some(hour));
        assert_eq!(expires_at(Some(&serde_json::json!("3600")), now), Some(hour));
        assert_eq!(expires_at(Some(&serde_json::json!(-5)), now), None);
        assert_eq!(expires_at(None, now), None);
    }
}
