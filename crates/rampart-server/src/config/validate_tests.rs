use super::*;

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn raw(pairs: &[(&str, &str)]) -> RawValues {
    let mut r = RawValues::default();
    r.apply_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
    r
}

fn prod(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut pairs = vec![
        ("RAMPART_ENV", "production"),
        ("RAMPART_SECRET_KEY", KEY),
        ("RAMPART_PUBLIC_ORIGIN", "https://auth.example.com"),
    ];
    for (k, v) in extra {
        pairs.retain(|(pk, _)| pk != k);
        pairs.push((k, v));
    }
    pairs.retain(|(_, v)| !v.is_empty());
    Config::from_raw(&raw(&pairs))
}

#[test]
fn development_defaults_need_nothing() {
    let c = Config::from_raw(&RawValues::default()).unwrap();
    assert_eq!(c.env, Env::Development);
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.public_origin.to_origin_string(), "http://127.0.0.1:8080");
    assert_eq!(c.database_url.expose_secret(), "sqlite://./rampart-data/rampart.db");
    assert_eq!(c.session_store(), SessionStoreKind::Memory);
    assert_eq!(c.session.idle_timeout, Duration::from_secs(1800));
    assert_eq!(c.session.absolute_timeout, Duration::from_secs(43_200));
    assert_eq!(c.log_format, LogFormat::Pretty);
    assert_eq!(c.rate_limit, vec!["200/60s", "50/10s"]);
}

#[test]
fn a_valid_production_configuration_loads() {
    let c = prod(&[]).unwrap();
    assert_eq!(c.env, Env::Production);
    assert_eq!(c.log_format, LogFormat::Json);
    assert!(c.public_origin.is_https());
}

#[test]
fn production_accepts_private_proxy_ranges_and_webhook_exemptions() {
    let c = prod(&[
        ("RAMPART_TRUSTED_PROXIES", "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"),
        ("RAMPART_CSRF_EXEMPT_PREFIXES", "/hooks,/webhooks/github,/apis"),
    ])
    .unwrap();
    assert_eq!(c.trusted_proxies.nets().len(), 4);
    assert_eq!(c.csrf.exempt_prefixes.len(), 3);
    // The bounds themselves are accepted.
    let c = prod(&[
        ("RAMPART_LOGIN_MAX_FAILURES", "100"),
        ("RAMPART_LOGIN_IP_MAX_FAILURES", "1000"),
        ("RAMPART_SESSION_IDLE_TIMEOUT", "30d"),
        ("RAMPART_SESSION_ABSOLUTE_TIMEOUT", "30d"),
        ("RAMPART_CSRF_TRUSTED_ORIGINS", "https://app.example.com"),
        ("RAMPART_CORS_ALLOWED_ORIGINS", "https://app.example.com"),
    ])
    .unwrap();
    assert_eq!(c.login.max_failures, 100);
    // The same settings as production refuses, in development: accepted there.
    let dev = Config::from_raw(&raw(&[("RAMPART_CSRF_EXEMPT_PREFIXES", "/")])).unwrap();
    assert_eq!(dev.csrf.exempt_prefixes, ["/"]);
}

