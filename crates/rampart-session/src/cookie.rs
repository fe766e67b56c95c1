//! The session cookie: writing `Set-Cookie` and strictly reading `Cookie`.
//!
//! # Security
//! - Over HTTPS the cookie is named `__Host-rampart_session`: browsers only accept that name
//!   with `Secure`, `Path=/` and no `Domain`, so a sibling subdomain cannot plant or shadow it.
//!   Without HTTPS (local development only) it is `rampart_session` without `Secure`.
//! - Always `HttpOnly` and `SameSite` (`Lax` by default, `Strict` on request); never a `Domain`.
//! - No `Max-Age` unless configured (a browser-session cookie); a configured one is clamped to
//!   the absolute session timeout by [`CookieConfig::clamped`].
//! - Reading is strict: a value that is not a well-formed id, or the cookie present twice with
//!   different values (a sign of cookie tossing), is [`CookieRead::Malformed`], never a guess.
//! - `Set-Cookie` values are marked sensitive so HTTP/2 header compression never indexes them.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, COOKIE};

use crate::id::SessionId;

/// The cookie name over HTTPS.
pub const SECURE_COOKIE_NAME: &str = "__Host-rampart_session";
/// The cookie name without HTTPS.
pub const PLAIN_COOKIE_NAME: &str = "rampart_session";

/// The `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on top-level navigations from other sites, not on their subrequests or POSTs.
    #[default]
    Lax,
    /// Never sent on requests started by another site.
    Strict,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        }
    }
}

/// How the session cookie is written. `Default` is the secure setting (HTTPS, `Lax`, no
/// `Max-Age`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieConfig {
    /// `Secure` and the `__Host-` name. Turn off only for plain-HTTP local development.
    pub secure: bool,
    /// The `SameSite` attribute.
    pub same_site: SameSite,
    /// `Max-Age` for a persistent cookie; `None` for a browser-session cookie.
    pub max_age: Option<Duration>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self { secure: true, same_site: SameSite::Lax, max_age: None }
    }
}

/// What the request's `Cookie` headers say about the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieRead {
    /// No session cookie.
    None,
    /// A well-formed session id (not yet known to be valid).
    Valid(SessionId),
    /// A session cookie that is not a well-formed id, or two different ones.
    Malformed,
}

impl CookieConfig {
    /// The configuration for a public origin: secure when it is `https`.
    pub fn for_origin_https(https: bool) -> Self {
        Self { secure: https, ..Self::default() }
    }

    /// With this `SameSite` value.
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// With a `Max-Age` (a persistent cookie).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// With `Max-Age` at most `absolute` (the absolute session timeout).
    pub fn clamped(mut self, absolute: Duration) -> Self {
        self.max_age = self.max_age.map(|m| m.min(absolute));
        self
    }

    /// The cookie name in use.
    pub fn name(&self) -> &'static str {
        if self.secure {
            SECURE_COOKIE_NAME
        } else {
            PLAIN_COOKIE_NAME
        }
    }

    fn attributes(&self, max_age: Option<Duration>) -> String {
        let mut s = String::from("; HttpOnly; Path=/");
        if self.secure {
            s.push_str("; Secure");
        }
        s.push_str("; SameSite=");
        s.push_str(self.same_site.as_str());
        if let Some(age) = max_age {
            s.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        s
    }

    /// The `Set-Cookie` value that stores `id` in the browser (marked sensitive).
    pub fn set_cookie(&self, id: &SessionId) -> HeaderValue {
        let value = id.to_cookie_value();
        let text =
            format!("{}={}{}", self.name(), value.expose_secret(), self.attributes(self.max_age));
        let mut header = header_value(text);
        header.set_sensitive(true);
        header
    }

    /// The `Set-Cookie` value that removes the cookie (`Max-Age=0`, same attributes).
    pub fn clear_cookie(&self) -> HeaderValue {
        header_value(format!("{}={}", self.name(), self.attributes(Some(Duration::ZERO))))
    }

    /// Reads the session cookie from every `Cookie` header of a request.
    pub fn read(&self, headers: &HeaderMap) -> CookieRead {
        let name = self.name().as_bytes();
        let mut found: Option<&[u8]> = None;
        for header in headers.get_all(COOKIE) {
            for pair in header.as_bytes().split(|b| *b == b';') {
                let pair = pair.trim_ascii();
                let Some(eq) = pair.iter().position(|b| *b == b'=') else { continue };
                let (n, v) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
                if n != name {
                    continue;
                }
                match found {
                    Some(prev) if !rampart_core::ct::ct_eq(prev, v) => {
                        return CookieRead::Malformed
                    }
                    _ => found = Some(v),
                }
            }
        }
        let Some(value) = found else { return CookieRead::None };
        match std::str::from_utf8(value).ok().and_then(SessionId::parse) {
            Some(id) => CookieRead::Valid(id),
            None => CookieRead::Malformed,
        }
    }
}

