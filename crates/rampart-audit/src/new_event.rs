//! [`NewEvent`]: what a caller fills in before the chain seals an event.
//!
//! # Security
//! - Detail keys that look secret are dropped, at any depth: any key containing `password`,
//!   `token`, `secret`, `key`, `cookie` or `authorization`, ignoring case (see
//!   [`is_secret_key`]). The rule is deliberately broad: `api_key_id` is dropped too, so put
//!   identifiers of keys in [`NewEvent::resource`] instead. A dropped key is reported at WARN on
//!   target `rampart::audit` by name (never by value) so the caller can be fixed.
//! - The user agent is cut to 256 characters and the request id to 128, so a client cannot grow
//!   the log with huge headers.
//! - `audit_checkpoint` is reserved: sinks refuse it from callers (see [`NewEvent::check`]).

use serde_json::{Map, Value};

use crate::error::AuditError;
use crate::event::{Actor, EventKind, Outcome, Resource};

/// Longest user agent kept, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 256;
/// Longest request id kept, in characters.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

const SECRET_WORDS: [&str; 6] = ["password", "token", "secret", "key", "cookie", "authorization"];

/// Whether a detail key looks like it names a secret, and so is never recorded.
///
/// True when the key contains, ignoring ASCII case, any of `password`, `token`, `secret`, `key`,
/// `cookie` or `authorization`.
pub fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// An event as the caller describes it, before it has an id, time and place in a chain.
///
/// ```
/// use rampart_audit::{EventKind, NewEvent};
///
/// let ev = NewEvent::failure(EventKind::LoginFailed)
///     .email("ann@example.com")
///     .ip("203.0.113.9")
///     .detail("reason", "bad_password")
///     .detail("password", "hunter2"); // dropped: looks secret
/// assert!(ev.details().contains_key("reason"));
/// assert!(!ev.details().contains_key("password"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct NewEvent {
    pub(crate) kind: EventKind,
    pub(crate) outcome: Outcome,
    pub(crate) actor: Option<Actor>,
    pub(crate) session: Option<String>,
    pub(crate) ip: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) resource: Option<Resource>,
    pub(crate) details: Map<String, Value>,
}

impl NewEvent {
    /// An event of `kind` that ended with `outcome`.
    pub fn new(kind: EventKind, outcome: Outcome) -> Self {
        Self {
            kind,
            outcome,
            actor: None,
            session: None,
            ip: None,
            user_agent: None,
            request_id: None,
            resource: None,
            details: Map::new(),
        }
    }

    /// An event that succeeded.
    pub fn success(kind: EventKind) -> Self {
        Self::new(kind, Outcome::Success)
    }

    /// An event that failed.
    pub fn failure(kind: EventKind) -> Self {
        Self::new(kind, Outcome::Failure)
    }

    /// An event refused by policy.
    pub fn denied(kind: EventKind) -> Self {
        Self::new(kind, Outcome::Denied)
    }

