//! Turning raw values into a typed [`Config`], with defaults and the production rules that need
//! no I/O.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rampart_core::{SecretString, TrustedProxies};

use super::parse::{boolean, duration, fmt_duration, list, redact_url};
use super::settings::{env_name, SETTINGS};
use super::*;

struct Reader<'a> {
    raw: &'a RawValues,
}

impl Reader<'_> {
    fn text(&self, key: &str) -> Option<String> {
        self.raw.get(key).map(str::to_owned).filter(|v| !v.trim().is_empty())
    }

    fn parsed<T>(
        &self,
        key: &str,
        default: T,
        what: &str,
        f: impl Fn(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        match self.text(key) {
            None => Ok(default),
            Some(v) => f(&v).ok_or_else(|| {
                ConfigError::new(&env_name(key), format!("expected {what}, got {v:?}"))
            }),
        }
    }

    fn dur(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.parsed(key, default, "a duration like 2s, 30m, 12h or 7d", |v| {
            duration(v).filter(|d| !d.is_zero())
        })
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError> {
        self.parsed(key, default, "a whole number", |v| v.trim().parse().ok())
    }

    fn flag(&self, key: &str) -> Result<bool, ConfigError> {
        self.parsed(key, false, "true or false", boolean)
    }
}

impl Config {
    /// Validates raw values into a configuration (no network I/O).
    pub fn from_raw(raw: &RawValues) -> Result<Self, ConfigError> {
        let r = Reader { raw };
        let env =
            r.parsed("env", Env::Development, "`development` or `production`", |v| match v {
                "development" | "dev" => Some(Env::Development),
                "production" | "prod" => Some(Env::Production),
                _ => None,
            })?;
        let prod = env == Env::Production;
        let mut warnings = Vec::new();
        if !raw.unknown.is_empty() {
            let names = raw.unknown.join(", ");
            if prod {
                return Err(ConfigError::new(
                    &raw.unknown[0],
                    format!("unknown setting(s): {names}"),
                ));
            }
            warnings.push(format!("unknown setting(s) ignored: {names}"));
        }

        let listen: SocketAddr = r.parsed(
            "listen",
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            "an address like 127.0.0.1:8080",
            |v| v.parse().ok(),
        )?;
        let (proxy, tls) = super::proxy::from_raw(raw)?;
        let public_origin = match r.text("public_origin") {
            Some(v) => PublicOrigin::parse(&v).ok_or_else(|| {
                ConfigError::new(
                    "RAMPART_PUBLIC_ORIGIN",
                    format!("expected an origin like https://auth.example.com, got {v:?}"),
                )
            })?,
            // Port 0 means "any free port": the real one is filled in once bound
            // (`Config::with_bound_listen`).
            None => PublicOrigin {
                scheme: if tls.is_some() { "https" } else { "http" }.into(),
                host: listen.ip().to_string(),
                port: if listen.port() == 0 { 80 } else { listen.port() },
            },
        };
        if prod && !public_origin.is_https() {
            return Err(ConfigError::new(
                "RAMPART_PUBLIC_ORIGIN",
                format!("must be https in production (got {})", public_origin.to_origin_string()),
            ));
        }
        let csrf_origin = rampart_protect::origin::Origin::parse(&public_origin.to_origin_string())
            .map_err(|_| ConfigError::new("RAMPART_PUBLIC_ORIGIN", "not a valid origin"))?;
        let data_dir = PathBuf::from(r.text("data_dir").unwrap_or_else(|| "./rampart-data".into()));
        let database_url = r
            .text("database_url")
            .unwrap_or_else(|| format!("sqlite://{}/rampart.db", data_dir.display()));
        rampart_store_sql::Backend::from_url(&database_url).map_err(|_| {
            ConfigError::new("RAMPART_DATABASE_URL", "expected sqlite://<path> or postgres://…")
        })?;
        let pool = rampart_store_sql::PoolConfig {
            max_connections: r.num("database_max_connections", 10)?,
            min_connections: r.num("database_min_connections", 0)?,
            acquire_timeout: r.dur("database_acquire_timeout", Duration::from_secs(3))?,
            idle_timeout: r.dur("database_idle_timeout", Duration::from_secs(600))?,
            max_lifetime: r.dur("database_max_lifetime", Duration::from_secs(1800))?,
            test_before_acquire: r.parsed(
                "database_test_before_acquire",
                true,
                "true or false",
                boolean,
            )?,
        };
        if pool.max_connections < 2 {
            // The audit writer keeps one connection for itself; requests need at least another.
            return Err(ConfigError::new(
                "RAMPART_DATABASE_MAX_CONNECTIONS",
                "must be at least 2 (the audit writer keeps one connection)",
            ));
        }
        let redis_url = r.text("redis_url");
        if let Some(u) = &redis_url {
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                return Err(ConfigError::new(
                    "RAMPART_REDIS_URL",
                    "expected redis://… or rediss://…",
                ));
            }
        }
        let secret_key = r.text("secret_key").map(SecretString::new);
        if prod && secret_key.is_none() {
            return Err(ConfigError::new(
                "RAMPART_SECRET_KEY",
                "required in production (generate one with `rampart gen-secret`)",
            ));
        }
        if let Some(k) = &secret_key {
            rampart_core::MasterKey::parse(k.expose_secret())
                .map_err(|e| ConfigError::new("RAMPART_SECRET_KEY", e.to_string()))?;
        }
        let previous_secret_keys: Vec<SecretString> = r
            .text("previous_secret_keys")
            .map(|v| list(&v))
            .unwrap_or_default()
            .into_iter()
            .map(SecretString::new)
            .collect();
        for k in &previous_secret_keys {
            rampart_core::MasterKey::parse(k.expose_secret())
                .map_err(|e| ConfigError::new("RAMPART_PREVIOUS_SECRET_KEYS", e.to_string()))?;
        }
        let trusted_proxies = match r.text("trusted_proxies") {
            None => TrustedProxies::none(),
            Some(v) => TrustedProxies::parse_list(&v)
                .map_err(|e| ConfigError::new("RAMPART_TRUSTED_PROXIES", e.to_string()))?,
        };
        let log_format = r.parsed(
            "log_format",
            if prod { LogFormat::Json } else { LogFormat::Pretty },
            "`pretty` or `json`",
            |v| match v {
                "pretty" => Some(LogFormat::Pretty),
                "json" => Some(LogFormat::Json),
                _ => None,
            },
        )?;
        let idle_timeout = r.dur("session_idle_timeout", Duration::from_secs(30 * 60))?;
        let absolute_timeout = r.dur("session_absolute_timeout", Duration::from_secs(12 * 3600))?;
        let cookie_max_age = match r.text("session_cookie_max_age") {
            None => None,
            Some(_) => Some(r.dur("session_cookie_max_age", absolute_timeout)?),
        };
        if cookie_max_age.is_some_and(|m| m > absolute_timeout) {
            return Err(ConfigError::new(
                "RAMPART_SESSION_COOKIE_MAX_AGE",
                "must not exceed the absolute session timeout",
            ));
        }
        let session = SessionSettings {
            store: r.parsed("session_store", None, "`memory`, `redis` or `sql`", |v| match v {
                "memory" => Some(Some(SessionStoreKind::Memory)),
                "redis" => Some(Some(SessionStoreKind::Redis)),
                "sql" => Some(Some(SessionStoreKind::Sql)),
                _ => None,
            })?,
            idle_timeout,
            absolute_timeout,
            memory_capacity: r.num("session_memory_capacity", 100_000)?,
            max_per_user: r.num("session_max_per_user", 50)?,
            same_site_strict: r.parsed(
                "session_cookie_same_site",
                false,
                "`lax` or `strict`",
                |v| match v.to_ascii_lowercase().as_str() {
                    "lax" => Some(false),
                    "strict" => Some(true),
                    _ => None,
                },
            )?,
            cookie_max_age,
            touch_interval: r.dur("session_touch_interval", Duration::from_secs(60))?,
            store_timeout: r.dur("session_store_timeout", Duration::from_secs(1))?,
        };
        if session.max_per_user == 0 {
            return Err(ConfigError::new("RAMPART_SESSION_MAX_PER_USER", "must be at least 1"));
        }
        if session.store == Some(SessionStoreKind::Redis) && redis_url.is_none() {
            return Err(ConfigError::new(
                "RAMPART_SESSION_STORE",
                "`redis` needs RAMPART_REDIS_URL",
            ));
        }
        let password = PasswordSettings {
            min_length: r.num("password_min_length", 12)?,
            argon2_memory_kib: r.num("argon2_memory_kib", 19_456)?,
            argon2_iterations: r.num("argon2_iterations", 2)?,
            argon2_parallelism: r.num("argon2_parallelism", 1)?,
            hash_concurrency: r.num(
                "hash_concurrency",
                default_hash_concurrency(
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                ),
            )?,
            hash_queue: r.num("hash_queue", 64)?,
        };
        if password.min_length < 8 {
            return Err(ConfigError::new("RAMPART_PASSWORD_MIN_LENGTH", "must be at least 8"));
        }
        if prod
            && (password.argon2_memory_kib < 19_456
                || password.argon2_iterations < 2
                || password.argon2_parallelism < 1)
        {
            return Err(ConfigError::new(
                "RAMPART_ARGON2_MEMORY_KIB",
                "Argon2id parameters must not be below m=19456, t=2, p=1 in production",
            ));
        }
        if password.hash_concurrency == 0 {
            return Err(ConfigError::new("RAMPART_HASH_CONCURRENCY", "must be at least 1"));
        }
        let insecure = Insecure {
            disable_csrf: r.flag("insecure_disable_csrf")?,
            disable_rate_limit: r.flag("insecure_disable_rate_limit")?,
        };
        for (on, key) in [
            (insecure.disable_csrf, "insecure_disable_csrf"),
            (insecure.disable_rate_limit, "insecure_disable_rate_limit"),
        ] {
            if on {
                if prod {
                    return Err(ConfigError::new(
                        &env_name(key),
                        "insecure settings are refused in production",
                    ));
                }
                warnings.push(format!(
                    "{} is on: this weakens security (development only)",
                    env_name(key)
                ));
            }
        }
        let vault = super::vault::from_raw(raw, prod, &mut warnings)?;
        let pseudonymization_key = super::vault::pseudonymization_key(raw, secret_key.as_ref())?;
        let rate_limit = r
            .text("rate_limit")
            .map(|v| list(&v))
            .unwrap_or_else(|| vec!["200/60s".into(), "50/10s".into()]);
        if rate_limit.is_empty() {
            return Err(ConfigError::new(
                "RAMPART_RATE_LIMIT",
                "needs at least one quota like 200/60s",
            ));
        }
        for q in &rate_limit {
            if !valid_quota(q) {
                return Err(ConfigError::new(
                    "RAMPART_RATE_LIMIT",
                    format!("expected quotas like 200/60s, got {q:?}"),
                ));
            }
        }
        let workers: usize = r.num(
            "workers",
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
        )?;
        if workers > MAX_WORKERS {
            return Err(ConfigError::new(
                "RAMPART_WORKERS",
                format!("at most {MAX_WORKERS} (one per CPU is the default)"),
            ));
        }
        let api_key_limit: usize = r.num("api_key_limit", 1000)?;
        if api_key_limit == 0 {
            return Err(ConfigError::new("RAMPART_API_KEY_LIMIT", "must be at least 1"));
        }
        let config = Config {
            env,
            listen,
            workers,
            public_origin_explicit: r.text("public_origin").is_some(),
            public_origin,
            data_dir,
            instance_id: r.text("instance_id"),
            database_url: SecretString::new(database_url),
            pool,
            redis_url: redis_url.map(SecretString::new),
            redis_password: r.text("redis_password").map(SecretString::new),
            redis_key_prefix: r.text("redis_key_prefix").unwrap_or_else(|| "rampart:".into()),
            secret_key,
            previous_secret_keys,
            pseudonymization_key,
            vault,
            trusted_proxies,
            access_rules: crate::gateway::rules::parse_section(raw.sections.get("access_rules"))?,
            assertion_audience: r.parsed(
                "assertion_audience",
                None,
                "an audience without control characters",
                |v| (!v.chars().any(char::is_control)).then(|| Some(v.to_owned())),
            )?,
            log: r.text("log").unwrap_or_else(|| "info".into()),
            log_format,
            session,
            rate_limit,
            rate_limit_capacity: r.num("rate_limit_capacity", 1_000_000)?,
            rate_limit_rules: parse_rules(raw.sections.get("rate_limit_rules"))?,
            login: LoginSettings {
                max_failures: r.num("login_max_failures", 5)?,
                failure_window: r.dur("login_failure_window", Duration::from_secs(15 * 60))?,
                ban: r.dur("login_ban", Duration::from_secs(60))?,
                ip_max_failures: r.num("login_ip_max_failures", 20)?,
                ip_window: r.dur("login_ip_window", Duration::from_secs(5 * 60))?,
            },
            password,
            signup_open: r.parsed("signup", false, "`closed` or `open`", |v| match v {
                "open" => Some(true),
                "closed" => Some(false),
                _ => None,
            })?,
            limits: Limits {
                body_limit: r.num("body_limit", 64 * 1024)?,
                request_timeout: r.dur("request_timeout", Duration::from_secs(30))?,
                header_read_timeout: r.dur("header_read_timeout", Duration::from_secs(10))?,
                api_key_limit,
            },
            csrf: CsrfSettings {
                public_origin: csrf_origin,
                trusted: r
                    .text("csrf_trusted_origins")
                    .map(|v| list(&v))
                    .unwrap_or_default()
                    .iter()
                    .map(|o| {
                        rampart_protect::origin::Origin::parse(o).map_err(|_| {
                            ConfigError::new(
                                "RAMPART_CSRF_TRUSTED_ORIGINS",
                                format!("not an origin: {o:?}"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
                trusted_origins: r
                    .text("csrf_trusted_origins")
                    .map(|v| list(&v))
                    .unwrap_or_default(),
                allow_same_site: r.flag("csrf_allow_same_site")?,
                exempt_prefixes: r
                    .text("csrf_exempt_prefixes")
                    .map(|v| list(&v))
                    .unwrap_or_default(),
            },
            audit_stream: r.text("audit_stream"),
            audit_retention: match r.text("audit_retention") {
                None => None,
                Some(_) => Some(r.dur("audit_retention", Duration::from_secs(1))?),
            },
            cors: cors_settings(&r)?,
            metrics_listen: match r.text("metrics_listen") {
                None => None,
                Some(v) => Some(v.parse().map_err(|_| {
                    ConfigError::new(
                        "RAMPART_METRICS_LISTEN",
                        format!("expected an address like 127.0.0.1:9090, got {v:?}"),
                    )
                })?),
            },
            proxy,
            tls,
            insecure,
            warnings,
        };
        if prod {
            refuse_unsafe_in_production(&config)?;
        }
        Ok(config)
    }

    /// Fills in the address actually bound when the public origin was derived from a listen
    /// address with port 0.
    pub fn with_bound_listen(mut self, bound: SocketAddr) -> Self {
        if self.listen.port() == 0 && !self.public_origin_explicit {
            self.public_origin = PublicOrigin {
                scheme: if self.tls.is_some() { "https" } else { "http" }.into(),
                host: bound.ip().to_string(),
                port: bound.port(),
            };
            if let Ok(o) =
                rampart_protect::origin::Origin::parse(&self.public_origin.to_origin_string())
            {
                self.csrf.public_origin = o;
            }
        }
        self.listen = bound;
        self
    }

    /// The session store in effect.
    pub fn session_store(&self) -> SessionStoreKind {
        self.session.store.unwrap_or(if self.redis_url.is_some() {
            SessionStoreKind::Redis
        } else {
            SessionStoreKind::Memory
        })
    }
}

/// The most consecutive failed logins per email production accepts before the lock.
const MAX_LOGIN_FAILURES: u32 = 100;
/// The most failed logins per client address production accepts before the address lock.
const MAX_LOGIN_IP_FAILURES: u32 = 1000;
/// The longest session lifetime (idle or absolute) production accepts.
const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// Production rules that look at several settings at once, after parsing.
///
/// # Errors
/// A [`ConfigError`] naming the setting:
/// - a secret or pseudonymization key that looks hand-made ([`MasterKey::looks_low_entropy`]);
/// - trusted proxies that cover a large part of the address space (IPv4 wider than /8, IPv6
///   wider than /7): such a list trusts clients, not proxies;
/// - a CSRF exemption of `/` or one that covers or lies inside Rampart's own routes: it would
///   switch CSRF protection off for the session-authenticated API itself;
/// - login lockouts above 100 failures per email or 1000 per address, sessions living longer
///   than 30 days, and plain-http origins trusted for CSRF or CORS.
///
/// [`MasterKey::looks_low_entropy`]: rampart_core::MasterKey::looks_low_entropy
fn refuse_unsafe_in_production(c: &Config) -> Result<(), ConfigError> {
    let weak = |k: &SecretString| {
        rampart_core::MasterKey::parse(k.expose_secret()).is_ok_and(|m| m.looks_low_entropy())
    };
    const GENERATE: &str =
        "looks hand-made (few distinct bytes, text or a sequence); generate one with `rampart gen-secret`";
    if c.secret_key.as_ref().is_some_and(weak) {
        return Err(ConfigError::new("RAMPART_SECRET_KEY", GENERATE));
    }
    if c.previous_secret_keys.iter().any(weak) {
        return Err(ConfigError::new("RAMPART_PREVIOUS_SECRET_KEYS", GENERATE));
    }
    if c.pseudonymization_key.as_ref().is_some_and(weak) {
        return Err(ConfigError::new("RAMPART_PSEUDONYMIZATION_KEY", GENERATE));
    }
    // Trusting every address (or most of them) lets any client name its own address, dodging
    // per-address limits and locks and forging the audit trail, and its own forward-auth
    // request.
    let too_wide = |n: &ipnet::IpNet| match n {
        ipnet::IpNet::V4(v4) => v4.prefix_len() < 8,
        ipnet::IpNet::V6(v6) => v6.prefix_len() < 7,
    };
    if let Some(net) = c.trusted_proxies.nets().iter().find(|n| too_wide(n)) {
        return Err(ConfigError::new(
            "RAMPART_TRUSTED_PROXIES",
            format!(
                "{net} covers too much of the address space to be a list of proxies \
                 (at most /8 for IPv4 and /7 for IPv6); list the proxies' addresses"
            ),
        ));
    }
    // Lockouts and sessions that a setting has made unbounded. Above these the protection is
    // off in all but name: guessing a password 100 times an hour per account is the most the
    // checklist allows, and a session living longer than 30 days outlives every assurance
    // level's re-authentication.
    if c.login.max_failures > MAX_LOGIN_FAILURES {
        return Err(ConfigError::new(
            "RAMPART_LOGIN_MAX_FAILURES",
            format!("at most {MAX_LOGIN_FAILURES} in production"),
        ));
    }
    if c.login.ip_max_failures > MAX_LOGIN_IP_FAILURES {
        return Err(ConfigError::new(
            "RAMPART_LOGIN_IP_MAX_FAILURES",
            format!("at most {MAX_LOGIN_IP_FAILURES} in production"),
        ));
    }
    if c.session.absolute_timeout > MAX_SESSION_LIFETIME {
        return Err(ConfigError::new(
            "RAMPART_SESSION_ABSOLUTE_TIMEOUT",
            "at most 30d in production",
        ));
    }
    if c.session.idle_timeout > MAX_SESSION_LIFETIME {
        return Err(ConfigError::new("RAMPART_SESSION_IDLE_TIMEOUT", "at most 30d in production"));
    }
    // Cookies are `Secure` on an https origin: an http origin trusted for CSRF or CORS is one a
    // network attacker can speak for.
    if let Some(o) = c.csrf.trusted.iter().find(|o| !o.is_https()) {
        return Err(ConfigError::new("RAMPART_CSRF_TRUSTED_ORIGINS", format!("{o} is not https")));
    }
    if let Some(o) = c.cors.as_ref().and_then(|cors| cors.origins.iter().find(|o| !o.is_https())) {
        return Err(ConfigError::new("RAMPART_CORS_ALLOWED_ORIGINS", format!("{o} is not https")));
    }
    for prefix in &c.csrf.exempt_prefixes {
        let p = prefix.trim_end_matches('/');
        let covers_own = p.is_empty()
            || crate::gateway::proxy::OWN_PATHS
                .iter()
                .any(|own| own.strip_prefix(p).is_some_and(|r| r.is_empty() || r.starts_with('/')));
        if covers_own || crate::gateway::proxy::is_own_path(p) {
            return Err(ConfigError::new(
                "RAMPART_CSRF_EXEMPT_PREFIXES",
                format!(
                    "{prefix:?} covers Rampart's own routes, which would lose CSRF protection; \
                     exempt only the application's own paths (webhooks)"
                ),
            ));
        }
    }
    Ok(())
}

fn cors_settings(r: &Reader<'_>) -> Result<Option<CorsSettings>, ConfigError> {
    let Some(origins) = r.text("cors_allowed_origins") else { return Ok(None) };
    let origins = list(&origins)
        .iter()
        .map(|o| {
            if o == "*" || o == "null" {
                return Err(ConfigError::new(
                    "RAMPART_CORS_ALLOWED_ORIGINS",
                    "only exact origins are allowed (no `*`, no `null`)",
                ));
            }
            rampart_protect::origin::Origin::parse(o).map_err(|_| {
                ConfigError::new("RAMPART_CORS_ALLOWED_ORIGINS", format!("not an origin: {o:?}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let methods = list(&r.text("cors_allowed_methods").unwrap_or_else(|| "GET,POST".into()))
        .iter()
        .map(|m| {
            http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                ConfigError::new("RAMPART_CORS_ALLOWED_METHODS", format!("not a method: {m:?}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let headers =
        list(&r.text("cors_allowed_headers").unwrap_or_else(|| "content-type,x-csrf-token".into()))
            .iter()
            .map(|h| {
                http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    ConfigError::new(
                        "RAMPART_CORS_ALLOWED_HEADERS",
                        format!("not a header name: {h:?}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(CorsSettings { origins, methods, headers }))
}

fn parse_rules(v: Option<&toml::Value>) -> Result<Vec<rampart_ratelimit::Rule>, ConfigError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rules {
        rule: Vec<rampart_ratelimit::Rule>,
    }
    match v {
        None => Ok(Vec::new()),
        Some(v) => v.clone().try_into::<Rules>().map(|r| r.rule).map_err(|e| {
            ConfigError::new("rate_limit_rules", format!("invalid rule list: {}", e.message()))
        }),
    }
}

fn valid_quota(q: &str) -> bool {
    q.split_once('/').is_some_and(|(n, p)| {
        n.parse::<u32>().is_ok_and(|n| n > 0) && duration(p).is_some_and(|d| !d.is_zero())
    })
}

pub(super) fn describe(c: &Config, raw: Option<&RawValues>) -> Vec<String> {
    let red = "[redacted]".to_string();
    let secret_url = |s: &SecretString| redact_url(s.expose_secret());
    let d = fmt_duration;
    let mut values: Vec<(&str, String)> = vec![
        ("env", if c.env == Env::Production { "production" } else { "development" }.into()),
        ("listen", c.listen.to_string()),
        ("workers", c.workers.to_string()),
        ("public_origin", c.public_origin.to_origin_string()),
        ("data_dir", c.data_dir.display().to_string()),
        ("instance_id", c.instance_id.clone().unwrap_or_else(|| "(generated)".into())),
        ("database_url", secret_url(&c.database_url)),
        ("database_max_connections", c.pool.max_connections.to_string()),
        ("database_min_connections", c.pool.min_connections.to_string()),
        ("database_acquire_timeout", d(c.pool.acquire_timeout)),
        ("database_idle_timeout", d(c.pool.idle_timeout)),
        ("database_max_lifetime", d(c.pool.max_lifetime)),
        ("database_test_before_acquire", c.pool.test_before_acquire.to_string()),
        ("redis_url", c.redis_url.as_ref().map_or("(unset)".into(), secret_url)),
        ("redis_password", c.redis_password.as_ref().map_or("(unset)".into(), |_| red.clone())),
        ("redis_key_prefix", c.redis_key_prefix.clone()),
        (
            "secret_key",
            c.secret_key
                .as_ref()
                .map_or("(unset: generated in the data dir)".into(), |_| red.clone()),
        ),
        ("previous_secret_keys", format!("{} key(s) [redacted]", c.previous_secret_keys.len())),
        (
            "pseudonymization_key",
            c.pseudonymization_key.as_ref().map_or("(unset)".into(), |_| red.clone()),
        ),
        (
            "trusted_proxies",
            c.trusted_proxies.nets().iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        ),
        (
            "assertion_audience",
            c.assertion_audience.clone().unwrap_or_else(|| "(public origin)".into()),
        ),
        ("log", c.log.clone()),
        ("log_format", format!("{:?}", c.log_format).to_lowercase()),
        ("session_store", format!("{:?}", c.session_store()).to_lowercase()),
        ("session_idle_timeout", d(c.session.idle_timeout)),
        ("session_absolute_timeout", d(c.session.absolute_timeout)),
        ("session_memory_capacity", c.session.memory_capacity.to_string()),
        ("session_max_per_user", c.session.max_per_user.to_string()),
        (
            "session_cookie_same_site",
            if c.session.same_site_strict { "strict" } else { "lax" }.into(),
        ),
        ("session_cookie_max_age", c.session.cookie_max_age.map_or("(none)".into(), d)),
        ("session_touch_interval", d(c.session.touch_interval)),
        ("session_store_timeout", d(c.session.store_timeout)),
        ("rate_limit", c.rate_limit.join(",")),
        ("rate_limit_capacity", c.rate_limit_capacity.to_string()),
        ("login_max_failures", c.login.max_failures.to_string()),
        ("login_failure_window", d(c.login.failure_window)),
        ("login_ban", d(c.login.ban)),
        ("login_ip_max_failures", c.login.ip_max_failures.to_string()),
        ("login_ip_window", d(c.login.ip_window)),
        ("password_min_length", c.password.min_length.to_string()),
        ("argon2_memory_kib", c.password.argon2_memory_kib.to_string()),
        ("argon2_iterations", c.password.argon2_iterations.to_string()),
        ("argon2_parallelism", c.password.argon2_parallelism.to_string()),
        ("hash_concurrency", c.password.hash_concurrency.to_string()),
        ("hash_queue", c.password.hash_queue.to_string()),
        ("signup", if c.signup_open { "open" } else { "closed" }.into()),
        ("api_key_limit", c.limits.api_key_limit.to_string()),
        ("body_limit", c.limits.body_limit.to_string()),
        ("request_timeout", d(c.limits.request_timeout)),
        ("header_read_timeout", d(c.limits.header_read_timeout)),
        ("csrf_trusted_origins", c.csrf.trusted_origins.join(",")),
        ("csrf_allow_same_site", c.csrf.allow_same_site.to_string()),
        ("csrf_exempt_prefixes", c.csrf.exempt_prefixes.join(",")),
        ("audit_stream", c.audit_stream.clone().unwrap_or_else(|| "(off)".into())),
        ("audit_retention", c.audit_retention.map_or("(keep)".into(), d)),
        (
            "cors_allowed_origins",
            c.cors.as_ref().map_or("(off)".into(), |x| {
                x.origins.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            }),
        ),
        (
            "cors_allowed_methods",
            c.cors.as_ref().map_or(String::new(), |x| {
                x.methods.iter().map(|m| m.as_str().to_owned()).collect::<Vec<_>>().join(",")
            }),
        ),
        (
            "cors_allowed_headers",
            c.cors.as_ref().map_or(String::new(), |x| {
                x.headers.iter().map(|h| h.as_str().to_owned()).collect::<Vec<_>>().join(",")
            }),
        ),
        ("metrics_listen", c.metrics_listen.map_or("(off)".into(), |a| a.to_string())),
        ("insecure_disable_csrf", c.insecure.disable_csrf.to_string()),
        ("insecure_disable_rate_limit", c.insecure.disable_rate_limit.to_string()),
    ];
    values.extend(super::proxy::describe(&c.proxy, c.tls.as_ref()));
    debug_assert_eq!(values.len(), SETTINGS.len());
    values
        .into_iter()
        .map(|(k, v)| {
            let origin = raw.and_then(|r| r.values.get(k)).map_or("default", |(_, o)| o.as_str());
            format!("{k} = {v}  ({origin}; {})", env_name(k))
        })
        .chain(super::vault::describe(&c.vault))
        .collect()
}

/// The most connection loops `RAMPART_WORKERS` may ask for.
pub(super) const MAX_WORKERS: usize = 1024;

/// Password hashes computed at once by default on a machine with `cpus` CPUs: half of them, at
/// least one. Argon2id is memory-hard: each hash streams its 19 MiB through the caches, and
/// with every core hashing during a login flood the rest of the server's requests ran with cold
/// caches (see ADR 0008), however low the hash threads' priority.
pub(super) fn default_hash_concurrency(cpus: usize) -> usize {
    (cpus / 2).max(1)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
