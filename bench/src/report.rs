//! Turns a run directory written by `./scripts/bench` into `docs/bench/results.json`,
//! `docs/benchmarks.md` and SVG charts.
//!
//! Run directory layout: `meta.json`, `notes.txt`, `tput/<target>.r<N>.json` (wrk summaries),
//! `redis/<target>.json`, `login/{hash,sequential,throughput}.json`,
//! `flood/{me-idle,me-loaded,attack}.json`, `micro.json` (from `scripts/microbench`). Missing
//! files become "not measured"; without `micro.json` in the run directory, an earlier
//! `docs/bench/micro.json` is shown, marked as coming from another run.

use std::fs;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::svg::{bar_chart, Group, Series};

mod markdown;

/// The targets of the throughput table, in order, with the stack each is compared with.
pub(crate) const TARGETS: &[(&str, &str, Option<&str>)] = &[
    ("plain", "axum, no layers (ceiling)", None),
    ("lib-memory", "axum + rampart-session, memory store", None),
    ("lib-protect", "axum + the protection layers, no session", None),
    ("plain-headers", "axum + lib-protect's response headers, nothing checked", None),
    ("stack-memory", "published crates, memory sessions", None),
    ("stack-redis", "published crates, Redis sessions", None),
    ("rampart-memory", "Rampart, memory store", Some("stack-memory")),
    ("rampart-redis", "Rampart, Redis store", Some("stack-redis")),
    ("rampart-sql", "Rampart, SQL store (SQLite)", Some("stack-memory")),
];

/// The targets of the proxy table, in order, with the baseline each is compared with.
pub(crate) const PROXY_TARGETS: &[(&str, &str, Option<&str>)] = &[
    ("upstream-direct", "the upstream app, no proxy", None),
    ("nginx-proxy", "nginx proxy_pass, no authentication", Some("upstream-direct")),
    ("hyper-proxy", "bare axum + hyper client proxy, nothing checked", Some("nginx-proxy")),
    (
        "nginx-bytes",
        "nginx proxy_pass with Rampart's added headers, nothing checked",
        Some("nginx-proxy"),
    ),
    ("rampart-proxy", "Rampart proxy, session checked", Some("nginx-proxy")),
    ("rampart-verify", "Rampart forward auth, GET /auth/verify", Some("plain")),
];

/// The session library's goal: `lib-memory` at least this fraction of `plain`'s req/s.
pub(crate) const LIB_MEMORY_GOAL: f64 = 0.85;
/// The protection stack's goal: `lib-protect` at least this fraction of `plain`'s req/s (at
/// most 10% throughput lost).
pub(crate) const LIB_PROTECT_GOAL: f64 = 0.9;
/// The proxy's goal: `rampart-proxy` at least this fraction of `nginx-proxy`'s req/s.
pub(crate) const PROXY_GOAL: f64 = 0.9;
/// The login flood's goal: p99 of the probe during the flood at most this multiple of its p99
/// alone.
pub(crate) const FLOOD_P99_GOAL: f64 = 3.0;

/// One wrk summary, reduced.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Wrk {
    pub(crate) requests: u64,
    pub(crate) duration_s: f64,
    pub(crate) rps: f64,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    pub(crate) errors: u64,
    pub(crate) non_2xx_3xx: u64,
    pub(crate) statuses: serde_json::Map<String, Value>,
    /// Cores the rest of the machine used during the run (`None`: not recorded).
    pub(crate) others_cores: Option<f64>,
}

impl Wrk {
    fn from_value(v: &Value) -> Option<Self> {
        let lat = v.get("latency_us")?;
        let f = |o: &Value, k: &str| o.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let e = v.get("errors")?;
        let u = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
        Some(Self {
            requests: v.get("requests")?.as_u64()?,
            duration_s: f(v, "duration_s"),
            rps: f(v, "rps"),
            p50_us: f(lat, "p50"),
            p90_us: f(lat, "p90"),
            p99_us: f(lat, "p99"),
            max_us: f(lat, "max"),
            errors: u("connect") + u("read") + u("write") + u("timeout"),
            non_2xx_3xx: u("status"),
            statuses: v.get("statuses").and_then(Value::as_object).cloned().unwrap_or_default(),
            others_cores: None,
        })
    }