#[test]
fn production_refuses_each_unsafe_setting_and_names_it() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("RAMPART_SECRET_KEY", "")], "RAMPART_SECRET_KEY"),
        (&[("RAMPART_SECRET_KEY", "0011223344")], "RAMPART_SECRET_KEY"),
        (
            &[("RAMPART_SECRET_KEY", "changeme-changeme-changeme-changeme-changeme")],
            "RAMPART_SECRET_KEY",
        ),
        (&[("RAMPART_SECRET_KEY", &"0".repeat(64))], "RAMPART_SECRET_KEY"),
        (&[("RAMPART_PUBLIC_ORIGIN", "http://auth.example.com")], "RAMPART_PUBLIC_ORIGIN"),
        (&[("RAMPART_PUBLIC_ORIGIN", "")], "RAMPART_PUBLIC_ORIGIN"),
        (&[("RAMPART_INSECURE_DISABLE_CSRF", "true")], "RAMPART_INSECURE_DISABLE_CSRF"),
        (&[("RAMPART_INSECURE_DISABLE_RATE_LIMIT", "1")], "RAMPART_INSECURE_DISABLE_RATE_LIMIT"),
        (&[("RAMPART_SESION_STORE", "redis")], "RAMPART_SESION_STORE"),
        (&[("RAMPART_ARGON2_MEMORY_KIB", "4096")], "RAMPART_ARGON2_MEMORY_KIB"),
        // Keys that look hand-made.
        (&[("RAMPART_SECRET_KEY", &"0102".repeat(16))], "RAMPART_SECRET_KEY"),
        (&[("RAMPART_SECRET_KEY", &"deadbeef".repeat(8))], "RAMPART_SECRET_KEY"),
        (
            &[("RAMPART_SECRET_KEY", "cGFzc3dvcmRwYXNzd29yZHBhc3N3b3JkcGFzc3dvcmQ")],
            "RAMPART_SECRET_KEY",
        ),
        (
            &[("RAMPART_PREVIOUS_SECRET_KEYS", &"0123456789abcdef".repeat(4))],
            "RAMPART_PREVIOUS_SECRET_KEYS",
        ),
        // Trusted proxies that cover most of the address space, not a list of proxies.
        (&[("RAMPART_TRUSTED_PROXIES", "0.0.0.0/1,128.0.0.0/1")], "RAMPART_TRUSTED_PROXIES"),
        (&[("RAMPART_TRUSTED_PROXIES", "10.0.0.1,64.0.0.0/2")], "RAMPART_TRUSTED_PROXIES"),
        (&[("RAMPART_TRUSTED_PROXIES", "::/1,8000::/1")], "RAMPART_TRUSTED_PROXIES"),
        // CSRF exemptions that reach Rampart's own routes.
        (&[("RAMPART_CSRF_EXEMPT_PREFIXES", "/")], "RAMPART_CSRF_EXEMPT_PREFIXES"),
        (&[("RAMPART_CSRF_EXEMPT_PREFIXES", "/hooks,/api/")], "RAMPART_CSRF_EXEMPT_PREFIXES"),
        (&[("RAMPART_CSRF_EXEMPT_PREFIXES", "/api/keys")], "RAMPART_CSRF_EXEMPT_PREFIXES"),
        (&[("RAMPART_CSRF_EXEMPT_PREFIXES", "/account")], "RAMPART_CSRF_EXEMPT_PREFIXES"),
        // Protections that a setting made unbounded.
        (&[("RAMPART_LOGIN_MAX_FAILURES", "1000000")], "RAMPART_LOGIN_MAX_FAILURES"),
        (&[("RAMPART_LOGIN_IP_MAX_FAILURES", "1000000000")], "RAMPART_LOGIN_IP_MAX_FAILURES"),
        (&[("RAMPART_SESSION_ABSOLUTE_TIMEOUT", "3650d")], "RAMPART_SESSION_ABSOLUTE_TIMEOUT"),
        (
            &[("RAMPART_SESSION_IDLE_TIMEOUT", "31d"), ("RAMPART_SESSION_ABSOLUTE_TIMEOUT", "30d")],
            "RAMPART_SESSION_IDLE_TIMEOUT",
        ),
        // Plain-http origins trusted across sites.
        (
            &[("RAMPART_CSRF_TRUSTED_ORIGINS", "http://app.example.com")],
            "RAMPART_CSRF_TRUSTED_ORIGINS",
        ),
        (
            &[("RAMPART_CORS_ALLOWED_ORIGINS", "http://app.example.com")],
            "RAMPART_CORS_ALLOWED_ORIGINS",
        ),
    ];
    for (extra, setting) in cases {
        let err = prod(extra).unwrap_err();
        assert_eq!(err.setting, *setting, "{extra:?}: {err}");
        assert!(err.to_string().starts_with(setting));
    }
}

#[test]
fn development_warns_instead_of_refusing() {
    let c = Config::from_raw(&raw(&[
        ("RAMPART_SESION_STORE", "x"),
        ("RAMPART_INSECURE_DISABLE_CSRF", "true"),
    ]))
    .unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("RAMPART_SESION_STORE")), "{:?}", c.warnings);
    assert!(c.warnings.iter().any(|w| w.contains("RAMPART_INSECURE_DISABLE_CSRF")));
    assert!(c.insecure.disable_csrf);
}

