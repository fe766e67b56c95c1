//! The "Library micro-benchmarks" section: what `scripts/microbench` collected.
//!
//! Each example's JSON carries `bench`, `crate`, `title`, `figures` (each with `name`, `value`,
//! `unit`, `baseline`, `baseline_name`, `ratio`, `better`, `target`, `met`), `facts` and `notes`;
//! the script wraps it as `{"example","crate","ok","wall_s","others_cores","result"}` (or
//! `"error"` when it failed).

use std::fmt::Write as _;

use serde_json::Value;

use super::{thousands, Goal, Results};

fn examples(r: &Results) -> Vec<&Value> {
    r.micro
        .as_ref()
        .and_then(|m| m.get("examples"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn figures(result: &Value) -> Vec<&Value> {
    result.get("figures").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

/// A number as the report shows it: thousands separators from 1,000 up, else up to 3 decimals.
pub(super) fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.abs() >= 1000.0 {
                let sign = if f < 0.0 { "-" } else { "" };
                format!("{sign}{}", thousands(f.abs()))
            } else if f.fract() == 0.0 {
                format!("{f:.0}")
            } else {
                let t = format!("{f:.3}");
                t.trim_end_matches('0').trim_end_matches('.').to_owned()
            }
        }
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

fn with_unit(v: &Value, unit: &str) -> String {
    if v.is_null() {
        "—".to_owned()
    } else if unit.is_empty() {
        num(v)
    } else {
        format!("{} {unit}", num(v))
    }
}

/// A ratio with two decimals, three when the example gave three.
fn times(v: &Value) -> String {
    match v.as_f64() {
        Some(r) if ((r * 100.0).round() - r * 100.0).abs() > 1e-9 => format!("{r:.3}×"),
        Some(r) => format!("{r:.2}×"),
        None => "—".to_owned(),
    }
}

fn ratio(f: &Value) -> String {
    match f.get("ratio") {
        Some(v) if !v.is_null() => {
            let better = text(f, "better");
            if better.is_empty() {
                times(v)
            } else {
                format!("{} ({better} is better)", times(v))
            }
        }
        _ => "—".to_owned(),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Every micro-benchmark figure that has a target.
pub(super) fn goals(r: &Results) -> Vec<Goal> {
    let mut out = Vec::new();
    for e in examples(r) {
        let Some(result) = e.get("result") else { continue };
        for f in figures(result) {
            let target = text(f, "target");
            if target.is_empty() {
                continue;
            }
            let unit = text(f, "unit");
            out.push(Goal {
                what: format!("{}: {}", text(result, "crate"), text(f, "name")),
                figure: with_unit(f.get("value").unwrap_or(&Value::Null), unit),
                baseline: format!(
                    "{}: {}",
                    text(f, "baseline_name"),
                    with_unit(f.get("baseline").unwrap_or(&Value::Null), unit)
                ),
                ratio: f.get("ratio").map_or_else(|| "—".to_owned(), times),
                target: target.to_owned(),
                met: f.get("met").and_then(Value::as_bool),
            });
        }
    }
    out
}

/// What the micro-benchmarks lacked: failed examples, and Postgres when it did not answer.
pub(super) fn missing(r: &Results) -> Vec<String> {
    let mut out = Vec::new();
    for e in examples(r) {
        if e.get("ok").and_then(Value::as_bool) != Some(true) {
            out.push(format!(
                "Micro-benchmark `{}` ({}): failed, see its section.",
                text(e, "example"),
                text(e, "crate")
            ));
            continue;
        }
        if text(e, "example") == "bench_audit_sink" {
            let has_pg = e
                .get("result")
                .map(figures)
                .unwrap_or_default()
                .iter()
                .any(|f| text(f, "name").starts_with("Postgres"));
            if !has_pg {
                out.push(
                    "Audit appends on Postgres: no Postgres answered at `RAMPART_TEST_POSTGRES_URL`."
                        .to_owned(),
                );
            }
        }
    }
    out
}

/// Renders the section.
pub(super) fn section(s: &mut String, r: &Results) {
    let _ = writeln!(s, "## Library micro-benchmarks\n");
    let Some(m) = &r.micro else {
        let _ = writeln!(
            s,
            "Not measured in this run (`BENCH_MICRO=0`, and no earlier `docs/bench/micro.json`).\n"
        );
        return;
    };
    let _ = writeln!(
        s,
        "Release-mode examples of the library crates, run one at a time by `scripts/microbench` \
         (`cargo run --release --locked -p <crate> --example <name>`; each example's doc comment \
         says exactly what it does). Each times its subject beside a baseline in the same \
         process, on the same data; the ratio is figure ÷ baseline. `other load` is the cores \
         other processes used while the example ran.\n"
    );
    if r.micro_this_run {
        let _ = writeln!(
            s,
            "Run after the load tests above, with their servers idle, in {} s.\n",
            num(m.get("seconds").unwrap_or(&Value::Null))
        );
    } else {
        let _ = writeln!(
            s,
            "> **Not from this run** (`BENCH_MICRO=0`): these figures come from `scripts/microbench` \
             on {} at commit `{}`; rerun it, or `./scripts/bench` without `BENCH_MICRO=0`, to \
             refresh them.\n",
            text(m, "date"),
            text(m, "git_commit")
        );
    }
    for e in examples(r) {
        let (name, krate) = (text(e, "example"), text(e, "crate"));
        let wall =
            e.get("wall_s").and_then(Value::as_f64).map_or("?".to_owned(), |w| format!("{w:.1}"));
        let others = e
            .get("others_cores")
            .and_then(Value::as_f64)
            .map_or("?".to_owned(), |c| format!("{c:.2}"));
        let Some(result) =
            e.get("result").filter(|_| e.get("ok").and_then(Value::as_bool) == Some(true))
        else {
            let _ = writeln!(s, "### `{krate}` example `{name}`: failed\n");
            let _ = writeln!(
                s,
                "Exit status {} after {wall} s. End of its standard error:\n\n```text\n{}\n```\n",
                num(e.get("exit_status").unwrap_or(&Value::Null)),
                text(e, "error").trim()
            );
            continue;
        };
        let _ = writeln!(s, "### {}\n", text(result, "title"));
        let _ = writeln!(
            s,
            "`cargo run --release --locked -p {krate} --example {name}`: {wall} s, other load \
             {others} cores.\n"
        );
        let _ = writeln!(s, "| figure | value | baseline | ratio | goal | |");
        let _ = writeln!(s, "|---|---:|---|---:|---|---|");
        for f in figures(result) {
            let unit = text(f, "unit");
            let target = text(f, "target");
            let status = match f.get("met").and_then(Value::as_bool) {
                Some(true) => "**met**",
                Some(false) => "**not met**",
                None => "—",
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} ({}) | {} | {} | {status} |",
                cell(text(f, "name")),
                with_unit(f.get("value").unwrap_or(&Value::Null), unit),
                with_unit(f.get("baseline").unwrap_or(&Value::Null), unit),
                cell(text(f, "baseline_name")),
                ratio(f),
                if target.is_empty() { "—".to_owned() } else { cell(target) },
            );
        }
        let _ = writeln!(s);
        if let Some(facts) = result.get("facts").and_then(Value::as_object) {
            let list: Vec<String> =
                facts.iter().map(|(k, v)| format!("`{k}` = {}", num(v))).collect();
            if !list.is_empty() {
                let _ = writeln!(s, "Facts: {}.\n", list.join(", "));
            }
        }
        let notes: Vec<&str> = result
            .get("notes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for n in &notes {
            let _ = writeln!(s, "- {n}");
        }
        if !notes.is_empty() {
            let _ = writeln!(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_the_rest_of_the_report() {
        assert_eq!(num(&serde_json::json!(1234567.0)), "1,234,567");
        assert_eq!(num(&serde_json::json!(212.4)), "212.4");
        assert_eq!(num(&serde_json::json!(0.125)), "0.125");
        assert_eq!(num(&serde_json::json!(42)), "42");
        assert_eq!(num(&serde_json::json!("<= capacity")), "<= capacity");
        assert_eq!(num(&Value::Null), "—");
        assert_eq!(times(&serde_json::json!(1)), "1.00×");
        assert_eq!(times(&serde_json::json!(0.4)), "0.40×");
        assert_eq!(times(&serde_json::json!(0.536)), "0.536×");
    }
}
