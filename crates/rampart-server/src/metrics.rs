//! Prometheus metrics, served at `GET /metrics` on their own listener
//! (`RAMPART_METRICS_LISTEN`, off by default) so they never sit on the public address.
//!
//! Counters and histograms are kept in memory with atomics and small maps; labels are bounded:
//! routes are the matched route templates (never raw paths) and methods are the nine standard
//! ones or `other` (HTTP lets a client invent any method token), so neither a scan of random
//! URLs nor a stream of made-up methods can grow the label set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{MatchedPath, State};
use parking_lot::Mutex;

use crate::state::AppState;

/// Latency buckets in seconds.
const BUCKETS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}", self.counts[i]);
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct RouteStats {
    by_status: Vec<(&'static str, u16, u64)>,
    latency: Histogram,
}

/// Every metric Rampart exports.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<std::collections::HashMap<String, RouteStats>>,
    logins: Mutex<BTreeMap<&'static str, u64>>,
    rate_limited: AtomicU64,
    csrf_rejected: AtomicU64,
    store_errors: Mutex<BTreeMap<&'static str, u64>>,
    audit_write: Mutex<Histogram>,
}

impl Metrics {
    /// Counts a login by outcome (`success`, `failure`, `locked`).
    pub fn login(&self, outcome: &'static str) {
        *self.logins.lock().entry(outcome).or_default() += 1;
    }

