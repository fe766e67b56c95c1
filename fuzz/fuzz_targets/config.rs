//! Configuration parsing: arbitrary TOML and environment values give a configuration or an
//! error naming a setting, never a panic; and a secret setting's value never shows in an
//! error, in `check-config` output or in the configuration's `Debug`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_server::config::{Config, RawValues};

/// Marks the secret part of a value; found in any output, it is a leak.
const MARK: &str = "Qx7Zq9Wv";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut raw = RawValues::default();
    if raw.apply_toml(text, std::path::Path::new("fuzz.toml")).is_ok() {
        if let Err(e) = Config::from_raw(&raw) {
            assert!(!e.setting.is_empty());
        }
    }
    // The same text as values of every environment variable.
    for line in text.lines().take(8) {
        if let Some((k, v)) = line.split_once('=') {
            let mut raw = RawValues::default();
            let name = format!("RAMPART_{}", k.trim().to_ascii_uppercase());
            if raw.apply_env([(name, v.to_owned())]).is_ok() {
                if let Err(e) = Config::from_raw(&raw) {
                    assert!(!e.setting.is_empty());
                }
            }
        }
    }
    // Secrets: the value (marked) never comes out.
    let first = text.lines().next().unwrap_or("");
    let secrets = [
        ("RAMPART_SECRET_KEY", format!("{first}{MARK}")),
        ("RAMPART_PREVIOUS_SECRET_KEYS", format!("{MARK}{first}")),
        ("RAMPART_PSEUDONYMIZATION_KEY", format!("{first}{MARK}{first}")),
        ("RAMPART_REDIS_PASSWORD", format!("{first}{MARK}")),
        ("RAMPART_DATABASE_URL", format!("postgres://u:{first}{MARK}@db/x")),
        ("RAMPART_REDIS_URL", format!("redis://:{MARK}{first}@cache:6379/0")),
    ];
    for (name, value) in secrets {
        let mut raw = RawValues::default();
        if raw.apply_env([(name.to_owned(), value)]).is_err() {
            continue;
        }
        match Config::from_raw(&raw) {
            Err(e) => assert!(!e.to_string().contains(MARK), "{name}: {e}"),
            Ok(config) => {
                let shown = config.describe(Some(&raw)).join("\n");
                assert!(!shown.contains(MARK), "{name}: {shown}");
                assert!(!format!("{config:?}").contains(MARK), "{name}");
                assert!(!config.warnings.iter().any(|w| w.contains(MARK)), "{name}");
            }
        }
    }
});
