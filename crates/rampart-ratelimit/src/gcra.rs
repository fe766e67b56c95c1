//! The generic cell rate algorithm (GCRA) as pure functions over nanosecond timestamps.
//!
//! For a [`Quota`] of `limit` per `period`, the emission interval is `T = period / limit`
//! (rounded up to a whole nanosecond) and the tolerance `tau = (limit - 1) * T`, which is
//! `period - T` whenever `limit` divides the period: the whole `limit` is available as a burst,
//! and the rounding can only make the sustained rate slower, never faster. The only state per
//! key and quota is the theoretical arrival time `TAT`:
//!
//! ```text
//! tat   = clamp(stored TAT or now, now, now + tau + T)
//! admit = tat - now <= tau
//! if every quota admits:  stored TAT := tat + T   (for every quota)
//! else:                   nothing is written; retry_after = max(tat - now - tau) over refusals
//! debt  = stored TAT - now (after the decision)
//! remaining = (tau + T - debt) / T          reset = debt
//! ```
//!
//! A stored TAT at or before `now` means "full burst available", so an entry may be dropped
//! once `now >= max(TAT)` ([`expires_at`]). The clamp bounds the effect of a clock that stepped
//! backwards to about one period.
//!
//! [`evaluate`] is the whole algorithm for one key; stores only load the TATs, call it (or
//! mirror it in a server-side script) and write back the new TATs when the request is admitted.
//!
//! # Several keys at once
//! A request matching several rules is checked against one key per rule. [`evaluate_all`]
//! decides all of them in one step: the entries are evaluated in order, the request is admitted
//! only if every entry admits it, and only then are new TATs returned (for every entry). When
//! one entry refuses, nothing is written for any of them, and every decision shows the state as
//! it is, unconsumed: an admitting entry keeps `allowed` (its own quotas would admit) with the
//! remaining count before this request, a refusing one its wait. The request may be retried
//! after the longest `retry_after` among the refusing entries.
//!
//! A key given twice in one batch is evaluated as if the checks ran one after the other: a later
//! entry sees the TATs an earlier, admitting entry of the same key would write (index by index;
//! indexes it does not write keep the stored value), and the writes are applied in order.
//!
//! # Security
//! All quotas of a key, and all keys of a request, are checked together: a request is admitted
//! only if every quota admits it, and a refused request consumes nothing, so a client hammering
//! while refused does not push its own recovery further away, and one quota or rule never
//! drains while another refuses. Arithmetic saturates; an invalid quota (see
//! [`Quota::is_valid`]) refuses every request.

use std::time::Duration;

use crate::Quota;

/// How long an invalid quota tells clients to wait.
const INVALID_QUOTA_RETRY: Duration = Duration::from_secs(1);

/// The outcome of checking one key against its quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// How long to wait before the same request would be admitted; zero when admitted.
    pub retry_after: Duration,
    /// The state of each quota after the decision, in the order the quotas were given.
    pub quotas: Vec<QuotaState>,
}

/// The state of one quota after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    /// The quota.
    pub quota: Quota,
    /// How many more requests would be admitted right now.
    pub remaining: u32,
    /// How long until the full quota is available again.
    pub reset: Duration,
}

impl Decision {
    /// An admitting decision for a request that no quota applies to.
    pub fn unlimited() -> Self {
        Self { allowed: true, retry_after: Duration::ZERO, quotas: Vec::new() }
    }
}

struct Step {
    quota: Quota,
    tat: u64,
    debt: u64,
    admits: bool,
    wait: Duration,
}

/// Evaluates a request at `now_ns` against `quotas`, given each quota's stored TAT
/// (`tats[i]` belongs to `quotas[i]`; missing entries count as `None`, extra ones are ignored).
///
/// Returns the decision and, only when the request is admitted, the new TATs to store (one per
/// quota). When refused, the second value is `None`: the caller must write nothing.
pub fn evaluate(
    now_ns: u64,
    tats: &[Option<u64>],
    quotas: &[Quota],
) -> (Decision, Option<Vec<u64>>) {
    let steps = steps(now_ns, tats, quotas);
    if steps.iter().all(|s| s.admits) {
        let new_tats =
            steps.iter().map(|s| s.tat.saturating_add(s.quota.emission_interval_ns())).collect();
        let states = steps
            .iter()
            .map(|s| state(s.quota, s.debt.saturating_add(s.quota.emission_interval_ns())))
            .collect();
        let decision = Decision { allowed: true, retry_after: Duration::ZERO, quotas: states };
        (decision, Some(new_tats))
    } else {
        (unconsumed(&steps), None)
    }
}

