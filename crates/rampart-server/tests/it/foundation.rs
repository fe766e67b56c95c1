//! The foundation: CLI, configuration, production refusals, health, errors, logs.

use crate::support::{self, error_code, run, Server, KEY};

fn prod_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("RAMPART_ENV", "production"),
        ("RAMPART_SECRET_KEY", KEY),
        ("RAMPART_PUBLIC_ORIGIN", "https://auth.example.com"),
        ("RAMPART_LISTEN", "127.0.0.1:0"),
    ];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        if !v.is_empty() {
            env.push((k, v));
        }
    }
    env
}

/// Runs `serve` expecting a refusal; returns stderr.
fn refused(dir: &std::path::Path, env: &[(&str, &str)], setting: &str) -> String {
    let (code, out, err) = run(dir, &["serve"], env);
    assert_ne!(code, 0, "expected refusal naming {setting}; stdout:\n{out}\nstderr:\n{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("rampart: "))
        .unwrap_or_else(|| panic!("no refusal line:\n{err}"));
    assert!(line.contains(setting), "refusal must name {setting}: {line}");
    assert!(!out.contains("listening"), "must not listen: {out}");
    err
}

#[test]
fn production_refuses_missing_short_and_placeholder_keys() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["", "00112233", "changeme-changeme-changeme-changeme-changeme", &"a".repeat(64)] {
        refused(dir.path(), &prod_env(&[("RAMPART_SECRET_KEY", key)]), "RAMPART_SECRET_KEY");
    }
}

#[test]
fn production_refuses_http_origin_insecure_switches_and_unknown_settings() {
    let dir = tempfile::tempdir().unwrap();
    refused(
        dir.path(),
        &prod_env(&[("RAMPART_PUBLIC_ORIGIN", "http://auth.example.com")]),
        "RAMPART_PUBLIC_ORIGIN",
    );
    refused(dir.path(), &prod_env(&[("RAMPART_PUBLIC_ORIGIN", "")]), "RAMPART_PUBLIC_ORIGIN");
    refused(
        dir.path(),
        &prod_env(&[("RAMPART_INSECURE_DISABLE_CSRF", "true")]),
        "RAMPART_INSECURE_DISABLE_CSRF",
    );
    for everyone in ["0.0.0.0/0", "10.0.0.1,::/0", "0.0.0.0/1,128.0.0.0/1"] {
        let env = prod_env(&[("RAMPART_TRUSTED_PROXIES", everyone)]);
        refused(dir.path(), &env, "RAMPART_TRUSTED_PROXIES");
    }
    let weak_key = "deadbeef".repeat(8);
    refused(dir.path(), &prod_env(&[("RAMPART_SECRET_KEY", &weak_key)]), "RAMPART_SECRET_KEY");
    for exempt in ["/", "/api/"] {
        let env = prod_env(&[("RAMPART_CSRF_EXEMPT_PREFIXES", exempt)]);
        refused(dir.path(), &env, "RAMPART_CSRF_EXEMPT_PREFIXES");
    }
    refused(
        dir.path(),
        &prod_env(&[("RAMPART_LOGIN_MAX_FAILURES", "1000000")]),
        "RAMPART_LOGIN_MAX_FAILURES",
    );
    refused(
        dir.path(),
        &prod_env(&[("RAMPART_INSECURE_DISABLE_RATE_LIMIT", "on")]),
        "RAMPART_INSECURE_DISABLE_RATE_LIMIT",
    );
    refused(
        dir.path(),
        &prod_env(&[("RAMPART_SESION_IDLE_TIMEOUT", "5m")]),
        "RAMPART_SESION_IDLE_TIMEOUT",
    );
    std::fs::write(
        dir.path().join("r.toml"),
        "listen = \"127.0.0.1:0\"\nsesion_store = \"memory\"\n",
    )
    .unwrap();
    refused(dir.path(), &prod_env(&[("RAMPART_CONFIG", "r.toml")]), "sesion_store");
}

#[test]
fn production_refuses_when_redis_or_the_database_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(dir.path(), &["migrate", "up"], &[]).0, 0);
    refused(
        dir.path(),
        &prod_env(&[("RAMPART_REDIS_URL", "redis://127.0.0.1:1/0")]),
        "RAMPART_REDIS_URL",
    );
    refused(
        dir.path(),
        &prod_env(&[
            ("RAMPART_DATABASE_URL", "postgres://rampart@127.0.0.1:1/rampart"),
            ("RAMPART_DATABASE_ACQUIRE_TIMEOUT", "1s"),
        ]),
        "RAMPART_DATABASE_URL",
    );
}

