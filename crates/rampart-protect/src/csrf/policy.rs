//! The CSRF decision: configuration, request context, rejection and the pure `decide` function.

use std::fmt;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, ORIGIN, REFERER};
use http::{Method, Response, StatusCode};
use rampart_core::{ct::ct_eq, token::b64url, Keyring, Purpose, SecretString};

use crate::error::error_response;
use crate::origin::Origin;
use crate::util::under_any;

/// The request header that carries the token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries the token in `application/x-www-form-urlencoded` bodies.
pub const CSRF_FORM_FIELD: &str = "csrf_token";

/// Longest `Origin` value copied into a rejection for the audit log.
const MAX_ORIGIN_SEEN: usize = 256;

/// The names looked up on every checked request, as constants: no name parsing per request.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const CSRF_HEADER_NAME: HeaderName = HeaderName::from_static(CSRF_HEADER);

/// What the CSRF check accepts.
#[derive(Debug, Clone)]
pub struct CsrfConfig {
    /// The origin browsers see for this server (scheme, host, port).
    pub public_origin: Origin,
    /// Further origins allowed to send unsafe requests (for example a separate front end).
    pub trusted_origins: Vec<Origin>,
    /// Accept `Sec-Fetch-Site: same-site` (sibling subdomains). Off by default: any sibling
    /// subdomain that can be taken over could then forge requests.
    pub allow_same_site: bool,
    /// Paths (whole segments) never checked, for example machine-to-machine webhooks that carry
    /// no ambient credential. Each one is a hole: nothing under it is protected.
    pub exempt_prefixes: Vec<String>,
    /// Paths checked by origin alone because no session exists yet (login, setup, sign-up).
    /// Matched as plain text prefixes, so `/login` also covers `/login/totp`.
    pub origin_only_prefixes: Vec<String>,
}

impl CsrfConfig {
    /// Only `public_origin` is trusted; nothing is exempt; no origin-only paths.
    pub fn new(public_origin: Origin) -> Self {
        Self {
            public_origin,
            trusted_origins: Vec::new(),
            allow_same_site: false,
            exempt_prefixes: Vec::new(),
            origin_only_prefixes: Vec::new(),
        }
    }

    /// Also accepts requests from `origin`.
    pub fn with_trusted_origin(mut self, origin: Origin) -> Self {
        self.trusted_origins.push(origin);
        self
    }

    /// Checks paths starting with `prefix` by origin even without a session.
    pub fn with_origin_only_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.origin_only_prefixes.push(prefix.into());
        self
    }

    /// Exempts paths under `prefix` from every CSRF check.
    pub fn insecure_exempt_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.exempt_prefixes.push(prefix.into());
        self
    }

    /// Accepts `Sec-Fetch-Site: same-site`.
    pub fn insecure_allow_same_site(mut self) -> Self {
        self.allow_same_site = true;
        self
    }

    fn is_allowed_origin(&self, origin: &Origin) -> bool {
        *origin == self.public_origin || self.trusted_origins.contains(origin)
    }
}

/// What the server knows about the request's credentials, inserted into the request
/// extensions before the CSRF layer runs.
#[derive(Debug, Clone, Default)]
pub struct CsrfContext {
    /// The token expected for the request's session; `Some` when a session cookie
    /// authenticated the request.
    pub expected_token: Option<SecretString>,
    /// The request is authenticated by an API key (not an ambient credential).
    pub api_key: bool,
}

impl CsrfContext {
    /// A request authenticated by a session cookie whose token is `expected_token`.
    pub fn session(expected_token: SecretString) -> Self {
        Self { expected_token: Some(expected_token), api_key: false }
    }

    /// A request authenticated by an API key.
    pub fn api_key() -> Self {
        Self { expected_token: None, api_key: true }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CsrfReason {
    /// `Sec-Fetch-Site` said the request came from another site (or from no site).
    CrossSiteFetch,
    /// The `Origin` header is `null`, malformed or not trusted.
    OriginMismatch,
    /// No `Origin`; the `Referer` is malformed or from an untrusted origin.
    RefererMismatch,
    /// No `Sec-Fetch-Site`, `Origin` or `Referer` at all.
    MissingOrigin,
    /// The session needs a token and none was sent.
    MissingToken,
    /// The token sent does not match the session's.
    BadToken,
}

impl CsrfReason {
    /// The snake_case name, for logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrossSiteFetch => "cross_site_fetch",
            Self::OriginMismatch => "origin_mismatch",
            Self::RefererMismatch => "referer_mismatch",
            Self::MissingOrigin => "missing_origin",
            Self::MissingToken => "missing_token",
            Self::BadToken => "bad_token",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::CrossSiteFetch => "cross-site request refused",
            Self::OriginMismatch | Self::RefererMismatch => "request origin is not allowed",
            Self::MissingOrigin => "request has no origin information",
            Self::MissingToken => "missing CSRF token",
            Self::BadToken => "invalid CSRF token",
        }
    }
}

/// A refused request. Never contains a token; safe to log and to put in audit records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrfRejection {
    /// Why.
    pub reason: CsrfReason,
    /// The origin the request claimed (the `Origin` header, or the origin of the `Referer`),
    /// when there was one.
    pub origin_seen: Option<String>,
}