    /// Sets the whole actor.
    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = Some(actor);
        self
    }

    /// Sets the acting user's id.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.actor.get_or_insert_with(Actor::default).user_id = Some(user_id.into());
        self
    }

    /// Sets the acting user's email.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.actor.get_or_insert_with(Actor::default).email = Some(email.into());
        self
    }

    /// Sets the session's public handle. Never pass the session id itself.
    pub fn session(mut self, handle: impl Into<String>) -> Self {
        self.session = Some(handle.into());
        self
    }

    /// Sets the client address.
    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }

    /// Sets the user agent, cut to [`MAX_USER_AGENT_CHARS`] characters.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(truncate_chars(user_agent.into(), MAX_USER_AGENT_CHARS));
        self
    }

    /// Sets the request id, cut to [`MAX_REQUEST_ID_CHARS`] characters.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(truncate_chars(request_id.into(), MAX_REQUEST_ID_CHARS));
        self
    }

    /// Sets what the action concerned, e.g. `("user", "u_42")`.
    pub fn resource(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.resource = Some(Resource { kind: kind.into(), id: id.into() });
        self
    }

    /// Adds one detail. A key that looks secret is dropped, as are secret-looking keys inside
    /// `value` (see [`is_secret_key`]).
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        let key = key.into();
        if is_secret_key(&key) {
            warn_dropped(&key);
            return self;
        }
        let mut value = value.into();
        strip_secret_keys(&mut value);
        self.details.insert(key, value);
        self
    }

    /// Adds every entry of `details`, with the same filtering as [`NewEvent::detail`].
    pub fn details_from(mut self, details: Map<String, Value>) -> Self {
        for (k, v) in details {
            self = self.detail(k, v);
        }
        self
    }

    /// What happened.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// How it ended.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The details recorded so far (already filtered).
    pub fn details(&self) -> &Map<String, Value> {
        &self.details
    }

    /// Refuses the kinds callers may not append: `audit_checkpoint`, which only
    /// [`crate::Chain::checkpoint`] writes. Every [`crate::AuditSink`] calls this.
    pub fn check(&self) -> Result<(), AuditError> {
        if self.kind == EventKind::AuditCheckpoint {
            return Err(AuditError::ReservedKind);
        }
        Ok(())
    }
}

fn warn_dropped(key: &str) {
    tracing::warn!(target: "rampart::audit", key, "dropped an audit detail whose key looks secret");
}

fn strip_secret_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| {
                let keep = !is_secret_key(k);
                if !keep {
                    warn_dropped(k);
                }
                keep
            });
            map.values_mut().for_each(strip_secret_keys);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_secret_keys),
        _ => {}
    }
}

fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((cut, _)) = s.char_indices().nth(max) {
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_looking_keys_are_detected_ignoring_case() {
        for k in [
            "password",
            "NewPassword",
            "csrf_token",
            "SECRET",
            "api_key",
            "Set-Cookie",
            "Authorization",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["reason", "role", "attempts", "covers_seq", "mac"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn details_drop_secret_keys_at_any_depth() {
        let ev = NewEvent::success(EventKind::UserCreated)
            .detail("role", "admin")
            .detail("Password", "x")
            .detail(
                "nested",
                json!({"ok": 1, "session_token": "t", "list": [{"cookie": "c", "n": 2}]}),
            );
        assert_eq!(
            serde_json::Value::Object(ev.details().clone()),
            json!({"role": "admin", "nested": {"ok": 1, "list": [{"n": 2}]}})
        );
    }

    #[test]
    fn details_from_filters_every_entry() {
        let mut m = Map::new();
        m.insert("authorization".into(), json!("Bearer x"));
        m.insert("path".into(), json!("/admin"));
        let ev = NewEvent::denied(EventKind::AccessDenied).details_from(m);
        assert_eq!(ev.details().len(), 1);
        assert_eq!(ev.details()["path"], "/admin");
    }

    #[test]
    fn user_agent_is_cut_to_256_characters_on_a_char_boundary() {
        let ua = "é".repeat(300);
        let ev = NewEvent::success(EventKind::UserLogin).user_agent(ua);
        let kept = ev.user_agent.unwrap();
        assert_eq!(kept.chars().count(), MAX_USER_AGENT_CHARS);
        let short = NewEvent::success(EventKind::UserLogin).user_agent("curl/8");
        assert_eq!(short.user_agent.as_deref(), Some("curl/8"));
    }

    #[test]
    fn user_and_email_fill_one_actor() {
        let ev = NewEvent::success(EventKind::UserLogin).user("u1").email("a@b.c");
        assert_eq!(
            ev.actor.as_ref(),
            Some(&Actor { user_id: Some("u1".into()), email: Some("a@b.c".into()) })
        );
    }

    #[test]
    fn checkpoint_kind_is_reserved() {
        assert!(matches!(
            NewEvent::success(EventKind::AuditCheckpoint).check(),
            Err(AuditError::ReservedKind)
        ));
        assert!(NewEvent::success(EventKind::UserLogin).check().is_ok());
    }
}
