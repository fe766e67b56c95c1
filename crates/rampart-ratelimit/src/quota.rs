//! [`Quota`]: at most `limit` requests per `period`, written `200/60s`.
//!
//! # Text form
//! `<limit>/<count><unit>` with unit `s`, `m`, `h` or `d`: `200/60s`, `50/10s`, `5/1m`,
//! `1000/1h`. [`Display`](std::fmt::Display) writes the largest unit that divides the period
//! exactly, so `200/60s` prints as `200/1m`; parsing that text gives back the same quota.
//! A hand-built quota whose period is not a whole number of seconds prints in milliseconds
//! (`10/1500ms`), which is informative but not accepted by the parser.
//!
//! # Security
//! A zero limit or period, a limit above one request per nanosecond of the period, and periods
//! over 365 days are refused when parsing or calling [`Quota::new`]. The fields stay public for
//! convenience; a quota built by hand that breaks these rules refuses every request (fail
//! closed) rather than dividing by zero.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::RateLimitConfigError;

/// The longest accepted period.
pub const MAX_PERIOD: Duration = Duration::from_secs(365 * 24 * 3600);

/// At most `limit` requests per `period`, with the full `limit` available as a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Quota {
    /// Requests allowed per period (and the largest burst).
    pub limit: u32,
    /// The period.
    pub period: Duration,
}

impl Quota {
    /// A checked quota: `limit` at least 1, `period` non-zero and at most [`MAX_PERIOD`], and
    /// no more than one request per nanosecond.
    pub fn new(limit: u32, period: Duration) -> Result<Self, RateLimitConfigError> {
        let q = Self { limit, period };
        match q.problem() {
            None => Ok(q),
            Some(reason) => Err(RateLimitConfigError::InvalidQuota { text: q.to_string(), reason }),
        }
    }

    /// Whether this quota satisfies the rules of [`Quota::new`].
    pub fn is_valid(&self) -> bool {
        self.problem().is_none()
    }

    fn problem(&self) -> Option<&'static str> {
        if self.limit == 0 {
            Some("the limit must be at least 1")
        } else if self.period.is_zero() {
            Some("the period must not be zero")
        } else if self.period > MAX_PERIOD {
            Some("the period must not exceed 365 days")
        } else if u128::from(self.limit) > self.period.as_nanos() {
            Some("the limit must not exceed one request per nanosecond")
        } else {
            None
        }
    }

    /// The period in nanoseconds (saturating).
    pub fn period_ns(&self) -> u64 {
        u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The GCRA emission interval `T = period / limit` in nanoseconds, rounded up so that the
    /// sustained rate never exceeds `limit` per `period`. Zero for an invalid quota.
    pub fn emission_interval_ns(&self) -> u64 {
        if self.limit == 0 {
            return 0;
        }
        self.period_ns().div_ceil(u64::from(self.limit))
    }

    /// The GCRA tolerance `tau = (limit - 1) * T` in nanoseconds: `period - T` when `limit`
    /// divides the period in nanoseconds (every quota written in whole seconds with a limit
    /// that divides 10^9 x seconds), and otherwise the value that keeps the burst at exactly
    /// `limit` despite the rounding of `T`.
    pub fn tolerance_ns(&self) -> u64 {
        u64::from(self.limit.saturating_sub(1)).saturating_mul(self.emission_interval_ns())
    }

    /// The period in whole seconds, rounded up (the `w` parameter of `RateLimit-Policy`).
    pub fn window_secs(&self) -> u64 {
        ceil_secs(self.period)
    }
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.period.as_secs();
        if self.period.subsec_nanos() != 0 || secs == 0 {
            // Not expressible in whole seconds: only a hand-built quota can get here.
            return write!(f, "{}/{}ms", self.limit, self.period.as_millis());
        }
        let (n, unit) = [(86_400, 'd'), (3_600, 'h'), (60, 'm')]
            .into_iter()
            .find(|(size, _)| secs % size == 0)
            .map_or((secs, 's'), |(size, unit)| (secs / size, unit));
        write!(f, "{}/{n}{unit}", self.limit)
    }
}

impl FromStr for Quota {
    type Err = RateLimitConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| RateLimitConfigError::InvalidQuota { text: text.to_owned(), reason };
        let (limit, period) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("expected LIMIT/PERIOD, e.g. 200/60s"))?;
        let limit: u32 =
            digits(limit.trim()).ok_or_else(|| bad("the limit must be a whole number"))?;
        let period = period.trim();
        let unit_at = period
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| bad("the period needs a unit: s, m, h or d"))?;
        let (count, unit) = period.split_at(unit_at);
        let count: u64 =
            digits(count).ok_or_else(|| bad("the period must start with a whole number"))?;
        let unit_secs: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(bad("unknown period unit; use s, m, h or d")),
        };
        let secs = count
            .checked_mul(unit_secs)
            .ok_or_else(|| bad("the period must not exceed 365 days"))?;
        let q = Quota { limit, period: Duration::from_secs(secs) };
        match q.problem() {
            None => Ok(q),
            Some(reason) => Err(bad(reason)),
        }
    }
}

