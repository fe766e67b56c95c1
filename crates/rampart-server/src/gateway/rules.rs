//! Access rules: which requests through the gateway need which caller.
//!
//! Rules come from TOML, are tried in order, and the first whose host, path and method all
//! match decides:
//!
//! ```toml
//! [[access_rules.rule]]
//! name = "assets"                 # optional; shown in 403 audit events (default rule-<n>)
//! hosts = ["app.example.com"]     # optional: exact (any case) or "*.example.com"; default any
//! paths = ["/static/**"]          # optional: prefix, or glob with * and **; default any
//! methods = ["GET", "HEAD"]       # optional: default any
//! policy = "public"               # public | authenticated | role:<role> | deny
//! csrf = true                     # optional: the proxy's CSRF check for unsafe methods
//! ```
//!
//! # Security considerations
//! - **Deny by default.** A request no rule matches needs a logged-in user
//!   ([`Policy::Authenticated`]); `public` must be granted explicitly.
//! - **One view of the path.** Paths are matched after percent-decoding once, turning `\` into
//!   `/`, dropping `;parameters` from segments, collapsing repeated slashes and resolving `.` and
//!   `..`, so `/%61dmin`, `//admin`, `/./admin`, `/static/../admin` and `/admin;x` all meet the
//!   rules for `/admin`. A path that decodes to control characters or invalid UTF-8 is refused
//!   outright (`Forbidden { rule: "invalid_path" }`).
//! - **Letter case.** Rules that refuse someone (`deny`, `role:…`) match paths in any case, so
//!   an upstream that routes `/ADMIN` like `/admin` cannot be reached past them by a change of
//!   case; rules that grant (`public`, `authenticated`) match only the case as written, so
//!   another spelling of a public path gets the next rule or the default, never more access.
//! - **Prefixes match whole segments.** `/admin` matches `/admin` and `/admin/x`, never
//!   `/administrator`.
//! - **Hosts** are compared without port and trailing dot, in lower case. `*.example.com`
//!   matches any name below `example.com`, not `example.com` itself.
//! - `role:<r>` admits users with role `r`; admins pass every role rule.

use std::borrow::Cow;

use http::Method;
use rampart_store_sql::Role;
use serde::Deserialize;

use crate::auth::AuthenticatedUser;
use crate::config::{Config, ConfigError};

/// The config setting named by errors in access rules.
pub const SETTING: &str = "access_rules";

/// Rule name reported when a path cannot be interpreted safely.
pub const INVALID_PATH: &str = "invalid_path";

/// What a matching rule requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Anyone, logged in or not.
    Public,
    /// Any logged-in user.
    Authenticated,
    /// A user with this role (or an admin).
    Role(Role),
    /// Nobody.
    Deny,
}

impl Policy {
    /// Whether the policy refuses someone (`deny`, `role:…`). The paths of such rules match in
    /// any letter case: many upstream frameworks route `/ADMIN/x` like `/admin/x`, and a refusal
    /// that a change of case dodged would be a bypass, while matching too much only refuses
    /// more. Granting rules (`public`, `authenticated`) match the case as written.
    pub fn refuses(&self) -> bool {
        matches!(self, Self::Deny | Self::Role(_))
    }

    /// Parses `public`, `authenticated`, `role:<role>` or `deny`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "public" => Some(Self::Public),
            "authenticated" => Some(Self::Authenticated),
            "deny" => Some(Self::Deny),
            other => {
                other.strip_prefix("role:").and_then(|r| Role::parse(r.trim())).map(Self::Role)
            }
        }
    }
}

/// The outcome of [`AccessRules::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through.
    Allow,
    /// A logged-in user is needed (401, or a redirect to the login page).
    Unauthenticated,
    /// The caller may not do this (403).
    Forbidden {
        /// The name of the rule that refused.
        rule: String,
    },
}

/// One host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.suffix`: stores `.suffix`.
    Subdomains(String),
}

impl HostPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let t = normalize_host(text);
        if let Some(rest) = t.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') {
                return Err(format!("bad host pattern {text:?}"));
            }
            return Ok(Self::Subdomains(format!(".{rest}")));
        }
        if t.is_empty() || t.contains('*') || t.contains('/') {
            return Err(format!("bad host pattern {text:?} (use a name or *.domain)"));
        }
        Ok(Self::Exact(t.into_owned()))
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => h == host,
            Self::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
}