#[test]
fn production_refuses_pending_migrations_unless_asked_to_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(dir.path(), &prod_env(&[]), "RAMPART_DATABASE_URL");
    assert!(err.contains("pending"), "{err}");
    let env = prod_env(&[]);
    let mut s = Server::start_in(dir.path(), &env, &["--migrate"]);
    assert!(s.output().contains("rampart listening"));
    assert!(s.terminate().success());
    // Migrated now: a plain start works.
    let mut s = Server::start_in(dir.path(), &env, &[]);
    assert!(s.terminate().success());
}

#[tokio::test]
async fn development_generates_a_private_key_and_falls_back_when_redis_is_down() {
    let s = Server::start(&[("RAMPART_REDIS_URL", "redis://127.0.0.1:1/0")]);
    let key = s.dir.join("data/secret.key");
    let meta = std::fs::metadata(&key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(std::fs::read_to_string(&key).unwrap().len(), 43);
    let out = s.output();
    assert!(out.contains("WARN") && out.contains("RAMPART_SECRET_KEY is unset"), "{out}");
    assert!(out.contains("Redis does not answer"), "{out}");
    let c = support::client();
    let r = c.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status":"unavailable","failing":["redis"]}));
    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn health_and_readiness_answer_with_redis_and_postgres() {
    let Some(redis) = rampart_testkit::redis_url().await else { return };
    let Some(pg) = rampart_testkit::postgres_database().await else { return };
    let s = Server::start(&[("RAMPART_REDIS_URL", &redis), ("RAMPART_DATABASE_URL", &pg.url)]);
    let c = support::client();
    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), serde_json::json!({"status":"ok"}));
    let r = c.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), serde_json::json!({"status":"ok"}));
}

#[tokio::test]
async fn every_error_uses_one_json_shape_with_the_request_id() {
    let s = Server::start(&[]);
    let c = support::client();
    for (method, path, status, code) in [
        (reqwest::Method::GET, "/nope", 404, "not_found"),
        (reqwest::Method::DELETE, "/healthz", 405, "method_not_allowed"),
    ] {
        let r = c.request(method, s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["content-type"], "application/json");
        let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), code);
        assert_eq!(body["error"]["request_id"], rid.as_str());
    }
}

#[tokio::test]
async fn request_ids_are_generated_unless_a_trusted_proxy_sent_one() {
    let c = support::client();
    let s = Server::start(&[]);
    let r = c.get(s.url("/healthz")).header("x-request-id", "client-chosen").send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "client-chosen");
    assert!(id.len() >= 16);
    drop(s);
    let s = Server::start(&[("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32")]);
    let r = c.get(s.url("/healthz")).header("x-request-id", "proxy-chosen-1").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "proxy-chosen-1");
    let r =
        c.get(s.url("/healthz")).header("x-request-id", "bad id\twith space").send().await.unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id\twith space");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut s = Server::start(&[]);
    let st = s.terminate();
    assert!(st.success(), "{st:?}");
    assert!(s.output().contains("shutting down gracefully"));
}

/// The server process's connection-loop threads (`rampart-conn-<i>`), by name, with the CPU
/// time each has used so far in clock ticks (user + system, from `/proc`).
#[cfg(target_os = "linux")]
fn connection_loops(s: &Server) -> Vec<(String, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", s.child.id())).unwrap();
    let mut loops: Vec<(String, u64)> = tasks
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?.trim().to_owned();
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // Fields after the parenthesised name: state is the 3rd field, utime the 14th.
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
            name.starts_with("rampart-conn-").then_some((name, ticks))
        })
        .collect();
    loops.sort();
    loops
}

