//! Configuration: layered sources, validation into a typed [`Config`], and the production
//! rules that refuse unsafe settings.
//!
//! Parsing and validation do no I/O beyond reading the TOML file and `*_FILE` secrets; checks
//! that need the network (database, Redis, migrations) happen in the startup step.

pub mod parse;
pub mod proxy;
pub mod settings;
pub mod sources;
pub mod vault;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_core::{SecretString, TrustedProxies};

pub use sources::{Origin, RawValues};

/// A configuration error naming the offending setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The environment variable name of the setting (e.g. `RAMPART_PUBLIC_ORIGIN`).
    pub setting: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A new error.
    pub fn new(setting: &str, message: impl Into<String>) -> Self {
        Self { setting: setting.to_owned(), message: message.into() }
    }
}

/// Deployment mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    /// Convenient and loud.
    Development,
    /// Fails closed.
    Production,
}

/// Operational log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Which session store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStoreKind {
    /// Bounded in-process memory.
    Memory,
    /// Redis, shared by instances.
    Redis,
    /// The SQL database.
    Sql,
}

/// The public origin: scheme, host and port users reach Rampart at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin {
    /// `https` or `http`.
    pub scheme: String,
    /// Host, lower case.
    pub host: String,
    /// Port (explicit or the scheme's default).
    pub port: u16,
}

impl PublicOrigin {
    /// Parses `scheme://host[:port]` (a trailing `/` is allowed, nothing else after the host).
    pub fn parse(text: &str) -> Option<Self> {
        let uri: http::Uri = text.trim().parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
        if !(pq.is_empty() || pq == "/") || uri.authority()?.as_str().contains('@') {
            return None;
        }
        let host = uri.host()?.to_ascii_lowercase();
        Some(Self { scheme, host, port: uri.port_u16().unwrap_or(default_port) })
    }

    /// Whether the scheme is https.
    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// The serialized origin (default ports omitted).
    pub fn to_origin_string(&self) -> String {
        let default = if self.is_https() { 443 } else { 80 };
        if self.port == default {
            format!("{}://{}", self.scheme, self.host)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Mode.
    pub env: Env,
    /// Listen address.
    pub listen: SocketAddr,
    /// Connection loops (`RAMPART_WORKERS`); 0 serves connections on the shared runtime.
    pub workers: usize,
    /// Public origin.
    pub public_origin: PublicOrigin,
    /// Whether the public origin was configured (else derived from the listen address).
    pub public_origin_explicit: bool,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Instance name for the audit chain (None: generated and kept in the data dir).
    pub instance_id: Option<String>,
    /// Database URL (may hold a password).
    pub database_url: SecretString,
    /// Pool settings.
    pub pool: rampart_store_sql::PoolConfig,
    /// Redis URL (may hold a password).
    pub redis_url: Option<SecretString>,
    /// Redis password from its own setting.
    pub redis_password: Option<SecretString>,
    /// Redis key prefix.
    pub redis_key_prefix: String,
    /// Master key text (decoded at startup).
    pub secret_key: Option<SecretString>,
    /// Previous master keys.
    pub previous_secret_keys: Vec<SecretString>,
    /// Pseudonymization key text (None: generated in development, feature off in production).
    pub pseudonymization_key: Option<SecretString>,
    /// The token vault: OAuth providers and refresh policy.
    pub vault: vault::VaultSettings,
    /// Trusted proxies.
    pub trusted_proxies: TrustedProxies,
    /// Gateway access rules (`[[access_rules.rule]]`), in order.
    pub access_rules: Vec<crate::gateway::rules::Rule>,
    /// `aud` of identity assertions (None: the public origin).
    pub assertion_audience: Option<String>,
    /// Log filter.
    pub log: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Session settings.
    pub session: SessionSettings,
    /// Default rate-limit rule quotas (text, e.g. `200/60s`).
    pub rate_limit: Vec<String>,
    /// Memory rate limiter capacity.
    pub rate_limit_capacity: usize,
    /// Full rate-limit rules from TOML (`[[rate_limit_rules.rule]]`); empty: the default rule.
    pub rate_limit_rules: Vec<rampart_ratelimit::Rule>,
    /// Brute-force regulation.
    pub login: LoginSettings,
    /// Password hashing and policy.
    pub password: PasswordSettings,
    /// Open signup.
    pub signup_open: bool,
    /// Request limits.
    pub limits: Limits,
    /// CSRF settings.
    pub csrf: CsrfSettings,
    /// Reverse proxy to the upstream app.
    pub proxy: proxy::ProxySettings,
    /// Native TLS (None: plain HTTP, e.g. behind a TLS-terminating proxy).
    pub tls: Option<proxy::TlsSettings>,
    /// Where audit events are also streamed (None: off; `stdout` or a file path).
    pub audit_stream: Option<String>,
    /// How long audit events are kept (None: forever).
    pub audit_retention: Option<Duration>,
    /// CORS (None: off).
    pub cors: Option<CorsSettings>,
    /// Listen address of the metrics endpoint (None: off).
    pub metrics_listen: Option<SocketAddr>,
    /// Development-only switches that weaken security.
    pub insecure: Insecure,
    /// Every warning found while loading (unknown names in development, insecure switches).
    pub warnings: Vec<String>,
}

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Explicit store, or None for the default.
    pub store: Option<SessionStoreKind>,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Absolute timeout.
    pub absolute_timeout: Duration,
    /// Memory store capacity.
    pub memory_capacity: usize,
    /// Most live sessions one user keeps; a login beyond it ends the least recently used.
    pub max_per_user: usize,
    /// `SameSite=Strict` instead of Lax.
    pub same_site_strict: bool,
    /// Persistent cookie lifetime.
    pub cookie_max_age: Option<Duration>,
    /// Last-seen write interval.
    pub touch_interval: Duration,
    /// Store operation timeout.
    pub store_timeout: Duration,
}

/// Brute-force regulation settings.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// Failures per account before a ban.
    pub max_failures: u32,
    /// Counting window.
    pub failure_window: Duration,
    /// First ban.
    pub ban: Duration,
    /// Failures per client IP, within `ip_window`, that lock the IP.
    pub ip_max_failures: u32,
    /// Window of the per-IP count, from the IP's first failure; a locked IP stays locked until
    /// it ends (`login_ban` does not apply).
    pub ip_window: Duration,
}