/// One path pattern: a segment-wise prefix, or a glob over the whole path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathPattern {
    Prefix(String),
    Glob(Vec<GlobPart>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobPart {
    Literal(String),
    /// `*`: anything but `/`.
    Star,
    /// `**`: anything.
    DoubleStar,
}

impl PathPattern {
    fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("path {text:?} must start with '/'"));
        }
        if text.chars().any(|c| c.is_control() || c == '\\' || c == '?' || c == '#') {
            return Err(format!("path {text:?} has characters paths cannot match"));
        }
        if !text.contains('*') {
            return Ok(Self::Prefix(text.to_owned()));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find('*') {
            if i > 0 {
                parts.push(GlobPart::Literal(rest[..i].to_owned()));
            }
            if rest[i..].starts_with("***") {
                return Err(format!("path {text:?}: use * or **"));
            }
            if rest[i..].starts_with("**") {
                parts.push(GlobPart::DoubleStar);
                rest = &rest[i + 2..];
            } else {
                parts.push(GlobPart::Star);
                rest = &rest[i + 1..];
            }
        }
        if !rest.is_empty() {
            parts.push(GlobPart::Literal(rest.to_owned()));
        }
        Ok(Self::Glob(parts))
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Prefix(p) => {
                path == p
                    || (path.starts_with(p.as_str())
                        && (p.ends_with('/') || path.as_bytes().get(p.len()) == Some(&b'/')))
            }
            Self::Glob(parts) => glob_match(parts, path),
        }
    }
}

fn glob_match(parts: &[GlobPart], text: &str) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some((GlobPart::Literal(l), rest)) => {
            text.strip_prefix(l.as_str()).is_some_and(|t| glob_match(rest, t))
        }
        Some((GlobPart::Star, rest)) => {
            let limit = text.find('/').unwrap_or(text.len());
            (0..=limit).any(|i| text.is_char_boundary(i) && glob_match(rest, &text[i..]))
        }
        Some((GlobPart::DoubleStar, rest)) => {
            (0..=text.len()).any(|i| text.is_char_boundary(i) && glob_match(rest, &text[i..]))
        }
    }
}

/// One access rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Name, for audit events.
    pub name: String,
    hosts: Vec<HostPattern>,
    paths: Vec<PathPattern>,
    /// Methods (empty: any).
    pub methods: Vec<Method>,
    /// What the rule requires.
    pub policy: Policy,
    /// Whether the proxy applies its CSRF check to unsafe methods under this rule.
    pub csrf: bool,
}

impl Rule {
    /// `path` is the normalised path, `folded` the same in lower case. The paths of rules that
    /// refuse someone match in any letter case (see [`Policy::refuses`]).
    fn matches(&self, host: &str, path: &str, folded: &str, method: &Method) -> bool {
        let path = if self.policy.refuses() { folded } else { path };
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(host)))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path)))
            && (self.methods.is_empty() || self.methods.contains(method))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    host: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
    path: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    policy: String,
    #[serde(default = "yes")]
    csrf: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    rule: Vec<RawRule>,
}

