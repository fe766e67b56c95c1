//! Startup: keys, database, migrations, Redis, then serving with graceful shutdown.
//!
//! Production fails closed: every check here that fails stops startup with one line on standard
//! error naming the setting, and a non-zero exit. Development is convenient and loud: it
//! generates a key, runs migrations and falls back to memory when Redis does not answer, each
//! with a WARN line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rampart_core::{Keyring, MasterKey, SecretString};
use rampart_store_sql::Db;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::cli::MigrateAction;
use crate::config::{Config, Env};
use crate::state::AppState;

/// A startup failure: the setting to name and the message.
#[derive(Debug)]
pub struct StartupError {
    setting: &'static str,
    message: String,
}

impl StartupError {
    /// A startup error naming `setting`.
    pub fn new(setting: &'static str, message: impl Into<String>) -> Self {
        Self { setting, message: message.into() }
    }

    fn exit(&self) -> ExitCode {
        tracing::error!(setting = self.setting, "startup refused: {}", self.message);
        eprintln!("rampart: startup refused: {}: {}", self.setting, self.message);
        ExitCode::from(1)
    }
}

/// Resolves the master key: configured, or (development only) loaded from or generated into
/// `<data dir>/secret.key` with mode 0600.
pub fn resolve_keyring(config: &Config) -> Result<Keyring, StartupError> {
    let current = match &config.secret_key {
        Some(k) => MasterKey::parse(k.expose_secret())
            .map_err(|e| StartupError::new("RAMPART_SECRET_KEY", e.to_string()))?,
        None if config.env == Env::Production => {
            return Err(StartupError::new("RAMPART_SECRET_KEY", "required in production"));
        }
        None => dev_key(&config.data_dir)?,
    };
    let previous = config
        .previous_secret_keys
        .iter()
        .map(|k| MasterKey::parse(k.expose_secret()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartupError::new("RAMPART_PREVIOUS_SECRET_KEYS", e.to_string()))?;
    Ok(Keyring::new(current, previous))
}

fn dev_key(data_dir: &Path) -> Result<MasterKey, StartupError> {
    let path = data_dir.join("secret.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return MasterKey::parse(&text).map_err(|e| {
            StartupError::new("RAMPART_SECRET_KEY", format!("{}: {e}", path.display()))
        });
    }
    create_private_dir(data_dir)?;
    let key = MasterKey::generate();
    write_private_file(&path, key.to_base64url().as_bytes()).map_err(|e| {
        StartupError::new("RAMPART_DATA_DIR", format!("cannot write {}: {e}", path.display()))
    })?;
    tracing::warn!(path = %path.display(), "RAMPART_SECRET_KEY is unset: generated a development key; set RAMPART_SECRET_KEY in production");
    Ok(key)
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StartupError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        StartupError::new("RAMPART_DATA_DIR", format!("cannot create {}: {e}", dir.display()))
    })
}

pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn instance_id(config: &Config) -> Result<String, StartupError> {
    if let Some(id) = &config.instance_id {
        return Ok(id.clone());
    }
    let path = config.data_dir.join("instance.id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_owned());
    }
    create_private_dir(&config.data_dir)?;
    let id = format!("inst-{}", rampart_core::token::random_id(6));
    write_private_file(&path, id.as_bytes()).map_err(|e| {
        StartupError::new("RAMPART_DATA_DIR", format!("cannot write {}: {e}", path.display()))
    })?;
    Ok(id)
}

/// Connects to the configured database (creating the SQLite directory).
pub async fn connect_db(config: &Config) -> Result<Db, StartupError> {
    let url = config.database_url.expose_secret();
    if url.starts_with("sqlite:") {
        if let Some(parent) = sqlite_parent(url) {
            create_private_dir(&parent)?;
        }
    }
    let db = tokio::time::timeout(
        config.pool.acquire_timeout + Duration::from_secs(2),
        Db::connect(url, &config.pool),
    )
    .await
    .map_err(|_| {
        StartupError::new("RAMPART_DATABASE_URL", "the database does not answer (timed out)")
    })?
    .map_err(|e| {
        StartupError::new("RAMPART_DATABASE_URL", format!("the database does not answer ({e})"))
    })?;
    db.ping().await.map_err(|e| {
        StartupError::new("RAMPART_DATABASE_URL", format!("the database does not answer ({e})"))
    })?;
    Ok(db)
}

fn sqlite_parent(url: &str) -> Option<std::path::PathBuf> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf)
}