fn header_value(text: String) -> HeaderValue {
    // Names, base64url ids and attributes are all visible ASCII, so this cannot fail; an
    // empty header would only fail to set a cookie.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn secure_cookie_uses_host_prefix_and_secure_attribute() {
        let cfg = CookieConfig::for_origin_https(true);
        let id = SessionId::generate();
        let value = id.to_cookie_value();
        let set = cfg.set_cookie(&id);
        assert!(set.is_sensitive());
        assert_eq!(
            set.to_str().unwrap(),
            format!(
                "__Host-rampart_session={}; HttpOnly; Path=/; Secure; SameSite=Lax",
                value.expose_secret()
            )
        );
        assert_eq!(
            cfg.clear_cookie().to_str().unwrap(),
            "__Host-rampart_session=; HttpOnly; Path=/; Secure; SameSite=Lax; Max-Age=0"
        );
    }

    #[test]
    fn plain_http_cookie_has_no_prefix_and_no_secure_attribute() {
        let cfg = CookieConfig::for_origin_https(false).with_same_site(SameSite::Strict);
        let id = SessionId::generate();
        let set = cfg.set_cookie(&id);
        let text = set.to_str().unwrap();
        assert!(text.starts_with("rampart_session="), "{text}");
        assert!(text.ends_with("; HttpOnly; Path=/; SameSite=Strict"), "{text}");
        assert!(!text.contains("Secure") && !text.contains("Domain") && !text.contains("Max-Age"));
        assert_eq!(
            cfg.clear_cookie().to_str().unwrap(),
            "rampart_session=; HttpOnly; Path=/; SameSite=Strict; Max-Age=0"
        );
    }

    #[test]
    fn max_age_is_written_only_when_configured_and_clamped_to_absolute() {
        let cfg = CookieConfig::default()
            .with_max_age(Duration::from_secs(86_400 * 30))
            .clamped(Duration::from_secs(43_200));
        let set = cfg.set_cookie(&SessionId::generate());
        assert!(set.to_str().unwrap().ends_with("; SameSite=Lax; Max-Age=43200"));
        let short = CookieConfig::default()
            .with_max_age(Duration::from_secs(60))
            .clamped(Duration::from_secs(43_200));
        assert_eq!(short.max_age, Some(Duration::from_secs(60)));
    }

    #[test]
    fn reads_the_cookie_among_others_and_across_headers() {
        let cfg = CookieConfig::default();
        let id = SessionId::generate();
        let v = id.to_cookie_value();
        let v = v.expose_secret();
        let cases: Vec<(Vec<String>, CookieRead)> = vec![
            (vec![], CookieRead::None),
            (vec!["theme=dark; lang=en".into()], CookieRead::None),
            (vec![format!("a=1; __Host-rampart_session={v}; b=2")], CookieRead::Valid(id.clone())),
            (
                vec!["a=1".into(), format!("__Host-rampart_session={v}")],
                CookieRead::Valid(id.clone()),
            ),
            // The same value twice is harmless.
            (
                vec![format!("__Host-rampart_session={v}"), format!("__Host-rampart_session={v}")],
                CookieRead::Valid(id),
            ),
            // The unprefixed name is ignored over HTTPS: it could have been set by a subdomain.
            (vec![format!("rampart_session={v}")], CookieRead::None),
        ];
        for (values, want) in cases {
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            assert_eq!(cfg.read(&headers(&refs)), want, "{values:?}");
        }
    }

    #[test]
    fn detects_malformed_and_conflicting_cookies() {
        let cfg = CookieConfig::default();
        let a = SessionId::generate().to_cookie_value();
        let b = SessionId::generate().to_cookie_value();
        let (a, b) = (a.expose_secret(), b.expose_secret());
        let cases: Vec<Vec<String>> = vec![
            vec!["__Host-rampart_session=".into()],
            vec!["__Host-rampart_session=short".into()],
            vec![format!("__Host-rampart_session=\"{a}\"")],
            vec![format!("__Host-rampart_session={a}=")],
            vec![format!("__Host-rampart_session={a}; __Host-rampart_session={b}")],
            vec![format!("__Host-rampart_session={a}"), format!("__Host-rampart_session={b}")],
            vec![format!("__Host-rampart_session={a}"), "__Host-rampart_session=x".into()],
        ];
        for values in cases {
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            assert_eq!(cfg.read(&headers(&refs)), CookieRead::Malformed, "{values:?}");
        }
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_bytes(b"__Host-rampart_session=\xff\xfe").unwrap());
        assert_eq!(cfg.read(&h), CookieRead::Malformed);
    }
}
