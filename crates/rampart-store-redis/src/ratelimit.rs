//! Rate limits and login regulation shared by every instance: [`RedisRateLimitStore`] and
//! [`RedisRegulationStore`].
//!
//! Every operation is **one round trip and one command**: a Lua script run with `EVALSHA`
//! (loaded with `SCRIPT LOAD` the first time a server does not know it), or a plain `DEL`.
//! Scripts run atomically on the server, so instances never race each other. Redis 5 or later
//! is required (scripts that read `TIME` and then write rely on effect replication).
//!
//! # Rate limits: the GCRA script
//! All quotas of a key live in one hash, `{prefix}{key}`, with one field per quota: field `"0"`
//! holds the theoretical arrival time (TAT) of the first quota, `"1"` the second, and so on,
//! each as decimal nanoseconds since the Unix epoch, like the memory store's slots. One check
//! sends `EVALSHA` with that key and, per quota, the emission interval `T` and tolerance `tau`
//! in nanoseconds (`0 0` for an invalid quota, which refuses). The script:
//!
//! 1. reads the time from Redis (`TIME`), so all instances share one clock and a skewed
//!    instance clock changes nothing;
//! 2. reads every TAT with one `HMGET`;
//! 3. applies [`gcra::evaluate`] step by step: `tat = clamp(stored or now, now, now + tau + T)`,
//!    admitted when `tat - now <= tau`;
//! 4. only if **every** quota admits: writes `tat + T` for each quota with one `HSET` and sets
//!    `PEXPIRE` to when the latest new TAT passes (after which the key carries no information).
//!    A refused request writes nothing, so it consumes nothing;
//! 5. returns the admission flag, the time it used and the TATs it read.
//!
//! The store then calls [`gcra::evaluate`] itself on that time and those TATs to build the
//! [`Decision`] (remaining, reset and retry-after per quota), so the answer is exactly the
//! memory store's for the same state; a disagreement with the script's flag is reported as
//! [`RateLimitError::InvalidState`].
//!
//! ## Precision
//! Lua numbers are doubles, exact only up to 2^53, and nanosecond timestamps are near 2^61.
//! The script therefore computes on pairs `(seconds, nanoseconds)`, each part an exact integer
//! in a double, with explicit carries: the arithmetic is exact to the nanosecond for every
//! value a quota allows (periods up to 365 days). The clock itself has the microsecond
//! resolution of `TIME`. Stored values that are not 1 to 19 decimal digits are treated as
//! absent (a fresh key).
//!
//! # Login regulation
//! [`RedisRegulationStore`] keeps each key of [`RegulationStore`] under `{prefix}{key}`:
//! - a failure counter is a string: `incr_failure` runs `INCR`, then sets `PEXPIRE window`
//!   when the key has no expiry (the first failure starts the window; a counter that somehow
//!   lost its expiry gets one back), and returns the count and `PTTL`; `failures` reads `GET`
//!   and `PTTL` together;
//! - a ban is a hash `{level, until}` where `until` is Redis time in microseconds; the key
//!   expires after `max(remember_for, ban_for)`, and `ban` computes the time left from `TIME`;
//! - `remove` is one `DEL`.
//!
//! # Security
//! - Time comes from Redis, never from the instances, and every decision is one atomic
//!   script: concurrent instances cannot both spend the last unit of a quota.
//! - Keys contain whatever the caller passes; the rate-limit layer and the login regulator
//!   pass client addresses, user ids and keyed hashes of account names, never a credential.
//! - Any Redis failure (connection, timeout, error reply) becomes
//!   [`RateLimitError::Unavailable`] with the Redis error as its source; wrap the store in a
//!   [`FallbackStore`](rampart_ratelimit::FallbackStore) to keep limiting per process during
//!   an outage. Login regulation fails closed on such errors.
//! - Anyone able to write to Redis can reset or forge these limits; protect Redis with a
//!   password or ACL user and a private network, as for sessions.
//!
//! [`gcra::evaluate`]: rampart_ratelimit::gcra::evaluate

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use rampart_ratelimit::{
    gcra, BanState, Decision, FailureCount, Quota, RateLimitError, RateLimitStore, RegulationStore,
};
use redis::Script;

use crate::conn::{RedisError, RedisHandle};

