//! Times Argon2id with given parameters, one hash at a time, on this thread.

use std::time::Instant;

use anyhow::Context;
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Serialize;

/// What `hash-time` prints.
#[derive(Serialize)]
pub(crate) struct HashTiming {
    iterations: u32,
    memory_kib: u32,
    time_cost: u32,
    lanes: u32,
    median_ms: f64,
    mean_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

/// Hashes `iterations` times (after one warm-up hash) and summarises the wall times.
pub(crate) fn time_hashes(
    iterations: u32,
    memory_kib: u32,
    time_cost: u32,
    lanes: u32,
) -> anyhow::Result<HashTiming> {
    let params =
        Params::new(memory_kib, time_cost, lanes, Some(32)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let password = b"correct-horse-battery-staple-42";
    let mut out = [0u8; 32];
    let mut times = Vec::with_capacity(iterations as usize);
    for i in 0..=iterations {
        let mut salt = [0x5au8; 16];
        salt[..4].copy_from_slice(&i.to_le_bytes());
        let start = Instant::now();
        argon
            .hash_password_into(password, &salt, &mut out)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("argon2")?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if i > 0 {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    let n = times.len().max(1) as f64;
    let median = if times.is_empty() {
        0.0
    } else if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    Ok(HashTiming {
        iterations,
        memory_kib,
        time_cost,
        lanes,
        median_ms: median,
        mean_ms: times.iter().sum::<f64>() / n,
        min_ms: times.first().copied().unwrap_or(0.0),
        max_ms: times.last().copied().unwrap_or(0.0),
    })
}
