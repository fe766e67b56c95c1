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
//! each as decimal nanoseconds since the Unix epoch, like the memory store's slots.
//!
//! A request is checked against every matching rule with **one** `EVALSHA`
//! ([`RateLimitStore::check_all`]; `check` is the same with one key): `KEYS` holds one hash
//! per rule, and `ARGV`, per rule in the same order, the number of quotas and then, per quota,
//! the emission interval `T` and tolerance `tau` in nanoseconds (`0 0` for an invalid quota,
//! which refuses). The script:
//!
//! 1. reads the time from Redis (`TIME`), so all instances share one clock and a skewed
//!    instance clock changes nothing;
//! 2. for each key in order, reads its TATs with one `HMGET` and applies [`gcra::evaluate`]
//!    step by step: `tat = clamp(stored or now, now, now + tau + T)`, admitted when
//!    `tat - now <= tau` (a key given twice sees what its earlier, admitting entry would
//!    write, as [`gcra::evaluate_all`] describes);
//! 3. only if **every** quota of **every** key admits: writes `tat + T` for each quota of each
//!    key (one `HSET` per key) and sets `PEXPIRE` to when the key's latest new TAT passes
//!    (after which it carries no information), never shortening an expiry already set. A
//!    refused request writes nothing on any key, so it consumes nothing;
//! 4. returns the admission flag, the time it used and, per key, the TATs it read.
//!
//! The store then calls [`gcra::evaluate_all`] itself on that time and those TATs to build one
//! [`Decision`] per key (remaining, reset and retry-after per quota), so the answer is exactly
//! the memory store's for the same state; a disagreement with the script's flag is reported as
//! [`RateLimitError::InvalidState`]. Keys without quotas are not sent; a request with none
//! costs no command at all.
//!
//! The keys of one request are named in one script call, so they must live on one server:
//! Redis Cluster is not supported (as for sessions).
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
//! - Time comes from Redis, never from the instances, and every decision, for all the rules of
//!   a request, is one atomic script: concurrent instances cannot both spend the last unit of
//!   a quota, and a request refused by one rule spends nothing from the others.
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
//! [`gcra::evaluate_all`]: rampart_ratelimit::gcra::evaluate_all

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use rampart_ratelimit::{
    gcra, BanState, Decision, FailureCount, Quota, RateLimitError, RateLimitStore, RegulationStore,
};
use redis::{Script, ScriptInvocation};

use crate::conn::{RedisError, RedisHandle};

