//! The stored session record and the timeout settings.
//!
//! # Security
//! A record holds no credential: the session id is never part of it. It carries a public
//! `handle` (random, 16 bytes) that APIs use to list and revoke sessions. Backends that persist
//! records outside the process encrypt them (the Redis store seals them with the keyring).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Everything a store keeps about one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Public identifier used to list and revoke sessions (random, base64url). Never the id.
    pub handle: String,
    /// The signed-in user.
    pub user_id: String,
    /// When the session was created (login time).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the session was last used, as the store last recorded it (written at most once per
    /// touch interval).
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// The session ends at this time however active it is.
    #[serde(with = "time::serde::rfc3339")]
    pub absolute_expires_at: OffsetDateTime,
    /// Client address at login.
    pub ip: Option<String>,
    /// Client `User-Agent` at login (truncated).
    pub user_agent: Option<String>,
    /// How the user authenticated (`password`, `password+totp`, …).
    pub auth_method: String,
    /// Application data.
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// Session lifetimes.
///
/// Idle expiry is accurate to within `touch_interval`: the store writes `last_seen_at` at most
/// once per interval, so a session ends between `idle - touch_interval` and `idle` after its
/// last use — never later than `idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimeouts {
    /// The session ends after this long unused. Default 30 minutes.
    pub idle: Duration,
    /// The session ends this long after login, however active. Default 12 hours.
    pub absolute: Duration,
    /// The store's `last_seen_at` is written at most this often. Default 60 seconds.
    pub touch_interval: Duration,
}

/// The longest timeout accepted; longer values are clamped to it.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(400 * 24 * 3600);

impl Default for SessionTimeouts {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
            touch_interval: Duration::from_secs(60),
        }
    }
}

impl SessionTimeouts {
    /// The timeouts made consistent: every value at most [`MAX_TIMEOUT`], the idle timeout at
    /// least one second and at most the absolute timeout, the touch interval below the idle
    /// timeout.
    pub fn normalized(self) -> Self {
        let absolute = self.absolute.clamp(Duration::from_secs(1), MAX_TIMEOUT);
        let idle = self.idle.clamp(Duration::from_secs(1), absolute);
        let touch_interval = self.touch_interval.min(idle / 2);
        Self { idle, absolute, touch_interval }
    }
}

/// A std duration as a `time` duration (saturating; callers clamp to [`MAX_TIMEOUT`]).
pub(crate) fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// `t + d`, or `t` if that overflows (only with absurd durations, which are clamped before).
pub(crate) fn add(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    t.checked_add(to_time(d)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_30_minutes_12_hours_and_60_seconds() {
        let t = SessionTimeouts::default();
        assert_eq!(t.idle, Duration::from_secs(1800));
        assert_eq!(t.absolute, Duration::from_secs(43_200));
        assert_eq!(t.touch_interval, Duration::from_secs(60));
        assert_eq!(t.normalized(), t);
    }

    #[test]
    fn normalizing_keeps_idle_below_absolute_and_touch_below_idle() {
        let t = SessionTimeouts {
            idle: Duration::from_secs(7200),
            absolute: Duration::from_secs(3600),
            touch_interval: Duration::from_secs(7200),
        }
        .normalized();
        assert_eq!(t.idle, Duration::from_secs(3600));
        assert_eq!(t.touch_interval, Duration::from_secs(1800));
        let huge = SessionTimeouts { absolute: Duration::MAX, ..Default::default() }.normalized();
        assert_eq!(huge.absolute, MAX_TIMEOUT);
    }

    #[test]
    fn records_round_trip_through_json() {
        let now = time::macros::datetime!(2030-01-01 00:00:00 UTC);
        let mut data = serde_json::Map::new();
        data.insert("theme".into(), serde_json::json!("dark"));
        let r = SessionRecord {
            handle: "h".into(),
            user_id: "u".into(),
            created_at: now,
            last_seen_at: now,
            absolute_expires_at: now + time::Duration::hours(12),
            ip: Some("192.0.2.1".into()),
            user_agent: None,
            auth_method: "password".into(),
            data,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("2030-01-01T00:00:00Z"), "{json}");
        assert_eq!(serde_json::from_str::<SessionRecord>(&json).unwrap(), r);
    }
}
