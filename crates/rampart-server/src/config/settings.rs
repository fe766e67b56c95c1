//! The registry of scalar settings: one name each for TOML (`key`), the environment
//! (`RAMPART_KEY`) and, for secrets, a file variant (`RAMPART_KEY_FILE` / `key_file`).

/// One scalar setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// TOML key; the environment variable is `RAMPART_` + this in upper case.
    pub key: &'static str,
    /// Secrets are redacted in every output and may be read from a file.
    pub secret: bool,
    /// One line of help for `check-config` and the README.
    pub help: &'static str,
}

const fn s(key: &'static str, help: &'static str) -> Setting {
    Setting { key, secret: false, help }
}

const fn secret(key: &'static str, help: &'static str) -> Setting {
    Setting { key, secret: true, help }
}

/// Every scalar setting Rampart reads.
pub const SETTINGS: &[Setting] = &[
    s("env", "`development` (default) or `production`"),
    s("listen", "address to listen on (default 127.0.0.1:8080)"),
    s(
        "workers",
        "single-threaded loops serving connections, at most 1024; 0 serves them on the shared \
         runtime (default: one per CPU)",
    ),
    s("public_origin", "origin users reach Rampart at (default http://<listen>)"),
    s("data_dir", "directory for the SQLite database and generated keys (default ./rampart-data)"),
    s(
        "instance_id",
        "name of this instance in the audit log (default: generated, kept in the data dir)",
    ),
    secret("database_url", "sqlite://<path> (default <data dir>/rampart.db) or postgres://…"),
    s("database_max_connections", "pool size (default 10, at least 2: the audit writer keeps one)"),
    s("database_min_connections", "connections kept open (default 0)"),
    s("database_acquire_timeout", "wait for a pooled connection (default 3s)"),
    s("database_idle_timeout", "close idle connections after (default 10m)"),
    s("database_max_lifetime", "replace connections after (default 30m)"),
    s("database_test_before_acquire", "ping connections before use (default true)"),
    secret("redis_url", "redis://[user:pass@]host:port/db or rediss://… (unset: no Redis)"),
    secret("redis_password", "Redis password, if not in the URL"),
    s("redis_key_prefix", "prefix of every Redis key (default rampart:)"),
    secret("secret_key", "master key, base64url or hex, at least 32 bytes"),
    secret("previous_secret_keys", "comma-separated older keys, for verifying and decrypting only"),
    secret(
        "pseudonymization_key",
        "key of `rampart pseudonymize` and /api/pseudonymize, >= 32 bytes (default: generated in development)",
    ),
    s("trusted_proxies", "comma-separated CIDRs whose forwarding headers are believed"),
    s(
        "assertion_audience",
        "`aud` of the identity assertions sent upstream (default: the public origin)",
    ),
    s("log", "log filter (default info)"),
    s("log_format", "`pretty` or `json` (default: pretty in development, json in production)"),
    s(
        "session_store",
        "`memory`, `redis` or `sql` (default redis when a Redis URL is set, else memory)",
    ),
    s("session_idle_timeout", "sessions end after this long unused (default 30m)"),
    s("session_absolute_timeout", "sessions end this long after login (default 12h)"),
    s("session_memory_capacity", "most sessions the memory store holds (default 100000)"),
    s(
        "session_max_per_user",
        "most live sessions per user; a new login ends the least recently used (default 50)",
    ),
    s("session_cookie_same_site", "`lax` (default) or `strict`"),
    s(
        "session_cookie_max_age",
        "persistent cookie lifetime (default: none, a browser-session cookie)",
    ),
    s("session_touch_interval", "how often a session's last-seen time is written (default 60s)"),
    s("session_store_timeout", "answer 503 when the session store takes longer (default 1s)"),
    s("rate_limit", "quotas of the default rule, e.g. `200/60s,50/10s` (the default)"),
    s("rate_limit_capacity", "most keys the memory rate limiter holds (default 1000000)"),
    s("login_max_failures", "failed logins per account before a ban (default 5)"),
    s("login_failure_window", "window for counting failed logins (default 15m)"),
    s("login_ban", "first ban length; doubles up to 15m (default 1m)"),
    s(
        "login_ip_max_failures",
        "failed logins per client IP within login_ip_window that lock the IP (default 20)",
    ),
    s(
        "login_ip_window",
        "window of the per-IP count, from its first failure; a locked IP waits until it ends (default 5m)",
    ),
    s("password_min_length", "shortest password accepted (default 12, never below 8)"),
    s("argon2_memory_kib", "Argon2id memory (default 19456; never lower in production)"),
    s("argon2_iterations", "Argon2id iterations (default 2)"),
    s("argon2_parallelism", "Argon2id lanes (default 1)"),
    s("hash_concurrency", "password hashes computed at once (default: half the CPUs, at least 1)"),
    s("hash_queue", "password hashes waiting before new ones are refused (default 64)"),
    s("signup", "`closed` (default) or `open`"),
    s("api_key_limit", "most API keys that may exist at once (default 1000)"),
    s("body_limit", "largest API request body in bytes (default 65536)"),
    s("request_timeout", "longest a request may take (default 30s)"),
    s("header_read_timeout", "longest a client may take to send its headers (default 10s)"),
    s("csrf_trusted_origins", "comma-separated extra origins accepted by the CSRF origin check"),
    s("csrf_allow_same_site", "accept Sec-Fetch-Site: same-site (default false)"),
    s("csrf_exempt_prefixes", "comma-separated path prefixes without CSRF checks (webhooks)"),
    s(
        "audit_stream",
        "also write audit events as JSON lines to `stdout` or a file path (default: off)",
    ),
    s(
        "audit_retention",
        "keep audit events this long; `rampart audit prune` removes older ones (default: keep)",
    ),
    s(
        "cors_allowed_origins",
        "comma-separated origins allowed cross-origin requests (default: CORS off)",
    ),
    s("cors_allowed_methods", "methods allowed cross-origin (default GET,POST)"),
    s(
        "cors_allowed_headers",
        "request headers allowed cross-origin (default content-type,x-csrf-token)",
    ),
    s("upstream", "URL of the app to protect, e.g. http://127.0.0.1:3000 (unset: proxy off)"),
    s("upstream_timeout", "time the upstream has to send its response head (default 30s)"),
    s(
        "upstream_ca_file",
        "PEM CA certificates trusted for an https upstream (default: public roots)",
    ),
    s(
        "proxy_body_limit",
        "largest request body streamed to the upstream, bytes (default 10485760)",
    ),
    s("tls_cert_file", "PEM certificate chain: serve HTTPS (with RAMPART_TLS_KEY_FILE)"),
    s("tls_key_file", "PEM private key of the certificate"),
    s("metrics_listen", "address of the separate /metrics listener (default: off)"),
    s("insecure_disable_csrf", "development only: turn CSRF protection off (default false)"),
    s("insecure_disable_rate_limit", "development only: turn rate limiting off (default false)"),
];

/// Environment variables read outside the registry.
pub const EXTRA_ENV: &[&str] = &["RAMPART_CONFIG"];

/// Tables (sections) TOML may hold besides scalar settings.
pub const TOML_SECTIONS: &[&str] = &["rate_limit_rules", "vault", "access_rules"];

/// The environment variable for a setting.
pub fn env_name(key: &str) -> String {
    format!("RAMPART_{}", key.to_ascii_uppercase())
}

/// Looks a setting up by TOML key.
pub fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}