/// Connects to Redis when configured. Production refuses to start without it; development
/// warns and goes on without it.
async fn connect_redis(
    config: &Config,
) -> Result<Option<rampart_store_redis::RedisHandle>, StartupError> {
    let Some(url) = &config.redis_url else { return Ok(None) };
    let pw = config.redis_password.as_ref().map(SecretString::expose_secret);
    match rampart_store_redis::conn::connect(
        url.expose_secret(),
        pw,
        config.session.store_timeout.max(Duration::from_secs(1)),
    )
    .await
    {
        Ok(h) => Ok(Some(h)),
        Err(e) if config.env == Env::Production => {
            Err(StartupError::new("RAMPART_REDIS_URL", format!("Redis does not answer ({e})")))
        }
        Err(e) => {
            tracing::warn!(error = %e, "RAMPART_REDIS_URL is set but Redis does not answer: falling back to in-memory stores (development only)");
            Ok(None)
        }
    }
}

async fn prepare(config: Config, migrate: bool) -> Result<AppState, StartupError> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let keyring = resolve_keyring(&config)?;
    let instance_id = instance_id(&config)?;
    let db = connect_db(&config).await?;
    let pending = db.pending_migrations().await.map_err(|e| {
        StartupError::new("RAMPART_DATABASE_URL", format!("cannot read migrations ({e})"))
    })?;
    if pending > 0 {
        if config.env == Env::Production && !migrate {
            return Err(StartupError::new(
                "RAMPART_DATABASE_URL",
                format!("{pending} migration(s) pending; run `rampart migrate up` or `rampart serve --migrate`"),
            ));
        }
        let applied = db.migrate_up().await.map_err(|e| {
            StartupError::new("RAMPART_DATABASE_URL", format!("migration failed ({e})"))
        })?;
        tracing::info!(?applied, "applied database migrations");
    }
    let redis = connect_redis(&config).await?;
    crate::stores::build(config, db, keyring, redis, instance_id).await
}

/// `rampart serve`.
pub async fn serve(config: Config, migrate: bool) -> ExitCode {
    crate::logging::init(&config.log, config.log_format);
    let tls = match config.tls.as_ref().map(crate::tls::acceptor).transpose() {
        Ok(tls) => tls,
        Err(e) => return e.exit(),
    };
    if let Err(e) = crate::gateway::proxy::Proxy::from_config(&config) {
        return e.exit();
    }
    let addr = config.listen;
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            return StartupError::new("RAMPART_LISTEN", format!("cannot listen on {addr}: {e}"))
                .exit()
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    let state = match prepare(config.with_bound_listen(bound), migrate).await {
        Ok(s) => s,
        Err(e) => return e.exit(),
    };
    let local = listener.local_addr().unwrap_or(addr);
    let workers = match state.config.workers {
        0 => None,
        n => match crate::workers::Workers::start(n) {
            Ok(w) => Some(w),
            Err(e) => {
                return StartupError::new(
                    "RAMPART_WORKERS",
                    format!("cannot start {n} connection loops: {e}"),
                )
                .exit()
            }
        },
    };
    let shutdown = CancellationToken::new();
    let app = crate::http::app(state.clone());
    let signal = shutdown_signal();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        stop.cancel();
    });
    tracing::info!(listen = %local, public_origin = %state.config.public_origin.to_origin_string(), instance = %state.instance_id, "rampart is listening");
    println!(
        "rampart listening on {}://{local} (public origin {})",
        if tls.is_some() { "https" } else { "http" },
        state.config.public_origin.to_origin_string()
    );
    if let Some(maddr) = state.config.metrics_listen {
        match TcpListener::bind(maddr).await {
            Ok(l) => {
                let local = l.local_addr().unwrap_or(maddr);
                println!("rampart metrics on http://{local}/metrics");
                let app = crate::metrics::app(state.clone());
                let stop = shutdown.clone();
                let hrt = state.config.limits.header_read_timeout;
                tokio::spawn(async move { run_server(l, app, hrt, stop).await });
            }
            Err(e) => {
                return StartupError::new(
                    "RAMPART_METRICS_LISTEN",
                    format!("cannot listen on {maddr}: {e}"),
                )
                .exit()
            }
        }
    }
    let hrt = state.config.limits.header_read_timeout;
    run_server_tls(listener, app, hrt, tls, workers.as_ref(), shutdown).await;
    state.shutdown.cancel();
    crate::audit_store::flush(&state).await;
    state.db.close().await;
    // Only now: database connections opened by a loop are driven by its reactor.
    drop(workers);
    tracing::info!("rampart stopped");
    ExitCode::SUCCESS
}