#[test]
fn invalid_values_name_their_setting() {
    let cases = [
        ("RAMPART_LISTEN", "nope"),
        ("RAMPART_SESSION_IDLE_TIMEOUT", "5 minutes"),
        ("RAMPART_SESSION_IDLE_TIMEOUT", "0s"),
        ("RAMPART_DATABASE_URL", "mysql://x"),
        ("RAMPART_REDIS_URL", "http://x"),
        ("RAMPART_TRUSTED_PROXIES", "10.0.0.0/99"),
        ("RAMPART_RATE_LIMIT", "lots"),
        ("RAMPART_PASSWORD_MIN_LENGTH", "6"),
        ("RAMPART_SESSION_STORE", "redis"),
        ("RAMPART_PUBLIC_ORIGIN", "https://x.example/path"),
        ("RAMPART_PUBLIC_ORIGIN", "https://user@x.example"),
        ("RAMPART_ENV", "staging"),
    ];
    for (k, v) in cases {
        let err = Config::from_raw(&raw(&[(k, v)])).unwrap_err();
        assert_eq!(err.setting, k, "{k}={v}: {err}");
    }
}

#[test]
fn durations_and_cookie_max_age_are_checked() {
    let c = Config::from_raw(&raw(&[
        ("RAMPART_SESSION_IDLE_TIMEOUT", "2s"),
        ("RAMPART_SESSION_ABSOLUTE_TIMEOUT", "7d"),
    ]))
    .unwrap();
    assert_eq!(c.session.idle_timeout, Duration::from_secs(2));
    assert_eq!(c.session.absolute_timeout, Duration::from_secs(7 * 86_400));
    let err = Config::from_raw(&raw(&[
        ("RAMPART_SESSION_ABSOLUTE_TIMEOUT", "1h"),
        ("RAMPART_SESSION_COOKIE_MAX_AGE", "2h"),
    ]))
    .unwrap_err();
    assert_eq!(err.setting, "RAMPART_SESSION_COOKIE_MAX_AGE");
}

#[test]
fn describe_redacts_every_secret() {
    let mut r = raw(&[
        ("RAMPART_SECRET_KEY", KEY),
        (
            "RAMPART_PREVIOUS_SECRET_KEYS",
            "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100",
        ),
        ("RAMPART_DATABASE_URL", "postgres://app:s3cr3t-pw@db:5432/rampart"),
        ("RAMPART_REDIS_URL", "redis://default:r3dis-pw@127.0.0.1:6379/0"),
        ("RAMPART_REDIS_PASSWORD", "another-pw"),
    ]);
    r.apply_flag("listen", Some("127.0.0.1:9999".into()));
    let c = Config::from_raw(&r).unwrap();
    let out = c.describe(Some(&r)).join("\n");
    for secret in [KEY, "ffeeddcc", "s3cr3t-pw", "r3dis-pw", "another-pw"] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
    assert!(out.contains("listen = 127.0.0.1:9999  (flag; RAMPART_LISTEN)"), "{out}");
    assert!(out.contains("postgres://app:[redacted]@db:5432/rampart"));
    let dbg = format!("{c:?}");
    for secret in [KEY, "s3cr3t-pw", "r3dis-pw", "another-pw"] {
        assert!(!dbg.contains(secret), "{secret} leaked in Debug");
    }
}

#[test]
fn rate_limit_rules_come_from_toml_and_bad_rules_name_the_section() {
    let mut r = RawValues::default();
    let toml = r#"
[[rate_limit_rules.rule]]
name = "login"
methods = ["POST"]
path_prefix = "/api/auth/login"
key = "client-ip"
quotas = ["10/60s", "3/5s"]

[[rate_limit_rules.rule]]
name = "per-route"
key = { route-and = "user-id" }
quotas = ["100/1m"]
"#;
    r.apply_toml(toml, std::path::Path::new("r.toml")).unwrap();
    let c = Config::from_raw(&r).unwrap();
    assert_eq!(c.rate_limit_rules.len(), 2);
    assert_eq!(c.rate_limit_rules[0].name, "login");
    assert_eq!(c.rate_limit_rules[0].quotas.len(), 2);

    let mut bad = RawValues::default();
    bad.apply_toml(
        "[[rate_limit_rules.rule]]\nname = \"x\"\nquotas = [\"lots\"]\n",
        std::path::Path::new("r.toml"),
    )
    .unwrap();
    assert_eq!(Config::from_raw(&bad).unwrap_err().setting, "rate_limit_rules");
}

