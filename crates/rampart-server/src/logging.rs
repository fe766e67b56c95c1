//! Operational logging (separate from the audit log).
//!
//! # Security
//! Nothing in Rampart logs request or response headers, bodies or query strings; the access log
//! records method, path, status, latency, client IP and request id only. Emails are masked with
//! [`rampart_core::redact::mask_email`] wherever they are logged. A test plants known secrets and
//! scans everything the server printed.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber writing to standard error. Safe to call once per process.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
