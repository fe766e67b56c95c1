//! What an audit event is: its kind, outcome, who and what it concerns, and its place in the
//! chain.
//!
//! # Security
//! - Events hold identifiers, never credentials. [`crate::NewEvent`] strips detail keys that look
//!   secret before an event is sealed; see [`crate::is_secret_key`].
//! - Timestamps are UTC with microsecond precision. Their text form is fixed
//!   (`2030-01-01T00:00:00.000000Z`), so a record exported as JSON and read back hashes the same.
//! - `instance`, `seq`, `prev_hash` and `hash` tie each event to its predecessor; changing any
//!   field of a stored event breaks the chain (see [`verify`](mod@crate::verify)).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::AuditError;

macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The snake_case name used in JSON and in the canonical encoding.
            pub const fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )+ }
            }
        }

        impl FromStr for $name {
            type Err = AuditError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(AuditError::UnknownName),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// What happened. Serialized as its snake_case name.
    #[non_exhaustive]
    pub enum EventKind {
        /// A user signed in.
        UserLogin => "user_login",
        /// A sign-in attempt failed (unknown user or wrong password).
        LoginFailed => "login_failed",
        /// An account or client was locked out after repeated failures.
        LoginLocked => "login_locked",
        /// A user signed out.
        UserLogout => "user_logout",
        /// A session ended after being idle too long.
        SessionExpiredIdle => "session_expired_idle",
        /// A session ended at its maximum age.
        SessionExpiredMaxAge => "session_expired_max_age",
        /// A request carried a session or token that is unknown, expired or malformed.
        InvalidToken => "invalid_token",
        /// A password was changed.
        PasswordChanged => "password_changed",
        /// Sessions of a user were revoked.
        SessionsRevoked => "sessions_revoked",
        /// First-run setup created the first administrator.
        SetupCompleted => "setup_completed",
        /// A user was created.
        UserCreated => "user_created",
        /// A user's role changed.
        UserRoleChanged => "user_role_changed",
        /// A user was disabled.
        UserDisabled => "user_disabled",
        /// A user was deleted.
        UserDeleted => "user_deleted",
        /// An API key was created.
        ApiKeyCreated => "api_key_created",
        /// An API key was deleted.
        ApiKeyDeleted => "api_key_deleted",
        /// A request presented an API key that is unknown or revoked.
        ApiKeyAuthFailed => "api_key_auth_failed",
        /// An authenticated caller was refused by authorization.
        AccessDenied => "access_denied",
        /// A request failed CSRF checks.
        CsrfRejected => "csrf_rejected",
        /// A request was refused by a rate limit.
        RateLimited => "rate_limited",
        /// A user stored third-party tokens in the vault.
        VaultTokensStored => "vault_tokens_stored",
        /// A user removed their third-party tokens from the vault.
        VaultTokensDeleted => "vault_tokens_deleted",
        /// The provider did not refresh a user's expired access token.
        VaultRefreshFailed => "vault_refresh_failed",
        /// A signed checkpoint of the chain (written only by [`crate::Chain::checkpoint`]).
        AuditCheckpoint => "audit_checkpoint",
        /// An admin turned values into pseudonyms (the purpose and how many; never the values).
        Pseudonymized => "pseudonymized",
        /// An admin read the audit log: a page of a query or a verification of the chains.
        AuditRead => "audit_read",
    }
}

named_enum! {
    /// How it ended. Serialized as its snake_case name.
    pub enum Outcome {
        /// The action happened.
        Success => "success",
        /// The action was attempted and failed (bad credentials, invalid input, error).
        Failure => "failure",
        /// The action was refused by policy (authorization, CSRF, rate limit).
        Denied => "denied",
    }
}

/// Who acted, as far as is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The user's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user's email (or the email typed into a failed sign-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// What the action was applied to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// The kind of resource, e.g. `user` or `api_key`. Serialized as `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource's id.
    pub id: String,
}

/// One sealed audit event: what callers filled in plus the chain fields.
///
/// Build one with [`crate::NewEvent`] and [`crate::Chain::seal`]; stores deserialize them back
/// from their JSON form. JSON omits absent optional fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// A random, unique id (base64url).
    pub id: String,
    /// When it was sealed: UTC, microsecond precision, `YYYY-MM-DDTHH:MM:SS.ffffffZ` in JSON.
    #[serde(with = "ts_micros")]
    pub ts: OffsetDateTime,
    /// The instance whose chain holds the event.
    pub instance: String,
    /// Position in the instance's chain, from 1.
    pub seq: u64,
    /// What happened.
    pub event: EventKind,
    /// How it ended.
    pub outcome: Outcome,
    /// Who acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// The public handle of the session involved (never the session id itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The client's user agent, at most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The request id, for correlation with the operational log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What the action concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Free-form, non-secret context.
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// SHA-256 of the previous event in the chain, hex; 64 zeros for the first.
    pub prev_hash: String,
    /// SHA-256 of `prev_hash` bytes and the canonical encoding, hex.
    pub hash: String,
}

