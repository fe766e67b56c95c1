//! Web origins: scheme, host and port.
//!
//! # Security considerations
//! Origins are compared as whole tuples, never as strings with prefixes or suffixes:
//! `https://app.example.com.evil.com` and `https://app.example.com:8443` are different origins
//! from `https://app.example.com`. Hosts are lowercased; ports are made explicit from the scheme
//! (`https://h` equals `https://h:443`). Only `http` and `https` are accepted. Anything unusual
//! (user info, percent signs, non-ASCII hosts, empty or zero ports) is refused rather than
//! normalized, so that a parser difference cannot turn a foreign origin into a trusted one.
//! The opaque origin `null` is never an [`Origin`].

use std::fmt;
use std::str::FromStr;

use crate::error::{ProtectError, Result};

/// An `http` or `https` origin: scheme, lowercase host and explicit port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses an origin from a URL such as `https://auth.example.com` or
    /// `https://auth.example.com:8443/some/path`; any path, query or fragment is ignored.
    ///
    /// # Errors
    /// [`ProtectError::InvalidOrigin`] when the scheme is not `http`/`https` or the authority is
    /// malformed.
    pub fn parse(url: &str) -> Result<Self> {
        parse_url(url, false)
            .map_err(|reason| ProtectError::InvalidOrigin { input: url.to_owned(), reason })
    }

    /// Parses the value of an `Origin` request header: exactly `scheme://host[:port]`, nothing
    /// after it. `None` for `null` and for anything malformed.
    pub fn from_header(value: &str) -> Option<Self> {
        parse_url(value, true).ok()
    }

    /// The origin of a URL in a `Referer` header; `None` when it does not parse.
    pub fn from_referer(value: &str) -> Option<Self> {
        parse_url(value, false).ok()
    }

    /// `"https"` or `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The lowercase host; IPv6 addresses keep their brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn default_port(https: bool) -> u16 {
        if https {
            443
        } else {
            80
        }
    }
}

impl fmt::Display for Origin {
    /// The browser serialization: the default port is omitted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.host)?;
        if self.port != Self::default_port(self.https) {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl FromStr for Origin {
    type Err = ProtectError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn parse_url(input: &str, origin_only: bool) -> Result<Origin, &'static str> {
    let (scheme, rest) = input.split_once("://").ok_or("missing scheme")?;
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err("scheme must be http or https");
    };
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if origin_only && !tail.is_empty() {
        return Err("an origin has no path");
    }
    if tail.starts_with('\\') {
        return Err("backslash after authority");
    }
    if authority.is_empty() {
        return Err("missing host");
    }
    if authority.contains('@') {
        return Err("user info is not allowed");
    }
    let (host, port) = split_host_port(authority)?;
    let port = match port {
        None => Origin::default_port(https),
        Some(p) => parse_port(p)?,
    };
    Ok(Origin { https, host, port })
}

fn split_host_port(authority: &str) -> Result<(String, Option<&str>), &'static str> {
    if let Some(after_bracket) = authority.strip_prefix('[') {
        let close = after_bracket.find(']').ok_or("unclosed IPv6 bracket")?;
        let (addr, after) = after_bracket.split_at(close);
        let after = &after[1..];
        let valid = !addr.is_empty()
            && addr.contains(':')
            && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !valid {
            return Err("invalid IPv6 address");
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after IPv6 address")?),
        };
        return Ok((format!("[{}]", addr.to_ascii_lowercase()), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let valid = !host.is_empty()
        && !host.starts_with('.')
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid {
        return Err("invalid host");
    }
    Ok((host.to_ascii_lowercase(), port))
}

fn parse_port(text: &str) -> Result<u16, &'static str> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid port");
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err("invalid port"),
        Ok(p) => Ok(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scheme_host_and_default_port() {
        let o = Origin::parse("https://Auth.Example.com/login?x=1").unwrap();
        assert_eq!((o.scheme(), o.host(), o.port()), ("https", "auth.example.com", 443));
        let o = Origin::parse("http://localhost:8080").unwrap();
        assert_eq!((o.scheme(), o.host(), o.port()), ("http", "localhost", 8080));
        assert_eq!(Origin::parse("http://h").unwrap().port(), 80);
    }

    #[test]
    fn explicit_default_port_equals_implicit() {
        assert_eq!(
            Origin::parse("https://h.example:443").unwrap(),
            Origin::parse("https://h.example").unwrap()
        );
        assert_ne!(
            Origin::parse("https://h.example:8443").unwrap(),
            Origin::parse("https://h.example").unwrap()
        );
    }

    #[test]
    fn display_is_the_browser_serialization() {
        assert_eq!(Origin::parse("HTTPS://A.B:443/x").unwrap().to_string(), "https://a.b");
        assert_eq!(Origin::parse("http://a.b:81").unwrap().to_string(), "http://a.b:81");
        assert_eq!(Origin::parse("http://[::1]:3000").unwrap().to_string(), "http://[::1]:3000");
    }

    #[test]
    fn header_form_refuses_paths_and_null() {
        assert!(Origin::from_header("https://a.b").is_some());
        assert!(Origin::from_header("https://a.b/").is_none());
        assert!(Origin::from_header("null").is_none());
        assert!(Origin::from_header("").is_none());
    }

    #[test]
    fn refuses_unusual_or_ambiguous_input() {
        for bad in [
            "ftp://a.b",
            "a.b",
            "https://",
            "https://user@a.b",
            "https://a.b:",
            "https://a.b:0",
            "https://a.b:65536",
            "https://a.b:+80",
            "https://a%2eb",
            "https://.a.b",
            "https://a.b:80:80",
            "https://[::1",
            "https://[zz]",
            "https://ä.b",
            "https://a.b\\@evil.com",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn deserializes_from_a_string() {
        let o: Origin = serde_json::from_str("\"https://a.b:8443\"").unwrap();
        assert_eq!(o.port(), 8443);
        assert!(serde_json::from_str::<Origin>("\"null\"").is_err());
    }
}
