//! Configuration parsing: arbitrary TOML and environment values give a configuration or an
//! error naming a setting, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_server::config::{Config, RawValues};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut raw = RawValues::default();
    if raw.apply_toml(text, std::path::Path::new("fuzz.toml")).is_ok() {
        let _ = Config::from_raw(&raw);
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
});
