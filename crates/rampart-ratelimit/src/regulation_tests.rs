use rampart_core::ManualClock;

use super::*;

const IP: &str = "198.51.100.20";

fn setup() -> (LoginRegulator, ManualClock, Arc<MemoryRegulationStore>) {
    let clock = ManualClock::at_epoch();
    let store = Arc::new(MemoryRegulationStore::new(1_000, Arc::new(clock.clone())));
    (LoginRegulator::new(store.clone(), RegulationConfig::default()), clock, store)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn advance(clock: &ManualClock, secs: i64) {
    clock.advance(time::Duration::seconds(secs));
}

async fn fail(r: &LoginRegulator, account: &str, times: u32) -> Option<Locked> {
    let mut last = None;
    for _ in 0..times {
        last = r.record_failure(account, ip(IP)).await.unwrap();
    }
    last
}

#[tokio::test]
async fn locks_account_after_five_failures() {
    let (r, _, _) = setup();
    assert_eq!(fail(&r, "acct", 4).await, None);
    assert!(r.check("acct", ip(IP)).await.is_ok());
    let started = fail(&r, "acct", 1).await.unwrap();
    assert_eq!(started, Locked { retry_after: Duration::from_secs(60), scope: LockScope::Account });
    let locked = r.check("acct", ip(IP)).await.unwrap_err();
    assert_eq!(locked.scope, LockScope::Account);
    assert_eq!(locked.retry_after, Duration::from_secs(60));
    // Other accounts and addresses are unaffected.
    assert!(r.check("other", ip(IP)).await.is_ok());
    assert!(
        r.check("acct", ip("192.0.2.1")).await.is_err(),
        "a ban is per account, from any address"
    );
}

#[tokio::test]
async fn failures_outside_the_window_do_not_add_up() {
    let (r, clock, _) = setup();
    fail(&r, "acct", 4).await;
    advance(&clock, 15 * 60);
    assert_eq!(fail(&r, "acct", 4).await, None);
    assert!(r.check("acct", ip(IP)).await.is_ok());
}

#[tokio::test]
async fn ban_expires_and_each_further_ban_doubles_up_to_the_cap() {
    let (r, clock, _) = setup();
    for want_minutes in [1, 2, 4, 8, 15, 15] {
        let started = fail(&r, "acct", 5).await.unwrap();
        assert_eq!(started.retry_after, Duration::from_secs(want_minutes * 60));
        advance(&clock, (want_minutes * 60) as i64 - 1);
        assert!(r.check("acct", ip(IP)).await.is_err(), "still banned 1s before the end");
        advance(&clock, 1);
        assert!(r.check("acct", ip(IP)).await.is_ok(), "ban of {want_minutes} min expired");
    }
}

#[tokio::test]
async fn ban_level_is_forgotten_after_a_day() {
    let (r, clock, _) = setup();
    fail(&r, "acct", 5).await;
    advance(&clock, 60);
    fail(&r, "acct", 5).await; // level 2: 2 minutes
    advance(&clock, 24 * 3600 + 120);
    assert_eq!(fail(&r, "acct", 5).await.unwrap().retry_after, Duration::from_secs(60));
}

#[tokio::test]
async fn right_password_is_refused_during_a_ban() {
    let (r, _, _) = setup();
    fail(&r, "acct", 5).await;
    // The caller checks first and does not even verify the password.
    assert!(r.check("acct", ip(IP)).await.is_err());
}

#[tokio::test]
async fn failures_during_a_ban_do_not_escalate_it() {
    let (r, clock, _) = setup();
    fail(&r, "acct", 5).await;
    let during = fail(&r, "acct", 3).await.unwrap();
    assert_eq!(during.scope, LockScope::Account);
    assert_eq!(during.retry_after, Duration::from_secs(60));
    advance(&clock, 60);
    assert!(r.check("acct", ip(IP)).await.is_ok());
}

#[tokio::test]
async fn success_resets_failures_and_ban_level() {
    let (r, clock, _) = setup();
    fail(&r, "acct", 5).await;
    advance(&clock, 60);
    fail(&r, "acct", 4).await;
    r.record_success("acct").await.unwrap();
    // The four failures are gone: four more do not lock.
    assert_eq!(fail(&r, "acct", 4).await, None);
    r.record_success("acct").await.unwrap();
    // And the next ban starts again at the base length.
    assert_eq!(fail(&r, "acct", 5).await.unwrap().retry_after, Duration::from_secs(60));
}

#[tokio::test]
async fn ip_spraying_across_accounts_locks_the_address_until_the_window_ends() {
    let (r, clock, _) = setup();
    let attacker = ip("203.0.113.66");
    for i in 0..19 {
        let locked = r.record_failure(&format!("acct{i}"), attacker).await.unwrap();
        assert_eq!(locked, None);
    }
    advance(&clock, 60);
    let locked = r.record_failure("acct19", attacker).await.unwrap().unwrap();
    assert_eq!(locked.scope, LockScope::ClientIp);
    let refused = r.check("fresh-account", attacker).await.unwrap_err();
    assert_eq!(refused.scope, LockScope::ClientIp);
    assert_eq!(refused.retry_after, Duration::from_secs(4 * 60));
    // Another address can still log in to the same accounts.
    assert!(r.check("acct0", ip(IP)).await.is_ok());
    // A success from the attacker's address does not lift the address lock.
    r.record_success("acct0").await.unwrap();
    assert!(r.check("acct0", attacker).await.is_err());
    advance(&clock, 4 * 60);
    assert!(r.check("fresh-account", attacker).await.is_ok());
}

#[tokio::test]
async fn the_address_lock_lasts_for_ip_window_whatever_the_ban_length() {
    let clock = ManualClock::at_epoch();
    let store = Arc::new(MemoryRegulationStore::new(1_000, Arc::new(clock.clone())));
    let config = RegulationConfig {
        base_ban: Duration::from_secs(4),
        ip_max_failures: 3,
        ip_window: Duration::from_secs(30),
        ..RegulationConfig::default()
    };
    let r = LoginRegulator::new(store, config);
    let attacker = ip("203.0.113.66");
    for i in 0..3 {
        r.record_failure(&format!("acct{i}"), attacker).await.unwrap();
    }
    let refused = r.check("fresh-account", attacker).await.unwrap_err();
    assert_eq!(refused.scope, LockScope::ClientIp);
    assert_eq!(refused.retry_after, Duration::from_secs(30));
    // Past the ban length, the address is still locked: bans are for accounts.
    advance(&clock, 6);
    let refused = r.check("fresh-account", attacker).await.unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_secs(24));
    advance(&clock, 24);
    assert!(r.check("fresh-account", attacker).await.is_ok());
}