/// One key's part of a batch for [`evaluate_all`]: the key (anything comparable), the TATs
/// stored for it and its quotas.
pub type Entry<'a, K> = (K, &'a [Option<u64>], &'a [Quota]);

/// Evaluates one request against several keys at `now_ns` in one step; see the
/// [module docs](self#several-keys-at-once).
///
/// `entries[i]` is `(key, stored TATs, quotas)` for the i-th key, the TATs as for [`evaluate`]
/// (as stored before this request; keys only need to compare equal to find repeats). Returns
/// one decision per entry and, only when every entry admits the request, the new TATs of each
/// entry, to be written in order. When the second value is `None` the caller must write
/// nothing at all.
pub fn evaluate_all<K: PartialEq>(
    now_ns: u64,
    entries: &[Entry<'_, K>],
) -> (Vec<Decision>, Option<Vec<Vec<u64>>>) {
    // TATs that earlier admitting entries would write, per key (only for repeated keys).
    let mut pending: Vec<(&K, Vec<u64>)> = Vec::new();
    let mut evaluated = Vec::with_capacity(entries.len());
    for (key, stored, quotas) in entries {
        let written = pending.iter().find(|(k, _)| *k == key).map(|(_, w)| w.as_slice());
        let seen: Vec<Option<u64>> = (0..quotas.len())
            .map(|i| match written.and_then(|w| w.get(i)) {
                Some(&tat) => Some(tat),
                None => stored.get(i).copied().flatten(),
            })
            .collect();
        let (decision, new) = evaluate(now_ns, &seen, quotas);
        if let Some(new) = &new {
            match pending.iter_mut().find(|(k, _)| *k == key) {
                Some((_, w)) => overwrite(w, new),
                None => pending.push((key, new.clone())),
            }
        }
        evaluated.push((seen, decision, new));
    }
    if evaluated.iter().all(|(_, d, _)| d.allowed) {
        let (decisions, new): (Vec<Decision>, Vec<Vec<u64>>) =
            evaluated.into_iter().map(|(_, d, new)| (d, new.unwrap_or_default())).unzip();
        (decisions, Some(new))
    } else {
        // Refused: report every entry unconsumed (a refusing entry's decision already is).
        let decisions = entries
            .iter()
            .zip(evaluated)
            .map(|((_, _, quotas), (seen, d, _))| match d.allowed {
                true => unconsumed(&steps(now_ns, &seen, quotas)),
                false => d,
            })
            .collect();
        (decisions, None)
    }
}

/// Writes `new` over the start of `tats`, extending it when `new` is longer.
pub(crate) fn overwrite(tats: &mut Vec<u64>, new: &[u64]) {
    for (i, &tat) in new.iter().enumerate() {
        match tats.get_mut(i) {
            Some(slot) => *slot = tat,
            None => tats.push(tat),
        }
    }
}

fn steps(now: u64, tats: &[Option<u64>], quotas: &[Quota]) -> Vec<Step> {
    quotas
        .iter()
        .enumerate()
        .map(|(i, quota)| step(now, tats.get(i).copied().flatten(), *quota))
        .collect()
}

/// The decision reporting the state as it is, nothing consumed.
fn unconsumed(steps: &[Step]) -> Decision {
    let allowed = steps.iter().all(|s| s.admits);
    let retry_after =
        steps.iter().filter(|s| !s.admits).map(|s| s.wait).max().unwrap_or(Duration::ZERO);
    let states = steps.iter().map(|s| state(s.quota, s.debt)).collect();
    Decision { allowed, retry_after, quotas: states }
}

fn step(now: u64, stored: Option<u64>, quota: Quota) -> Step {
    if !quota.is_valid() {
        return Step { quota, tat: now, debt: 0, admits: false, wait: INVALID_QUOTA_RETRY };
    }
    let tau = quota.tolerance_ns();
    let full = tau.saturating_add(quota.emission_interval_ns());
    let tat = stored.unwrap_or(now).max(now).min(now.saturating_add(full));
    let debt = tat - now;
    let admits = debt <= tau;
    let wait = if admits { Duration::ZERO } else { Duration::from_nanos(debt - tau) };
    Step { quota, tat, debt, admits, wait }
}

fn state(quota: Quota, debt: u64) -> QuotaState {
    let t = quota.emission_interval_ns();
    let full = quota.tolerance_ns().saturating_add(t);
    let remaining = full.saturating_sub(debt).checked_div(t).unwrap_or(0);
    let remaining = u32::try_from(remaining).unwrap_or(u32::MAX).min(quota.limit);
    QuotaState { quota, remaining, reset: Duration::from_nanos(debt) }
}

/// When an entry holding `tats` stops carrying information: the latest TAT.
pub fn expires_at(tats: &[u64]) -> u64 {
    tats.iter().copied().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn quota(text: &str) -> Quota {
        text.parse().unwrap()
    }

    /// Runs `n` requests at `now`, feeding TATs back; returns how many were admitted.
    fn burst(now: u64, tats: &mut Vec<Option<u64>>, quotas: &[Quota], n: u32) -> u32 {
        let mut admitted = 0;
        for _ in 0..n {
            let (d, new) = evaluate(now, tats, quotas);
            if let Some(new) = new {
                assert!(d.allowed);
                *tats = new.into_iter().map(Some).collect();
                admitted += 1;
            }
        }
        admitted
    }

    #[test]
    fn fresh_key_gets_the_full_burst_and_counts_down() {
        let q = [quota("5/10s")];
        let (d, new) = evaluate(100 * S, &[None], &q);
        assert!(d.allowed);
        assert_eq!(d.retry_after, Duration::ZERO);
        assert_eq!(d.quotas[0].remaining, 4);
        assert_eq!(d.quotas[0].reset, Duration::from_secs(2));
        assert_eq!(new, Some(vec![102 * S]));
    }

    #[test]
    fn burst_is_exactly_the_limit_even_when_the_interval_is_rounded() {
        for text in ["1/1s", "3/1s", "7/10s", "99999/1s", "200/60s"] {
            let q = [quota(text)];
            let mut tats = vec![None];
            assert_eq!(burst(0, &mut tats, &q, q[0].limit + 5), q[0].limit, "{text}");
        }
    }

    #[test]
    fn long_run_never_exceeds_limit_per_period_plus_one_burst() {
        let q = [quota("3/1s")];
        let mut tats = vec![None];
        let mut admitted = 0;
        for ms in 0..100_000u64 {
            admitted += burst(ms * 1_000_000, &mut tats, &q, 1);
        }
        // 100 s at 3/s, plus the initial burst of 3.
        assert!(admitted <= 303, "admitted {admitted}");
        assert!(admitted >= 300, "admitted {admitted}");
    }

    #[test]
    fn stale_tat_in_the_past_counts_as_fresh() {
        let q = [quota("5/10s")];
        assert_eq!(evaluate(100 * S, &[Some(3)], &q), evaluate(100 * S, &[None], &q));
    }

    #[test]
    fn refusal_reports_wait_until_one_emission_interval_frees() {
        let q = [quota("5/10s")];
        let mut tats = vec![None];
        assert_eq!(burst(0, &mut tats, &q, 9), 5);
        let (d, new) = evaluate(0, &tats, &q);
        assert!(!d.allowed && new.is_none());
        assert_eq!(d.retry_after, Duration::from_secs(2));
        assert_eq!(d.quotas[0].remaining, 0);
        assert_eq!(d.quotas[0].reset, Duration::from_secs(10));
        // Just before the wait ends still refused; at the end admitted.
        assert!(!evaluate(2 * S - 1, &tats, &q).0.allowed);
        assert!(evaluate(2 * S, &tats, &q).0.allowed);
    }

    #[test]
    fn clock_stepping_back_is_bounded_to_one_period() {
        let q = [quota("5/10s")];
        let (d, _) = evaluate(0, &[Some(1_000 * S)], &q);
        assert_eq!(d.retry_after, Duration::from_secs(2));
    }

    #[test]
    fn invalid_quota_refuses_without_panicking() {
        let q = [Quota { limit: 0, period: Duration::ZERO }];
        let (d, new) = evaluate(5, &[None], &q);
        assert!(!d.allowed && new.is_none());
        assert_eq!(d.retry_after, Duration::from_secs(1));
    }

    #[test]
    fn no_quotas_admit() {
        let (d, new) = evaluate(5, &[], &[]);
        assert!(d.allowed);
        assert_eq!(new, Some(vec![]));
    }

    #[test]
    fn mismatched_tat_slice_treats_missing_as_fresh() {
        let q = [quota("2/1s"), quota("2/1s")];
        let (d, new) = evaluate(S, &[Some(S + S / 2)], &q);
        assert!(d.allowed);
        assert_eq!(new, Some(vec![2 * S, S + S / 2]));
    }

    #[test]
    fn batch_where_every_entry_admits_equals_separate_evaluations() {
        let (a, b) = ([quota("5/10s"), quota("50/1m")], [quota("2/1s")]);
        let (ta, tb) = ([Some(101 * S), None], [Some(100 * S + S / 4)]);
        let (decisions, new) = evaluate_all(100 * S, &[("a", &ta[..], &a[..]), ("b", &tb, &b)]);
        let (da, na) = evaluate(100 * S, &ta, &a);
        let (db, nb) = evaluate(100 * S, &tb, &b);
        assert_eq!(decisions, vec![da, db]);
        assert_eq!(new, Some(vec![na.unwrap(), nb.unwrap()]));
    }

    #[test]
    fn batch_refused_by_one_entry_writes_nothing_and_reports_unconsumed_state() {
        let (wide, narrow) = ([quota("10/1m")], [quota("1/1m"), quota("5/1h")]);
        // `narrow` is spent: its first quota's TAT is a full period ahead.
        let (tw, tn) = ([None], [Some(160 * S), None]);
        let (decisions, new) =
            evaluate_all(100 * S, &[("wide", &tw[..], &wide[..]), ("narrow", &tn, &narrow)]);
        assert_eq!(new, None);
        // The admitting entry says so, with its full quota left: nothing was taken.
        assert!(decisions[0].allowed);
        assert_eq!(decisions[0].retry_after, Duration::ZERO);
        assert_eq!(decisions[0].quotas[0].remaining, 10);
        assert_eq!(decisions[0].quotas[0].reset, Duration::ZERO);
        // The refusing entry is what `evaluate` says on its own, also unconsumed.
        assert_eq!(decisions[1], evaluate(100 * S, &tn, &narrow).0);
        assert!(!decisions[1].allowed);
        assert_eq!(decisions[1].retry_after, Duration::from_secs(60));
        assert_eq!(decisions[1].quotas[1].remaining, 5);
    }

    #[test]
    fn batch_with_several_refusals_keeps_each_wait() {
        let (a, b) = ([quota("1/10s")], [quota("1/30s")]);
        let (decisions, new) =
            evaluate_all(0, &[(1, &[Some(10 * S)][..], &a[..]), (2, &[Some(30 * S)], &b)]);
        assert_eq!(new, None);
        let waits: Vec<u64> = decisions.iter().map(|d| d.retry_after.as_secs()).collect();
        assert_eq!(waits, vec![10, 30]);
    }

    #[test]
    fn repeated_key_sees_the_earlier_entry_and_writes_in_order() {
        let q = [quota("2/1s")];
        let (decisions, new) = evaluate_all(0, &[("k", &[None][..], &q[..]), ("k", &[None], &q)]);
        assert!(decisions.iter().all(|d| d.allowed));
        assert_eq!(decisions[1].quotas[0].remaining, 0);
        assert_eq!(new, Some(vec![vec![S / 2], vec![S]]));
        // One unit for two entries: refused, and nothing written.
        let q = [quota("1/1s")];
        let (decisions, new) = evaluate_all(0, &[("k", &[None][..], &q[..]), ("k", &[None], &q)]);
        assert_eq!(new, None);
        assert!(decisions[0].allowed && !decisions[1].allowed);
        // A shorter earlier entry leaves the later one's other indexes as stored.
        let (one, two) = ([quota("2/1s")], [quota("2/1s"), quota("2/1s")]);
        let stored = [None, Some(S / 2)];
        let (_, new) = evaluate_all(0, &[("k", &stored[..], &one[..]), ("k", &stored, &two)]);
        assert_eq!(new, Some(vec![vec![S / 2], vec![S, S]]));
    }

    #[test]
    fn empty_batch_admits() {
        let (decisions, new) = evaluate_all::<&str>(5, &[]);
        assert!(decisions.is_empty());
        assert_eq!(new, Some(vec![]));
    }

    #[test]
    fn overwrite_replaces_and_extends() {
        let mut tats = vec![1, 2, 3];
        overwrite(&mut tats, &[7]);
        assert_eq!(tats, [7, 2, 3]);
        overwrite(&mut tats, &[8, 9, 10, 11]);
        assert_eq!(tats, [8, 9, 10, 11]);
    }

    #[test]
    fn expires_at_is_the_latest_tat() {
        assert_eq!(expires_at(&[3, 9, 4]), 9);
        assert_eq!(expires_at(&[]), 0);
    }
}