#[test]
fn the_pool_needs_a_connection_beside_the_audit_writers() {
    for n in ["0", "1"] {
        let err = Config::from_raw(&raw(&[("RAMPART_DATABASE_MAX_CONNECTIONS", n)])).unwrap_err();
        assert!(err.to_string().contains("RAMPART_DATABASE_MAX_CONNECTIONS"), "{err}");
    }
    let c = Config::from_raw(&raw(&[("RAMPART_DATABASE_MAX_CONNECTIONS", "2")])).unwrap();
    assert_eq!(c.pool.max_connections, 2);
}

#[test]
fn password_hashing_gets_half_the_cpus_by_default() {
    for (cpus, slots) in [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (64, 32)] {
        assert_eq!(default_hash_concurrency(cpus), slots, "{cpus} CPUs");
    }
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let c = Config::from_raw(&RawValues::default()).unwrap();
    assert_eq!(c.password.hash_concurrency, default_hash_concurrency(cpus));
    let c = Config::from_raw(&raw(&[("RAMPART_HASH_CONCURRENCY", "3")])).unwrap();
    assert_eq!(c.password.hash_concurrency, 3);
    let err = Config::from_raw(&raw(&[("RAMPART_HASH_CONCURRENCY", "0")])).unwrap_err();
    assert!(err.to_string().contains("RAMPART_HASH_CONCURRENCY"), "{err}");
}

#[test]
fn per_user_session_and_api_key_limits_default_and_refuse_zero() {
    let c = Config::from_raw(&RawValues::default()).unwrap();
    assert_eq!((c.session.max_per_user, c.limits.api_key_limit), (50, 1000));
    let c = Config::from_raw(&raw(&[
        ("RAMPART_SESSION_MAX_PER_USER", "3"),
        ("RAMPART_API_KEY_LIMIT", "7"),
    ]))
    .unwrap();
    assert_eq!((c.session.max_per_user, c.limits.api_key_limit), (3, 7));
    for name in ["RAMPART_SESSION_MAX_PER_USER", "RAMPART_API_KEY_LIMIT"] {
        let err = Config::from_raw(&raw(&[(name, "0")])).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn connection_loops_default_to_one_per_cpu_and_are_bounded() {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert_eq!(Config::from_raw(&RawValues::default()).unwrap().workers, cpus);
    for (text, n) in [("0", 0), ("1", 1), ("1024", MAX_WORKERS)] {
        assert_eq!(Config::from_raw(&raw(&[("RAMPART_WORKERS", text)])).unwrap().workers, n);
    }
    for bad in ["1025", "-1", "two"] {
        let err = Config::from_raw(&raw(&[("RAMPART_WORKERS", bad)])).unwrap_err();
        assert!(err.to_string().contains("RAMPART_WORKERS"), "{bad:?}: {err}");
    }
}

#[test]
fn the_per_ip_login_window_is_its_own_setting() {
    let c = Config::from_raw(&RawValues::default()).unwrap();
    assert_eq!(c.login.ip_window, Duration::from_secs(5 * 60));
    assert_eq!(c.login.ban, Duration::from_secs(60));
    let c =
        Config::from_raw(&raw(&[("RAMPART_LOGIN_IP_WINDOW", "30s"), ("RAMPART_LOGIN_BAN", "4s")]))
            .unwrap();
    assert_eq!(c.login.ip_window, Duration::from_secs(30));
    assert_eq!(c.login.ban, Duration::from_secs(4));
    let err = Config::from_raw(&raw(&[("RAMPART_LOGIN_IP_WINDOW", "0s")])).unwrap_err();
    assert_eq!(err.setting, "RAMPART_LOGIN_IP_WINDOW");
}