impl CsrfRejection {
    /// A 403 response with code `csrf_rejected` in the shared error shape, carrying a clone of
    /// this rejection in its extensions.
    pub fn to_response<B: From<String>>(&self, request_id: &str) -> Response<B> {
        let mut res = error_response(
            StatusCode::FORBIDDEN,
            "csrf_rejected",
            self.reason.message(),
            request_id,
        );
        res.extensions_mut().insert(self.clone());
        res
    }
}

impl fmt::Display for CsrfRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CSRF check failed: {}", self.reason.as_str())
    }
}

impl std::error::Error for CsrfRejection {}

/// The CSRF decision for one request. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CsrfPolicy {
    config: Arc<CsrfConfig>,
}

impl CsrfPolicy {
    /// A policy over `config`.
    pub fn new(config: CsrfConfig) -> Self {
        Self { config: Arc::new(config) }
    }

    /// The configuration.
    pub fn config(&self) -> &CsrfConfig {
        &self.config
    }

    /// Whether `method` may change state and is therefore checked: every method but the safe
    /// GET, HEAD, OPTIONS and TRACE. Method names are case-sensitive, so `post` or an invented
    /// method is checked too (an application behind the layer may still act on it).
    pub fn is_checked_method(method: &Method) -> bool {
        !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
    }

    /// Decides one request. `form_token` is the `csrf_token` field of a form body, when the
    /// caller has read one; the `X-CSRF-Token` header takes precedence over it.
    ///
    /// # Errors
    /// A [`CsrfRejection`] saying why the request must be refused.
    pub fn decide(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        context: Option<&CsrfContext>,
        form_token: Option<&str>,
    ) -> Result<(), CsrfRejection> {
        if !Self::is_checked_method(method) || under_any(path, &self.config.exempt_prefixes) {
            return Ok(());
        }
        if context.is_some_and(|c| c.api_key) {
            return Ok(());
        }
        let expected = context.and_then(|c| c.expected_token.as_ref());
        let origin_only = self
            .config
            .origin_only_prefixes
            .iter()
            .any(|p| !p.is_empty() && path.starts_with(p.as_str()));
        if expected.is_none() && !origin_only {
            // No ambient credential: a forged request gains nothing.
            return Ok(());
        }
        self.check_origin(headers)?;
        let Some(expected) = expected else {
            return Ok(());
        };
        let header_token =
            headers.get(CSRF_HEADER_NAME).and_then(|v| v.to_str().ok()).filter(|t| !t.is_empty());
        let Some(provided) = header_token.or(form_token.filter(|t| !t.is_empty())) else {
            return Err(self.reject(CsrfReason::MissingToken, headers));
        };
        if ct_eq(provided.as_bytes(), expected.expose_secret().as_bytes()) {
            Ok(())
        } else {
            Err(self.reject(CsrfReason::BadToken, headers))
        }
    }

    /// Fetch Metadata first; then `Origin`; then the origin of `Referer`.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), CsrfRejection> {
        let site = headers.get(SEC_FETCH_SITE).and_then(|v| v.to_str().ok()).map(str::trim);
        match site {
            Some(s) if s.eq_ignore_ascii_case("same-origin") => return Ok(()),
            Some(s) if s.eq_ignore_ascii_case("same-site") && self.config.allow_same_site => {
                return Ok(())
            }
            Some(s)
                if s.eq_ignore_ascii_case("same-site")
                    || s.eq_ignore_ascii_case("cross-site")
                    || s.eq_ignore_ascii_case("none") =>
            {
                return Err(self.reject(CsrfReason::CrossSiteFetch, headers));
            }
            // Absent or a value this code does not know: fall back to Origin / Referer.
            _ => {}
        }
        if let Some(value) = headers.get(ORIGIN) {
            let allowed = value
                .to_str()
                .ok()
                .and_then(Origin::from_header)
                .is_some_and(|o| self.config.is_allowed_origin(&o));
            return if allowed {
                Ok(())
            } else {
                Err(self.reject(CsrfReason::OriginMismatch, headers))
            };
        }
        if let Some(value) = headers.get(REFERER) {
            let allowed = value
                .to_str()
                .ok()
                .and_then(Origin::from_referer)
                .is_some_and(|o| self.config.is_allowed_origin(&o));
            return if allowed {
                Ok(())
            } else {
                Err(self.reject(CsrfReason::RefererMismatch, headers))
            };
        }
        Err(self.reject(CsrfReason::MissingOrigin, headers))
    }

    fn reject(&self, reason: CsrfReason, headers: &HeaderMap) -> CsrfRejection {
        CsrfRejection { reason, origin_seen: origin_seen(headers) }
    }
}

/// The claimed origin, for the audit record: the `Origin` header when it is short printable
/// ASCII, else the origin (never the path or query) of the `Referer`.
fn origin_seen(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(ORIGIN) {
        return value.to_str().ok().filter(|s| s.len() <= MAX_ORIGIN_SEEN).map(str::to_owned);
    }
    let referer = headers.get(REFERER)?.to_str().ok()?;
    Origin::from_referer(referer).map(|o| o.to_string())
}

/// The CSRF token for a session: base64url of HMAC-SHA256 under [`Purpose::Csrf`] over the
/// session id. Stable for the session's lifetime; a new session id (login, privilege change)
/// gives a new token. It changes when the keyring's current key is rotated.
pub fn csrf_token_for(keyring: &Keyring, session_id_bytes: &[u8]) -> SecretString {
    SecretString::new(b64url(&keyring.mac(Purpose::Csrf, session_id_bytes)))
}
