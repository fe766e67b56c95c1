//! Settings of the reverse proxy (`RAMPART_UPSTREAM`, …) and of native TLS
//! (`RAMPART_TLS_CERT_FILE`, `RAMPART_TLS_KEY_FILE`).
//!
//! Validation here does no I/O: the certificate, key and CA files are read in the startup step,
//! which refuses to start naming the setting when one is unreadable or invalid.

use std::path::PathBuf;
use std::time::Duration;

use super::parse::duration;
use super::{ConfigError, RawValues};

/// Default time the upstream has to send its response head.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Default largest request body streamed to the upstream: 10 MiB.
pub const DEFAULT_PROXY_BODY_LIMIT: usize = 10 * 1024 * 1024;

/// The upstream application Rampart protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// Host and port.
    pub authority: http::uri::Authority,
}

impl Upstream {
    /// Parses `http(s)://host[:port]` with no path beyond `/`, no query and no user info.
    pub fn parse(text: &str) -> Option<Self> {
        let uri: http::Uri = text.trim().parse().ok()?;
        let scheme = uri.scheme()?.clone();
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            return None;
        }
        let authority = uri.authority()?.clone();
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return None;
        }
        let pq = uri.path_and_query().map_or("", |p| p.as_str());
        if !(pq.is_empty() || pq == "/") {
            return None;
        }
        Some(Self { scheme, authority })
    }

    /// `scheme://authority`.
    pub fn to_url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// Whether the upstream is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.scheme == http::uri::Scheme::HTTPS
    }
}

/// Reverse-proxy settings.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The upstream; `None` turns the proxy off (unknown paths answer 404).
    pub upstream: Option<Upstream>,
    /// Time the upstream has to send its response head (504 after).
    pub timeout: Duration,
    /// Largest request body streamed to the upstream (413 above).
    pub body_limit: usize,
    /// PEM file of CA certificates trusted for an https upstream instead of the public roots.
    pub ca_file: Option<PathBuf>,
}

/// Native TLS: both files or neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

fn text(raw: &RawValues, key: &str) -> Option<String> {
    raw.get(key).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// Reads the proxy and TLS settings.
pub(super) fn from_raw(
    raw: &RawValues,
) -> Result<(ProxySettings, Option<TlsSettings>), ConfigError> {
    let upstream = match text(raw, "upstream") {
        None => None,
        Some(v) => Some(Upstream::parse(&v).ok_or_else(|| {
            ConfigError::new(
                "RAMPART_UPSTREAM",
                format!(
                    "expected an http(s) URL like http://127.0.0.1:3000 with no path, got {v:?}"
                ),
            )
        })?),
    };
    let timeout = match text(raw, "upstream_timeout") {
        None => DEFAULT_UPSTREAM_TIMEOUT,
        Some(v) => duration(&v).filter(|d| !d.is_zero()).ok_or_else(|| {
            ConfigError::new(
                "RAMPART_UPSTREAM_TIMEOUT",
                format!("expected a duration like 2s, 30m, 12h or 7d, got {v:?}"),
            )
        })?,
    };
    let body_limit = match text(raw, "proxy_body_limit") {
        None => DEFAULT_PROXY_BODY_LIMIT,
        Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ConfigError::new(
                "RAMPART_PROXY_BODY_LIMIT",
                format!("expected a positive whole number of bytes, got {v:?}"),
            )
        })?,
    };
    let ca_file = text(raw, "upstream_ca_file").map(PathBuf::from);
    if ca_file.is_some() && !upstream.as_ref().is_some_and(Upstream::is_https) {
        return Err(ConfigError::new(
            "RAMPART_UPSTREAM_CA_FILE",
            "only meaningful with an https RAMPART_UPSTREAM",
        ));
    }
    let tls = match (text(raw, "tls_cert_file"), text(raw, "tls_key_file")) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            Some(TlsSettings { cert_file: PathBuf::from(cert), key_file: PathBuf::from(key) })
        }
        (Some(_), None) => {
            return Err(ConfigError::new(
                "RAMPART_TLS_KEY_FILE",
                "required when RAMPART_TLS_CERT_FILE is set (set both or neither)",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "RAMPART_TLS_CERT_FILE",
                "required when RAMPART_TLS_KEY_FILE is set (set both or neither)",
            ))
        }
    };
    Ok((ProxySettings { upstream, timeout, body_limit, ca_file }, tls))
}

