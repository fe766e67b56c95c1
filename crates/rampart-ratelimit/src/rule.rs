//! [`Rule`]s: which requests are limited, by which key, with which quotas.
//!
//! A rule matches a request when its method is listed (an empty list matches all methods) and
//! the path starts with `path_prefix` (a plain string prefix: `/api` also matches `/apix`).
//! Rules read from configuration look like this in TOML:
//!
//! ```toml
//! [[rule]]
//! name = "login"
//! methods = ["POST"]
//! path_prefix = "/login"
//! key = "client-ip"                 # or "user-id", "api-key-id", { route-and = "user-id" }
//! quotas = ["5/1m", "20/1h"]
//! ```
//!
//! # Keys
//! The store key is `rl:{rule name}:{key kind}:{value}` with kinds `ip`, `user`, `apikey` and
//! `route+{kind}` (value `{METHOD} {path}|{inner value}`, the path cut to 256 bytes).
//!
//! # Security
//! - **Fallback to the client IP**: when a rule's key is absent for a request (`user-id` on an
//!   anonymous request, `api-key-id` without an API key), the request is limited by its client
//!   address instead, under the kind `ip`, so anonymous traffic is never unlimited.
//! - The client address is [`rampart_core::ClientIp`] from the request extensions (the server
//!   resolves it behind trusted proxies); without it, axum's `ConnectInfo<SocketAddr>`; without
//!   both, every such request shares the single bucket `unknown`.
//! - IPv6 clients are keyed by their /64 network: one host usually controls a whole /64, and
//!   keying single addresses would let it rotate through 2^64 buckets.
//! - Rule names are restricted to `[A-Za-z0-9_.-]`, so keys and header names stay unambiguous.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, MatchedPath};
use http::{Method, Request};
use rampart_core::ClientIp;
use serde::{Deserialize, Serialize};

use crate::{Quota, RateLimitConfigError};

/// The longest route kept in a `route+…` key.
const MAX_ROUTE_LEN: usize = 256;

/// Who a request is, as far as rate limiting cares. Inserted into the request extensions by
/// the authentication layer (the server does this); absent means anonymous.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitSubject {
    /// The authenticated user's id.
    pub user_id: Option<String>,
    /// The id (not the secret) of the API key used.
    pub api_key_id: Option<String>,
}

/// What a rule counts requests by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// The client address (IPv6 by /64).
    #[default]
    #[serde(alias = "client_ip")]
    ClientIp,
    /// The authenticated user; falls back to the client address.
    #[serde(alias = "user_id")]
    UserId,
    /// The API key id; falls back to the client address.
    #[serde(alias = "api_key_id")]
    ApiKeyId,
    /// The method and route together with another key: a separate budget per route. The route
    /// is the matched route template (`/api/keys/{id}`), or the rule's `path_prefix` where no
    /// route matched (paths proxied upstream, a layer outside the router); never the raw path,
    /// which a client could vary to get fresh budgets and fill the store.
    #[serde(alias = "route_and")]
    RouteAnd(Box<KeyKind>),
}

/// One rate-limit rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct Rule {
    /// A short name, `[A-Za-z0-9_.-]`, used in store keys and response headers.
    pub name: String,
    /// The methods the rule applies to; empty means every method.
    #[serde(serialize_with = "ser_methods")]
    pub methods: Vec<Method>,
    /// The rule applies to paths starting with this.
    pub path_prefix: String,
    /// What requests are counted by.
    pub key: KeyKind,
    /// The quotas, all enforced together.
    pub quotas: Vec<Quota>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct RawRule {
    name: String,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default = "root", alias = "path-prefix")]
    path_prefix: String,
    #[serde(default)]
    key: KeyKind,
    quotas: Vec<Quota>,
}

fn root() -> String {
    "/".to_owned()
}

fn ser_methods<S: serde::Serializer>(methods: &[Method], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(methods.iter().map(Method::as_str))
}

impl TryFrom<RawRule> for Rule {
    type Error = RateLimitConfigError;

