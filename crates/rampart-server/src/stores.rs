//! Choosing and building the stores from the configuration: sessions (memory, Redis or SQL),
//! rate limits and login regulation (memory, or Redis with a local fallback), the audit log.

use std::sync::Arc;
use std::time::Duration;

use rampart_core::{Keyring, SharedClock, SystemClock};
use rampart_password::{Argon2Params, AsyncHasher, PasswordPolicy};
use rampart_ratelimit::{
    LoginRegulator, MemoryRateLimitStore, MemoryRegulationStore, RateLimitStore, RegulationConfig,
    RegulationStore,
};
use rampart_session::{
    CookieConfig, MemorySessionStore, SameSite, SessionManager, SessionStore, SessionTimeouts,
};
use rampart_store_redis::RedisHandle;
use rampart_store_sql::Db;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SessionStoreKind};
use crate::startup::StartupError;
use crate::state::{AppState, Inner};

/// Builds every store and the shared state.
pub async fn build(
    config: Config,
    db: Db,
    keyring: Keyring,
    redis: Option<RedisHandle>,
    instance_id: String,
) -> Result<AppState, StartupError> {
    let clock: SharedClock = SystemClock::shared();
    let shutdown = CancellationToken::new();
    let kind = match (config.session_store(), &redis) {
        (SessionStoreKind::Redis, None) => {
            tracing::warn!("session store falls back to memory because Redis is unavailable (development only)");
            SessionStoreKind::Memory
        }
        (k, _) => k,
    };
    let mut memory_sessions = None;
    let session_store: Arc<dyn SessionStore> = match (kind, &redis) {
        (SessionStoreKind::Redis, Some(r)) => {
            Arc::new(rampart_store_redis::session::RedisSessionStore::new(
                r.manager(),
                keyring.clone(),
                format!("{}sess:", config.redis_key_prefix),
                config.session.store_timeout,
            ))
        }
        // The SQL store waits on the database pool; RAMPART_SESSION_STORE_TIMEOUT bounds it as
        // the Redis store bounds its own commands.
        (SessionStoreKind::Sql, _) => Arc::new(rampart_session::TimeoutStore::new(
            Arc::new(rampart_store_sql::SqlSessionStore::new(
                db.clone(),
                keyring.clone(),
                clock.clone(),
            )),
            config.session.store_timeout,
        )),
        _ => {
            let mem =
                Arc::new(MemorySessionStore::new(config.session.memory_capacity, clock.clone()));
            mem.spawn_sweeper(Duration::from_secs(30), shutdown.clone());
            memory_sessions = Some(mem.clone());
            mem
        }
    };
    let timeouts = SessionTimeouts {
        idle: config.session.idle_timeout,
        absolute: config.session.absolute_timeout,
        touch_interval: config.session.touch_interval,
    };
    let sessions = SessionManager::new(session_store, keyring.clone(), timeouts, clock.clone());
    let mut cookie = CookieConfig::for_origin_https(config.public_origin.is_https());
    if config.session.same_site_strict {
        cookie = cookie.with_same_site(SameSite::Strict);
    }
    if let Some(max_age) = config.session.cookie_max_age {
        cookie = cookie.with_max_age(max_age).clamped(config.session.absolute_timeout);
    }

    let params = Argon2Params {
        m_kib: config.password.argon2_memory_kib,
        t: config.password.argon2_iterations,
        p: config.password.argon2_parallelism,
    };
    let hasher =
        AsyncHasher::new(params, config.password.hash_concurrency, config.password.hash_queue);
    let password_policy = PasswordPolicy::new(config.password.min_length);

    let local_limits = MemoryRateLimitStore::new(config.rate_limit_capacity, clock.clone());
    let local_regulation =
        MemoryRegulationStore::new(config.rate_limit_capacity.min(1_000_000), clock.clone());
    let (rate_limits, regulation): (Arc<dyn RateLimitStore>, Arc<dyn RegulationStore>) =
        match &redis {
            Some(r) => (
                Arc::new(rampart_ratelimit::FallbackStore::new(
                    Arc::new(rampart_store_redis::ratelimit::RedisRateLimitStore::new(
                        r.clone(),
                        format!("{}rl:", config.redis_key_prefix),
                    )),
                    local_limits,
                )),
                Arc::new(rampart_store_redis::ratelimit::RedisRegulationStore::new(
                    r.clone(),
                    format!("{}reg:", config.redis_key_prefix),
                )),
            ),
            None => (Arc::new(local_limits), Arc::new(local_regulation)),
        };
    let regulator = LoginRegulator::new(
        regulation,
        RegulationConfig {
            max_failures: config.login.max_failures,
            window: config.login.failure_window,
            base_ban: config.login.ban,
            ip_max_failures: config.login.ip_max_failures,
            ip_window: config.login.ip_window,
            ..RegulationConfig::default()
        },
    );

    let audit_sink = crate::audit_store::open(
        &db,
        &keyring,
        &instance_id,
        clock.clone(),
        shutdown.clone(),
        config.audit_stream.as_deref(),
    )
    .await
    .map_err(|e| {
        StartupError::new(
            if config.audit_stream.is_some() {
                "RAMPART_AUDIT_STREAM"
            } else {
                "RAMPART_DATABASE_URL"
            },
            format!("cannot open the audit log ({e})"),
        )
    })?;
    let audit_bound = rampart_audit::RateBound::new(Duration::from_secs(60), clock.clone());
    let vault = crate::vault::Vault::new(config.vault.clone())
        .map_err(|e| StartupError::new("vault", format!("cannot build the HTTP client ({e})")))?;
    let pseudonym_key = crate::pseudonymize::resolve_key(&config)?;

    let assertions = crate::gateway::identity::Assertions::new(keyring.current(), &config);
    let access_rules = crate::gateway::rules::AccessRules::from_config(&config);
    let origin_csrf = crate::gateway::proxy::origin_policy(&config);
    Ok(AppState::new(Inner {
        config,
        db,
        keyring,
        assertions,
        clock,
        redis,
        instance_id,
        sessions,
        cookie,
        hasher,
        password_policy,
        regulator,
        rate_limits,
        audit_sink,
        audit_bound,
        metrics: crate::metrics::Metrics::default(),
        memory_sessions,
        vault,
        access_rules,
        origin_csrf,
        pseudonym_key,
        shutdown,
    }))
}