/// The GCRA script; see the module docs. `KEYS[1]` is the hash, `ARGV` holds `T, tau` per
/// quota in nanoseconds. Returns `{allowed ("1"/"0"), now, tat_0 or "", tat_1 or "", ...}`.
const GCRA_LUA: &str = r"
local B = 1000000000
local function parse(s)
  if type(s) ~= 'string' or #s == 0 or #s > 19 or s:find('%D') then return nil end
  local n = #s
  if n <= 9 then return {0, tonumber(s)} end
  return {tonumber(s:sub(1, n - 9)), tonumber(s:sub(n - 8))}
end
local function add(a, b)
  local lo = a[2] + b[2]
  if lo >= B then return {a[1] + b[1] + 1, lo - B} end
  return {a[1] + b[1], lo}
end
local function sub(a, b)
  local lo = a[2] - b[2]
  if lo < 0 then return {a[1] - b[1] - 1, lo + B} end
  return {a[1] - b[1], lo}
end
local function lt(a, b)
  return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])
end
local function str(a)
  if a[1] == 0 then return string.format('%.0f', a[2]) end
  return string.format('%.0f%09.0f', a[1], a[2])
end

local t = redis.call('TIME')
local now = {tonumber(t[1]), tonumber(t[2]) * 1000}
local n = math.floor(#ARGV / 2)
if n == 0 then return {'1', str(now)} end
local fields = {}
for i = 1, n do fields[i] = tostring(i - 1) end
local stored = redis.call('HMGET', KEYS[1], unpack(fields))
local out = {'1', str(now)}
local allowed = true
local writes = {}
local longest = {0, 0}
for i = 1, n do
  local T, tau, s = parse(ARGV[2 * i - 1]), parse(ARGV[2 * i]), parse(stored[i])
  out[i + 2] = s and str(s) or ''
  if not T or not tau or (T[1] == 0 and T[2] == 0) then
    allowed = false
  else
    local tat = s or now
    if lt(tat, now) then tat = now end
    local cap = add(now, add(tau, T))
    if lt(cap, tat) then tat = cap end
    if lt(tau, sub(tat, now)) then allowed = false end
    local nxt = add(tat, T)
    writes[#writes + 1] = fields[i]
    writes[#writes + 1] = str(nxt)
    local ahead = sub(nxt, now)
    if lt(longest, ahead) then longest = ahead end
  end
end
if not allowed then
  out[1] = '0'
  return out
end
redis.call('HSET', KEYS[1], unpack(writes))
local ms = longest[1] * 1000 + math.ceil(longest[2] / 1000000)
if ms < 1 then ms = 1 end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ms))
return out
";

/// `INCR`, expiry on the first failure, then `{count, pttl}`. `ARGV[1]`: the window in ms.
const INCR_FAILURE_LUA: &str = r"
local c = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {c, ttl}
";

/// `GET` and `PTTL` atomically: nil, or `{count (-1 if not a number), pttl}`.
const FAILURES_LUA: &str = r"
local c = redis.call('GET', KEYS[1])
if not c then return false end
return {tonumber(c) or -1, redis.call('PTTL', KEYS[1])}
";

/// A ban's level and microseconds left: nil, or `{level (-1 if invalid), left}`.
const BAN_LUA: &str = r"
local v = redis.call('HMGET', KEYS[1], 'level', 'until')
if not v[1] then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local left = (tonumber(v[2]) or 0) - now
if left < 0 then left = 0 end
return {tonumber(v[1]) or -1, left}
";

/// Stores a ban. `ARGV`: level, ban length in microseconds, key expiry in milliseconds.
const SET_BAN_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = string.format('%.0f', now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'level', ARGV[1], 'until', untl)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Longest duration sent to a script (100 years), so that Redis time plus it stays an exact
/// integer in a Lua double and within `PEXPIRE`'s range.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn unavailable(error: RedisError) -> RateLimitError {
    RateLimitError::unavailable(error)
}

fn invalid(detail: &'static str) -> RateLimitError {
    RateLimitError::InvalidState { detail }
}

/// A [`RateLimitStore`] on Redis: one `EVALSHA` per check. See the [module docs](self).
#[derive(Clone)]
pub struct RedisRateLimitStore {
    handle: RedisHandle,
    prefix: String,
    gcra: Script,
}

impl RedisRateLimitStore {
    /// A store keeping the state of `key` in the hash `{prefix}{key}`.
    pub fn new(handle: RedisHandle, prefix: impl Into<String>) -> Self {
        Self { handle, prefix: prefix.into(), gcra: Script::new(GCRA_LUA) }
    }

