//! Settings of the token vault (`[vault]` and `[vault.providers.<name>]` in TOML) and the
//! pseudonymization key (`RAMPART_PSEUDONYMIZATION_KEY`).
//!
//! ```toml
//! [vault]
//! refresh_margin = "60s"     # refresh when the access token expires within this
//! refresh_attempts = 3       # calls to the token endpoint before answering 502
//! refresh_timeout = "10s"    # per call
//! refresh_backoff = "200ms"  # first retry delay; doubles, with jitter
//!
//! [vault.providers.github]
//! token_endpoint = "https://github.com/login/oauth/access_token"
//! client_id = "Iv1.0123"
//! client_secret_file = "/run/secrets/github-client-secret"
//! client_auth = "basic"      # or "post" (credentials in the form body)
//! ```
//!
//! # Security
//! - The client secret comes from `client_secret_file`, or from the environment
//!   (`RAMPART_VAULT_<NAME>_CLIENT_SECRET` or `…_FILE`). An inline `client_secret` in the TOML
//!   file is accepted in development only. It is never printed (`check-config` shows
//!   `[redacted]` and where it came from).
//! - The token endpoint is fixed here, by the operator. A user storing tokens cannot choose
//!   where refreshes go (a `token_endpoint` in the request must equal this one), so the client
//!   secret is only ever sent to the configured URL. In production it must be https.

use std::collections::BTreeMap;
use std::time::Duration;

use rampart_core::{MasterKey, SecretString};
use serde::Deserialize;

use super::parse::{duration, fmt_duration};
use super::{ConfigError, RawValues};

/// Environment variables under this prefix name provider secrets.
pub const VAULT_ENV_PREFIX: &str = "RAMPART_VAULT_";

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded client id and secret (RFC 6749 §2.3.1).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// One OAuth provider.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// The token endpoint URL.
    pub token_endpoint: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// How the client authenticates.
    pub client_auth: ClientAuth,
    /// Where the secret came from (`file`, `env`, `inline`), for `check-config`.
    pub secret_origin: &'static str,
}

/// Vault settings.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// Providers by name.
    pub providers: BTreeMap<String, ProviderSettings>,
    /// Refresh when the access token expires within this.
    pub refresh_margin: Duration,
    /// Calls to the token endpoint per refresh before giving up.
    pub refresh_attempts: u32,
    /// Timeout of one call.
    pub refresh_timeout: Duration,
    /// First retry delay (doubles each retry, with jitter).
    pub refresh_backoff: Duration,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            providers: BTreeMap::new(),
            refresh_margin: Duration::from_secs(60),
            refresh_attempts: 3,
            refresh_timeout: Duration::from_secs(10),
            refresh_backoff: Duration::from_millis(200),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    refresh_margin: Option<String>,
    refresh_attempts: Option<u32>,
    refresh_timeout: Option<String>,
    refresh_backoff: Option<String>,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    token_endpoint: String,
    client_id: String,
    client_secret: Option<String>,
    client_secret_file: Option<String>,
    client_auth: Option<String>,
}

/// Whether `name` is a valid provider name: 1–32 of `a-z`, `0-9`, `_`, starting with a letter.
pub fn valid_provider_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn secret_env_name(provider: &str) -> String {
    format!("{VAULT_ENV_PREFIX}{}_CLIENT_SECRET", provider.to_ascii_uppercase())
}

fn read_file(setting: &str, path: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(setting, format!("cannot read {path}: {}", e.kind())))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn dur(name: &str, v: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(t) => duration(&t).filter(|d| !d.is_zero()).ok_or_else(|| {
            ConfigError::new(&format!("vault.{name}"), format!("expected a duration, got {t:?}"))
        }),
    }
}