/// `check-config` lines for these settings, as (key, value).
pub(super) fn describe(
    proxy: &ProxySettings,
    tls: Option<&TlsSettings>,
) -> Vec<(&'static str, String)> {
    let path = |p: Option<&PathBuf>| p.map_or("(unset)".to_owned(), |p| p.display().to_string());
    vec![
        ("upstream", proxy.upstream.as_ref().map_or("(unset: proxy off)".into(), Upstream::to_url)),
        ("upstream_timeout", super::parse::fmt_duration(proxy.timeout)),
        ("upstream_ca_file", path(proxy.ca_file.as_ref())),
        ("proxy_body_limit", proxy.body_limit.to_string()),
        ("tls_cert_file", path(tls.map(|t| &t.cert_file))),
        ("tls_key_file", path(tls.map(|t| &t.key_file))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawValues {
        let mut r = RawValues::default();
        r.apply_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        r
    }

    #[test]
    fn upstream_must_be_an_http_url_without_a_path() {
        for good in ["http://127.0.0.1:3000", "https://app.internal/", "http://[::1]:8000"] {
            assert!(Upstream::parse(good).is_some(), "{good}");
        }
        for bad in [
            "127.0.0.1:3000",
            "ftp://x",
            "http://x/app",
            "http://x/?q=1",
            "http://user:pw@x",
            "ws://x",
            "",
        ] {
            assert!(Upstream::parse(bad).is_none(), "{bad}");
        }
        let err = from_raw(&raw(&[("RAMPART_UPSTREAM", "http://x/app")])).unwrap_err();
        assert_eq!(err.setting, "RAMPART_UPSTREAM");
    }

    #[test]
    fn defaults_are_off_thirty_seconds_and_ten_mebibytes() {
        let (p, tls) = from_raw(&RawValues::default()).unwrap();
        assert_eq!(p.upstream, None);
        assert_eq!(p.timeout, Duration::from_secs(30));
        assert_eq!(p.body_limit, 10 * 1024 * 1024);
        assert_eq!(tls, None);
        let (p, _) = from_raw(&raw(&[
            ("RAMPART_UPSTREAM", "http://127.0.0.1:3000"),
            ("RAMPART_UPSTREAM_TIMEOUT", "1s"),
            ("RAMPART_PROXY_BODY_LIMIT", "1024"),
        ]))
        .unwrap();
        assert_eq!(p.upstream.unwrap().to_url(), "http://127.0.0.1:3000");
        assert_eq!(p.timeout, Duration::from_secs(1));
        assert_eq!(p.body_limit, 1024);
    }

    #[test]
    fn invalid_values_name_their_setting() {
        for (k, v) in [
            ("RAMPART_UPSTREAM_TIMEOUT", "0s"),
            ("RAMPART_UPSTREAM_TIMEOUT", "soon"),
            ("RAMPART_PROXY_BODY_LIMIT", "0"),
            ("RAMPART_PROXY_BODY_LIMIT", "10MB"),
            ("RAMPART_UPSTREAM_CA_FILE", "/ca.pem"),
        ] {
            assert_eq!(from_raw(&raw(&[(k, v)])).unwrap_err().setting, k, "{k}={v}");
        }
    }

    #[test]
    fn tls_needs_both_files_and_names_the_missing_one() {
        let err = from_raw(&raw(&[("RAMPART_TLS_CERT_FILE", "/c.pem")])).unwrap_err();
        assert_eq!(err.setting, "RAMPART_TLS_KEY_FILE");
        let err = from_raw(&raw(&[("RAMPART_TLS_KEY_FILE", "/k.pem")])).unwrap_err();
        assert_eq!(err.setting, "RAMPART_TLS_CERT_FILE");
        let (_, tls) = from_raw(&raw(&[
            ("RAMPART_TLS_CERT_FILE", "/c.pem"),
            ("RAMPART_TLS_KEY_FILE", "/k.pem"),
        ]))
        .unwrap();
        assert_eq!(tls.unwrap().key_file, PathBuf::from("/k.pem"));
    }
}
