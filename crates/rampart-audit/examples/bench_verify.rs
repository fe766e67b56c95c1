//! Benchmark: sealing and verifying 1,000,000 audit events, beside plain SHA-256 over the same
//! canonical bytes in the same process.
//!
//! Run in release mode only: `cargo run --release -p rampart-audit --example bench_verify`
//! (or `scripts/microbench`). Prints progress on stderr and one JSON object as the last line
//! of stdout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use rampart_audit::{canonical_bytes, verify, AuditEvent, Chain, CheckpointPolicy, EventKind};
use rampart_audit::{NewEvent, Outcome};
use rampart_core::{Keyring, MasterKey};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::macros::datetime;

const EVENTS: usize = 1_000_000;
const VERIFY_TARGET: f64 = 500_000.0;
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128";

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// A mix of what the server records: logins, failed logins, CSRF refusals, admin actions.
fn event(i: usize) -> NewEvent {
    let ip = format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    let user = format!("usr_{:010}", i % 50_000);
    let base = match i % 4 {
        0 => NewEvent::success(EventKind::UserLogin).detail("method", "password"),
        1 => {
            NewEvent::new(EventKind::LoginFailed, Outcome::Failure).detail("reason", "bad_password")
        }
        2 => NewEvent::denied(EventKind::CsrfRejected)
            .detail("reason", "origin_mismatch")
            .detail("origin", "https://evil.example"),
        _ => NewEvent::success(EventKind::UserRoleChanged)
            .resource("user", format!("usr_{:010}", i % 977))
            .detail("from", "member")
            .detail("to", "admin"),
    };
    base.user(user)
        .ip(ip)
        .user_agent(USER_AGENT)
        .request_id(format!("req-{i:016x}"))
        .session(format!("h{:021x}", i * 7919))
}

fn main() {
    let keyring = Keyring::new(MasterKey::generate(), vec![]);
    let policy = CheckpointPolicy { every_n: 1000, every: Duration::ZERO };
    let start = datetime!(2030-01-01 00:00 UTC);

    eprintln!("[bench_verify] building {EVENTS} events");
    let inputs: Vec<NewEvent> = (0..EVENTS).map(event).collect();

    eprintln!("[bench_verify] sealing with a checkpoint every 1000 events");
    let mut chain = Chain::new("bench-node");
    let mut sealed: Vec<AuditEvent> = Vec::with_capacity(EVENTS + EVENTS / 1000 + 1);
    let mut checkpoints = 0u64;
    let t = Instant::now();
    for (i, e) in inputs.into_iter().enumerate() {
        let now = start + time::Duration::microseconds(i as i64);
        sealed.push(chain.seal(e, now));
        if chain.checkpoint_due(&policy, now) {
            let (_checkpoint, cp_event) = chain.checkpoint(&keyring, now);
            sealed.push(cp_event);
            checkpoints += 1;
        }
    }
    let seal_secs = t.elapsed().as_secs_f64();
    let rows = sealed.len();

    eprintln!("[bench_verify] baseline: SHA-256 over the canonical bytes of {rows} rows");
    let canon: Vec<(Vec<u8>, Vec<u8>)> = sealed
        .iter()
        .map(|e| (hex::decode(&e.prev_hash).expect("hex"), canonical_bytes(e).expect("canon")))
        .collect();
    let canon_bytes: usize = canon.iter().map(|(p, c)| p.len() + c.len()).sum();
    let t = Instant::now();
    for (prev, bytes) in &canon {
        let mut h = Sha256::new();
        h.update(prev);
        h.update(bytes);
        black_box(h.finalize());
    }
    let sha_secs = t.elapsed().as_secs_f64();
    drop(canon);

    eprintln!("[bench_verify] verifying {rows} rows");
    let t = Instant::now();
    let report = verify(sealed, &keyring, |_| {});
    let verify_secs = t.elapsed().as_secs_f64();
    assert!(report.ok, "the chain must verify: {:?}", report.first_failure);

    let seal_rate = rows as f64 / seal_secs;
    let verify_rate = report.checked as f64 / verify_secs;
    let sha_rate = rows as f64 / sha_secs;
    let out = json!({
        "bench": "audit-chain",
        "crate": "rampart-audit",
        "title": "Audit hash chain: sealing and verifying 1,000,000 events (checkpoint every 1000)",
        "figures": [
            {
                "name": "verify events/s", "value": verify_rate.round(), "unit": "events/s",
                "baseline": sha_rate.round(), "baseline_name": "SHA-256 over the same canonical bytes",
                "ratio": round(verify_rate / sha_rate, 2), "better": "higher",
                "target": format!(">= {VERIFY_TARGET} events/s"), "met": verify_rate >= VERIFY_TARGET,
            },
            {
                "name": "seal events/s (incl. checkpoints)", "value": seal_rate.round(), "unit": "events/s",
                "baseline": sha_rate.round(), "baseline_name": "SHA-256 over the same canonical bytes",
                "ratio": round(seal_rate / sha_rate, 2), "better": "higher",
                "target": null, "met": null,
            },
        ],
        "facts": {
            "events": EVENTS,
            "rows_with_checkpoints": rows,
            "checkpoints": checkpoints,
            "verified": report.checked,
            "verify_ok": report.ok,
            "mean_canonical_bytes": (canon_bytes as f64 / rows as f64).round(),
            "seal_secs": round(seal_secs, 3),
            "verify_secs": round(verify_secs, 3),
            "sha256_secs": round(sha_secs, 3),
        },
        "notes": [
            "One thread. Events mix logins, failed logins, CSRF refusals and role changes, each with user, IP, 68-character User-Agent, request id, session handle and details.",
            "Sealing includes a random event id from the OS RNG, the canonical encoding, SHA-256 and hex; verification re-encodes and re-hashes every event and checks each checkpoint's HMAC.",
        ],
    });
    println!("{out}");
}