    fn try_from(raw: RawRule) -> Result<Self, Self::Error> {
        let bad =
            |reason: String| RateLimitConfigError::InvalidRule { name: raw.name.clone(), reason };
        let methods = raw
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                    .map_err(|_| bad(format!("bad method {m:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rule = Rule {
            name: raw.name.clone(),
            methods,
            path_prefix: raw.path_prefix,
            key: raw.key,
            quotas: raw.quotas,
        };
        rule.validate()?;
        Ok(rule)
    }
}

impl Rule {
    /// The built-in rule: `POST`, `PUT`, `PATCH` and `DELETE` anywhere, by client address,
    /// at most 200 per minute and 50 per 10 seconds. Safe methods are not limited.
    pub fn default_rule() -> Self {
        let quotas = vec![
            Quota { limit: 200, period: std::time::Duration::from_secs(60) },
            Quota { limit: 50, period: std::time::Duration::from_secs(10) },
        ];
        Self::default_with_quotas(quotas)
    }

    /// The built-in rule with other quotas (for example from configuration).
    pub fn default_with_quotas(quotas: Vec<Quota>) -> Self {
        Self {
            name: "default".to_owned(),
            methods: vec![Method::POST, Method::PUT, Method::PATCH, Method::DELETE],
            path_prefix: "/".to_owned(),
            key: KeyKind::ClientIp,
            quotas,
        }
    }

    /// Checks the name, prefix and quotas (deserialization does this already).
    pub fn validate(&self) -> Result<(), RateLimitConfigError> {
        let bad = |reason: &str| {
            Err(RateLimitConfigError::InvalidRule {
                name: self.name.clone(),
                reason: reason.to_owned(),
            })
        };
        if self.name.is_empty() || self.name.len() > 64 || !self.name.bytes().all(is_name_byte) {
            return bad("the name must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'");
        }
        if !self.path_prefix.starts_with('/') {
            return bad("path_prefix must start with '/'");
        }
        if self.quotas.is_empty() {
            return bad("at least one quota is needed");
        }
        if !self.quotas.iter().all(Quota::is_valid) {
            return bad("every quota needs a limit of at least 1 and a period of 1 ns to 365 days");
        }
        Ok(())
    }

    /// Whether the rule applies to a request with this method and path.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && path.starts_with(&self.path_prefix)
    }

    /// The store key for this rule and request: `rl:{name}:{kind}:{value}`.
    pub fn key_for<B>(&self, req: &Request<B>) -> String {
        let (kind, value) = resolve(&self.key, &self.path_prefix, req);
        format!("rl:{}:{kind}:{value}", self.name)
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

fn resolve<B>(kind: &KeyKind, prefix: &str, req: &Request<B>) -> (String, String) {
    let subject = req.extensions().get::<RateLimitSubject>();
    let by_ip = || ("ip".to_owned(), client_ip_value(req));
    match kind {
        KeyKind::ClientIp => by_ip(),
        KeyKind::UserId => match subject.and_then(|s| s.user_id.as_deref()) {
            Some(id) => ("user".to_owned(), id.to_owned()),
            None => by_ip(),
        },
        KeyKind::ApiKeyId => match subject.and_then(|s| s.api_key_id.as_deref()) {
            Some(id) => ("apikey".to_owned(), id.to_owned()),
            None => by_ip(),
        },
        KeyKind::RouteAnd(inner) => {
            let (kind, value) = resolve(inner, prefix, req);
            let route = req.extensions().get::<MatchedPath>().map_or(prefix, MatchedPath::as_str);
            let route = truncate(route, MAX_ROUTE_LEN);
            (format!("route+{kind}"), format!("{} {route}|{value}", req.method()))
        }
    }
}

fn client_ip_value<B>(req: &Request<B>) -> String {
    let ip = req
        .extensions()
        .get::<ClientIp>()
        .map(|c| c.0)
        .or_else(|| req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
    match ip {
        Some(ip) => ip_bucket(ip),
        None => "unknown".to_owned(),
    }
}

/// The text an address is counted under: IPv4 as is, IPv6 as its /64 network (one host
/// usually holds a whole /64, so counting single IPv6 addresses would let it dodge any limit).
pub fn ip_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, path: &str) -> Request<()> {
        let mut r = Request::builder().method(method).uri(path).body(()).unwrap();
        r.extensions_mut().insert(ClientIp("203.0.113.7".parse().unwrap()));
        r
    }

    fn rule(key: KeyKind) -> Rule {
        Rule { key, name: "r".into(), ..Rule::default_rule() }
    }

    #[test]
    fn default_rule_covers_unsafe_methods_only() {
        let r = Rule::default_rule();
        assert!(r.validate().is_ok());
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(r.matches(&m, "/anything"));
        }
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!r.matches(&m, "/anything"));
        }
        assert_eq!(r.quotas, vec!["200/60s".parse().unwrap(), "50/10s".parse().unwrap()]);
    }

    #[test]
    fn matches_by_method_and_prefix() {
        let r = Rule { methods: vec![], path_prefix: "/api/".into(), ..rule(KeyKind::ClientIp) };
        assert!(r.matches(&Method::GET, "/api/x"));
        assert!(r.matches(&Method::DELETE, "/api/"));
        assert!(!r.matches(&Method::GET, "/api"));
        assert!(!r.matches(&Method::GET, "/login"));
    }

    #[test]
    fn keys_by_kind_with_ip_fallback() {
        let anon = req(Method::POST, "/x");
        let mut user = req(Method::POST, "/x/y?q=1");
        user.extensions_mut().insert(RateLimitSubject {
            user_id: Some("u42".into()),
            api_key_id: Some("k7".into()),
        });
        let cases = [
            (KeyKind::ClientIp, &anon, "rl:r:ip:203.0.113.7"),
            (KeyKind::UserId, &anon, "rl:r:ip:203.0.113.7"),
            (KeyKind::ApiKeyId, &anon, "rl:r:ip:203.0.113.7"),
            (KeyKind::UserId, &user, "rl:r:user:u42"),
            (KeyKind::ApiKeyId, &user, "rl:r:apikey:k7"),
            // No route matched (a bare request): the rule's prefix, never the path asked for.
            (KeyKind::RouteAnd(Box::new(KeyKind::UserId)), &user, "rl:r:route+user:POST /|u42"),
            (
                KeyKind::RouteAnd(Box::new(KeyKind::UserId)),
                &anon,
                "rl:r:route+ip:POST /|203.0.113.7",
            ),
        ];
        for (kind, r, want) in cases {
            assert_eq!(rule(kind.clone()).key_for(r), want, "{kind:?}");
        }
    }

    #[test]
    fn client_address_falls_back_to_connect_info_then_unknown() {
        let mut r = Request::builder().uri("/").body(()).unwrap();
        assert_eq!(rule(KeyKind::ClientIp).key_for(&r), "rl:r:ip:unknown");
        r.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 5555))));
        assert_eq!(rule(KeyKind::ClientIp).key_for(&r), "rl:r:ip:192.0.2.1");
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        assert_eq!(ip_bucket("2001:db8:1:2:aaaa::1".parse().unwrap()), "2001:db8:1:2::/64");
        assert_eq!(ip_bucket("2001:db8:1:2:bbbb::9".parse().unwrap()), "2001:db8:1:2::/64");
        assert_eq!(ip_bucket("::ffff:198.51.100.3".parse().unwrap()), "198.51.100.3");
    }

    #[test]
    fn long_route_paths_are_cut() {
        let long = format!("/{}", "a".repeat(1000));
        let key =
            rule(KeyKind::RouteAnd(Box::new(KeyKind::ClientIp))).key_for(&req(Method::POST, &long));
        assert!(key.len() < 320, "{}", key.len());
    }

    #[derive(Deserialize)]
    struct Doc {
        rule: Vec<Rule>,
    }

    #[test]
    fn reads_rules_from_toml() {
        let doc: Doc = toml::from_str(
            r#"
            [[rule]]
            name = "login"
            methods = ["post"]
            path_prefix = "/login"
            quotas = ["5/1m", "20/1h"]

            [[rule]]
            name = "api"
            key = { route-and = "api_key_id" }
            quotas = ["1000/1h"]

            [[rule]]
            name = "users"
            key = "user-id"
            path-prefix = "/account"
            quotas = ["10/10s"]
            "#,
        )
        .unwrap();
        let [login, api, users] = &doc.rule[..] else { panic!("three rules expected") };
        assert_eq!(login.methods, vec![Method::POST]);
        assert_eq!(login.key, KeyKind::ClientIp);
        assert_eq!(login.quotas.len(), 2);
        assert_eq!(api.path_prefix, "/");
        assert!(api.methods.is_empty());
        assert_eq!(api.key, KeyKind::RouteAnd(Box::new(KeyKind::ApiKeyId)));
        assert_eq!(users.key, KeyKind::UserId);
        assert_eq!(users.path_prefix, "/account");
    }

    #[test]
    fn rejects_invalid_rules_from_toml() {
        for body in [
            r#"name = "x""#, // no quotas
            r#"name = "x"
               quotas = []"#,
            r#"name = "bad name"
               quotas = ["1/1s"]"#,
            r#"name = "x"
               quotas = ["0/1s"]"#,
            r#"name = "x"
               path_prefix = "api"
               quotas = ["1/1s"]"#,
            r#"name = "x"
               key = "session"
               quotas = ["1/1s"]"#,
            r#"name = "x"
               quotas = ["1/1s"]
               typo = 1"#,
            r#"name = "x"
               methods = ["GE T"]
               quotas = ["1/1s"]"#,
        ] {
            let text = format!("[[rule]]\n{body}\n");
            assert!(toml::from_str::<Doc>(&text).is_err(), "accepted {body}");
        }
    }
}
