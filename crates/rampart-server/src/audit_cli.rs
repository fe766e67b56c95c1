//! `rampart audit verify | export`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;

/// Audit log commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify every instance's hash chain and checkpoints; exits non-zero on any failure.
    Verify {
        /// Operational log (JSON lines) whose mirrored checkpoints reveal a truncated tail.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<std::path::PathBuf>,
    },
    /// Remove events older than --before (or the configured retention), after writing a signed
    /// anchor per instance so verification still passes.
    Prune {
        /// Remove events before this RFC 3339 time (default: now minus RAMPART_AUDIT_RETENTION).
        #[arg(long, value_name = "TIME")]
        before: Option<String>,
    },
    /// Write events as JSON lines to standard output, oldest first per instance.
    Export {
        /// Only events at or after this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
}

/// Runs an audit command.
pub async fn run(config: Config, cmd: AuditCommand) -> ExitCode {
    crate::logging::init(&config.log, config.log_format);
    let keyring = match crate::startup::resolve_keyring(&config) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("rampart: {e}");
            return ExitCode::from(1);
        }
    };
    let db = match crate::startup::connect_db(&config).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("rampart: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match cmd {
        AuditCommand::Verify { checkpoints } => {
            let external = match checkpoints {
                None => Vec::new(),
                Some(path) => match std::fs::read_to_string(&path) {
                    Ok(text) => crate::audit_store::checkpoints_from_log(&text),
                    Err(e) => {
                        eprintln!("rampart: cannot read {}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                },
            };
            verify(&db, &keyring, external).await
        }
        AuditCommand::Prune { before } => {
            prune(&db, &keyring, before.as_deref(), config.audit_retention).await
        }
        AuditCommand::Export { since } => export(&db, since.as_deref()).await,
    };
    db.close().await;
    code
}

async fn prune(
    db: &rampart_store_sql::Db,
    keyring: &rampart_core::Keyring,
    before: Option<&str>,
    retention: Option<std::time::Duration>,
) -> ExitCode {
    let before = match (before, retention) {
        (Some(s), _) => {
            match time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
                Ok(t) => t,
                Err(_) => {
                    eprintln!(
                        "rampart: --before must be an RFC 3339 time, like 2030-01-01T00:00:00Z"
                    );
                    return ExitCode::from(2);
                }
            }
        }
        (None, Some(keep)) => {
            let now = rampart_core::Clock::now(&rampart_core::SystemClock);
            now - time::Duration::try_from(keep).unwrap_or(time::Duration::MAX)
        }
        (None, None) => {
            eprintln!("rampart: give --before or set RAMPART_AUDIT_RETENTION (the default keeps everything)");
            return ExitCode::from(2);
        }
    };
    match crate::audit_store::prune(db, keyring, rampart_store_sql::to_micros(before)).await {
        Ok(n) => {
            println!("pruned {n} audit event(s) older than {before}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart: prune failed: {}", crate::error::ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn verify(
    db: &rampart_store_sql::Db,
    keyring: &rampart_core::Keyring,
    external: Vec<rampart_audit::Checkpoint>,
) -> ExitCode {
    let total = db.audit_count().await.unwrap_or(0);
    let tty = std::io::stderr().is_terminal();
    let progress = move |n: u64| {
        if tty {
            let pct = (n.min(total) * 100).checked_div(total).unwrap_or(100);
            let filled = usize::try_from(pct / 5).unwrap_or(20);
            eprint!(
                "\r[{}{}] {n}/{total} events",
                "#".repeat(filled),
                ".".repeat(20 - filled.min(20))
            );
            let _ = std::io::stderr().flush();
        }
    };
    match crate::audit_store::verify(db, keyring, external, progress).await {
        Ok(report) => {
            if tty {
                eprintln!();
            }
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            if report.ok {
                println!("audit log verified: {} events, no tampering found", report.checked);
                ExitCode::SUCCESS
            } else {
                println!("audit log verification FAILED");
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("rampart: cannot read the audit log: {}", crate::error::ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn export(db: &rampart_store_sql::Db, since: Option<&str>) -> ExitCode {
    let since = match since {
        None => None,
        Some(s) => {
            match time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
                Ok(t) => Some(rampart_store_sql::to_micros(t)),
                Err(_) => {
                    eprintln!(
                        "rampart: --since must be an RFC 3339 time, like 2030-01-01T00:00:00Z"
                    );
                    return ExitCode::from(2);
                }
            }
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut after: Option<(String, u64)> = None;
    loop {
        let chunk = match db
            .audit_chunk(after.as_ref().map(|(i, s)| (i.as_str(), *s)), since, 5000)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("rampart: cannot read the audit log: {}", crate::error::ErrorChain(&e));
                return ExitCode::FAILURE;
            }
        };
        let Some(last) = chunk.last() else { break };
        after = Some((last.instance.clone(), last.seq));
        for ev in &chunk {
            let line = serde_json::to_writer(&mut out, ev)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if line.is_err() {
                return ExitCode::FAILURE;
            }
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
