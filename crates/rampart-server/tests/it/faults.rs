//! Fault injection through the real server process: the session store (Redis, then PostgreSQL)
//! killed under load and started again, three instances sharing their stores, and slow or silent
//! clients. SIGKILL of the server during a login load is in `audit_log.rs`
//! (`every_answered_request_keeps_its_event_after_sigkill`). docs/faults.md describes each test.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::SET_COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{error_code, free_port, rss_kib, PrivatePostgres, PrivateRedis, Server, KEY};

const ADMIN: &str = "admin@example.test";
const PW: &str = "correct-horse-battery-staple-42";
const ORIGIN: &str = "http://rampart.test";
const COOKIE: &str = "rampart_session";

/// The environment of every server here: a fixed public origin, no general rate limit in the
/// way, then `extra` (which overrides).
fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("RAMPART_RATE_LIMIT", "1000000/1s"), ("RAMPART_PUBLIC_ORIGIN", ORIGIN)];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k, v));
    }
    env
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// A logged-in browser: the `Cookie` header value and the CSRF token.
#[derive(Debug, Clone)]
struct Login {
    cookie: String,
    csrf: String,
}

async fn setup(base: &str) {
    let r = http()
        .post(format!("{base}/api/setup"))
        .header("origin", ORIGIN)
        .json(&json!({"email": ADMIN, "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "setup: {}", r.text().await.unwrap());
}

async fn login(base: &str) -> Login {
    let r = http()
        .post(format!("{base}/api/auth/login"))
        .header("origin", ORIGIN)
        .json(&json!({"email": ADMIN, "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "login");
    let prefix = format!("{COOKIE}=");
    let value = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().unwrap().strip_prefix(&prefix))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .find(|v| !v.is_empty())
        .expect("login sets the session cookie");
    let body: Value = r.json().await.unwrap();
    Login { cookie: format!("{prefix}{value}"), csrf: body["csrf_token"].as_str().unwrap().into() }
}

/// The status of `GET /api/auth/me` as `who`; a 401 must be `unauthenticated`.
async fn me_status(base: &str, who: &Login) -> StatusCode {
    let r = http().get(format!("{base}/api/auth/me")).header("cookie", &who.cookie).send().await;
    let r = r.unwrap();
    let status = r.status();
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(error_code(&r.json().await.unwrap()), "unauthenticated");
    }
    status
}

/// Asserts the server process is still running and never reported a panic.
fn assert_alive(s: &mut Server, when: &str) {
    assert!(s.child.try_wait().unwrap().is_none(), "server exited {when}:\n{}", s.output());
    assert!(!s.output().contains("panicked"), "server panicked {when}:\n{}", s.output());
}

// ---------------------------------------------------------------------------------------------
// The session store killed under load
// ---------------------------------------------------------------------------------------------

const BEFORE: usize = 0;
const DURING: usize = 1;
const AFTER: usize = 2;
const PHASES: [&str; 3] = ["before", "during", "after"];
/// Concurrent clients, the pause each takes between requests, and the most requests each sends.
const TASKS: usize = 16;
const PAUSE: Duration = Duration::from_millis(25);
const MAX_PER_TASK: usize = 2_000;
/// Consecutive 200s (across all clients) that count as recovered.
const RECOVERED_STREAK: usize = 4 * TASKS;

/// One answer to the load: the phase it arrived in, when, and what it was.
#[derive(Debug, Clone)]
struct Answer {
    phase: usize,
    at: Instant,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ok,
    /// 503 in the error shape with the expected code, the cookie left alone.
    Unavailable,
    /// Anything else: another status, another shape, a cleared cookie, no answer at all.
    Wrong(String),
}

/// Sorts one response into a [`Kind`] without panicking (it runs in a load task).
async fn classify(r: reqwest::Response, want_code: &str) -> Kind {
    let status = r.status();
    let sets_cookie = r.headers().contains_key(SET_COOKIE);
    let body = r.text().await.unwrap_or_default();
    match status {
        StatusCode::OK => Kind::Ok,
        StatusCode::SERVICE_UNAVAILABLE => {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let e = &v["error"];
            let shaped = e["message"].is_string()
                && e["request_id"].as_str().is_some_and(|id| !id.is_empty());
            if shaped && e["code"] == want_code && !sets_cookie {
                Kind::Unavailable
            } else {
                Kind::Wrong(format!("503 (sets cookie: {sets_cookie}) {body}"))
            }
        }
        other => Kind::Wrong(format!("{other} {body}")),
    }
}

/// [`TASKS`] clients looping `GET /api/auth/me` with one session cookie, recording every answer
/// with the phase it arrived in.
struct Load {
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, who: &Login, want_code: &'static str) -> Self {
        let phase = Arc::new(AtomicUsize::new(BEFORE));
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
        let client = http();
        let tasks = (0..TASKS)
            .map(|_| {
                let (phase, stop, answers) = (phase.clone(), stop.clone(), answers.clone());
                let (client, url) = (client.clone(), format!("{base}/api/auth/me"));
                let cookie = who.cookie.clone();
                tokio::spawn(async move {
                    for _ in 0..MAX_PER_TASK {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let kind = match client.get(&url).header("cookie", &cookie).send().await {
                            Ok(r) => classify(r, want_code).await,
                            Err(e) => Kind::Wrong(format!("no answer: {e}")),
                        };
                        let answer = Answer {
                            phase: phase.load(Ordering::SeqCst),
                            at: Instant::now(),
                            kind,
                        };
                        answers.lock().unwrap().push(answer);
                        tokio::time::sleep(PAUSE).await;
                    }
                })
            })
            .collect();
        Self { phase, stop, answers, tasks }
    }

    fn enter(&self, phase: usize) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// Waits up to `limit` until the latest [`RECOVERED_STREAK`] answers are all 200s after
    /// the restart; true if they are.
    async fn until_recovered(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            {
                let a = self.answers.lock().unwrap();
                let tail = a.iter().rev().take(RECOVERED_STREAK);
                if a.len() >= RECOVERED_STREAK
                    && tail.clone().all(|x| x.phase == AFTER && x.kind == Kind::Ok)
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Stops the clients and returns every answer, in the order they arrived.
    async fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let answers = self.answers.lock().unwrap().clone();
        answers
    }
}

/// Counts of one phase: (200s, 503s).
fn counts(answers: &[Answer], phase: usize) -> (usize, usize) {
    let of = |k: Kind| answers.iter().filter(|a| a.phase == phase && a.kind == k).count();
    (of(Kind::Ok), of(Kind::Unavailable))
}

/// Checks a finished outage run and prints its numbers (docs/faults.md quotes them).
fn check_outage(
    what: &str,
    answers: &[Answer],
    (restarting, restart_took): (Instant, Duration),
    recovered: bool,
    rss: (u64, u64),
) {
    let wrong: Vec<String> = answers
        .iter()
        .filter_map(|a| match &a.kind {
            Kind::Wrong(w) => Some(format!("{}: {w}", PHASES[a.phase])),
            _ => None,
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: {} answers were neither 200 nor 503 in the error shape, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let (before_ok, before_503) = counts(answers, BEFORE);
    let (during_ok, during_503) = counts(answers, DURING);
    let (after_ok, after_503) = counts(answers, AFTER);
    // The first answer of the final run of 200s: from there on the service is back.
    let back = answers
        .iter()
        .rposition(|a| a.kind != Kind::Ok)
        .map_or(answers.first(), |i| answers.get(i + 1))
        .map(|a| a.at.saturating_duration_since(restarting));
    eprintln!(
        "{what}: before 200={before_ok} 503={before_503}; during 200={during_ok} \
         503={during_503}; after 200={after_ok} 503={after_503}; the store took {restart_took:?} \
         to start again, and only 200s came from {back:?} after it began; RSS {} KiB before, {} KiB after",
        rss.0, rss.1
    );
    assert!(before_ok > 0 && before_503 == 0, "{what}: all 200 before the outage");
    assert!(during_503 > 0, "{what}: the outage must show as 503s");
    assert!(recovered && after_ok > 0, "{what}: 200s come back without a server restart");
    let grown = rss.1.saturating_sub(rss.0);
    assert!(grown <= 64 * 1024, "{what}: RSS grew by {grown} KiB through the outage");
}

/// Asserts a login while the store is down is refused with 503 `code` in the error shape and
/// sets no session cookie.
async fn assert_login_refused(base: &str, code: &str) {
    let r = http()
        .post(format!("{base}/api/auth/login"))
        .header("origin", ORIGIN)
        .json(&json!({"email": ADMIN, "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "login during the outage");
    assert!(r.headers().get(SET_COOKIE).is_none(), "no session cookie during the outage");
    assert_eq!(error_code(&r.json().await.unwrap()), code, "login during the outage");
}

/// Runs the load through an outage of the session store: 2 s of normal service, the store down
/// for 4 s (`stop`; three logins are tried meanwhile and must be refused with 503 `login_code`),
/// then started again (`start`) until the load sees only 200s (up to 60 s).
async fn outage<Stop, Start>(
    what: &str,
    login_code: &str,
    s: &mut Server,
    who: &Login,
    stop: Stop,
    start: Start,
) where
    Stop: std::future::Future<Output = ()>,
    Start: std::future::Future<Output = ()>,
{
    let pid = s.child.id();
    let load = Load::start(&s.base, who, "session_store_unavailable");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_kib(pid);
    load.enter(DURING);
    stop.await;
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..3 {
        assert_login_refused(&s.base, login_code).await;
    }
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(down.elapsed())).await;
    assert_alive(s, &format!("during the {what}"));
    load.enter(AFTER);
    let restarting = Instant::now();
    start.await;
    let restart_took = restarting.elapsed();
    let recovered = load.until_recovered(Duration::from_secs(60)).await;
    let rss_after = rss_kib(pid);
    let answers = load.finish().await;
    assert_alive(s, &format!("after the {what}"));
    check_outage(what, &answers, (restarting, restart_took), recovered, (rss_before, rss_after));
    // The same session still works: the outage logged nobody out.
    assert_eq!(me_status(&s.base, who).await, StatusCode::OK);
}

/// A server with `extra` settings, its admin set up and logged in (the session checked).
async fn serving_a_session(extra: &[(&str, &str)]) -> (Server, Login) {
    let mut settings = extra.to_vec();
    settings.push(("RAMPART_SECRET_KEY", KEY));
    let s = Server::start(&env(&settings));
    setup(&s.base).await;
    let who = login(&s.base).await;
    assert_eq!(me_status(&s.base, &who).await, StatusCode::OK);
    (s, who)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_answers_503_and_service_resumes_without_a_restart() {
    let aof = tempfile::tempdir().unwrap();
    let redis = PrivateRedis::start_persistent(free_port(), aof.path()).await;
    let url = redis.url();
    let (mut s, who) = serving_a_session(&[
        ("RAMPART_REDIS_URL", &url),
        ("RAMPART_SESSION_STORE", "redis"),
        ("RAMPART_SESSION_STORE_TIMEOUT", "1s"),
    ])
    .await;
    // Killed, then started again on the same port with the same data: sessions written before
    // the outage are still there.
    let redis = tokio::sync::Mutex::new(redis);
    let kill = async { redis.lock().await.kill() };
    let restart = async { redis.lock().await.restart().await };
    outage("Redis outage", "rate_limit_store_unavailable", &mut s, &who, kill, restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_answers_503_and_service_resumes_without_a_restart() {
    let Some(pg) = PrivatePostgres::start().await else { return };
    let url = pg.url();
    let (mut s, who) = serving_a_session(&[
        ("RAMPART_DATABASE_URL", &url),
        ("RAMPART_SESSION_STORE", "sql"),
        ("RAMPART_DATABASE_ACQUIRE_TIMEOUT", "1s"),
    ])
    .await;
    let (stop, start) = (pg.stop_immediately(), pg.restart());
    outage("PostgreSQL outage", "database_unavailable", &mut s, &who, stop, start).await;
}

// ---------------------------------------------------------------------------------------------
// Three instances sharing PostgreSQL and Redis
// ---------------------------------------------------------------------------------------------

/// Three instances sharing a fresh PostgreSQL database and Redis (own key prefix), the same
/// secret key and `extra`; `None` when a store is missing outside CI. Bind the database first
/// (`let Some((_pg, servers))`) so it outlives the servers.
async fn three_instances(
    extra: &[(&str, &str)],
) -> Option<(rampart_testkit::PgDatabase, Vec<Server>)> {
    let redis = rampart_testkit::redis_url().await?;
    let pg = rampart_testkit::postgres_database().await?;
    let prefix = format!("rampart-t-{}:", rampart_testkit::random_suffix());
    let mut settings = vec![
        ("RAMPART_REDIS_URL", redis.as_str()),
        ("RAMPART_REDIS_KEY_PREFIX", prefix.as_str()),
        ("RAMPART_DATABASE_URL", pg.url.as_str()),
        ("RAMPART_SECRET_KEY", KEY),
    ];
    settings.extend_from_slice(extra);
    let shared = env(&settings);
    // One after the other, so only the first runs the migrations.
    let servers = (0..3).map(|_| Server::start(&shared)).collect();
    Some((pg, servers))
}

#[tokio::test]
async fn logout_on_one_of_three_instances_is_seen_by_the_other_two_at_once() {
    let Some((_pg, servers)) = three_instances(&[]).await else { return };
    let bases: Vec<&str> = servers.iter().map(|s| s.base.as_str()).collect();
    setup(bases[0]).await;
    // Each instance in turn logs in; the next one logs out; all three refuse the cookie at once.
    for i in 0..3 {
        let (login_on, logout_on) = (i, (i + 1) % 3);
        let who = login(bases[login_on]).await;
        for (n, base) in bases.iter().enumerate() {
            assert_eq!(me_status(base, &who).await, StatusCode::OK, "login on {login_on}, {n}");
        }
        let r = http()
            .post(format!("{}/api/auth/logout", bases[logout_on]))
            .header("origin", ORIGIN)
            .header("cookie", &who.cookie)
            .header("x-csrf-token", &who.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "logout on instance {logout_on}");
        for (n, base) in bases.iter().enumerate() {
            let status = me_status(base, &who).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "instance {n} after logout on {logout_on}"
            );
        }
    }
}

/// POSTs a JSON body through `base` as an anonymous client; returns the status.
async fn post_status(c: &reqwest::Client, base: &str, path: &str, body: &Value) -> StatusCode {
    let r = c.post(format!("{base}{path}")).header("origin", ORIGIN).json(body).send().await;
    r.unwrap().status()
}

#[tokio::test]
async fn three_instances_behind_one_balancer_share_setup_logout_and_rate_limits() {
    if !crate::gateway_pages::have("nginx", "three instances behind an nginx load balancer") {
        return;
    }
    const QUOTA: usize = 150;
    let quota = format!("{QUOTA}/600s");
    let extra = [("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32"), ("RAMPART_RATE_LIMIT", &quota)];
    let Some((_pg, servers)) = three_instances(&extra).await else { return };
    let ports: Vec<u16> =
        servers.iter().map(|s| s.base.rsplit(':').next().unwrap().parse().unwrap()).collect();
    let lb = crate::gateway_pages::proxies::start_nginx_balancer(free_port(), &ports);
    let base = lb.base.as_str();
    let c = http();

    // The first-user race through the one address: exactly one admin.
    let started = Instant::now();
    let body = json!({"email": ADMIN, "password": PW});
    let race = (0..100).map(|_| post_status(&c, base, "/api/setup", &body));
    let statuses = futures_util::future::join_all(race).await;
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let conflicts = statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count();
    assert_eq!((created, conflicts), (1, 99), "{statuses:?}");

    // Logged in through the balancer, the session works on every instance; a logout through the
    // balancer (answered by whichever instance) is seen by all three on the next request.
    let who = login(base).await;
    for _ in 0..3 {
        assert_eq!(me_status(base, &who).await, StatusCode::OK);
    }
    for s in &servers {
        assert_eq!(me_status(&s.base, &who).await, StatusCode::OK, "{}", s.base);
    }
    let r = c
        .post(format!("{base}/api/auth/logout"))
        .header("origin", ORIGIN)
        .header("cookie", &who.cookie)
        .header("x-csrf-token", &who.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for _ in 0..3 {
        assert_eq!(me_status(base, &who).await, StatusCode::UNAUTHORIZED);
    }
    for s in &servers {
        assert_eq!(me_status(&s.base, &who).await, StatusCode::UNAUTHORIZED, "{}", s.base);
    }

    // The rate limit holds in total: so far 100 setups, one login and one logout spent the
    // client's quota of unsafe requests; 200 more spread over the three instances admit only
    // what is left of it, plus what the sustained rate (one per 4 s) gave back meanwhile.
    let spent = 102;
    let more = (0..200).map(|_| post_status(&c, base, "/api/setup", &body));
    let statuses = futures_util::future::join_all(more).await;
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    let mut admitted = statuses.len() - limited;
    assert!(admitted >= QUOTA - spent - 5, "only {admitted} admitted: {statuses:?}");

    // Straight to each instance, bypassing the balancer, the shared limit refuses too. A token
    // the sustained rate gave back may admit one request (409, already set up), never three in a
    // row on one instance: an instance with a limit of its own would admit them all.
    for s in &servers {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(post_status(&c, &s.base, "/api/setup", &body).await);
            if seen.last() == Some(&StatusCode::TOO_MANY_REQUESTS) {
                break;
            }
        }
        let (refused, let_through) = seen.split_last().unwrap();
        assert_eq!(*refused, StatusCode::TOO_MANY_REQUESTS, "direct to {}: {seen:?}", s.base);
        assert!(
            let_through.iter().all(|st| *st == StatusCode::CONFLICT),
            "direct to {}: {seen:?}",
            s.base
        );
        admitted += let_through.len();
    }
    let refilled = usize::try_from(started.elapsed().as_secs() / 4).unwrap() + 1;
    assert!(
        admitted <= QUOTA - spent + refilled,
        "{admitted} admitted past the quota ({refilled} refilled): {statuses:?}"
    );
    drop(lb);
}

// ---------------------------------------------------------------------------------------------
// Slow and silent clients
// ---------------------------------------------------------------------------------------------

/// The header read and request timeouts of the slow-client server, and the slack allowed on top
/// of them for a loaded machine.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_secs(3);

fn slow_client_server() -> Server {
    Server::start(&env(&[("RAMPART_HEADER_READ_TIMEOUT", "2s"), ("RAMPART_REQUEST_TIMEOUT", "2s")]))
}

fn addr_of(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (EOF or reset), up to `limit`; returns the
/// time from `since` and everything read, or `None` if it was still open at `limit`.
async fn read_until_closed(
    mut r: impl tokio::io::AsyncRead + Unpin,
    since: Instant,
    limit: Duration,
) -> Option<(Duration, Vec<u8>)> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit.saturating_sub(since.elapsed()), read).await.ok()?;
    Some((since.elapsed(), got))
}

/// Sends `bytes` one at a time, one every 200 ms, until the server closes the connection;
/// returns when it closed (from the first byte) and what it sent back, or `None` if it was
/// still open at `limit`.
async fn dribble(addr: &str, bytes: &[u8], limit: Duration) -> Option<(Duration, Vec<u8>)> {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let since = Instant::now();
    let writer = async {
        for b in bytes {
            if w.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Out of bytes (or the write failed): keep the connection open, silent.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        closed = read_until_closed(r, since, limit) => closed,
        () = writer => unreachable!(),
    }
}

/// A raw HTTP/1.1 response: status, lower-case headers, body (chunked bodies decoded).
fn parse_response(raw: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let text_end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..text_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut rest = &raw[text_end + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if !chunked {
        return (status, headers, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16);
        let size = size.unwrap();
        if size == 0 {
            return (status, headers, body);
        }
        body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_unfinished_bodies_are_cut_off_while_others_are_served() {
    let mut s = slow_client_server();
    let addr = addr_of(&s);

    // Headers a byte every 200 ms: 300 bytes would take a minute.
    let mut headers = b"GET /healthz HTTP/1.1\r\nHost: rampart.test\r\nX-Pad: ".to_vec();
    headers.resize(300, b'a');
    let limit = HEADER_TIMEOUT + SLACK;
    let slow_headers = tokio::spawn({
        let addr = addr.clone();
        async move { dribble(&addr, &headers, limit).await }
    });

    // A login whose body stops after 9 of its announced 1000 bytes.
    let unfinished_body = tokio::spawn({
        let addr = addr.clone();
        async move {
            let mut c = TcpStream::connect(&addr).await.unwrap();
            let since = Instant::now();
            let head = format!(
                "POST /api/auth/login HTTP/1.1\r\nHost: rampart.test\r\nOrigin: {ORIGIN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"email\":"
            );
            c.write_all(head.as_bytes()).await.unwrap();
            read_until_closed(c, since, REQUEST_TIMEOUT + SLACK).await
        }
    });

    // Meanwhile a normal client is served, several times over.
    let normal = http();
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = tokio::time::timeout(SLACK, normal.get(s.url("/healthz")).send()).await;
        let r = r.unwrap_or_else(|_| panic!("healthz {i} not answered in {SLACK:?}")).unwrap();
        assert_eq!(r.status(), StatusCode::OK, "healthz {i}");
    }

    let (closed, sent) = slow_headers.await.unwrap().expect("slow headers: connection closed");
    eprintln!("slow headers: closed after {closed:?}, {} bytes sent back", sent.len());
    assert!(
        sent.is_empty() || sent.starts_with(b"HTTP/1.1 408"),
        "nothing, or a 408, for headers never finished: {}",
        String::from_utf8_lossy(&sent)
    );

    let (closed, sent) = unfinished_body.await.unwrap().expect("unfinished body: closed");
    eprintln!("unfinished body: closed after {closed:?}");
    let (status, headers, body) = parse_response(&sent);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&sent));
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"));
    assert_eq!(error_code(&serde_json::from_slice(&body).unwrap()), "request_timeout");
    assert_alive(&mut s, "after the slow clients");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_idle_connections_do_not_stop_service_and_are_each_closed_on_time() {
    let mut s = slow_client_server();
    let addr = addr_of(&s);
    let since = Instant::now();
    let mut idle = Vec::new();
    for i in 0..50 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        let what = match i % 5 {
            // Connects and never sends a byte.
            0 | 1 => "silent",
            // Half a request line.
            2 | 3 => {
                c.write_all(b"GET /heal").await.unwrap();
                "partial request line"
            }
            // One whole request, then nothing on the kept-alive connection.
            _ => {
                c.write_all(b"GET /healthz HTTP/1.1\r\nHost: rampart.test\r\n\r\n").await.unwrap();
                "idle keep-alive"
            }
        };
        idle.push((what, tokio::spawn(read_until_closed(c, since, HEADER_TIMEOUT + SLACK))));
    }
    // HTTP/2 with prior knowledge: the connection preface, then silence (no header timer there).
    let mut h2 = TcpStream::connect(&addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let h2 = tokio::spawn(read_until_closed(h2, Instant::now(), 2 * HEADER_TIMEOUT + SLACK));

    // With all of them open, a normal request is answered.
    let r = tokio::time::timeout(SLACK, http().get(s.url("/healthz")).send()).await;
    assert_eq!(r.expect("healthz answered with 50 idle connections open").unwrap().status(), 200);

    let mut slowest = Duration::ZERO;
    for (i, (what, t)) in idle.into_iter().enumerate() {
        let closed = t.await.unwrap();
        let (after, sent) = closed.unwrap_or_else(|| panic!("{what} connection {i} still open"));
        slowest = slowest.max(after);
        if what == "idle keep-alive" {
            assert!(sent.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&sent));
        } else {
            assert!(sent.is_empty(), "{what}: {}", String::from_utf8_lossy(&sent));
        }
    }
    let (h2_after, _) = h2.await.unwrap().expect("silent HTTP/2 connection closed");
    eprintln!(
        "50 idle connections: all closed within {slowest:?}; silent HTTP/2 after {h2_after:?}"
    );

    let r = tokio::time::timeout(SLACK, http().get(s.url("/healthz")).send()).await;
    assert_eq!(r.expect("healthz answered afterwards").unwrap().status(), 200);
    assert_alive(&mut s, "after the idle connections");
}