/// Checks a token endpoint URL: http(s), a host, no user info or fragment; https in production.
fn check_endpoint(setting: &str, url: &str, prod: bool) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| ConfigError::new(setting, format!("not a URL: {url:?}")))?;
    let ok_scheme = parsed.scheme() == "https" || (!prod && parsed.scheme() == "http");
    if !ok_scheme {
        return Err(ConfigError::new(
            setting,
            if prod { "must be an https URL in production" } else { "must be an http(s) URL" },
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty)
        || !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.fragment().is_some()
    {
        return Err(ConfigError::new(setting, "needs a host, and no user info or fragment"));
    }
    Ok(())
}

/// Reads the `[vault]` section and the provider secrets from the environment.
pub fn from_raw(
    raw: &RawValues,
    prod: bool,
    warnings: &mut Vec<String>,
) -> Result<VaultSettings, ConfigError> {
    let parsed: Option<RawVault> = raw
        .sections
        .get("vault")
        .map(|v| {
            v.clone()
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::new("vault", e.message().to_owned()))
        })
        .transpose()?;
    let mut out = VaultSettings::default();
    let mut used_env: Vec<String> = Vec::new();
    if let Some(v) = parsed {
        out.refresh_margin = dur("refresh_margin", v.refresh_margin, out.refresh_margin)?;
        out.refresh_timeout = dur("refresh_timeout", v.refresh_timeout, out.refresh_timeout)?;
        out.refresh_backoff = dur("refresh_backoff", v.refresh_backoff, out.refresh_backoff)?;
        out.refresh_attempts = v.refresh_attempts.unwrap_or(out.refresh_attempts);
        if !(1..=10).contains(&out.refresh_attempts) {
            return Err(ConfigError::new("vault.refresh_attempts", "must be between 1 and 10"));
        }
        for (name, p) in v.providers {
            let at = format!("vault.providers.{name}");
            if !valid_provider_name(&name) {
                return Err(ConfigError::new(
                    &at,
                    "provider names are 1-32 of a-z, 0-9 and _, starting with a letter",
                ));
            }
            check_endpoint(&format!("{at}.token_endpoint"), &p.token_endpoint, prod)?;
            if p.client_id.trim().is_empty() {
                return Err(ConfigError::new(&format!("{at}.client_id"), "must not be empty"));
            }
            let env = secret_env_name(&name);
            let env_file = format!("{env}_FILE");
            let from_env = raw.vault_env.get(&env);
            let from_env_file = raw.vault_env.get(&env_file);
            used_env.push(env.clone());
            used_env.push(env_file.clone());
            let (secret, origin) =
                match (from_env, from_env_file, p.client_secret, p.client_secret_file) {
                    (Some(_), Some(_), _, _) => {
                        return Err(ConfigError::new(
                            &env_file,
                            format!("set either {env} or {env_file}, not both"),
                        ))
                    }
                    (Some(v), None, _, _) => (v.clone(), "env"),
                    (None, Some(path), _, _) => (read_file(&env_file, path)?, "env file"),
                    (None, None, Some(_), Some(_)) => {
                        return Err(ConfigError::new(
                            &format!("{at}.client_secret"),
                            "set either client_secret or client_secret_file, not both",
                        ))
                    }
                    (None, None, None, Some(path)) => {
                        (read_file(&format!("{at}.client_secret_file"), &path)?, "file")
                    }
                    (None, None, Some(v), None) => {
                        if prod {
                            return Err(ConfigError::new(
                                &format!("{at}.client_secret"),
                                format!("refused in production: use client_secret_file or {env}"),
                            ));
                        }
                        warnings.push(format!(
                            "{at}.client_secret is inline in the config file (development only)"
                        ));
                        (v, "inline")
                    }
                    (None, None, None, None) => {
                        return Err(ConfigError::new(
                            &format!("{at}.client_secret_file"),
                            format!("a client secret is required (client_secret_file or {env})"),
                        ))
                    }
                };
            if secret.is_empty() {
                return Err(ConfigError::new(
                    &env,
                    format!("the client secret of {name} is empty"),
                ));
            }
            let client_auth = match p.client_auth.as_deref() {
                None | Some("basic") => ClientAuth::Basic,
                Some("post") => ClientAuth::Post,
                Some(other) => {
                    return Err(ConfigError::new(
                        &format!("{at}.client_auth"),
                        format!("expected `basic` or `post`, got {other:?}"),
                    ))
                }
            };
            out.providers.insert(
                name,
                ProviderSettings {
                    token_endpoint: p.token_endpoint,
                    client_id: p.client_id,
                    client_secret: SecretString::new(secret),
                    client_auth,
                    secret_origin: origin,
                },
            );
        }
    }
    let unknown: Vec<&String> = raw.vault_env.keys().filter(|k| !used_env.contains(k)).collect();
    if let Some(first) = unknown.first() {
        let names = unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        if prod {
            return Err(ConfigError::new(first, format!("unknown setting(s): {names}")));
        }
        warnings.push(format!("unknown setting(s) ignored: {names}"));
    }
    Ok(out)
}

