//! Pseudonymization: deterministic keyed pseudonyms (`rampart_core::pseudonym`) under a key of
//! their own, `RAMPART_PSEUDONYMIZATION_KEY`, for `rampart pseudonymize` and
//! `POST /api/pseudonymize`.
//!
//! # Security
//! - The key is not the master key (configuration refuses the same key), so rotating one does
//!   not change the other, and leaking pseudonyms' key does not expose sessions or secrets.
//! - Production has no generated key: without `RAMPART_PSEUDONYMIZATION_KEY` the command fails
//!   naming the setting and the endpoint answers 503 `pseudonymization_unavailable`.
//!   Development generates one into `<data dir>/pseudonymization.key` (mode 0600) and keeps it,
//!   so pseudonyms are stable across restarts.
//! - Purposes are short labels; each purpose gets its own derived key, so pseudonyms made for
//!   different purposes do not link.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use rampart_core::MasterKey;

use crate::config::{Config, Env};
use crate::startup::StartupError;

/// The setting's environment name.
pub const SETTING: &str = "RAMPART_PSEUDONYMIZATION_KEY";
/// Most values per API request.
pub const MAX_VALUES: usize = 1000;
/// Longest value, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;

/// Whether `purpose` is a valid label: 1–64 of `a-z`, `0-9`, `_`, `-`, `.`.
pub fn valid_purpose(purpose: &str) -> bool {
    (1..=64).contains(&purpose.len())
        && purpose.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

/// The pseudonymization key: configured, or (development only) loaded from or generated into
/// `<data dir>/pseudonymization.key`; `None` in production without one.
pub fn resolve_key(config: &Config) -> Result<Option<MasterKey>, StartupError> {
    match &config.pseudonymization_key {
        Some(k) => MasterKey::parse(k.expose_secret())
            .map(Some)
            .map_err(|e| StartupError::new(SETTING, e.to_string())),
        None if config.env == Env::Production => Ok(None),
        None => dev_key(&config.data_dir).map(Some),
    }
}

fn dev_key(data_dir: &Path) -> Result<MasterKey, StartupError> {
    let path = data_dir.join("pseudonymization.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return MasterKey::parse(&text)
            .map_err(|e| StartupError::new(SETTING, format!("{}: {e}", path.display())));
    }
    crate::startup::create_private_dir(data_dir)?;
    let key = MasterKey::generate();
    if let Err(e) = crate::startup::write_private_file(&path, key.to_base64url().as_bytes()) {
        // Another process may have created it first: use theirs.
        if let Ok(text) = std::fs::read_to_string(&path) {
            return MasterKey::parse(&text)
                .map_err(|e| StartupError::new(SETTING, format!("{}: {e}", path.display())));
        }
        return Err(StartupError::new(
            "RAMPART_DATA_DIR",
            format!("cannot write {}: {e}", path.display()),
        ));
    }
    tracing::warn!(path = %path.display(), "{SETTING} is unset: generated a development key; set it in production to use pseudonymization");
    Ok(key)
}

/// `rampart pseudonymize --purpose P`: one pseudonym per line of standard input.
pub fn run(config: &Config, purpose: &str) -> ExitCode {
    crate::logging::init(&config.log, config.log_format);
    if !valid_purpose(purpose) {
        eprintln!("rampart: --purpose must be 1-64 of a-z, 0-9, _, - and .");
        return ExitCode::from(2);
    }
    let key = match resolve_key(config) {
        Ok(Some(k)) => k,
        Ok(None) => {
            eprintln!("rampart: {SETTING}: required in production to pseudonymize");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("rampart: {e}");
            return ExitCode::from(1);
        }
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in stdin.lock().lines() {
        let Ok(line) = line else {
            eprintln!("rampart: standard input is not UTF-8 text");
            return ExitCode::FAILURE;
        };
        let value = line.strip_suffix('\r').unwrap_or(&line);
        let p = rampart_core::pseudonym::pseudonymize(&key, purpose, value);
        if writeln!(out, "{p}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_are_short_lowercase_labels() {
        for ok in ["analytics", "support-2024", "a.b_c"] {
            assert!(valid_purpose(ok), "{ok}");
        }
        for bad in ["", "Analytics", "a b", "x/y", &"a".repeat(65)] {
            assert!(!valid_purpose(bad), "{bad}");
        }
    }
}