/// The GCRA script for a batch of keys; see the module docs. `KEYS` are the hashes, one per
/// entry; `ARGV` holds, per entry in the same order, the number of quotas `n` and then `T, tau`
/// per quota in nanoseconds. Returns `{allowed ("1"/"0"), now, then per entry and quota the
/// stored TAT or ""}`.
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
local out = {'1', str(now)}
local allowed = true
-- What admitting entries would write, per key: field -> TAT, the fields in first-write
-- order, and the latest TAT (for the expiry). A repeated key sees its earlier entries.
local pending = {}
local written = {}
local a = 1
for k = 1, #KEYS do
  local key = KEYS[k]
  local n = tonumber(ARGV[a])
  if not n or n < 1 or n ~= math.floor(n) or a + 2 * n > #ARGV then
    return redis.error_reply('invalid rate-limit arguments')
  end
  local fields = {}
  for i = 1, n do fields[i] = tostring(i - 1) end
  local stored = redis.call('HMGET', key, unpack(fields))
  local p = pending[key]
  local admits = true
  local nxt = {}
  for i = 1, n do
    local T, tau, s = parse(ARGV[a + 2 * i - 1]), parse(ARGV[a + 2 * i]), parse(stored[i])
    out[#out + 1] = s and str(s) or ''
    if p and p.tats[fields[i]] then s = p.tats[fields[i]] end
    if not T or not tau or (T[1] == 0 and T[2] == 0) then
      admits = false
    else
      local tat = s or now
      if lt(tat, now) then tat = now end
      local cap = add(now, add(tau, T))
      if lt(cap, tat) then tat = cap end
      if lt(tau, sub(tat, now)) then admits = false end
      nxt[i] = add(tat, T)
    end
  end
  a = a + 1 + 2 * n
  if admits then
    if not p then
      p = {tats = {}, fields = {}, latest = now}
      pending[key] = p
      written[#written + 1] = key
    end
    for i = 1, n do
      if not p.tats[fields[i]] then p.fields[#p.fields + 1] = fields[i] end
      p.tats[fields[i]] = nxt[i]
      if lt(p.latest, nxt[i]) then p.latest = nxt[i] end
    end
  else
    allowed = false
  end
end
if a ~= #ARGV + 1 then return redis.error_reply('invalid rate-limit arguments') end
if not allowed then
  out[1] = '0'
  return out
end
for _, key in ipairs(written) do
  local p = pending[key]
  local args = {}
  for _, f in ipairs(p.fields) do
    args[#args + 1] = f
    args[#args + 1] = str(p.tats[f])
  end
  redis.call('HSET', key, unpack(args))
  local ahead = sub(p.latest, now)
  local ms = ahead[1] * 1000 + math.ceil(ahead[2] / 1000000)
  if ms < 1 then ms = 1 end
  -- Never shorten: fields this batch did not write may need the key for longer.
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, string.format('%.0f', ms))
  end
end
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

/// A [`RateLimitStore`] on Redis: one `EVALSHA` per request, for all its rules. See the
/// [module docs](self).
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

/// The script's answer: admitted, the time it used, and the TATs it read for each entry.
#[derive(Debug, PartialEq, Eq)]
struct GcraReply {
    allowed: bool,
    now_ns: u64,
    tats: Vec<Vec<Option<u64>>>,
}

/// Reads the script's reply for entries with `counts[i]` quotas each.
fn parse_gcra_reply(reply: &[String], counts: &[usize]) -> Result<GcraReply, RateLimitError> {
    let [allowed, now, tats @ ..] = reply else {
        return Err(invalid("rate-limit script reply too short"));
    };
    if tats.len() != counts.iter().sum::<usize>() {
        return Err(invalid("rate-limit script returned a wrong number of TATs"));
    }
    let allowed = match allowed.as_str() {
        "1" => true,
        "0" => false,
        _ => return Err(invalid("rate-limit script returned an invalid flag")),
    };
    let now_ns = now.parse().map_err(|_| invalid("rate-limit script returned an invalid time"))?;
    let tats: Vec<Option<u64>> = tats
        .iter()
        .map(|tat| match tat.as_str() {
            "" => Ok(None),
            digits => digits.parse().map(Some),
        })
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("rate-limit script returned an invalid TAT"))?;
    let mut rest = tats.as_slice();
    let mut per_entry = Vec::with_capacity(counts.len());
    for &n in counts {
        let (entry, tail) = rest.split_at(n);
        per_entry.push(entry.to_vec());
        rest = tail;
    }
    Ok(GcraReply { allowed, now_ns, tats: per_entry })
}

/// The `T, tau` argument pair of a quota; `0, 0` marks an invalid quota, which refuses.
fn gcra_args(quota: &Quota) -> [u64; 2] {
    if quota.is_valid() {
        [quota.emission_interval_ns(), quota.tolerance_ns()]
    } else {
        [0, 0]
    }
}

/// Adds one entry's arguments: the number of quotas, then `T, tau` per quota.
fn push_args(invocation: &mut ScriptInvocation<'_>, quotas: &[Quota]) {
    invocation.arg(quotas.len());
    for quota in quotas {
        invocation.arg(&gcra_args(quota)[..]);
    }
}

/// Builds the decisions from the script's reply, checking that both sides agree.
fn decide(reply: &GcraReply, checks: &[(&str, &[Quota])]) -> Result<Vec<Decision>, RateLimitError> {
    if reply.tats.len() != checks.len() {
        return Err(invalid("rate-limit script returned a wrong number of entries"));
    }
    let entries: Vec<gcra::Entry<'_, &str>> = checks
        .iter()
        .zip(&reply.tats)
        .map(|((key, quotas), tats)| (*key, tats.as_slice(), *quotas))
        .collect();
    let (decisions, new) = gcra::evaluate_all(reply.now_ns, &entries);
    if new.is_some() == reply.allowed {
        Ok(decisions)
    } else {
        Err(invalid("rate-limit script and GCRA disagree"))
    }
}

#[async_trait]
impl RateLimitStore for RedisRateLimitStore {
    /// One `EVALSHA` for all the keys, whatever their number.
    async fn check_all(
        &self,
        checks: &[(&str, &[Quota])],
    ) -> Result<Vec<Decision>, RateLimitError> {
        let mut out = vec![Decision::unlimited(); checks.len()];
        // Entries without quotas are unlimited and are not sent.
        let sent: Vec<usize> = (0..checks.len()).filter(|&i| !checks[i].1.is_empty()).collect();
        if sent.is_empty() {
            return Ok(out);
        }
        let sent_checks: Vec<(&str, &[Quota])> = sent.iter().map(|&i| checks[i]).collect();
        let mut invocation = self.gcra.prepare_invoke();
        for (key, quotas) in &sent_checks {
            invocation.key(self.redis_key(key));
            push_args(&mut invocation, quotas);
        }
        let mut conn = self.handle.manager();
        let reply: Vec<String> = self
            .handle
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await
            .map_err(unavailable)?;
        let counts: Vec<usize> = sent_checks.iter().map(|(_, quotas)| quotas.len()).collect();
        let decisions = decide(&parse_gcra_reply(&reply, &counts)?, &sent_checks)?;
        for (i, decision) in sent.into_iter().zip(decisions) {
            out[i] = decision;
        }
        Ok(out)
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

    const S: u64 = 1_000_000_000;

    #[test]
    fn reply_parser_reads_flag_time_and_missing_tats_per_entry() {
        let reply = ["1", "1700000000000000000", "", "1700000000500000000", "7"].map(String::from);
        let parsed = parse_gcra_reply(&reply, &[2, 1]).unwrap();
        assert_eq!(
            parsed,
            GcraReply {
                allowed: true,
                now_ns: 1_700_000_000_000_000_000,
                tats: vec![vec![None, Some(1_700_000_000_500_000_000)], vec![Some(7)]],
            }
        );
    }

    #[test]
    fn reply_parser_rejects_malformed_replies() {
        let cases: [&[&str]; 6] = [
            &["1"],
            &["1", "5"],
            &["2", "5", ""],
            &["0", "x", ""],
            &["0", "5", "-3"],
            &["1", "5", "", ""],
        ];
        for case in cases {
            let reply: Vec<String> = case.iter().map(|s| (*s).to_owned()).collect();
            assert!(
                matches!(parse_gcra_reply(&reply, &[1]), Err(RateLimitError::InvalidState { .. })),
                "{case:?}"
            );
        }
    }

    #[test]
    fn disagreement_between_script_and_gcra_is_an_error() {
        let quotas = ["1/1s".parse().unwrap()];
        let checks: [(&str, &[Quota]); 2] = [("a", &quotas), ("b", &quotas)];
        let reply = GcraReply { allowed: false, now_ns: 10, tats: vec![vec![None], vec![None]] };
        assert!(matches!(decide(&reply, &checks), Err(RateLimitError::InvalidState { .. })));
        let reply = GcraReply { allowed: true, ..reply };
        assert!(decide(&reply, &checks).unwrap().iter().all(|d| d.allowed));
        // The second entry refuses, so the batch does, whatever the first says.
        let reply = GcraReply { allowed: true, now_ns: 10, tats: vec![vec![None], vec![Some(S)]] };
        assert!(matches!(decide(&reply, &checks), Err(RateLimitError::InvalidState { .. })));
        let reply = GcraReply { allowed: false, ..reply };
        let decisions = decide(&reply, &checks).unwrap();
        assert!(decisions[0].allowed && !decisions[1].allowed);
        // A reply for another number of entries is rejected.
        assert!(matches!(decide(&reply, &checks[..1]), Err(RateLimitError::InvalidState { .. })));
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

    /// How the script computes an expiry in milliseconds, and an hour in milliseconds.
    const EXPIRY_MS: &str = "math.ceil(ahead[2] / 1000000)";
    const HOUR_MS: i64 = 3_600_000;

    /// Raw stored values for one case: per key, per field, what to `HSET` (if anything).
    type Raw = Vec<Vec<Option<String>>>;

    /// Entries (key index, quotas) for one batch, and the raw values stored before it.
    fn batch_case(
        rng: &mut Rng,
        pool: &[Quota],
        now: u64,
        keys: usize,
    ) -> (Vec<(usize, Vec<Quota>)>, Raw) {
        let entries: Vec<(usize, Vec<Quota>)> = (0..1 + rng.next(3))
            .map(|_| {
                let key = rng.next(keys as u64) as usize;
                let n = 1 + rng.next(3) as usize;
                (key, (0..n).map(|_| pool[rng.next(pool.len() as u64) as usize]).collect())
            })
            .collect();
        let raw = (0..keys)
            .map(|key| {
                (0..3)
                    .map(|field| {
                        // Values near the edges of the quota that will read them, if any.
                        let quota = entries
                            .iter()
                            .find(|(k, q)| *k == key && q.len() > field)
                            .map_or(pool[rng.next(pool.len() as u64) as usize], |(_, q)| q[field]);
                        stored_tat(rng, now, &quota)
                    })
                    .collect()
            })
            .collect();
        (entries, raw)
    }

    #[tokio::test]
    async fn script_matches_gcra_evaluate_all_to_the_nanosecond() {
        let Some(url) = rampart_testkit::redis_url().await else { return };
        let handle = connect(&url, None, Duration::from_secs(5)).await.unwrap();
        let mut conn = handle.manager();
        let suffix = rampart_testkit::random_suffix();
        let keys: Vec<String> = (0..2).map(|k| format!("test:rl:exact:{suffix}:{k}")).collect();
        let pool = quota_pool();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut admitted, mut refused, mut repeated) = (0, 0, [0, 0]);
        for (sec, usec) in [(1_700_000_000u64, 123_456u64), (1_799_999_999, 999_999)] {
            // A fixed time, and an hour more on every expiry the script sets, so that no key
            // expires (in real time) before it has been read back.
            let fixed = GCRA_LUA
                .replacen("redis.call('TIME')", &format!("{{'{sec}', '{usec}'}}"), 1)
                .replacen(EXPIRY_MS, &format!("{EXPIRY_MS} + {HOUR_MS}"), 1);
            assert_eq!(fixed.matches(&format!("+ {HOUR_MS}")).count(), 1);
            let script = Script::new(&fixed);
            let now = sec * 1_000_000_000 + usec * 1_000;
            for case in 0..300 {
                let (entries, raw) = batch_case(&mut rng, &pool, now, keys.len());
                let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
                for (key, fields) in keys.iter().zip(&raw) {
                    for (i, tat) in fields.iter().enumerate() {
                        if let Some(tat) = tat {
                            let mut hset = redis::cmd("HSET");
                            hset.arg(key).arg(i.to_string()).arg(tat);
                            let _: i64 = hset.query_async(&mut conn).await.unwrap();
                        }
                    }
                }
                let mut invocation = script.prepare_invoke();
                for (key, quotas) in &entries {
                    invocation.key(&keys[*key]);
                    push_args(&mut invocation, quotas);
                }
                let reply: Vec<String> = invocation.invoke_async(&mut conn).await.unwrap();
                let counts: Vec<usize> = entries.iter().map(|(_, q)| q.len()).collect();
                let reply = parse_gcra_reply(&reply, &counts).unwrap();

                let read: Vec<Vec<Option<u64>>> = entries
                    .iter()
                    .map(|(key, quotas)| {
                        (0..quotas.len())
                            .map(|i| raw[*key][i].as_deref().and_then(|t| t.parse().ok()))
                            .collect()
                    })
                    .collect();
                let batch: Vec<gcra::Entry<'_, usize>> = entries
                    .iter()
                    .zip(&read)
                    .map(|((key, quotas), read)| (*key, read.as_slice(), quotas.as_slice()))
                    .collect();
                let (_, new) = gcra::evaluate_all(now, &batch);
                let what = format!("case {case}: {entries:?} {raw:?}");
                assert_eq!(reply.now_ns, now, "{what}");
                assert_eq!(reply.tats, read, "{what}");
                assert_eq!(reply.allowed, new.is_some(), "{what}");
                let is_repeated =
                    entries.iter().any(|(k, _)| entries.iter().filter(|(j, _)| j == k).count() > 1);
                if is_repeated {
                    repeated[usize::from(reply.allowed)] += 1;
                }

                for (key_index, key) in keys.iter().enumerate() {
                    let mut expected: HashMap<String, String> = raw[key_index]
                        .iter()
                        .enumerate()
                        .filter_map(|(i, t)| t.clone().map(|t| (i.to_string(), t)))
                        .collect();
                    let mut latest = None;
                    if let Some(new) = &new {
                        for ((k, _), tats) in entries.iter().zip(new) {
                            if *k != key_index {
                                continue;
                            }
                            for (i, tat) in tats.iter().enumerate() {
                                expected.insert(i.to_string(), tat.to_string());
                            }
                            latest = latest.max(tats.iter().copied().max());
                        }
                    }
                    let stored: HashMap<String, String> =
                        redis::cmd("HGETALL").arg(key).query_async(&mut conn).await.unwrap();
                    assert_eq!(stored, expected, "key {key_index}, {what}");
                    if let Some(latest) = latest {
                        let ttl: i64 =
                            redis::cmd("PTTL").arg(key).query_async(&mut conn).await.unwrap();
                        let want =
                            i64::try_from((latest - now).div_ceil(1_000_000)).unwrap() + HOUR_MS;
                        assert!(ttl <= want && ttl > want - 5_000, "{ttl} {want} {what}");
                    }
                }
                if new.is_some() {
                    admitted += 1;
                } else {
                    refused += 1;
                }
            }
        }
        let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
        // Both outcomes were exercised, also with a key repeated within a batch.
        assert!(admitted > 30 && refused > 30, "admitted {admitted}, refused {refused}");
        assert!(repeated[0] > 0 && repeated[1] > 0, "repeated keys {repeated:?}");
    }

    #[tokio::test]
    async fn malformed_arguments_are_an_error_reply_and_write_nothing() {
        let Some(url) = rampart_testkit::redis_url().await else { return };
        let handle = connect(&url, None, Duration::from_secs(5)).await.unwrap();
        let mut conn = handle.manager();
        let key = format!("test:rl:args:{}", rampart_testkit::random_suffix());
        let script = Script::new(GCRA_LUA);
        for args in [&["2", "1", "0"][..], &["0"], &["1", "1000", "0", "5"], &["x", "1", "0"]] {
            let mut invocation = script.prepare_invoke();
            invocation.key(&key);
            for arg in args {
                invocation.arg(*arg);
            }
            let reply: redis::RedisResult<Vec<String>> = invocation.invoke_async(&mut conn).await;
            assert!(reply.is_err(), "{args:?}");
        }
        let exists: i64 = redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await.unwrap();
        assert_eq!(exists, 0);
    }
}