/// Installs the SIGTERM and SIGINT handlers now, and returns a future that ends at the first
/// of them. Installed before the server announces that it listens, so a signal sent as soon as
/// the announcement is seen still shuts down gracefully instead of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
        async move {
            let (Ok(mut term), Ok(mut int)) = handlers else {
                std::future::pending::<()>().await;
                return;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down gracefully"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down gracefully"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Accepts connections until `shutdown`, then lets in-flight requests finish (up to 30 s).
/// Connections are served on the shared runtime.
pub async fn run_server(
    listener: TcpListener,
    app: axum::Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    run_server_tls(listener, app, header_read_timeout, None, None, shutdown).await;
}

/// [`run_server`], serving HTTPS (HTTP/2 and HTTP/1.1 by ALPN) when `tls` is set, and each
/// connection on one of `workers`' loops when given. Each TLS handshake runs in the
/// connection's own task and must finish within `header_read_timeout`.
pub async fn run_server_tls(
    listener: TcpListener,
    app: axum::Router,
    header_read_timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    workers: Option<&crate::workers::Workers>,
    shutdown: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(64 * 1024);
    // HTTP/2 has no header timer: a peer that stops answering pings is closed instead.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(header_read_timeout)
        .keep_alive_timeout(header_read_timeout);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let svc = app.clone().map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(axum::extract::ConnectInfo::<SocketAddr>(peer));
                    req
                });
                let svc = hyper_util::service::TowerToHyperService::new(svc);
                let (builder, watcher, stop) = (builder.clone(), graceful.watcher(), shutdown.clone());
                let job: crate::workers::Job = match &tls {
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        Box::new(move |stream| Box::pin(async move {
                            let stream = match tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => return tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                            };
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                            let _ = watcher.watch(conn.into_owned()).await;
                        }))
                    }
                    None => Box::new(move |stream| Box::pin(async move {
                        if !first_byte_within(&stream, header_read_timeout, &stop).await {
                            return tracing::debug!(%peer, "no request within the header read timeout");
                        }
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                        let _ = watcher.watch(conn.into_owned()).await;
                    })),
                };
                match workers {
                    Some(workers) => workers.dispatch(stream, job),
                    None => drop(tokio::spawn(job(stream))),
                }
            }
            () = shutdown.cancelled() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within 30s; closing");
    }
}

/// Waits for the client's first byte, up to `limit`; false when it never came, the peer closed,
/// or the server is stopping. The HTTP/1 header timer only starts at the first byte, so without
/// this a client that connects and sends nothing would hold its connection forever.
async fn first_byte_within(
    stream: &tokio::net::TcpStream,
    limit: Duration,
    stop: &CancellationToken,
) -> bool {
    let mut first = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(limit, stream.peek(&mut first)) => {
            matches!(peeked, Ok(Ok(n)) if n > 0)
        }
        () = stop.cancelled() => false,
    }
}

/// `rampart migrate up|down|status`.
pub async fn migrate(config: Config, action: MigrateAction) -> ExitCode {
    crate::logging::init(&config.log, config.log_format);
    let db = match connect_db(&config).await {
        Ok(db) => db,
        Err(e) => return e.exit(),
    };
    let result = match action {
        MigrateAction::Up => db.migrate_up().await.map(|v| {
            if v.is_empty() {
                println!("nothing to apply");
            }
            for m in v {
                println!("applied {m}");
            }
        }),
        MigrateAction::Down => db.migrate_down().await.map(|v| match v {
            Some(m) => println!("reverted {m}"),
            None => println!("nothing to revert"),
        }),
        MigrateAction::Status => db.migration_status().await.map(|list| {
            for m in list {
                println!(
                    "{:>4} {:<8} {}",
                    m.version,
                    if m.applied { "applied" } else { "pending" },
                    m.description
                );
            }
        }),
    };
    db.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart: migration failed: {}", crate::error::ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Builds the state for an already validated configuration (keys, database, migrations, Redis),
/// as `serve` does. For embedding Rampart and for tests.
pub async fn build_state(config: Config) -> Result<AppState, StartupError> {
    prepare(config, true).await
}

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

impl std::error::Error for StartupError {}
