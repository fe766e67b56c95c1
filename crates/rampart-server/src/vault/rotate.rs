//! `rampart keys rotate`: re-encrypts every encrypted value under the current master key, so
//! the previous key can be dropped from `RAMPART_PREVIOUS_SECRET_KEYS`.
//!
//! Rows are processed in batches, in id order, and each row is written only if it is unchanged
//! since it was read and still sealed under an old key (its `key_id` column and
//! [`Keyring::sealed_key_id`] of its ciphertext). Every write commits on its own, so an
//! interrupted run loses nothing: running it again picks up the rows still under an old key.
//!
//! Run it once every instance uses the new key as `RAMPART_SECRET_KEY` (with the old one in
//! `RAMPART_PREVIOUS_SECRET_KEYS`); an instance still sealing with the old key would write new
//! rows under it.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Subcommand;
use rampart_core::Keyring;
use rampart_store_sql::{Db, SealedTokens, StoreError};

use crate::config::Config;

/// Key management.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-encrypt every encrypted value (vault tokens) under the current RAMPART_SECRET_KEY.
    /// Resumable: run it again after an interruption.
    Rotate {
        /// Rows read per batch.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
    },
}

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RotateReport {
    /// Hex id of the current key.
    pub key_id: String,
    /// Rows re-sealed under the current key.
    pub resealed: u64,
    /// Rows changed by someone else while being rotated (their new value uses the current key).
    pub changed_concurrently: u64,
    /// Rows no configured key opens (left as they are).
    pub unreadable: u64,
    /// Rows still under an old key afterwards.
    pub remaining: i64,
    /// API keys still hashed under an old key (re-hashed when next used).
    pub api_keys_under_old_key: i64,
}

fn sealed_with(sealed: &[u8], key_id: [u8; 8]) -> bool {
    Keyring::sealed_key_id(sealed) == Some(key_id)
}

/// Re-seals every vault row not sealed under the current key. `progress(done, total)` is called
/// after each row.
pub async fn rotate(
    db: &Db,
    keyring: &Keyring,
    batch_size: u32,
    mut progress: impl FnMut(u64, u64),
) -> Result<RotateReport, StoreError> {
    let current = keyring.current().id();
    let current_hex = hex::encode(current);
    let total = u64::try_from(db.vault_count_not_sealed_with(&current_hex).await?).unwrap_or(0);
    let mut report = RotateReport { key_id: current_hex.clone(), ..RotateReport::default() };
    let mut after = String::new();
    let mut done = 0u64;
    loop {
        let rows = db.vault_rows_not_sealed_with(&current_hex, &after, batch_size).await?;
        let Some(last) = rows.last() else { break };
        after = last.id.clone();
        for row in rows {
            done += 1;
            let already_current = sealed_with(&row.access_token, current)
                && row.refresh_token.as_deref().is_none_or(|r| sealed_with(r, current));
            let sealed = if already_current {
                // Only the key_id column is stale: fix it without re-encrypting.
                SealedTokens {
                    access_token: row.access_token.clone(),
                    refresh_token: row.refresh_token.clone(),
                    expires_at: row.expires_at,
                    key_id: current_hex.clone(),
                }
            } else {
                match super::open(keyring, &row) {
                    Ok(tokens) => super::seal(keyring, &row.id, &tokens),
                    Err(e) => {
                        tracing::warn!(row = %row.id, error = %e, "a vault row does not open with any configured key; left as it is");
                        report.unreadable += 1;
                        progress(done, total);
                        continue;
                    }
                }
            };
            if db.vault_reseal(&row, &sealed).await? {
                report.resealed += 1;
            } else {
                report.changed_concurrently += 1;
            }
            progress(done, total);
        }
    }
    report.remaining = db.vault_count_not_sealed_with(&current_hex).await?;
    report.api_keys_under_old_key = db.count_api_keys_not_hashed_with(&current_hex).await?;
    Ok(report)
}

/// Runs a `rampart keys` command.
pub async fn run(config: Config, cmd: KeysCommand) -> ExitCode {
    crate::logging::init(&config.log, config.log_format);
    let KeysCommand::Rotate { batch_size } = cmd;
    let keyring = match crate::startup::resolve_keyring(&config) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("rampart: {e}");
            return ExitCode::from(1);
        }
    };
    let db = match crate::startup::connect_db(&config).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("rampart: {e}");
            return ExitCode::from(1);
        }
    };
    match db.pending_migrations().await {
        Ok(0) => {}
        Ok(n) => {
            eprintln!("rampart: {n} migration(s) pending; run `rampart migrate up` first");
            db.close().await;
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("rampart: cannot read migrations: {}", crate::error::ErrorChain(&e));
            db.close().await;
            return ExitCode::from(1);
        }
    }
    let tty = std::io::stderr().is_terminal();
    let progress = move |done: u64, total: u64| {
        if tty {
            let pct = (done.min(total) * 100).checked_div(total).unwrap_or(100);
            let filled = usize::try_from(pct / 5).unwrap_or(20).min(20);
            eprint!("\r[{}{}] {done}/{total} rows", "#".repeat(filled), ".".repeat(20 - filled));
            let _ = std::io::stderr().flush();
        }
    };
    let result = rotate(&db, &keyring, batch_size, progress).await;
    db.close().await;
    if tty {
        eprintln!();
    }
    match result {
        Ok(r) => {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            println!(
                "re-encrypted {} row(s) under key {}; {} changed concurrently; {} unreadable; {} left under old keys",
                r.resealed, r.key_id, r.changed_concurrently, r.unreadable, r.remaining
            );
            if r.api_keys_under_old_key > 0 {
                println!(
                    "note: {} API key(s) are hashed under an old key and are re-hashed when next used; \
                     they stop working if the old key is dropped first",
                    r.api_keys_under_old_key
                );
            }
            if r.unreadable > 0 || r.remaining > 0 {
                eprintln!("rampart: some values are still under old keys; keep them configured");
                return ExitCode::from(3);
            }
            println!("every vault value uses the current key");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart: rotation stopped: {}", crate::error::ErrorChain(&e));
            eprintln!("rampart: nothing is lost; run `rampart keys rotate` again to resume");
            ExitCode::FAILURE
        }
    }
}
