//! Connecting to Redis: `redis://[user:pass@]host:port/db`, `rediss://` for TLS, an optional
//! password from its own setting, and a reconnecting connection manager with timeouts.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::IntoConnectionInfo;

/// Errors talking to Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
    /// Redis did not answer in time or refused the connection.
    #[error("Redis unavailable")]
    Unavailable(#[source] Option<redis::RedisError>),
    /// Redis answered with an error.
    #[error("Redis error")]
    Command(#[source] redis::RedisError),
}

/// A shared, reconnecting Redis connection with an operation timeout.
#[derive(Clone)]
pub struct RedisHandle {
    manager: ConnectionManager,
    timeout: Duration,
}

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHandle").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// Connects (and checks the connection). `password` overrides any password in the URL.
pub async fn connect(
    url: &str,
    password: Option<&str>,
    timeout: Duration,
) -> Result<RedisHandle, RedisError> {
    let mut info = url.into_connection_info().map_err(RedisError::InvalidUrl)?;
    if let Some(pw) = password {
        info.redis.password = Some(pw.to_owned());
    }
    let client = redis::Client::open(info).map_err(RedisError::InvalidUrl)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(1)
        .set_max_delay(2000);
    let manager =
        tokio::time::timeout(timeout * 2, ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|_| RedisError::Unavailable(None))?
            .map_err(|e| RedisError::Unavailable(Some(e)))?;
    let handle = RedisHandle { manager, timeout };
    handle.ping().await?;
    Ok(handle)
}

impl RedisHandle {
    /// The connection manager (cheap to clone).
    pub fn manager(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// The per-operation timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs a command future with the operation timeout, mapping errors.
    pub async fn run<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(RedisError::Unavailable(None)),
            Ok(Err(e))
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout() =>
            {
                Err(RedisError::Unavailable(Some(e)))
            }
            Ok(Err(e)) => Err(RedisError::Command(e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// `PING`, within the timeout.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut m = self.manager();
        let pong: String =
            self.run(async move { redis::cmd("PING").query_async(&mut m).await }).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(RedisError::Unavailable(None))
        }
    }
}