/// Validates `RAMPART_PSEUDONYMIZATION_KEY`: at least 32 bytes, not a placeholder, and not the
/// master key.
pub fn pseudonymization_key(
    raw: &RawValues,
    secret_key: Option<&SecretString>,
) -> Result<Option<SecretString>, ConfigError> {
    const NAME: &str = "RAMPART_PSEUDONYMIZATION_KEY";
    let Some(text) = raw.get("pseudonymization_key").filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let key = MasterKey::parse(text).map_err(|e| ConfigError::new(NAME, e.to_string()))?;
    if let Some(master) = secret_key.and_then(|s| MasterKey::parse(s.expose_secret()).ok()) {
        if master.id() == key.id() {
            return Err(ConfigError::new(NAME, "must differ from RAMPART_SECRET_KEY"));
        }
    }
    Ok(Some(SecretString::new(text.to_owned())))
}

/// `check-config` lines for the vault (secrets redacted).
pub fn describe(v: &VaultSettings) -> Vec<String> {
    let mut out = vec![
        format!("vault.refresh_margin = {}", fmt_duration(v.refresh_margin)),
        format!("vault.refresh_attempts = {}", v.refresh_attempts),
        format!("vault.refresh_timeout = {}", fmt_duration(v.refresh_timeout)),
        format!("vault.refresh_backoff = {}", fmt_duration(v.refresh_backoff)),
    ];
    for (name, p) in &v.providers {
        let at = format!("vault.providers.{name}");
        out.push(format!("{at}.token_endpoint = {}", p.token_endpoint));
        out.push(format!("{at}.client_id = {}", p.client_id));
        out.push(format!("{at}.client_secret = [redacted]  ({})", p.secret_origin));
        let auth = if p.client_auth == ClientAuth::Basic { "basic" } else { "post" };
        out.push(format!("{at}.client_auth = {auth}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml_text: &str, env: &[(&str, &str)]) -> RawValues {
        let mut r = RawValues::default();
        r.apply_toml(toml_text, std::path::Path::new("t.toml")).unwrap();
        r.apply_env(env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        r
    }

    const PROVIDER: &str = "[vault.providers.gh]\ntoken_endpoint = \"https://idp.example/token\"\nclient_id = \"cid\"\n";

    #[test]
    fn secrets_come_from_env_or_file_and_inline_ones_are_refused_in_production() {
        let r = raw(PROVIDER, &[("RAMPART_VAULT_GH_CLIENT_SECRET", "s3cret")]);
        let v = from_raw(&r, true, &mut Vec::new()).unwrap();
        assert_eq!(v.providers["gh"].client_secret.expose_secret(), "s3cret");
        assert!(!describe(&v).join("\n").contains("s3cret"));

        let inline = raw(&format!("{PROVIDER}client_secret = \"x\"\n"), &[]);
        let err = from_raw(&inline, true, &mut Vec::new()).unwrap_err();
        assert_eq!(err.setting, "vault.providers.gh.client_secret");
        let mut warnings = Vec::new();
        assert!(from_raw(&inline, false, &mut warnings).is_ok());
        assert!(warnings[0].contains("development only"));

        let none = raw(PROVIDER, &[]);
        assert!(from_raw(&none, false, &mut Vec::new()).is_err());
    }

    #[test]
    fn endpoints_must_be_https_in_production_and_names_are_restricted() {
        let http = raw(
            "[vault.providers.gh]\ntoken_endpoint = \"http://idp.example/token\"\nclient_id = \"c\"\n",
            &[("RAMPART_VAULT_GH_CLIENT_SECRET", "s")],
        );
        assert!(from_raw(&http, false, &mut Vec::new()).is_ok());
        let err = from_raw(&http, true, &mut Vec::new()).unwrap_err();
        assert_eq!(err.setting, "vault.providers.gh.token_endpoint");
        assert!(!valid_provider_name("Git-Hub"));
        assert!(valid_provider_name("github_enterprise2"));
    }

    #[test]
    fn unknown_vault_variables_are_reported() {
        let r = raw("", &[("RAMPART_VAULT_NOPE_CLIENT_SECRET", "s")]);
        let err = from_raw(&r, true, &mut Vec::new()).unwrap_err();
        assert_eq!(err.setting, "RAMPART_VAULT_NOPE_CLIENT_SECRET");
    }

    #[test]
    fn the_pseudonymization_key_must_be_strong_and_differ_from_the_master_key() {
        let k = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let r = raw("", &[("RAMPART_PSEUDONYMIZATION_KEY", k)]);
        assert!(pseudonymization_key(&r, None).unwrap().is_some());
        let same = SecretString::new(k);
        assert!(pseudonymization_key(&r, Some(&same)).is_err());
        let short = raw("", &[("RAMPART_PSEUDONYMIZATION_KEY", "abcd")]);
        assert!(pseudonymization_key(&short, None).is_err());
    }
}