    /// Responses with `status` (counted only where the script asked wrk to).
    pub(crate) fn status_count(&self, status: &str) -> u64 {
        self.statuses.get(status).and_then(Value::as_u64).unwrap_or(0)
    }
}

/// Medians over rounds of one target.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Throughput {
    pub(crate) target: String,
    pub(crate) description: String,
    pub(crate) rounds: Vec<Wrk>,
    pub(crate) rps: f64,
    pub(crate) rps_min: f64,
    pub(crate) rps_max: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) errors: u64,
    pub(crate) non_2xx_3xx: u64,
    /// Median over rounds of the cores other processes used.
    pub(crate) others_cores: Option<f64>,
    pub(crate) vs_plain: Option<Ratio>,
    pub(crate) stack: Option<String>,
    pub(crate) vs_stack: Option<Ratio>,
}

/// Target divided by baseline: throughput (higher is better) and p99 (lower is better).
#[derive(Serialize, Clone, Copy, Debug)]
pub(crate) struct Ratio {
    pub(crate) rps: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
}

/// Everything the report shows; also written as `results.json`.
#[derive(Serialize, Debug)]
pub(crate) struct Results {
    pub(crate) meta: Value,
    pub(crate) throughput: Vec<Throughput>,
    /// Proxied GET and forward auth; `stack`/`vs_stack` hold each row's baseline.
    pub(crate) proxy: Vec<Throughput>,
    pub(crate) redis: Vec<(String, Value)>,
    pub(crate) hash: Option<Value>,
    /// Hashes the server computes at once with its defaults (`rampart check-config`).
    pub(crate) hash_slots: Option<u64>,
    pub(crate) login_sequential_ms: Vec<f64>,
    pub(crate) login_sequential_statuses: Vec<u64>,
    pub(crate) login_throughput: Option<Wrk>,
    /// The round whose probe-alone p99 is the median over the flood rounds.
    pub(crate) flood_idle: Option<Wrk>,
    /// The round whose probe-during-flood p99 is the median over the flood rounds.
    pub(crate) flood_loaded: Option<Wrk>,
    /// The flood of the round in `flood_loaded`.
    pub(crate) flood_attack: Option<Wrk>,
    /// Every flood round, in order: probe alone, probe during the flood, the flood itself.
    pub(crate) flood_rounds: Vec<FloodRound>,
    /// What `scripts/microbench` wrote.
    pub(crate) micro: Option<Value>,
    /// Whether `micro` comes from this run (else from an earlier `docs/bench/micro.json`).
    pub(crate) micro_this_run: bool,
    pub(crate) notes: Vec<String>,
}

/// Answers of the login-flood probe that were not 2xx/3xx, or failed, over every round. A
/// probe that got errors did not measure the requests the goal is about.
pub(crate) fn flood_probe_errors(r: &Results) -> u64 {
    r.flood_rounds.iter().flat_map(|f| [&f.idle, &f.loaded]).map(|w| w.errors + w.non_2xx_3xx).sum()
}

/// Whether the login-flood goal is met: the probe's p99 during the flood at most
/// [`FLOOD_P99_GOAL`] times its p99 alone (`ratio`), and every probe answer 2xx/3xx.
pub(crate) fn flood_goal_met(r: &Results, ratio: f64) -> bool {
    ratio > 0.0 && ratio <= FLOOD_P99_GOAL && flood_probe_errors(r) == 0
}

/// One round of the login-flood measurement.
#[derive(Serialize, Debug, Clone)]
pub(crate) struct FloodRound {
    pub(crate) idle: Wrk,
    pub(crate) loaded: Wrk,
    pub(crate) attack: Option<Wrk>,
}

/// The flood rounds of a run: `flood/me-{idle,loaded}.rN.json` and `flood/attack.rN.json` for
/// N = 1, 2, …, or the unnumbered files of older runs as a single round.
fn flood_rounds(run: &Path) -> Vec<FloodRound> {
    let dir = run.join("flood");
    let read = |name: &str| read_wrk(&dir.join(name));
    let mut rounds = Vec::new();
    for n in 1.. {
        let (Some(idle), Some(loaded)) =
            (read(&format!("me-idle.r{n}.json")), read(&format!("me-loaded.r{n}.json")))
        else {
            break;
        };
        rounds.push(FloodRound { idle, loaded, attack: read(&format!("attack.r{n}.json")) });
    }
    if rounds.is_empty() {
        if let (Some(idle), Some(loaded)) = (read("me-idle.json"), read("me-loaded.json")) {
            rounds.push(FloodRound { idle, loaded, attack: read("attack.json") });
        }
    }
    rounds
}