    /// Counts a rate-limit refusal.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a CSRF rejection.
    pub fn csrf_rejected(&self) {
        self.csrf_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a store error by store (`session`, `database`, `audit`, `rate_limit`).
    pub fn store_error(&self, store: &'static str) {
        *self.store_errors.lock().entry(store).or_default() += 1;
    }

    /// Records how long an audit write took to commit.
    pub fn audit_write(&self, took: Duration) {
        self.audit_write.lock().observe(took.as_secs_f64());
    }

    fn request(&self, route: &str, method: &axum::http::Method, status: u16, took: Duration) {
        let method = method_label(method);
        let count = |stats: &mut RouteStats| {
            match stats.by_status.iter_mut().find(|(m, s, _)| *m == method && *s == status) {
                Some(entry) => entry.2 += 1,
                None => stats.by_status.push((method, status, 1)),
            }
            stats.latency.observe(took.as_secs_f64());
        };
        let mut routes = self.routes.lock();
        // One lookup by borrowed key; the key is allocated only the first time a route is seen.
        match routes.get_mut(route) {
            Some(stats) => count(stats),
            None => count(routes.entry(route.to_owned()).or_default()),
        }
    }
}

/// The label of a method: one of the nine standard methods, else `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Counts a finished request by route template (`unmatched` without one), method and status,
/// with its latency, and the store errors its answer names.
pub(crate) fn record<B>(
    state: &AppState,
    route: Option<&MatchedPath>,
    method: &axum::http::Method,
    started: std::time::Instant,
    res: &axum::http::Response<B>,
) {
    let route = route.map_or("unmatched", MatchedPath::as_str);
    state.metrics.request(route, method, res.status().as_u16(), started.elapsed());
    let store = match res.extensions().get::<crate::error::ErrorCode>().map(|c| c.0) {
        Some("session_store_unavailable") => Some("session"),
        Some("database_unavailable") => Some("database"),
        Some("audit_unavailable") => Some("audit"),
        Some("rate_limit_store_unavailable") => Some("rate_limit"),
        _ if res.extensions().get::<rampart_ratelimit::RateLimitError>().is_some() => {
            Some("rate_limit")
        }
        _ => None,
    };
    if let Some(store) = store {
        state.metrics.store_error(store);
    }
}

/// One route's counters by (method, status) and its rendered latency histogram.
type RouteSnapshot = (Vec<(&'static str, u16, u64)>, String);

/// Renders the Prometheus text format.
pub async fn render(state: &AppState) -> String {
    let m = &state.metrics;
    let mut out = String::with_capacity(4096);
    out.push_str("# HELP rampart_http_requests_total Requests by route template, method and status.\n# TYPE rampart_http_requests_total counter\n");
    let routes: BTreeMap<String, RouteSnapshot> = m
        .routes
        .lock()
        .iter()
        .map(|(route, st)| {
            let mut hist = String::new();
            let labels = format!("route=\"{}\"", esc(route));
            st.latency.render(&mut hist, "rampart_http_request_duration_seconds", &labels);
            (route.clone(), (st.by_status.clone(), hist))
        })
        .collect();
    for (route, (by_status, _)) in &routes {
        let mut by_status = by_status.clone();
        by_status.sort_unstable();
        for (method, status, n) in by_status {
            let _ = writeln!(
                out,
                "rampart_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                esc(route),
            );
        }
    }
    out.push_str("# HELP rampart_http_request_duration_seconds Request latency by route template.\n# TYPE rampart_http_request_duration_seconds histogram\n");
    for (_, hist) in routes.values() {
        out.push_str(hist);
    }
    out.push_str(
        "# HELP rampart_logins_total Logins by outcome.\n# TYPE rampart_logins_total counter\n",
    );
    for outcome in ["success", "failure", "locked"] {
        let n = m.logins.lock().get(outcome).copied().unwrap_or(0);
        let _ = writeln!(out, "rampart_logins_total{{outcome=\"{outcome}\"}} {n}");
    }
    let sessions =
        match tokio::time::timeout(Duration::from_secs(1), state.sessions.store().count()).await {
            Ok(Ok(n)) => n.to_string(),
            _ => "NaN".to_owned(),
        };
    let _ = writeln!(out, "# HELP rampart_active_sessions Sessions held by the session store.\n# TYPE rampart_active_sessions gauge\nrampart_active_sessions {sessions}");
    let evicted = state.memory_sessions.as_ref().map_or(0, |s| s.evicted_live());
    let _ = writeln!(out, "# HELP rampart_session_evictions_total Live sessions evicted from the memory store at capacity.\n# TYPE rampart_session_evictions_total counter\nrampart_session_evictions_total {evicted}");
    let _ = writeln!(out, "# HELP rampart_rate_limited_total Requests refused by rate limiting.\n# TYPE rampart_rate_limited_total counter\nrampart_rate_limited_total {}", m.rate_limited.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP rampart_csrf_rejected_total Requests refused by CSRF protection.\n# TYPE rampart_csrf_rejected_total counter\nrampart_csrf_rejected_total {}", m.csrf_rejected.load(Ordering::Relaxed));
    out.push_str("# HELP rampart_store_errors_total Store operations that failed, by store.\n# TYPE rampart_store_errors_total counter\n");
    for store in ["session", "database", "audit", "rate_limit"] {
        let n = m.store_errors.lock().get(store).copied().unwrap_or(0);
        let _ = writeln!(out, "rampart_store_errors_total{{store=\"{store}\"}} {n}");
    }
    out.push_str("# HELP rampart_audit_write_seconds Time from an audit append to its commit.\n# TYPE rampart_audit_write_seconds histogram\n");
    m.audit_write.lock().render(&mut out, "rampart_audit_write_seconds", "");
    let _ = writeln!(out, "# HELP rampart_password_verifications_total Password verifications run, those for unknown accounts included.\n# TYPE rampart_password_verifications_total counter\nrampart_password_verifications_total {}", state.hasher.verifications());
    let _ = writeln!(out, "# HELP rampart_password_hash_queue_depth Password hashes running or waiting.\n# TYPE rampart_password_hash_queue_depth gauge\nrampart_password_hash_queue_depth {}", state.hasher.queue_depth());
    out
}

/// The metrics app for the separate listener.
pub fn app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(s): State<AppState>| async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render(&s).await,
                )
            }),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(0.002);
        h.observe(0.2);
        let mut out = String::new();
        h.render(&mut out, "x", "route=\"/a\"");
        assert!(out.contains("x_bucket{route=\"/a\",le=\"0.0025\"} 1"), "{out}");
        assert!(out.contains("x_bucket{route=\"/a\",le=\"0.25\"} 2"), "{out}");
        assert!(out.contains("x_bucket{route=\"/a\",le=\"+Inf\"} 2"));
        assert!(out.contains("x_count{route=\"/a\"} 2"));
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let m = Metrics::default();
        for i in 0..500 {
            let method = axum::http::Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
            m.request("unmatched", &method, 405, Duration::from_millis(1));
        }
        m.request("unmatched", &axum::http::Method::GET, 404, Duration::from_millis(1));
        m.request("unmatched", &axum::http::Method::GET, 404, Duration::from_millis(1));
        let routes = m.routes.lock();
        let mut seen = routes["unmatched"].by_status.clone();
        seen.sort_unstable();
        assert_eq!(seen, vec![("GET", 404, 2), ("other", 405, 500)]);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
