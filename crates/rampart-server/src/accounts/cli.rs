//! `rampart user add | set-role | disable | import`.
//!
//! Passwords are read from standard input (`--password-stdin`) or generated and printed once;
//! they are never taken from the command line, where other users of the machine could read them.

use std::io::{BufRead, Read};
use std::process::ExitCode;

use clap::Subcommand;
use rampart_core::SecretString;
use rampart_store_sql::{Db, NewUser, Role, StoreError};

use super::{create_user, new_user_id, valid_email, AccountError, CreateUser};
use crate::config::Config;

/// User administration.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from stdin with --password-stdin, else generated and
    /// printed once.
    Add {
        /// Email address.
        #[arg(long)]
        email: String,
        /// `admin` or `user`.
        #[arg(long, default_value = "user")]
        role: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's role (their sessions are revoked where this command can reach the store).
    SetRole {
        /// Email address.
        #[arg(long)]
        email: String,
        /// `admin` or `user`.
        #[arg(long)]
        role: String,
    },
    /// Disable a user (their sessions are revoked where this command can reach the store).
    Disable {
        /// Email address.
        #[arg(long)]
        email: String,
    },
    /// Import users from a JSON-lines file: `{"email":…,"role":…,"password_hash":…}` with
    /// Argon2id, bcrypt or unsalted SHA-256 hex hashes (upgraded at the next login).
    Import {
        /// The file.
        file: std::path::PathBuf,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("role must be `admin` or `user`, got {text:?}"))
}

/// Whether a stored hash is in a format Rampart can verify.
pub fn known_hash_format(hash: &str) -> bool {
    let argon = ["$argon2id$", "$argon2i$", "$argon2d$"].iter().any(|p| hash.starts_with(p));
    let bcrypt = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) && hash.len() == 60;
    let sha256 = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    argon || bcrypt || sha256
}

/// Runs a user command against the configured database.
pub async fn run(mut config: Config, cmd: UserCommand) -> ExitCode {
    crate::logging::init(&config.log, config.log_format);
    // A command may run beside a live server on the same database: it writes its audit events
    // to a chain of its own, so the server's chain keeps a single writer.
    config.instance_id = Some(format!("cli-{}", rampart_core::token::random_id(6)));
    let state = match crate::startup::build_state(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rampart: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match cmd {
        UserCommand::Add { email, role, password_stdin } => {
            add(&state, &email, &role, password_stdin).await
        }
        UserCommand::SetRole { email, role } => match parse_role(&role) {
            Ok(r) => update(&state, &email, Some(r), None).await,
            Err(e) => Err(e),
        },
        UserCommand::Disable { email } => update(&state, &email, None, Some(true)).await,
        UserCommand::Import { file } => import(&state.db, &file, state.clock.now()).await,
    };
    state.db.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn add(
    state: &crate::state::AppState,
    email: &str,
    role: &str,
    password_stdin: bool,
) -> Result<(), String> {
    let role = parse_role(role)?;
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let line = line
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line)
            .to_owned();
        (SecretString::new(line), false)
    } else {
        (rampart_core::token::random_token(), true)
    };
    let user = create_user(
        &state.db,
        &state.hasher,
        &state.password_policy,
        state.clock.now(),
        CreateUser { email, password: &password, role, first_user: false },
    )
    .await
    .map_err(|e| match e {
        AccountError::Store(s) => format!("storage failed: {}", crate::error::ErrorChain(&s)),
        other => other.to_string(),
    })?
    .ok_or("user not created")?;
    crate::audit::record_cli(
        state,
        rampart_audit::EventKind::UserCreated,
        &user,
        serde_json::json!({"role": user.role.as_str(), "via": "cli"}),
    )
    .await;
    println!("created user {} ({}, {})", user.id, user.email, user.role.as_str());
    if generated {
        println!("generated password (shown once): {}", password.expose_secret());
    }
    Ok(())
}

async fn update(
    state: &crate::state::AppState,
    email: &str,
    role: Option<Role>,
    disabled: Option<bool>,
) -> Result<(), String> {
    let user = state
        .db
        .user_by_email(email)
        .await
        .map_err(|e| format!("storage failed: {}", crate::error::ErrorChain(&e)))?
        .ok_or_else(|| format!("no user with email {email}"))?;
    let updated = state
        .db
        .update_user(&user.user.id, role, disabled, state.clock.now())
        .await
        .map_err(|e| format!("storage failed: {}", crate::error::ErrorChain(&e)))?
        .ok_or("user vanished")?;
    let revoked = state.sessions.revoke_for_user(&updated.id, None, None).await.unwrap_or(0);
    let kind = if role.is_some() {
        rampart_audit::EventKind::UserRoleChanged
    } else {
        rampart_audit::EventKind::UserDisabled
    };
    crate::audit::record_cli(state, kind, &updated, serde_json::json!({"role": updated.role.as_str(), "disabled": updated.disabled, "via": "cli", "sessions_revoked": revoked})).await;
    println!(
        "updated user {} (role {}, disabled {}); {revoked} session(s) revoked",
        updated.id,
        updated.role.as_str(),
        updated.disabled
    );
    if state.config.session_store() == crate::config::SessionStoreKind::Memory {
        println!("note: a running server with the in-memory session store ends this user's sessions at their next request after the touch interval (RAMPART_SESSION_TOUCH_INTERVAL, 60s by default); use the admin API to revoke them at once");
    }
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    email: String,
    role: String,
    password_hash: String,
}

async fn import(db: &Db, file: &std::path::Path, now: time::OffsetDateTime) -> Result<(), String> {
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let (mut ok, mut failed) = (0usize, 0usize);
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() {
            continue;
        }
        let parsed: Result<ImportLine, String> = serde_json::from_str(line)
            .map_err(|e| format!("not a valid line ({})", e.classify_name()));
        let outcome = match parsed {
            Err(e) => Err(e),
            Ok(l) if !valid_email(&l.email) => Err("invalid email".to_owned()),
            Ok(l) if !known_hash_format(&l.password_hash) => {
                Err("unknown password hash format".to_owned())
            }
            Ok(l) => match parse_role(&l.role) {
                Err(e) => Err(e),
                Ok(role) => {
                    let new = NewUser {
                        id: new_user_id(),
                        email: l.email.clone(),
                        role,
                        password_hash: l.password_hash,
                    };
                    match db.create_user(&new, now).await {
                        Ok(_) => Ok(()),
                        Err(StoreError::Conflict) => Err(format!("{} already exists", l.email)),
                        Err(e) => Err(format!("storage failed: {}", crate::error::ErrorChain(&e))),
                    }
                }
            },
        };
        match outcome {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                eprintln!("line {n}: {e}");
            }
        }
    }
    println!("imported {ok} user(s), {failed} failed");
    if failed > 0 {
        Err(format!("{failed} line(s) were not imported"))
    } else {
        Ok(())
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "malformed JSON"
            }
            serde_json::error::Category::Data => "missing or unknown fields",
        }
    }
}