/// The index of the element whose `key` is the median (the lower middle for even counts).
fn median_index<T>(xs: &[T], key: impl Fn(&T) -> f64) -> Option<usize> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| key(&xs[a]).total_cmp(&key(&xs[b])));
    order.get(xs.len().saturating_sub(1) / 2).copied()
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn read_json(path: &Path) -> Option<Value> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn read_wrk(path: &Path) -> Option<Wrk> {
    let mut w = read_json(path).as_ref().and_then(Wrk::from_value)?;
    let mut cpu = path.as_os_str().to_owned();
    cpu.push(".cpu");
    w.others_cores =
        read_json(Path::new(&cpu)).and_then(|v| v.get("others_cores").and_then(Value::as_f64));
    Some(w)
}

fn throughput(run: &Path, target: &str, description: &str) -> Option<Throughput> {
    let mut rounds: Vec<(u32, Wrk)> = Vec::new();
    for entry in fs::read_dir(run.join("tput")).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&format!("{target}.r")) else { continue };
        let Some(n) = rest.strip_suffix(".json").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(w) = read_wrk(&entry.path()) {
            rounds.push((n, w));
        }
    }
    if rounds.is_empty() {
        return None;
    }
    rounds.sort_by_key(|(n, _)| *n);
    let rounds: Vec<Wrk> = rounds.into_iter().map(|(_, w)| w).collect();
    let col = |f: fn(&Wrk) -> f64| rounds.iter().map(f).collect::<Vec<_>>();
    let rps = col(|w| w.rps);
    Some(Throughput {
        target: target.to_owned(),
        description: description.to_owned(),
        rps: median(rps.clone()),
        rps_min: rps.iter().copied().fold(f64::INFINITY, f64::min),
        rps_max: rps.iter().copied().fold(0.0, f64::max),
        p50_us: median(col(|w| w.p50_us)),
        p99_us: median(col(|w| w.p99_us)),
        errors: rounds.iter().map(|w| w.errors).sum(),
        non_2xx_3xx: rounds.iter().map(|w| w.non_2xx_3xx).sum(),
        others_cores: {
            let o: Vec<f64> = rounds.iter().filter_map(|w| w.others_cores).collect();
            (!o.is_empty()).then(|| median(o))
        },
        rounds,
        vs_plain: None,
        stack: None,
        vs_stack: None,
    })
}

fn ratio(t: &Throughput, base: &Throughput) -> Ratio {
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ratio {
        rps: div(t.rps, base.rps),
        p50: div(t.p50_us, base.p50_us),
        p99: div(t.p99_us, base.p99_us),
    }
}

/// The rows of `defs` measured in `run`, with ratios to `plain` (from `all`) and to each row's
/// own baseline.
fn rows(run: &Path, defs: &[(&str, &str, Option<&str>)], others: &[Throughput]) -> Vec<Throughput> {
    let mut rows: Vec<Throughput> =
        defs.iter().filter_map(|(t, d, _)| throughput(run, t, d)).collect();
    let snapshot: Vec<Throughput> = rows.iter().chain(others).cloned().collect();
    let find = |name: &str| snapshot.iter().find(|r| r.target == name);
    let plain = find("plain");
    for row in &mut rows {
        row.vs_plain = plain.map(|p| ratio(row, p));
        let base = defs.iter().find(|(t, _, _)| *t == row.target).and_then(|(_, _, s)| *s);
        if let Some(base) = base.and_then(find) {
            row.vs_stack = Some(ratio(row, base));
            row.stack = Some(base.target.clone());
        }
    }
    rows
}

