//! What [`SecurityHeadersLayer`](super::SecurityHeadersLayer) sends.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_SECURITY_POLICY, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};

use crate::error::{ProtectError, Result};

/// `Strict-Transport-Security`: two years, subdomains included.
pub const HSTS_VALUE: &str = "max-age=63072000; includeSubDomains";

/// The policy for HTML responses; `{nonce}` is replaced by the response's nonce.
pub const HTML_CSP: &str = "default-src 'none'; script-src 'nonce-{nonce}'; \
style-src 'self' 'nonce-{nonce}'; img-src 'self'; form-action 'self'; object-src 'none'; \
base-uri 'none'; frame-ancestors 'none'";

/// The policy for every response that is not HTML.
pub const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// `Permissions-Policy`: powerful features denied to this origin and every frame.
pub const PERMISSIONS_POLICY: &str = "accelerometer=(), autoplay=(), camera=(), \
display-capture=(), encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), hid=(), \
magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), \
screen-wake-lock=(), serial=(), usb=(), xr-spatial-tracking=()";

const NONCE_PLACEHOLDER: &str = "{nonce}";

/// Which headers [`SecurityHeadersLayer`](super::SecurityHeadersLayer) adds, and their values.
/// [`Default`] is [`SecurityHeadersConfig::strict`].
#[derive(Debug, Clone)]
pub struct SecurityHeadersConfig {
    /// Send `Strict-Transport-Security`. On by default; the server turns it off when its
    /// public origin is plain HTTP.
    pub hsts: bool,
    /// Paths (whole segments) whose responses get `Referrer-Policy: no-referrer` (login and
    /// password pages, whose URLs may carry tokens).
    pub no_referrer_prefixes: Vec<String>,
    /// Paths (whole segments) whose responses get `Cache-Control: no-store`.
    pub no_store_prefixes: Vec<String>,
    pub(super) hsts_value: HeaderValue,
    pub(super) referrer_policy: Option<HeaderValue>,
    pub(super) html_csp: Option<CspTemplate>,
    pub(super) other_csp: Option<HeaderValue>,
    pub(super) fixed: Vec<(HeaderName, HeaderValue)>,
}

impl Default for SecurityHeadersConfig {
    fn default() -> Self {
        Self::strict()
    }
}

impl SecurityHeadersConfig {
    /// The strict preset described in the [module docs](super).
    pub fn strict() -> Self {
        let fixed = [
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (X_FRAME_OPTIONS, "DENY"),
            (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
            (HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
            (HeaderName::from_static("permissions-policy"), PERMISSIONS_POLICY),
        ];
        Self {
            hsts: true,
            no_referrer_prefixes: Vec::new(),
            no_store_prefixes: vec!["/api/auth".to_owned()],
            hsts_value: HeaderValue::from_static(HSTS_VALUE),
            referrer_policy: Some(HeaderValue::from_static("strict-origin-when-cross-origin")),
            html_csp: Some(CspTemplate::new(HTML_CSP)),
            other_csp: Some(HeaderValue::from_static(DEFAULT_CSP)),
            fixed: fixed.into_iter().map(|(n, v)| (n, HeaderValue::from_static(v))).collect(),
        }
    }

    /// Sends `Strict-Transport-Security` or not.
    pub fn with_hsts(mut self, on: bool) -> Self {
        self.hsts = on;
        self
    }

    /// Adds a path prefix answered with `Referrer-Policy: no-referrer`.
    pub fn with_no_referrer_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.no_referrer_prefixes.push(prefix.into());
        self
    }

    /// Adds a path prefix answered with `Cache-Control: no-store`.
    pub fn with_no_store_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.no_store_prefixes.push(prefix.into());
        self
    }