/// Six clients, each on its own connection, `n` requests each at once; every answer 200.
async fn six_connections_at_once(s: &Server, n: usize) {
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = s.url("/healthz");
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut statuses = Vec::new();
            for _ in 0..n {
                statuses.push(c.get(&url).send().await.unwrap().status().as_u16());
            }
            statuses
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), vec![200; n]);
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn connections_are_served_on_the_configured_loops() {
    let mut s = Server::start(&[("RAMPART_WORKERS", "3")]);
    let names = |loops: &[(String, u64)]| loops.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let before = connection_loops(&s);
    assert_eq!(names(&before), ["rampart-conn-0", "rampart-conn-1", "rampart-conn-2"]);
    // Enough requests for every loop to use CPU time (counted in ticks of 10 ms).
    six_connections_at_once(&s, 1500).await;
    let after = connection_loops(&s);
    for ((name, t0), (_, t1)) in before.iter().zip(&after) {
        assert!(t1 > t0, "{name} served nothing: {before:?} -> {after:?}");
    }
    let st = s.terminate();
    assert!(st.success(), "{st:?}");

    // 0: every connection on the shared runtime, no loop threads.
    let s = Server::start(&[("RAMPART_WORKERS", "0")]);
    assert!(connection_loops(&s).is_empty());
    six_connections_at_once(&s, 5).await;

    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let s = Server::start(&[]);
    assert_eq!(connection_loops(&s).len(), cpus);
}

#[test]
fn migrate_commands_go_up_down_and_report_status() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(dir.path(), &["migrate", "status"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending"), "{out}");
    let (code, out, _) = run(dir.path(), &["migrate", "up"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("applied 1"), "{out}");
    let (_, out, _) = run(dir.path(), &["migrate", "status"], &[]);
    assert!(out.contains("applied") && !out.contains("pending"), "{out}");
    let (code, out, _) = run(dir.path(), &["migrate", "down"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("reverted"), "{out}");
    let (_, out, _) = run(dir.path(), &["migrate", "status"], &[]);
    assert!(out.contains("pending"), "{out}");
}

#[test]
fn check_config_prints_effective_values_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(
        dir.path(),
        &["check-config"],
        &[
            ("RAMPART_SECRET_KEY", KEY),
            ("RAMPART_DATABASE_URL", "postgres://app:pg-pass-123@db/rampart"),
            ("RAMPART_REDIS_URL", "redis://u:redis-pass-456@localhost:6379/0"),
            ("RAMPART_SESSION_IDLE_TIMEOUT", "2s"),
            ("RAMPART_UNKNOWN_THING", "1"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("session_idle_timeout = 2s  (env; RAMPART_SESSION_IDLE_TIMEOUT)"),
        "{out}"
    );
    assert!(out.contains("warning: unknown setting(s) ignored: RAMPART_UNKNOWN_THING"), "{out}");
    for secret in [KEY, "pg-pass-123", "redis-pass-456"] {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret} leaked");
    }
}

#[test]
fn gen_secret_prints_a_fresh_32_byte_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, a, _) = run(dir.path(), &["gen-secret"], &[]);
    let (_, b, _) = run(dir.path(), &["gen-secret"], &[]);
    assert_eq!(code, 0);
    assert_eq!(a.trim().len(), 43);
    assert_ne!(a, b);
    assert!(rampart_core::MasterKey::parse(a.trim()).is_ok());
}

#[test]
fn help_describes_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(dir.path(), &["--help"], &[]);
    assert_eq!(code, 0);
    for sub in ["serve", "migrate", "check-config", "gen-secret"] {
        assert!(out.contains(sub), "{out}");
    }
    let (_, out, _) = run(dir.path(), &["serve", "--help"], &[]);
    assert!(out.contains("--migrate") && out.contains("--listen"), "{out}");
}

#[tokio::test]
async fn planted_secrets_never_reach_the_logs() {
    let planted_redis_pw = "planted-redis-pw-7731";
    let redis_url = format!("redis://default:{planted_redis_pw}@127.0.0.1:1/0");
    let s = Server::start(&[
        ("RAMPART_SECRET_KEY", KEY),
        ("RAMPART_REDIS_URL", &redis_url),
        ("RAMPART_LOG", "debug"),
    ]);
    let c = support::client();
    for path in ["/healthz", "/nope?token=planted-query-token-5511"] {
        let _ = c
            .get(s.url(path))
            .header("cookie", "rampart_session=planted-cookie-value-9931")
            .header("authorization", "Bearer planted-bearer-token-4412")
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let out = s.output();
    assert!(out.contains("/nope"), "the access log ran: {out}");
    for secret in [
        KEY,
        planted_redis_pw,
        "planted-cookie-value-9931",
        "planted-bearer-token-4412",
        "planted-query-token-5511",
    ] {
        assert!(!out.contains(secret), "{secret} leaked into the logs:\n{out}");
    }
}