impl RawRule {
    fn into_rule(self, index: usize) -> Result<Rule, String> {
        let name = self.name.unwrap_or_else(|| format!("rule-{}", index + 1));
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(format!(
                "rule {}: the name must be 1 to 64 printable characters",
                index + 1
            ));
        }
        let at = |e: String| format!("rule {name:?}: {e}");
        let hosts = self
            .host
            .into_iter()
            .chain(self.hosts)
            .map(|h| HostPattern::parse(&h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(at)?;
        let paths: Vec<String> = self.path.into_iter().chain(self.paths).collect();
        let methods = self
            .methods
            .iter()
            .map(|m| {
                let upper = m.trim().to_ascii_uppercase();
                Method::from_bytes(upper.as_bytes())
                    .ok()
                    .filter(|_| !upper.is_empty())
                    .ok_or_else(|| at(format!("bad method {m:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let policy = Policy::parse(&self.policy).ok_or_else(|| {
            at(format!(
                "bad policy {:?} (public, authenticated, role:admin, role:user or deny)",
                self.policy
            ))
        })?;
        // Refusing rules match paths in any letter case (see `Policy::refuses`).
        let paths = paths
            .iter()
            .map(|p| {
                if policy.refuses() {
                    PathPattern::parse(&p.to_ascii_lowercase())
                } else {
                    PathPattern::parse(p)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(at)?;
        Ok(Rule { name, hosts, paths, methods, policy, csrf: self.csrf })
    }
}

/// Parses the `access_rules` TOML section; `None` gives no rules.
///
/// # Errors
/// A [`ConfigError`] naming `access_rules` and the rule at fault.
pub fn parse_section(value: Option<&toml::Value>) -> Result<Vec<Rule>, ConfigError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let raw: RawRules = value.clone().try_into().map_err(|e: toml::de::Error| {
        ConfigError::new(SETTING, format!("invalid rule list: {}", e.message()))
    })?;
    raw.rule
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.into_rule(i).map_err(|e| ConfigError::new(SETTING, e)))
        .collect()
}

/// The ordered rule list. Cheap to build from the configuration.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    rules: Vec<Rule>,
}

impl AccessRules {
    /// The rules of `config` (validated when the configuration was loaded).
    pub fn from_config(config: &Config) -> Self {
        Self { rules: config.access_rules.clone() }
    }

    /// Rules from a list (for tests and embedding).
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule matching the request, or `Err(())` when the path cannot be read safely.
    fn find(&self, host: &str, path: &str, method: &Method) -> Result<Option<&Rule>, ()> {
        let host = normalize_host(host);
        let path = normalize_path(path).ok_or(())?;
        // Most paths have no capitals: no copy for them.
        let folded = if path.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(path.to_ascii_lowercase())
        } else {
            Cow::Borrowed(&*path)
        };
        Ok(self.rules.iter().find(|r| r.matches(&host, &path, &folded, method)))
    }

    /// Decides a request to `host` (a `Host` value, port allowed) for `path` (query allowed,
    /// ignored), by `method`, from `user` (`None`: anonymous).
    pub fn decide(
        &self,
        host: &str,
        path: &str,
        method: &Method,
        user: Option<&AuthenticatedUser>,
    ) -> Decision {
        let rule = match self.find(host, path, method) {
            Ok(r) => r,
            Err(()) => return Decision::Forbidden { rule: INVALID_PATH.to_owned() },
        };
        let policy = rule.map_or(&Policy::Authenticated, |r| &r.policy);
        let forbidden = || Decision::Forbidden {
            rule: rule.map_or_else(|| "default".to_owned(), |r| r.name.clone()),
        };
        match (policy, user) {
            (Policy::Public, _) => Decision::Allow,
            (Policy::Deny, _) => forbidden(),
            (_, None) => Decision::Unauthenticated,
            (Policy::Authenticated, Some(_)) => Decision::Allow,
            (Policy::Role(r), Some(u)) if u.role == *r || u.role == Role::Admin => Decision::Allow,
            (Policy::Role(_), Some(_)) => forbidden(),
        }
    }

    /// Whether the proxy's CSRF check applies: the method is not one of the safe GET, HEAD,
    /// OPTIONS and TRACE, and the matching rule does not say `csrf = false`. Unmatched and unreadable
    /// paths are checked.
    pub fn csrf_applies(&self, host: &str, path: &str, method: &Method) -> bool {
        if !rampart_protect::csrf::CsrfPolicy::is_checked_method(method) {
            return false;
        }
        match self.find(host, path, method) {
            Ok(Some(rule)) => rule.csrf,
            _ => true,
        }
    }
}

/// Lower case, without port, surrounding space or trailing dot. A host already in that form
/// (the usual case) is returned as it is, without a copy.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
    if host.bytes().all(plain) && !host.ends_with('.') {
        return Cow::Borrowed(host);
    }
    Cow::Owned(normalize_host_slow(host))
}

fn normalize_host_slow(host: &str) -> String {
    let h = host.trim();
    let without_port = if h.starts_with('[') {
        h.find(']').map_or(h, |i| &h[..=i])
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or(h)
    } else {
        h
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// The path as rules see it (see the module docs), or `None` when it cannot be read safely. A
/// path that normalizing would not change (the usual case) is returned without a copy.
pub fn normalize_path(raw: &str) -> Option<Cow<'_, str>> {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    if is_normal_path(path) {
        return Some(Cow::Borrowed(path));
    }
    normalize_path_slow(path).map(Cow::Owned)
}

/// Whether `path` is already what [`normalize_path`] makes of it: it starts with `/`, has only
/// letters, digits, `-`, `_`, `~` and `.` between single slashes (nothing to decode, no
/// parameters, no backslash, no control character), and no segment is `.` or `..`.
fn is_normal_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~' | b'.');
    // The last segment may be empty (a trailing slash); no other may.
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if (seg.is_empty() && !last) || seg == "." || seg == ".." || !seg.bytes().all(plain) {
            return false;
        }
    }
    true
}

fn normalize_path_slow(path: &str) -> Option<String> {
    let decoded = String::from_utf8(percent_decode(path.as_bytes())).ok()?;
    if decoded.chars().any(char::is_control) {
        return None;
    }
    let unified = decoded.replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = unified.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => trailing_slash = i == last && i > 0,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut p = format!("/{}", out.join("/"));
    if trailing_slash && p != "/" {
        p.push('/');
    }
    Some(p)
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        let hex = |j: usize| input.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
