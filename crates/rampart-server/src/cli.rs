//! The command line: `rampart serve | migrate | check-config | gen-secret | …`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, RawValues};

/// Rampart: a security gateway for web apps — login, sessions, CSRF protection, rate limiting,
/// security headers, API keys and a tamper-evident audit log in front of any app.
#[derive(Debug, Parser)]
#[command(name = "rampart", version, about, long_about = None)]
#[command(
    after_help = "Configuration layers: built-in defaults, then the TOML file, then RAMPART_* \
environment variables, then flags. Run `rampart check-config` to see the result."
)]
pub struct Cli {
    /// TOML configuration file (also RAMPART_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Apply, revert or list database migrations.
    Migrate {
        /// Direction.
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the effective configuration (secrets redacted) and every warning.
    CheckConfig,
    /// Print a fresh random 32-byte key, base64url, for RAMPART_SECRET_KEY.
    GenSecret,
    /// Verify or export the audit log.
    Audit {
        /// What to do.
        #[command(subcommand)]
        action: crate::audit_cli::AuditCommand,
    },
    /// Manage users: add, set-role, disable, import.
    User {
        /// What to do.
        #[command(subcommand)]
        action: crate::accounts::cli::UserCommand,
    },
    /// Encryption keys: `rotate` re-encrypts stored secrets under the current key.
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: crate::vault::rotate::KeysCommand,
    },
    /// Map each line of standard input to its pseudonym for a purpose, one per line.
    Pseudonymize {
        /// The purpose label (pseudonyms of different purposes do not link).
        #[arg(long)]
        purpose: String,
    },
}

/// Flags of `serve` (they override the file and the environment).
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Address to listen on (RAMPART_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Origin users reach Rampart at (RAMPART_PUBLIC_ORIGIN).
    #[arg(long, value_name = "URL")]
    pub public_origin: Option<String>,
    /// Data directory (RAMPART_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Database URL (RAMPART_DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Apply pending migrations before serving (required in production when any are pending).
    #[arg(long)]
    pub migrate: bool,
}

impl ServeArgs {
    fn flags(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("listen", self.listen.clone()),
            ("public_origin", self.public_origin.clone()),
            ("data_dir", self.data_dir.clone()),
            ("database_url", self.database_url.clone()),
        ]
    }
}

/// Migration actions.
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the latest applied migration.
    Down,
    /// List migrations and whether each is applied.
    Status,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::GenSecret => {
            println!("{}", &*rampart_core::MasterKey::generate().to_base64url());
            ExitCode::SUCCESS
        }
        Command::CheckConfig => check_config(cli.config),
        Command::Serve(args) => {
            let config = match load(cli.config.as_deref(), &args.flags()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            run_async(crate::startup::serve(config, args.migrate))
        }
        Command::Audit { action } => {
            let config = match load(cli.config.as_deref(), &[]) {
                Ok(c) => c,
                Err(code) => return code,
            };
            run_async(crate::audit_cli::run(config, action))
        }
        Command::User { action } => {
            let config = match load(cli.config.as_deref(), &[]) {
                Ok(c) => c,
                Err(code) => return code,
            };
            run_async(crate::accounts::cli::run(config, action))
        }
        Command::Migrate { action } => {
            let config = match load(cli.config.as_deref(), &[]) {
                Ok(c) => c,
                Err(code) => return code,
            };
            run_async(crate::startup::migrate(config, action))
        }
        Command::Keys { action } => {
            let config = match load(cli.config.as_deref(), &[]) {
                Ok(c) => c,
                Err(code) => return code,
            };
            run_async(crate::vault::rotate::run(config, action))
        }
        Command::Pseudonymize { purpose } => match load(cli.config.as_deref(), &[]) {
            Ok(config) => crate::pseudonymize::run(&config, &purpose),
            Err(code) => code,
        },
    }
}

fn load(
    path: Option<&std::path::Path>,
    flags: &[(&'static str, Option<String>)],
) -> Result<Config, ExitCode> {
    Config::load(path, flags).map_err(|e| config_failure(&e))
}

/// Prints a one-line configuration error naming the setting; exit code 2.
pub fn config_failure(e: &ConfigError) -> ExitCode {
    eprintln!("rampart: configuration error: {e}");
    ExitCode::from(2)
}

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let mut raw = RawValues::default();
    let path = path.or_else(|| std::env::var_os("RAMPART_CONFIG").map(PathBuf::from));
    if let Some(p) = &path {
        match std::fs::read_to_string(p) {
            Ok(text) => {
                if let Err(e) = raw.apply_toml(&text, p) {
                    return config_failure(&e);
                }
            }
            Err(e) => {
                return config_failure(&ConfigError::new(
                    "RAMPART_CONFIG",
                    format!("cannot read {}: {}", p.display(), e.kind()),
                ))
            }
        }
    }
    if let Err(e) = raw.apply_env(std::env::vars()) {
        return config_failure(&e);
    }
    match Config::from_raw(&raw) {
        Ok(config) => {
            for line in config.describe(Some(&raw)) {
                println!("{line}");
            }
            for w in &config.warnings {
                println!("warning: {w}");
            }
            if config.secret_key.is_none() {
                println!("warning: RAMPART_SECRET_KEY is unset: development generates one in the data dir");
            }
            ExitCode::SUCCESS
        }
        Err(e) => config_failure(&e),
    }
}

fn run_async(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("rampart: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