impl AuditEvent {
    /// The timestamp as microseconds since the Unix epoch (what stores index on).
    pub fn ts_micros(&self) -> i64 {
        to_micros(self.ts)
    }
}

/// Microseconds since the Unix epoch, saturating outside the `i64` range.
pub(crate) fn to_micros(ts: OffsetDateTime) -> i64 {
    let micros = ts.unix_timestamp_nanos().div_euclid(1000);
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

/// The instant `micros` microseconds after the Unix epoch, in UTC.
pub fn ts_from_micros(micros: i64) -> Result<OffsetDateTime, AuditError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|_| AuditError::TimestampOutOfRange)
}

/// `ts` in UTC with the sub-microsecond part dropped.
pub(crate) fn truncate_to_micros(ts: OffsetDateTime) -> OffsetDateTime {
    let utc = ts.to_offset(time::UtcOffset::UTC);
    let nanos = utc.nanosecond();
    utc.replace_nanosecond(nanos - nanos % 1000).unwrap_or(utc)
}

/// Serde for timestamps in the fixed audit format.
///
/// Writing always yields `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, six fractional digits). Reading
/// accepts any RFC 3339 time and converts it to UTC, but refuses sub-microsecond precision, which
/// the canonical encoding could not represent.
pub mod ts_micros {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::format_description::BorrowedFormatItem;
    use time::macros::format_description;
    use time::{OffsetDateTime, UtcOffset};

    const FORMAT: &[BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

    /// Formats `ts` in the fixed audit format.
    pub fn format(ts: OffsetDateTime) -> Result<String, time::error::Format> {
        ts.to_offset(UtcOffset::UTC).format(FORMAT)
    }

    /// Parses an RFC 3339 time with at most microsecond precision, returned in UTC.
    pub fn parse(text: &str) -> Option<OffsetDateTime> {
        let ts = OffsetDateTime::parse(text, &Rfc3339).ok()?.to_offset(UtcOffset::UTC);
        (ts.nanosecond() % 1000 == 0).then_some(ts)
    }

    /// Serializes in the fixed audit format.
    pub fn serialize<S: Serializer>(ts: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = format(*ts).map_err(S::Error::custom)?;
        s.serialize_str(&text)
    }

    /// Deserializes any RFC 3339 time with at most microsecond precision.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&text).ok_or_else(|| {
            D::Error::custom("expected an RFC 3339 timestamp with at most microsecond precision")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn every_event_kind_round_trips_through_its_name() {
        assert_eq!(EventKind::ALL.len(), 26);
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), *kind);
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(EventKind::SessionExpiredMaxAge.as_str(), "session_expired_max_age");
        assert!("UserLogin".parse::<EventKind>().is_err());
    }

    #[test]
    fn outcomes_use_lower_case_names() {
        let names: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names, ["success", "failure", "denied"]);
        assert_eq!("denied".parse::<Outcome>().unwrap(), Outcome::Denied);
    }

    #[test]
    fn timestamps_have_six_fractional_digits_and_z() {
        let ts = datetime!(2030-01-02 03:04:05.000007 UTC);
        assert_eq!(ts_micros::format(ts).unwrap(), "2030-01-02T03:04:05.000007Z");
        let whole = datetime!(2030-01-02 03:04:05 +02:00);
        assert_eq!(ts_micros::format(whole).unwrap(), "2030-01-02T01:04:05.000000Z");
    }

    #[test]
    fn parsing_refuses_sub_microsecond_precision_and_normalizes_to_utc() {
        assert!(ts_micros::parse("2030-01-02T03:04:05.0000001Z").is_none());
        let ts = ts_micros::parse("2030-01-02T05:04:05.5+02:00").unwrap();
        assert_eq!(ts, datetime!(2030-01-02 03:04:05.5 UTC));
        assert_eq!(ts.offset(), time::UtcOffset::UTC);
    }

    #[test]
    fn truncation_drops_nanoseconds_only() {
        let ts = datetime!(2030-01-02 03:04:05.123456789 UTC);
        assert_eq!(truncate_to_micros(ts), datetime!(2030-01-02 03:04:05.123456 UTC));
        assert_eq!(to_micros(truncate_to_micros(ts)) % 1_000_000, 123_456);
        assert_eq!(
            ts_from_micros(to_micros(truncate_to_micros(ts))).unwrap(),
            truncate_to_micros(ts)
        );
    }

    #[test]
    fn resource_kind_is_serialized_as_type() {
        let r = Resource { kind: "user".into(), id: "u1".into() };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"type":"user","id":"u1"}"#);
    }
}
