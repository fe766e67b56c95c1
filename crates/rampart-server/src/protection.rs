//! The request-protection layers of the server, built from the configuration: security
//! headers, method guard, body limit, rate limiting and CSRF.

use rampart_protect::csrf::{CsrfConfig, CsrfLayer};
use rampart_protect::headers::{SecurityHeadersConfig, SecurityHeadersLayer};
use rampart_protect::MethodGuardLayer;
use rampart_ratelimit::{Quota, RateLimitLayer, Rule};

use crate::state::AppState;

/// Paths that run before a session exists: origin-checked, no token.
pub const ORIGIN_ONLY_PREFIXES: &[&str] =
    &["/api/auth/login", "/api/setup", "/api/auth/signup", "/login"];

/// Paths whose responses never carry a referrer.
pub const NO_REFERRER_PREFIXES: &[&str] = &["/login", "/account/password"];

/// The layers.
pub struct Protection {
    /// Security headers on every response.
    pub headers: SecurityHeadersLayer,
    /// TRACE and unknown methods get 405.
    pub methods: MethodGuardLayer,
    /// Request body limit (413 in the error shape).
    pub body_limit: rampart_protect::input::BodyLimitLayer,
    /// Rate limiting (off only with the development switch).
    pub rate_limit: Option<RateLimitLayer>,
    /// CSRF protection (off only with the development switch).
    pub csrf: Option<CsrfLayer>,
    /// CORS, when configured.
    pub cors: Option<rampart_protect::CorsLayer>,
}

impl Protection {
    /// Builds the layers for `state`'s configuration.
    pub fn from_state(state: &AppState) -> Self {
        let c = &state.config;
        let mut headers = SecurityHeadersConfig::strict().with_hsts(c.public_origin.is_https());
        for p in NO_REFERRER_PREFIXES {
            headers = headers.with_no_referrer_prefix(*p);
        }
        let csrf = (!c.insecure.disable_csrf).then(|| {
            let mut cfg = CsrfConfig::new(c.csrf.public_origin.clone());
            for o in &c.csrf.trusted {
                cfg = cfg.with_trusted_origin(o.clone());
            }
            for p in ORIGIN_ONLY_PREFIXES {
                cfg = cfg.with_origin_only_prefix(*p);
            }
            for p in &c.csrf.exempt_prefixes {
                cfg = cfg.insecure_exempt_prefix(p.clone());
            }
            if c.csrf.allow_same_site {
                cfg = cfg.insecure_allow_same_site();
            }
            CsrfLayer::new(cfg)
        });
        let rate_limit = (!c.insecure.disable_rate_limit).then(|| {
            let quotas: Vec<Quota> = c.rate_limit.iter().filter_map(|q| q.parse().ok()).collect();
            let mut rules = c.rate_limit_rules.clone();
            if rules.is_empty() {
                rules.push(Rule::default_with_quotas(quotas));
            }
            RateLimitLayer::new(state.rate_limits.clone(), rules)
        });
        Self {
            headers: SecurityHeadersLayer::new(headers),
            methods: MethodGuardLayer::new(),
            body_limit: rampart_protect::input::BodyLimitLayer::new(c.limits.body_limit),
            rate_limit,
            csrf,
            cors: c.cors.as_ref().map(|x| {
                let mut cfg = rampart_protect::cors::CorsConfig::new();
                for o in &x.origins {
                    cfg = cfg.with_allowed_origin(o.clone());
                }
                for m in &x.methods {
                    cfg = cfg.with_allowed_method(m.clone());
                }
                for h in &x.headers {
                    cfg = cfg.with_allowed_header(h.clone());
                }
                rampart_protect::CorsLayer::new(cfg)
            }),
        }
    }
}