#[tokio::test]
async fn ipv6_neighbours_in_one_slash_64_share_the_address_lock() {
    let (r, _, _) = setup();
    for i in 0..20 {
        r.record_failure(&format!("a{i}"), ip(&format!("2001:db8:7:7::{:x}", i + 1)))
            .await
            .unwrap();
    }
    assert!(r.check("x", ip("2001:db8:7:7:ffff::1")).await.is_err());
    assert!(r.check("x", ip("2001:db8:7:8::1")).await.is_ok());
}

#[tokio::test]
async fn failures_are_counted_under_the_account_key_and_the_address() {
    let (r, _, store) = setup();
    r.record_failure("hash-of-email", ip(IP)).await.unwrap();
    assert_eq!(store.len(), 2);
    assert!(store.failures("reg:acct:hash-of-email:fail").await.unwrap().is_some());
    assert!(store.failures(&format!("reg:ip:{IP}:fail")).await.unwrap().is_some());
}

#[derive(Debug)]
struct Down;

#[async_trait]
impl RegulationStore for Down {
    async fn incr_failure(&self, _: &str, _: Duration) -> Result<FailureCount, RateLimitError> {
        Err(RateLimitError::InvalidState { detail: "down" })
    }
    async fn failures(&self, _: &str) -> Result<Option<FailureCount>, RateLimitError> {
        Err(RateLimitError::InvalidState { detail: "down" })
    }
    async fn ban(&self, _: &str) -> Result<Option<BanState>, RateLimitError> {
        Err(RateLimitError::InvalidState { detail: "down" })
    }
    async fn set_ban(
        &self,
        _: &str,
        _: u32,
        _: Duration,
        _: Duration,
    ) -> Result<(), RateLimitError> {
        Err(RateLimitError::InvalidState { detail: "down" })
    }
    async fn remove(&self, _: &str) -> Result<(), RateLimitError> {
        Err(RateLimitError::InvalidState { detail: "down" })
    }
}