    /// The Redis key holding the TATs of `key`.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

impl fmt::Debug for RedisRateLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimitStore")
            .field("prefix", &self.prefix)
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// The script's answer: admitted, the time it used, and the TATs it read.
#[derive(Debug, PartialEq, Eq)]
struct GcraReply {
    allowed: bool,
    now_ns: u64,
    tats: Vec<Option<u64>>,
}

fn parse_gcra_reply(reply: &[String], quotas: usize) -> Result<GcraReply, RateLimitError> {
    let [allowed, now, tats @ ..] = reply else {
        return Err(invalid("rate-limit script reply too short"));
    };
    if tats.len() != quotas {
        return Err(invalid("rate-limit script returned a wrong number of TATs"));
    }
    let allowed = match allowed.as_str() {
        "1" => true,
        "0" => false,
        _ => return Err(invalid("rate-limit script returned an invalid flag")),
    };
    let now_ns = now.parse().map_err(|_| invalid("rate-limit script returned an invalid time"))?;
    let tats = tats
        .iter()
        .map(|tat| match tat.as_str() {
            "" => Ok(None),
            digits => digits.parse().map(Some),
        })
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("rate-limit script returned an invalid TAT"))?;
    Ok(GcraReply { allowed, now_ns, tats })
}

/// The `T, tau` argument pair of a quota; `0, 0` marks an invalid quota, which refuses.
fn gcra_args(quota: &Quota) -> [u64; 2] {
    if quota.is_valid() {
        [quota.emission_interval_ns(), quota.tolerance_ns()]
    } else {
        [0, 0]
    }
}

/// Builds the decision from the script's reply, checking that both sides agree.
fn decide(reply: &GcraReply, quotas: &[Quota]) -> Result<Decision, RateLimitError> {
    let (decision, _) = gcra::evaluate(reply.now_ns, &reply.tats, quotas);
    if decision.allowed == reply.allowed {
        Ok(decision)
    } else {
        Err(invalid("rate-limit script and GCRA disagree"))
    }
}

#[async_trait]
impl RateLimitStore for RedisRateLimitStore {
    async fn check(&self, key: &str, quotas: &[Quota]) -> Result<Decision, RateLimitError> {
        if quotas.is_empty() {
            return Ok(Decision::unlimited());
        }
        let mut invocation = self.gcra.prepare_invoke();
        invocation.key(self.redis_key(key));
        for quota in quotas {
            invocation.arg(&gcra_args(quota)[..]);
        }
        let mut conn = self.handle.manager();
        let reply: Vec<String> = self
            .handle
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await
            .map_err(unavailable)?;
        decide(&parse_gcra_reply(&reply, quotas.len())?, quotas)
    }
}

/// A [`RegulationStore`] on Redis: one command per method. See the [module docs](self).
#[derive(Clone)]
pub struct RedisRegulationStore {
    handle: RedisHandle,
    prefix: String,
    incr_failure: Script,
    failures: Script,
    ban: Script,
    set_ban: Script,
}

impl RedisRegulationStore {
    /// A store keeping `key` under `{prefix}{key}`.
    pub fn new(handle: RedisHandle, prefix: impl Into<String>) -> Self {
        Self {
            handle,
            prefix: prefix.into(),
            incr_failure: Script::new(INCR_FAILURE_LUA),
            failures: Script::new(FAILURES_LUA),
            ban: Script::new(BAN_LUA),
            set_ban: Script::new(SET_BAN_LUA),
        }
    }

    /// The Redis key holding `key`.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs `script` on `key` with `args`, one `EVALSHA`.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        args: &[u64],
    ) -> Result<T, RateLimitError> {
        let mut invocation = script.prepare_invoke();
        invocation.key(self.redis_key(key));
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.handle.manager();
        self.handle
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await
            .map_err(unavailable)
    }
}

