//! Merging the configuration layers: defaults (in `Config::validate`), then the TOML file, then
//! `RAMPART_*` environment variables, then command-line flags. Secrets may come from files.

use std::collections::BTreeMap;
use std::path::Path;

use super::settings::{by_key, env_name, EXTRA_ENV, SETTINGS, TOML_SECTIONS};
use super::ConfigError;

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The TOML file.
    File,
    /// An environment variable.
    Env,
    /// A command-line flag.
    Flag,
}

impl Origin {
    /// Short name for `check-config`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Env => "env",
            Origin::Flag => "flag",
        }
    }
}

/// Raw values by setting key, plus unknown names found on the way.
#[derive(Debug, Default, Clone)]
pub struct RawValues {
    /// Value and origin by TOML key.
    pub values: BTreeMap<&'static str, (String, Origin)>,
    /// Unknown TOML keys and `RAMPART_*` variables, by name.
    pub unknown: Vec<String>,
    /// Structured TOML sections.
    pub sections: toml::Table,
    /// `RAMPART_VAULT_*` variables (provider secrets), checked against the configured providers.
    pub vault_env: BTreeMap<String, String>,
}

impl RawValues {
    /// A value if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    fn set(&mut self, key: &'static str, value: String, origin: Origin) {
        self.values.insert(key, (value, origin));
    }

    /// Applies a TOML document.
    pub fn apply_toml(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError::new(
                "RAMPART_CONFIG",
                format!("{} is not valid TOML: {}", path.display(), e.message()),
            )
        })?;
        for (k, v) in table {
            if TOML_SECTIONS.contains(&k.as_str()) {
                self.sections.insert(k, v);
                continue;
            }
            let (setting, from_file) = match k.strip_suffix("_file").and_then(by_key) {
                Some(s) if s.secret => (s, true),
                _ => match by_key(&k) {
                    Some(s) => (s, false),
                    None => {
                        self.unknown.push(format!("{k} (in {})", path.display()));
                        continue;
                    }
                },
            };
            let text = toml_scalar(&v).ok_or_else(|| {
                ConfigError::new(
                    &env_name(setting.key),
                    format!(
                        "`{k}` in {} must be a string, number, boolean or array of strings",
                        path.display()
                    ),
                )
            })?;
            let value = if from_file { read_secret_file(setting.key, &text)? } else { text };
            self.set(setting.key, value, Origin::File);
        }
        Ok(())
    }

    /// Applies environment variables (an iterator so tests can pass their own).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let mut vars: Vec<(String, String)> =
            vars.into_iter().filter(|(k, _)| k.starts_with("RAMPART_")).collect();
        vars.sort();
        for (name, value) in &vars {
            if EXTRA_ENV.contains(&name.as_str()) || name.starts_with("RAMPART_TEST_") {
                continue;
            }
            let lower = name["RAMPART_".len()..].to_ascii_lowercase();
            if let Some(setting) = lower.strip_suffix("_file").and_then(by_key).filter(|s| s.secret)
            {
                // A direct value wins over a file only if both are set: refuse the ambiguity.
                if vars.iter().any(|(k, _)| *k == env_name(setting.key)) {
                    return Err(ConfigError::new(
                        name,
                        format!("set either {} or {name}, not both", env_name(setting.key)),
                    ));
                }
                let v = read_secret_file(setting.key, value)?;
                self.set(setting.key, v, Origin::Env);
            } else if let Some(setting) = by_key(&lower) {
                self.set(setting.key, value.clone(), Origin::Env);
            } else if name.starts_with(super::vault::VAULT_ENV_PREFIX) {
                self.vault_env.insert(name.clone(), value.clone());
            } else {
                self.unknown.push(name.clone());
            }
        }
        Ok(())
    }

    /// Applies a command-line flag value.
    pub fn apply_flag(&mut self, key: &'static str, value: Option<String>) {
        if let Some(v) = value {
            if SETTINGS.iter().any(|s| s.key == key) {
                self.set(key, v, Origin::Flag);
            }
        }
    }
}

fn toml_scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => {
            let parts: Option<Vec<String>> =
                items.iter().map(|i| i.as_str().map(str::to_owned)).collect();
            parts.map(|p| p.join(","))
        }
        _ => None,
    }
}

fn read_secret_file(key: &str, path: &str) -> Result<String, ConfigError> {
    let name = format!("{}_FILE", env_name(key));
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&name, format!("cannot read {path}: {}", e.kind())))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn later_layers_override_earlier_ones() {
        let mut raw = RawValues::default();
        raw.apply_toml("listen = \"127.0.0.1:1\"\nlog = \"debug\"", Path::new("r.toml")).unwrap();
        raw.apply_env(env(&[("RAMPART_LISTEN", "127.0.0.1:2")])).unwrap();
        assert_eq!(raw.get("listen"), Some("127.0.0.1:2"));
        assert_eq!(raw.get("log"), Some("debug"));
        raw.apply_flag("listen", Some("127.0.0.1:3".into()));
        assert_eq!(raw.values["listen"], ("127.0.0.1:3".to_string(), Origin::Flag));
    }

    #[test]
    fn unknown_names_are_reported_by_name() {
        let mut raw = RawValues::default();
        raw.apply_toml("lisen = 1\n[rate_limit_rules]\n", Path::new("r.toml")).unwrap();
        raw.apply_env(env(&[
            ("RAMPART_SECRT_KEY", "x"),
            ("RAMPART_CONFIG", "r.toml"),
            ("HOME", "/"),
        ]))
        .unwrap();
        assert_eq!(
            raw.unknown,
            vec!["lisen (in r.toml)".to_string(), "RAMPART_SECRT_KEY".to_string()]
        );
    }

    #[test]
    fn secrets_can_come_from_files_but_not_both_ways_at_once() {
        let dir = std::env::temp_dir().join(format!("rampart-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("key");
        std::fs::write(&f, "abc\n").unwrap();
        let mut raw = RawValues::default();
        raw.apply_env(env(&[("RAMPART_SECRET_KEY_FILE", f.to_str().unwrap())])).unwrap();
        assert_eq!(raw.get("secret_key"), Some("abc"));
        let mut raw = RawValues::default();
        let both = raw.apply_env(env(&[
            ("RAMPART_SECRET_KEY_FILE", f.to_str().unwrap()),
            ("RAMPART_SECRET_KEY", "x"),
        ]));
        assert!(both.is_err());
        // Non-secret settings have no file variant.
        let mut raw = RawValues::default();
        raw.apply_env(env(&[("RAMPART_LISTEN_FILE", "x")])).unwrap();
        assert_eq!(raw.unknown, vec!["RAMPART_LISTEN_FILE".to_string()]);
        let mut raw = RawValues::default();
        raw.apply_toml(
            &format!("secret_key_file = {:?}", f.to_str().unwrap()),
            Path::new("r.toml"),
        )
        .unwrap();
        assert_eq!(raw.get("secret_key"), Some("abc"));
    }
}