#[tokio::test]
async fn store_failure_fails_closed() {
    let r = LoginRegulator::new(Arc::new(Down), RegulationConfig::default());
    assert_eq!(r.check("acct", ip(IP)).await.unwrap_err().scope, LockScope::Unavailable);
    assert!(r.record_failure("acct", ip(IP)).await.is_err());
}

#[test]
fn config_defaults_validate_and_bad_values_are_named() {
    let c = RegulationConfig::default();
    assert!(c.validate().is_ok());
    assert_eq!(c.max_failures, 5);
    assert_eq!(c.ip_max_failures, 20);
    let zero = RegulationConfig { window: Duration::ZERO, ..c };
    assert!(matches!(
        zero.validate(),
        Err(RateLimitConfigError::InvalidRegulation { setting: "window", .. })
    ));
    let inverted = RegulationConfig { max_ban: Duration::from_secs(1), ..c };
    assert!(inverted.validate().is_err());
    assert_eq!(c.ban_duration(u32::MAX), c.max_ban);
}

#[tokio::test]
async fn memory_store_stays_bounded() {
    let clock = ManualClock::at_epoch();
    let store = MemoryRegulationStore::new(50, Arc::new(clock));
    for i in 0..500 {
        store.incr_failure(&format!("k{i}"), Duration::from_secs(60)).await.unwrap();
        assert!(store.len() <= 50);
    }
    assert_eq!(store.evictions(), 450);
}

#[tokio::test]
async fn concurrent_attempts_are_counted_before_verifying_so_only_five_are_verified() {
    let (r, _, _) = setup();
    // Eight guesses arrive together: each is counted before any is verified.
    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        match r.begin("acct", ip(IP)).await {
            Ok(attempt) => admitted.push(attempt),
            Err(locked) => {
                assert_eq!(locked.scope, LockScope::Account);
                assert_eq!(locked.retry_after, Duration::from_secs(60), "the ban ahead");
                refused += 1;
            }
        }
    }
    assert_eq!((admitted.len(), refused), (5, 3));
    // All five were wrong: the fifth to be counted starts the ban, whatever order they end in.
    let mut started = None;
    for attempt in admitted.into_iter().rev() {
        if let Some(locked) = r.fail("acct", ip(IP), attempt).await.unwrap() {
            started.get_or_insert(locked);
        }
    }
    assert_eq!(started.map(|l| l.scope), Some(LockScope::Account));
    assert_eq!(r.begin("acct", ip(IP)).await.unwrap_err().scope, LockScope::Account);
    assert!(r.begin("other", ip("192.0.2.1")).await.is_ok(), "other accounts are unaffected");
}

#[tokio::test]
async fn a_right_password_frees_the_places_of_attempts_in_flight() {
    let (r, clock, _) = setup();
    let attempts: Vec<Attempt> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(r.begin("acct", ip(IP)).await.unwrap());
        }
        v
    };
    assert!(r.begin("acct", ip(IP)).await.is_err(), "all five places are taken");
    r.record_success("acct").await.unwrap();
    // The four wrong ones still report; none of them starts a ban.
    for attempt in attempts.into_iter().take(4) {
        assert_eq!(r.fail("acct", ip(IP), attempt).await.unwrap(), None);
    }
    assert!(r.begin("acct", ip(IP)).await.is_ok());
    // Counted attempts expire with the window like failures.
    advance(&clock, 15 * 60);
    for _ in 0..5 {
        let _ = r.begin("acct", ip(IP)).await.unwrap();
    }
}

#[tokio::test]
async fn begin_fails_closed_when_the_store_fails() {
    let r = LoginRegulator::new(Arc::new(Down), RegulationConfig::default());
    assert_eq!(r.begin("acct", ip(IP)).await.unwrap_err().scope, LockScope::Unavailable);
}