impl fmt::Debug for RedisRegulationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRegulationStore")
            .field("prefix", &self.prefix)
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// Whole milliseconds, rounded up, at least 1 and at most [`MAX_DURATION`].
fn millis(d: Duration) -> u64 {
    let ms = d.min(MAX_DURATION).as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

/// Whole microseconds, rounded up, at most [`MAX_DURATION`].
fn micros(d: Duration) -> u64 {
    u64::try_from(d.min(MAX_DURATION).as_nanos().div_ceil(1_000)).unwrap_or(u64::MAX)
}

/// Milliseconds from a script's `PTTL`; negative (no expiry) is zero.
fn from_millis(value: i64) -> Duration {
    u64::try_from(value).map_or(Duration::ZERO, Duration::from_millis)
}

/// Microseconds from a script's integer; negative is zero.
fn from_micros(value: i64) -> Duration {
    u64::try_from(value).map_or(Duration::ZERO, Duration::from_micros)
}

fn count(value: i64) -> Result<u32, RateLimitError> {
    if value < 0 {
        return Err(invalid("failure counter is not a number"));
    }
    Ok(u32::try_from(value).unwrap_or(u32::MAX))
}

#[async_trait]
impl RegulationStore for RedisRegulationStore {
    async fn incr_failure(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<FailureCount, RateLimitError> {
        let reply: (i64, i64) = self.eval(&self.incr_failure, key, &[millis(window)]).await?;
        Ok(FailureCount { count: count(reply.0)?, reset_in: from_millis(reply.1) })
    }

    async fn failures(&self, key: &str) -> Result<Option<FailureCount>, RateLimitError> {
        let reply: Option<(i64, i64)> = self.eval(&self.failures, key, &[]).await?;
        reply
            .map(|(c, ttl)| Ok(FailureCount { count: count(c)?, reset_in: from_millis(ttl) }))
            .transpose()
    }

    async fn ban(&self, key: &str) -> Result<Option<BanState>, RateLimitError> {
        let reply: Option<(i64, i64)> = self.eval(&self.ban, key, &[]).await?;
        reply
            .map(|(level, left)| {
                let level = u32::try_from(level).map_err(|_| invalid("ban level is invalid"))?;
                Ok(BanState { level, remaining: from_micros(left) })
            })
            .transpose()
    }

    async fn set_ban(
        &self,
        key: &str,
        level: u32,
        ban_for: Duration,
        remember_for: Duration,
    ) -> Result<(), RateLimitError> {
        let args = [u64::from(level), micros(ban_for), millis(remember_for.max(ban_for))];
        let _: i64 = self.eval(&self.set_ban, key, &args).await?;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), RateLimitError> {
        let mut conn = self.handle.manager();
        let redis_key = self.redis_key(key);
        let _: i64 = self
            .handle
            .run(async move { redis::cmd("DEL").arg(redis_key).query_async(&mut conn).await })
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::conn::connect;

    #[test]
    fn reply_parser_reads_flag_time_and_missing_tats() {
        let reply = ["1", "1700000000000000000", "", "1700000000500000000"].map(String::from);
        let parsed = parse_gcra_reply(&reply, 2).unwrap();
        assert_eq!(
            parsed,
            GcraReply {
                allowed: true,
                now_ns: 1_700_000_000_000_000_000,
                tats: vec![None, Some(1_700_000_000_500_000_000)],
            }
        );
    }

    #[test]
    fn reply_parser_rejects_malformed_replies() {
        let cases: [&[&str]; 5] =
            [&["1"], &["1", "5"], &["2", "5", ""], &["0", "x", ""], &["0", "5", "-3"]];
        for case in cases {
            let reply: Vec<String> = case.iter().map(|s| (*s).to_owned()).collect();
            assert!(
                matches!(parse_gcra_reply(&reply, 1), Err(RateLimitError::InvalidState { .. })),
                "{case:?}"
            );
        }
    }

    #[test]
    fn disagreement_between_script_and_gcra_is_an_error() {
        let quotas = ["1/1s".parse().unwrap()];
        let reply = GcraReply { allowed: false, now_ns: 10, tats: vec![None] };
        assert!(matches!(decide(&reply, &quotas), Err(RateLimitError::InvalidState { .. })));
        let reply = GcraReply { allowed: true, ..reply };
        assert!(decide(&reply, &quotas).unwrap().allowed);
    }

    #[test]
    fn invalid_quotas_are_sent_as_zero_interval() {
        assert_eq!(gcra_args(&Quota { limit: 0, period: Duration::ZERO }), [0, 0]);
        assert_eq!(gcra_args(&"200/60s".parse().unwrap()), [300_000_000, 59_700_000_000]);
    }

    #[test]
    fn durations_round_up_and_are_capped() {
        assert_eq!(millis(Duration::from_nanos(1)), 1);
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1_500)), 2);
        assert_eq!(millis(Duration::MAX), millis(MAX_DURATION));
        assert_eq!(micros(Duration::from_nanos(1_001)), 2);
        assert_eq!(from_millis(-1), Duration::ZERO);
        assert_eq!(from_micros(2_500), Duration::from_micros(2_500));
    }

    /// A small deterministic generator (xorshift), enough to spread cases.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, below: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % below.max(1)
        }
    }

    fn quota_pool() -> Vec<Quota> {
        let mut pool: Vec<Quota> =
            ["5/10s", "200/1m", "1/365d", "7/10s", "99999/1s", "3/1s", "2/1h"]
                .iter()
                .map(|t| t.parse().unwrap())
                .collect();
        pool.push(Quota { limit: 3, period: Duration::from_nanos(10) });
        pool.push(Quota { limit: 7, period: Duration::from_nanos(1_000_000_007) });
        pool.push(Quota { limit: 0, period: Duration::from_secs(1) });
        pool
    }

    /// A stored TAT for `quota` near `now`, raw as Redis would hold it.
    fn stored_tat(rng: &mut Rng, now: u64, quota: &Quota) -> Option<String> {
        let t = quota.emission_interval_ns();
        let tau = quota.tolerance_ns();
        let full = tau + t;
        let tat = match rng.next(12) {
            0 => return None,
            1 => return Some("not a number".to_owned()),
            2 => return Some("99999999999999999999".to_owned()),
            3 => now - rng.next(full + 1),
            4 => now + tau,
            5 => now + tau + 1,
            6 => now + full,
            7 => now + full + 1 + rng.next(u64::MAX / 4),
            8 => rng.next(1_000_000_000),
            _ => now + rng.next(full + 1),
        };
        Some(tat.to_string())
    }

    #[tokio::test]
    async fn script_matches_gcra_evaluate_to_the_nanosecond() {
        let Some(url) = rampart_testkit::redis_url().await else { return };
        let handle = connect(&url, None, Duration::from_secs(5)).await.unwrap();
        let mut conn = handle.manager();
        let key = format!("test:rl:exact:{}", rampart_testkit::random_suffix());
        let pool = quota_pool();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut admitted = 0;
        for (sec, usec) in [(1_700_000_000u64, 123_456u64), (1_799_999_999, 999_999)] {
            let fixed =
                GCRA_LUA.replacen("redis.call('TIME')", &format!("{{'{sec}', '{usec}'}}"), 1);
            let script = Script::new(&fixed);
            let now = sec * 1_000_000_000 + usec * 1_000;
            for case in 0..300 {
                let n = 1 + rng.next(3) as usize;
                let quotas: Vec<Quota> =
                    (0..n).map(|_| pool[rng.next(pool.len() as u64) as usize]).collect();
                let raw: Vec<Option<String>> =
                    quotas.iter().map(|q| stored_tat(&mut rng, now, q)).collect();
                let mut del = redis::cmd("DEL");
                del.arg(&key);
                let _: i64 = del.query_async(&mut conn).await.unwrap();
                for (i, tat) in raw.iter().enumerate() {
                    if let Some(tat) = tat {
                        let mut hset = redis::cmd("HSET");
                        hset.arg(&key).arg(i.to_string()).arg(tat);
                        let _: i64 = hset.query_async(&mut conn).await.unwrap();
                    }
                }
                let mut invocation = script.prepare_invoke();
                invocation.key(&key);
                for q in &quotas {
                    invocation.arg(&gcra_args(q)[..]);
                }
                let reply: Vec<String> = invocation.invoke_async(&mut conn).await.unwrap();
                let reply = parse_gcra_reply(&reply, n).unwrap();
                let read: Vec<Option<u64>> =
                    raw.iter().map(|t| t.as_deref().and_then(|t| t.parse().ok())).collect();
                let (decision, new) = gcra::evaluate(now, &read, &quotas);
                assert_eq!(reply.now_ns, now, "case {case}");
                assert_eq!(reply.tats, read, "case {case}: {quotas:?} {raw:?}");
                assert_eq!(reply.allowed, decision.allowed, "case {case}: {quotas:?} {raw:?}");

                let stored: HashMap<String, String> =
                    redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap();
                let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
                let expected: HashMap<String, String> = match &new {
                    Some(new) => {
                        admitted += 1;
                        let latest = gcra::expires_at(new) - now;
                        let want = i64::try_from(latest.div_ceil(1_000_000)).unwrap();
                        assert!(ttl <= want && ttl > want - 5_000, "case {case}: {ttl} {want}");
                        new.iter()
                            .enumerate()
                            .map(|(i, t)| (i.to_string(), t.to_string()))
                            .collect()
                    }
                    None => raw
                        .iter()
                        .enumerate()
                        .filter_map(|(i, t)| t.clone().map(|t| (i.to_string(), t)))
                        .collect(),
                };
                assert_eq!(stored, expected, "case {case}: {quotas:?} {raw:?}");
            }
        }
        let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
        // Both outcomes were exercised.
        assert!(admitted > 50 && admitted < 550, "admitted {admitted}");
    }
}
