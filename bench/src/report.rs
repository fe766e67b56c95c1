//! Turns a run directory written by `./scripts/bench` into `docs/bench/results.json`,
//! `docs/benchmarks.md` and SVG charts.
//!
//! Run directory layout: `meta.json`, `notes.txt`, `tput/<target>.r<N>.json` (wrk summaries),
//! `redis/<target>.json`, `login/{hash,sequential,throughput}.json`,
//! `flood/{me-idle,me-loaded,attack}.json`. Missing files become "not measured".

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
    ("stack-memory", "published crates, memory sessions", None),
    ("stack-redis", "published crates, Redis sessions", None),
    ("rampart-memory", "Rampart, memory store", Some("stack-memory")),
    ("rampart-redis", "Rampart, Redis store", Some("stack-redis")),
    ("rampart-sql", "Rampart, SQL store (SQLite)", Some("stack-memory")),
];

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
    pub(crate) redis: Vec<(String, Value)>,
    pub(crate) hash: Option<Value>,
    pub(crate) login_sequential_ms: Vec<f64>,
    pub(crate) login_sequential_statuses: Vec<u64>,
    pub(crate) login_throughput: Option<Wrk>,
    pub(crate) flood_idle: Option<Wrk>,
    pub(crate) flood_loaded: Option<Wrk>,
    pub(crate) flood_attack: Option<Wrk>,
    pub(crate) notes: Vec<String>,
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

/// Reads everything the run directory holds.
pub(crate) fn collect(run: &Path) -> anyhow::Result<Results> {
    let meta = read_json(&run.join("meta.json")).context("meta.json missing or invalid")?;
    let mut rows: Vec<Throughput> =
        TARGETS.iter().filter_map(|(t, d, _)| throughput(run, t, d)).collect();
    let find = |rows: &[Throughput], name: &str| rows.iter().find(|r| r.target == name).cloned();
    let plain = find(&rows, "plain");
    let snapshot = rows.clone();
    for row in &mut rows {
        row.vs_plain = plain.as_ref().map(|p| ratio(row, p));
        let stack = TARGETS.iter().find(|(t, _, _)| *t == row.target).and_then(|(_, _, s)| *s);
        if let Some(base) = stack.and_then(|s| find(&snapshot, s)) {
            row.vs_stack = Some(ratio(row, &base));
            row.stack = Some(base.target);
        }
    }
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
    Ok(Results {
        meta,
        throughput: rows,
        redis,
        hash: read_json(&run.join("login/hash.json")),
        login_sequential_ms: logins
            .iter()
            .filter_map(|l| l.get("ms").and_then(Value::as_f64))
            .collect(),
        login_sequential_statuses: logins
            .iter()
            .filter_map(|l| l.get("status").and_then(Value::as_u64))
            .collect(),
        login_throughput: read_wrk(&run.join("login/throughput.json")),
        flood_idle: read_wrk(&run.join("flood/me-idle.json")),
        flood_loaded: read_wrk(&run.join("flood/me-loaded.json")),
        flood_attack: read_wrk(&run.join("flood/attack.json")),
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
    let results = collect(run)?;
    let dir = docs.join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    fs::write(dir.join("results.json"), serde_json::to_string_pretty(&results)? + "\n")?;
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
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn targets_take_medians_over_rounds_and_ratios_against_their_baselines() {
        let dir = run_dir();
        let r = collect(dir.path()).unwrap();
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
    }
}