/// Password settings.
#[derive(Debug, Clone)]
pub struct PasswordSettings {
    /// Minimum length.
    pub min_length: usize,
    /// Argon2 memory in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2 iterations.
    pub argon2_iterations: u32,
    /// Argon2 lanes.
    pub argon2_parallelism: u32,
    /// Concurrent hashes.
    pub hash_concurrency: usize,
    /// Waiting hashes.
    pub hash_queue: usize,
}

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest API body.
    pub body_limit: usize,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Header read timeout.
    pub header_read_timeout: Duration,
    /// Most API keys that may exist at once.
    pub api_key_limit: usize,
}

/// CSRF settings.
#[derive(Debug, Clone)]
pub struct CsrfSettings {
    /// The public origin as the CSRF origin check compares it.
    pub public_origin: rampart_protect::origin::Origin,
    /// Extra accepted origins, parsed.
    pub trusted: Vec<rampart_protect::origin::Origin>,
    /// Extra accepted origins.
    pub trusted_origins: Vec<String>,
    /// Accept same-site.
    pub allow_same_site: bool,
    /// Exempt prefixes.
    pub exempt_prefixes: Vec<String>,
}

/// CORS settings: an exact allowlist.
#[derive(Debug, Clone)]
pub struct CorsSettings {
    /// Allowed origins.
    pub origins: Vec<rampart_protect::origin::Origin>,
    /// Allowed methods.
    pub methods: Vec<http::Method>,
    /// Allowed request headers.
    pub headers: Vec<http::HeaderName>,
}

/// Switches that weaken security; production refuses every one of them.
#[derive(Debug, Clone, Default)]
pub struct Insecure {
    /// CSRF off.
    pub disable_csrf: bool,
    /// Rate limiting off.
    pub disable_rate_limit: bool,
}

mod validate;

impl Config {
    /// Loads every layer: the TOML file (`config_path`, else `RAMPART_CONFIG`), the process
    /// environment and the given flags, then validates.
    pub fn load(
        config_path: Option<&Path>,
        flags: &[(&'static str, Option<String>)],
    ) -> Result<Self, ConfigError> {
        let mut raw = RawValues::default();
        let path = config_path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("RAMPART_CONFIG").map(PathBuf::from));
        if let Some(path) = path {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::new(
                    "RAMPART_CONFIG",
                    format!("cannot read {}: {}", path.display(), e.kind()),
                )
            })?;
            raw.apply_toml(&text, &path)?;
        }
        raw.apply_env(std::env::vars())?;
        for (k, v) in flags {
            raw.apply_flag(k, v.clone());
        }
        Self::from_raw(&raw)
    }

    /// The effective configuration as `key = value (origin)` lines with every secret redacted.
    pub fn describe(&self, raw: Option<&RawValues>) -> Vec<String> {
        validate::describe(self, raw)
    }
}