    /// Replaces the value of one header. `Strict-Transport-Security` sets the HSTS value (sent
    /// when `hsts` is on), `Referrer-Policy` the value outside the no-referrer prefixes, and
    /// `Content-Security-Policy` the policy of non-HTML responses (see
    /// [`with_html_csp`](Self::with_html_csp) for HTML). Any other name replaces a preset
    /// header or adds a new one, sent where absent.
    ///
    /// # Errors
    /// [`ProtectError::InvalidHeaderValue`] when `value` is not a valid header value.
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Result<Self> {
        let value = HeaderValue::from_str(value).map_err(|source| {
            ProtectError::InvalidHeaderValue { header: name.as_str().to_owned(), source }
        })?;
        if name == STRICT_TRANSPORT_SECURITY {
            self.hsts_value = value;
        } else if name == REFERRER_POLICY {
            self.referrer_policy = Some(value);
        } else if name == CONTENT_SECURITY_POLICY {
            self.other_csp = Some(value);
        } else if let Some(slot) = self.fixed.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.fixed.push((name, value));
        }
        Ok(self)
    }

    /// Replaces the policy of HTML responses. Every `{nonce}` in `template` is replaced by the
    /// response's nonce; the template must contain at least one.
    ///
    /// # Errors
    /// [`ProtectError::InvalidCspTemplate`] without a `{nonce}` or when the result would not
    /// be a valid header value.
    pub fn with_html_csp(mut self, template: &str) -> Result<Self> {
        if !template.contains(NONCE_PLACEHOLDER) {
            return Err(ProtectError::InvalidCspTemplate { reason: "no {nonce} placeholder" });
        }
        if HeaderValue::from_str(&template.replace(NONCE_PLACEHOLDER, "n")).is_err() {
            return Err(ProtectError::InvalidCspTemplate { reason: "not a valid header value" });
        }
        self.html_csp = Some(CspTemplate::new(template));
        Ok(self)
    }

    /// Stops sending one header the layer would add. For the Content-Security-Policy this
    /// drops both the HTML and the non-HTML policy.
    pub fn insecure_without_header(mut self, name: &HeaderName) -> Self {
        if name == STRICT_TRANSPORT_SECURITY {
            self.hsts = false;
        } else if name == REFERRER_POLICY {
            self.referrer_policy = None;
        } else if name == CONTENT_SECURITY_POLICY {
            self.html_csp = None;
            self.other_csp = None;
        } else {
            self.fixed.retain(|(n, _)| n != name);
        }
        self
    }

    /// The headers every response starts from: the fixed ones, HSTS when on, the default
    /// `Referrer-Policy` and the non-HTML policy. Per-response choices and the response's own
    /// headers are laid over a copy of it.
    pub(super) fn base_headers(&self) -> HeaderMap {
        let mut base = HeaderMap::with_capacity(self.fixed.len() + 3);
        for (name, value) in &self.fixed {
            base.insert(name.clone(), value.clone());
        }
        if self.hsts {
            base.insert(STRICT_TRANSPORT_SECURITY, self.hsts_value.clone());
        }
        if let Some(value) = &self.referrer_policy {
            base.insert(REFERRER_POLICY, value.clone());
        }
        if let Some(value) = &self.other_csp {
            base.insert(CONTENT_SECURITY_POLICY, value.clone());
        }
        base
    }

    /// The HTML policy for `nonce`, if one is configured.
    pub(super) fn html_csp_for(&self, nonce: &str) -> Option<HeaderValue> {
        let text = self.html_csp.as_ref()?.fill(nonce);
        // The template was validated; a nonce is base64url unless a handler set its own text.
        // Fall back to the strictest policy.
        Some(HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static(DEFAULT_CSP)))
    }
}

/// An HTML policy cut at its `{nonce}` placeholders once, so each response only joins the
/// pieces around its nonce.
#[derive(Debug, Clone)]
pub(super) struct CspTemplate {
    pieces: Vec<String>,
    fixed_len: usize,
}

impl CspTemplate {
    fn new(template: &str) -> Self {
        let pieces: Vec<String> = template.split(NONCE_PLACEHOLDER).map(str::to_owned).collect();
        let fixed_len = pieces.iter().map(String::len).sum();
        Self { pieces, fixed_len }
    }

    /// The policy text with `nonce` in every placeholder.
    fn fill(&self, nonce: &str) -> String {
        let holes = self.pieces.len().saturating_sub(1);
        let mut out = String::with_capacity(self.fixed_len + holes * nonce.len());
        for (i, piece) in self.pieces.iter().enumerate() {
            if i > 0 {
                out.push_str(nonce);
            }
            out.push_str(piece);
        }
        out
    }
}