/// Parses ASCII digits only (no sign, no spaces), at most 20 of them.
fn digits<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl TryFrom<String> for Quota {
    type Error = RateLimitConfigError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Quota> for String {
    fn from(q: Quota) -> Self {
        q.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: u32, secs: u64) -> Quota {
        Quota { limit, period: Duration::from_secs(secs) }
    }

    #[test]
    fn parses_table_of_valid_quotas() {
        let cases = [
            ("200/60s", q(200, 60)),
            ("50/10s", q(50, 10)),
            ("5/1m", q(5, 60)),
            ("1000/1h", q(1000, 3600)),
            ("3/2d", q(3, 2 * 86_400)),
            (" 7 / 15s ", q(7, 15)),
            ("1/365d", q(1, 365 * 86_400)),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Quota>().unwrap(), want, "{text}");
        }
    }

    #[test]
    fn rejects_table_of_invalid_quotas() {
        for text in [
            "",
            "200",
            "/60s",
            "200/",
            "200/60",
            "200/s",
            "0/60s",
            "200/0s",
            "-1/60s",
            "+5/60s",
            "200/60x",
            "200/60 s",
            "200/60S",
            "2.5/60s",
            "200/1.5m",
            "abc/def",
            "200/60s/1",
            "99999999999/1s",
            "1/366d",
            "1/99999999999999999999d",
            "5000000000/1s",
            "1/60ms",
        ] {
            assert!(text.parse::<Quota>().is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn displays_largest_exact_unit_and_round_trips() {
        let cases = [
            ("200/60s", "200/1m"),
            ("50/10s", "50/10s"),
            ("1000/1h", "1000/1h"),
            ("10/90s", "10/90s"),
            ("10/120m", "10/2h"),
            ("1/48h", "1/2d"),
        ];
        for (text, shown) in cases {
            let quota: Quota = text.parse().unwrap();
            assert_eq!(quota.to_string(), shown);
            assert_eq!(shown.parse::<Quota>().unwrap(), quota);
        }
    }

    #[test]
    fn new_rejects_zero_and_excessive_values() {
        assert!(Quota::new(0, Duration::from_secs(1)).is_err());
        assert!(Quota::new(1, Duration::ZERO).is_err());
        assert!(Quota::new(1, MAX_PERIOD + Duration::from_secs(1)).is_err());
        assert!(Quota::new(11, Duration::from_nanos(10)).is_err());
        assert!(Quota::new(10, Duration::from_millis(1500)).is_ok());
        assert!(!q(0, 1).is_valid());
    }

    #[test]
    fn gcra_parameters_never_allow_more_than_the_limit() {
        let quota = Quota { limit: 3, period: Duration::from_nanos(10) };
        assert_eq!(quota.emission_interval_ns(), 4);
        assert_eq!(quota.tolerance_ns(), 8);
        let quota = q(200, 60);
        assert_eq!(quota.emission_interval_ns(), 300_000_000);
        assert_eq!(quota.tolerance_ns(), 59_700_000_000);
        assert_eq!(quota.window_secs(), 60);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(text in ".{0,40}") {
            let _ = text.parse::<Quota>();
        }

        #[test]
        fn whole_second_quotas_round_trip(limit in 1u32..1_000_000, secs in 1u64..=365 * 86_400) {
            let quota = Quota::new(limit, Duration::from_secs(secs)).unwrap();
            proptest::prop_assert_eq!(quota.to_string().parse::<Quota>().unwrap(), quota);
        }

        #[test]
        fn parsed_quotas_are_always_valid(limit in 0u32..10, n in 0u64..1000, unit in "[smhdx]") {
            if let Ok(quota) = format!("{limit}/{n}{unit}").parse::<Quota>() {
                proptest::prop_assert!(quota.is_valid());
                proptest::prop_assert!(quota.emission_interval_ns() > 0);
            }
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        let quota: Quota = serde_json::from_str("\"5/1m\"").unwrap();
        assert_eq!(quota, q(5, 60));
        assert_eq!(serde_json::to_string(&quota).unwrap(), "\"5/1m\"");
        assert!(serde_json::from_str::<Quota>("\"0/1m\"").is_err());
    }
}