/// Reads everything the run directory holds; `docs` is where an earlier `micro.json` may be.
pub(crate) fn collect(run: &Path, docs: &Path) -> anyhow::Result<Results> {
    let meta = read_json(&run.join("meta.json")).context("meta.json missing or invalid")?;
    let rows_ = rows(run, TARGETS, &[]);
    let proxy = rows(run, PROXY_TARGETS, &rows_);
    let rows = rows_;
    let (micro, micro_this_run) = match read_json(&run.join("micro.json")) {
        Some(m) => (Some(m), true),
        None => (read_json(&docs.join("bench").join("micro.json")), false),
    };
    let redis = ["rampart-redis", "stack-redis"]
        .iter()
        .filter_map(|t| {
            read_json(&run.join("redis").join(format!("{t}.json"))).map(|v| ((*t).to_owned(), v))
        })
        .collect();
    let sequential = read_json(&run.join("login/sequential.json"));
    let logins = sequential
        .as_ref()
        .and_then(|v| v.get("logins"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let notes = fs::read_to_string(run.join("notes.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let rounds = flood_rounds(run);
    Ok(Results {
        meta,
        throughput: rows,
        proxy,
        redis,
        hash: read_json(&run.join("login/hash.json")),
        hash_slots: fs::read_to_string(run.join("login/hash_slots.txt"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .filter(|n| *n > 0),
        login_sequential_ms: logins
            .iter()
            .filter_map(|l| l.get("ms").and_then(Value::as_f64))
            .collect(),
        login_sequential_statuses: logins
            .iter()
            .filter_map(|l| l.get("status").and_then(Value::as_u64))
            .collect(),
        login_throughput: read_wrk(&run.join("login/throughput.json")),
        flood_idle: median_index(&rounds, |f| f.idle.p99_us).map(|i| rounds[i].idle.clone()),
        flood_loaded: median_index(&rounds, |f| f.loaded.p99_us).map(|i| rounds[i].loaded.clone()),
        flood_attack: median_index(&rounds, |f| f.loaded.p99_us)
            .and_then(|i| rounds[i].attack.clone()),
        flood_rounds: rounds,
        micro,
        micro_this_run,
        notes,
    })
}

const BASE_COLOR: &str = "#9aa5b1";
const RAMPART_COLOR: &str = "#2f6fb0";

fn charts(r: &Results) -> Vec<(&'static str, String)> {
    let groups: Vec<Group> = r
        .throughput
        .iter()
        .map(|t| Group {
            label: t.target.clone(),
            values: vec![Some(t.rps)],
            note: t.vs_plain.map(|v| format!("({:.2}x plain)", v.rps)),
            color: Some(if t.target.starts_with("rampart") { RAMPART_COLOR } else { BASE_COLOR }),
        })
        .collect();
    let title = format!(
        "GET /api/auth/me throughput, median of {} runs (higher is better)",
        r.throughput.first().map_or(0, |t| t.rounds.len())
    );
    let tput = bar_chart(
        &title,
        "req/s",
        &[Series {
            name: "requests per second (grey: baselines, blue: Rampart)",
            color: RAMPART_COLOR,
        }],
        &groups,
    );
    let groups: Vec<Group> = r
        .throughput
        .iter()
        .map(|t| Group {
            label: t.target.clone(),
            values: vec![Some(t.p50_us / 1000.0), Some(t.p99_us / 1000.0)],
            note: None,
            color: None,
        })
        .collect();
    let lat = bar_chart(
        "GET /api/auth/me latency under load (lower is better)",
        "ms",
        &[Series { name: "p50", color: BASE_COLOR }, Series { name: "p99", color: RAMPART_COLOR }],
        &groups,
    );
    let mut out = vec![("throughput.svg", tput), ("latency.svg", lat)];
    if !r.proxy.is_empty() {
        let groups: Vec<Group> = r
            .proxy
            .iter()
            .map(|t| Group {
                label: t.target.clone(),
                values: vec![Some(t.rps)],
                note: t
                    .vs_stack
                    .zip(t.stack.as_deref())
                    .map(|(v, b)| format!("({:.2}x {b})", v.rps)),
                color: Some(if t.target.starts_with("rampart") {
                    RAMPART_COLOR
                } else {
                    BASE_COLOR
                }),
            })
            .collect();
        let proxy = bar_chart(
            "Proxied GET / and forward auth, median req/s (higher is better)",
            "req/s",
            &[Series {
                name: "requests per second (grey: baselines, blue: Rampart)",
                color: RAMPART_COLOR,
            }],
            &groups,
        );
        out.push(("proxy.svg", proxy));
    }
    if r.flood_idle.is_some() || r.flood_loaded.is_some() {
        let g = |label: &str, w: &Option<Wrk>| Group {
            label: label.to_owned(),
            values: vec![
                w.as_ref().map(|w| w.p50_us / 1000.0),
                w.as_ref().map(|w| w.p99_us / 1000.0),
            ],
            note: None,
            color: None,
        };
        let flood = bar_chart(
            "GET /api/auth/me during a login flood (lower is better)",
            "ms",
            &[
                Series { name: "p50", color: BASE_COLOR },
                Series { name: "p99", color: RAMPART_COLOR },
            ],
            &[g("probe alone", &r.flood_idle), g("during flood", &r.flood_loaded)],
        );
        out.push(("flood.svg", flood));
    }
    out
}

/// Writes `docs/bench/results.json`, the charts and `docs/benchmarks.md`.
pub(crate) fn write(run: &Path, docs: &Path) -> anyhow::Result<()> {
    let results = collect(run, docs)?;
    let dir = docs.join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    fs::write(dir.join("results.json"), serde_json::to_string_pretty(&results)? + "\n")?;
    if let (Some(micro), true) = (&results.micro, results.micro_this_run) {
        fs::write(dir.join("micro.json"), serde_json::to_string_pretty(micro)? + "\n")?;
    }
    let charts = charts(&results);
    for (name, svg) in &charts {
        fs::write(dir.join(name), svg)?;
    }
    let names: Vec<&str> = charts.iter().map(|(n, _)| *n).collect();
    fs::write(docs.join("benchmarks.md"), markdown::render(&results, &names))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrk_json(rps: f64, p50: u64, p99: u64) -> String {
        format!(
            r#"{{"requests":1000,"duration_s":10.0,"rps":{rps},"bytes":1,"latency_us":{{"mean":1,"stdev":1,"min":1,"max":9000,"p50":{p50},"p90":1,"p99":{p99},"p999":1}},"errors":{{"connect":0,"read":0,"write":0,"status":0,"timeout":0}},"statuses":{{}}}}"#
        )
    }

    fn run_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("tput")).unwrap();
        fs::write(
            p.join("meta.json"),
            r#"{"nproc":2,"date":"d","git_commit":"c","duration_s":10}"#,
        )
        .unwrap();
        for (r, plain, mem) in [(1, 100.0, 40.0), (2, 120.0, 50.0), (3, 80.0, 45.0)] {
            fs::write(p.join(format!("tput/plain.r{r}.json")), wrk_json(plain, 100, 1000)).unwrap();
            fs::write(
                p.join(format!("tput/stack-memory.r{r}.json")),
                wrk_json(plain / 2.0, 200, 2000),
            )
            .unwrap();
            fs::write(p.join(format!("tput/rampart-memory.r{r}.json")), wrk_json(mem, 300, 4000))
                .unwrap();
        }
        fs::write(p.join("tput/plain.r1.json.cpu"), r#"{"others_cores":0.5}"#).unwrap();
        fs::write(p.join("notes.txt"), "rampart-sql: GET /api/auth/me answered 500: {}\n").unwrap();
        dir
    }

    #[test]
    fn median_index_picks_the_middle_element_or_the_lower_middle() {
        assert_eq!(median_index(&[3.0, 1.0, 2.0], |v| *v), Some(2));
        assert_eq!(median_index(&[4.0, 1.0, 2.0, 3.0], |v| *v), Some(2));
        assert_eq!(median_index(&[5.0], |v| *v), Some(0));
        assert_eq!(median_index::<f64>(&[], |v| *v), None);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn targets_take_medians_over_rounds_and_ratios_against_their_baselines() {
        let dir = run_dir();
        let r = collect(dir.path(), dir.path()).unwrap();
        let names: Vec<&str> = r.throughput.iter().map(|t| t.target.as_str()).collect();
        assert_eq!(names, ["plain", "stack-memory", "rampart-memory"]);
        let plain = &r.throughput[0];
        assert_eq!(plain.rps, 100.0);
        assert_eq!((plain.rps_min, plain.rps_max), (80.0, 120.0));
        assert_eq!(plain.others_cores, Some(0.5));
        let ours = &r.throughput[2];
        assert_eq!(ours.rps, 45.0);
        assert_eq!(ours.stack.as_deref(), Some("stack-memory"));
        let vs_plain = ours.vs_plain.unwrap();
        assert!((vs_plain.rps - 0.45).abs() < 1e-9);
        assert!((vs_plain.p99 - 4.0).abs() < 1e-9);
        let vs_stack = ours.vs_stack.unwrap();
        assert!((vs_stack.rps - 0.9).abs() < 1e-9);
        assert!((vs_stack.p99 - 2.0).abs() < 1e-9);
        assert!(r.throughput[1].vs_stack.is_none());
    }

    #[test]
    fn report_files_are_written_with_ratios_and_anomalies() {
        let dir = run_dir();
        let docs = tempfile::tempdir().unwrap();
        write(dir.path(), docs.path()).unwrap();
        let md = fs::read_to_string(docs.path().join("benchmarks.md")).unwrap();
        assert!(md.contains("| rampart-memory | 45 (40–50) | 0.30 ms | 4.00 ms | 0.45× | 4.00× | stack-memory | 0.90× | 2.00× |"), "{md}");
        assert!(md.contains("answered 500"));
        assert!(md.contains("## Login flood\n\nNot measured in this run."));
        let json: Value = serde_json::from_str(
            &fs::read_to_string(docs.path().join("bench/results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["throughput"][0]["target"], "plain");
        let svg = fs::read_to_string(docs.path().join("bench/throughput.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("rampart-memory"));
        assert!(!docs.path().join("bench/flood.svg").exists());
        assert!(!md.contains("Smoke run"), "{md}");
    }

    const MICRO: &str = r#"{"date":"2030-01-01T00:00:00Z","git_commit":"abc","seconds":120,"examples":[
        {"example":"bench_verify","crate":"rampart-audit","ok":true,"wall_s":9.5,"others_cores":0.1,
         "result":{"bench":"audit-chain","crate":"rampart-audit","title":"Audit chain",
           "figures":[{"name":"verify events/s","value":612345,"unit":"events/s","baseline":1500000,
             "baseline_name":"SHA-256","ratio":0.41,"better":"higher","target":">= 500000 events/s","met":true},
             {"name":"seal events/s","value":400000,"unit":"events/s","baseline":1500000,
             "baseline_name":"SHA-256","ratio":0.27,"better":"higher","target":null,"met":null}],
           "facts":{"events":1000000},"notes":["One thread."]}},
        {"example":"bench_stack","crate":"rampart-protect","ok":true,"wall_s":30,"others_cores":0.2,
         "result":{"bench":"protect-stack","crate":"rampart-protect","title":"Protection stack",
           "figures":[{"name":"GET through the stack","value":80000,"unit":"req/s","baseline":100000,
             "baseline_name":"bare handler","ratio":0.8,"better":"higher",
             "target":"<= 10% loss (ratio >= 0.9)","met":false}],"facts":{},"notes":[]}},
        {"example":"bench_audit_sink","crate":"rampart-store-sql","ok":false,"wall_s":1.2,
         "others_cores":0,"exit_status":101,"error":"thread 'main' panicked"}]}"#;

    #[test]
    fn goals_proxy_and_micro_sections_show_figures_beside_baselines() {
        let dir = run_dir();
        let p = dir.path();
        fs::write(
            p.join("meta.json"),
            r#"{"nproc":2,"date":"d","git_commit":"c","duration_s":2,"rounds":1,
                "default_duration_s":10,"default_rounds":3,"connections":32}"#,
        )
        .unwrap();
        for (name, rps) in [
            ("lib-memory", 90.0),
            ("upstream-direct", 300.0),
            ("nginx-proxy", 200.0),
            ("rampart-proxy", 170.0),
            ("rampart-verify", 60.0),
        ] {
            fs::write(p.join(format!("tput/{name}.r1.json")), wrk_json(rps, 100, 1000)).unwrap();
        }
        fs::write(p.join("micro.json"), MICRO).unwrap();
        let docs = tempfile::tempdir().unwrap();
        write(p, docs.path()).unwrap();
        let md = fs::read_to_string(docs.path().join("benchmarks.md")).unwrap();
        // plain's median is 100 (rounds 100, 120, 80): lib-memory 90 is 0.90× of it.
        assert!(md.contains("**Smoke run**"), "{md}");
        assert!(md.contains("| session library, memory store: `GET /api/auth/me` | 90 req/s | plain: 100 req/s | 0.90× | ≥ 0.85× of plain | **met** |"), "{md}");
        assert!(md.contains("| authenticated proxied `GET /` through Rampart | 170 req/s | nginx-proxy: 200 req/s | 0.85× | ≥ 0.90× of nginx-proxy | **not met** |"), "{md}");
        assert!(md.contains("| rampart-audit: verify events/s | 612,345 events/s | SHA-256: 1,500,000 events/s | 0.41× | >= 500000 events/s | **met** |"), "{md}");
        assert!(md.contains("| rampart-protect: GET through the stack | 80,000 req/s |"), "{md}");
        assert!(
            md.contains("| rampart-proxy | Rampart proxy, session checked | 170 (170–170) |"),
            "{md}"
        );
        assert!(md.contains("| rampart-verify | Rampart forward auth, GET /auth/verify | 60 (60–60) | 0.10 ms | 1.00 ms | plain | 0.60× |"), "{md}");
        assert!(md.contains("Forward auth: **60 checks/s**, p99 **1.00 ms**"), "{md}");
        assert!(md.contains("| seal events/s | 400,000 events/s | 1,500,000 events/s (SHA-256) | 0.27× (higher is better) | — | — |"), "{md}");
        assert!(md.contains("### `rampart-store-sql` example `bench_audit_sink`: failed"), "{md}");
        assert!(
            md.contains("Micro-benchmark `bench_audit_sink` (rampart-store-sql): failed"),
            "{md}"
        );
        assert!(docs.path().join("bench/proxy.svg").exists());
        let copied: Value = serde_json::from_str(
            &fs::read_to_string(docs.path().join("bench/micro.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(copied["seconds"], 120);
    }

    #[test]
    fn redis_counts_say_one_hmget_per_request_and_show_the_uncounted_touch() {
        let dir = run_dir();
        let p = dir.path();
        fs::create_dir_all(p.join("redis")).unwrap();
        fs::write(
            p.join("redis/rampart-redis.json"),
            r#"{"requests":2000,"ok":2000,"seconds":1.5,"commands":2000,"idle_commands":0,
                "by_command":{"hmget":2000},"sent":2000,"sent_by_command":{"hmget":2000},
                "primer_commands":7,"primer_by_command":{"evalsha":2,"hmget":2,"script|load":1}}"#,
        )
        .unwrap();
        let docs = tempfile::tempdir().unwrap();
        write(p, docs.path()).unwrap();
        let md = fs::read_to_string(docs.path().join("benchmarks.md")).unwrap();
        assert!(md.contains("| rampart-redis | 2000 | 2000 | 2000 | 1.000 | 2000 | 1.000 | 0 | hmget 2000 | hmget 2000 |"), "{md}");
        assert!(md.contains("executed exactly 2000 commands for 2000 requests, one `HMGET` each: 1.000 per request"), "{md}");
        assert!(md.contains("executed 7 commands (evalsha 2, hmget 2, script\\|load 1)."), "{md}");
    }

    #[test]
    fn an_earlier_micro_json_is_shown_as_from_another_run() {
        let dir = run_dir();
        let docs = tempfile::tempdir().unwrap();
        fs::create_dir_all(docs.path().join("bench")).unwrap();
        fs::write(docs.path().join("bench/micro.json"), MICRO).unwrap();
        write(dir.path(), docs.path()).unwrap();
        let md = fs::read_to_string(docs.path().join("benchmarks.md")).unwrap();
        assert!(md.contains("**Not from this run**"), "{md}");
        assert!(md.contains("on 2030-01-01T00:00:00Z at commit `abc`"), "{md}");
        // The earlier file is left as it was.
        assert_eq!(fs::read_to_string(docs.path().join("bench/micro.json")).unwrap(), MICRO);
    }
}
