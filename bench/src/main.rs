//! `rampart-baseline`: the comparison servers and the report writer used by `./scripts/bench`.
//!
//! Subcommands:
//! - `plain`: `GET /api/auth/me` with no layers at all: the ceiling for this machine.
//! - `stack --store memory|redis`: sessions, a rate limiter and security headers assembled from
//!   published crates, as an application would do it without Rampart.
//! - `lib-protect`: `plain` behind the workspace's protection layers.
//! - `plain-headers`: `plain` with `lib-protect`'s response headers and nothing checked.
//! - `lib-memory`: the workspace's `rampart-session` crate with its memory store in an axum app,
//!   answering the same `GET /api/auth/me` as `plain` after checking the session.
//! - `upstream`: a tiny application for proxy benchmarks.
//! - `hyper-proxy --upstream ADDR`: the bare reverse proxy of the HTTP stack Rampart is built
//!   on (axum and the hyper client), on one single-threaded runtime per core as Rampart's
//!   connection loops, with nothing checked or added: the floor of any proxy built from these
//!   parts.
//! - `hash-time`: times Argon2id with Rampart's default parameters.
//! - `report`: turns a run directory written by the script into `docs/benchmarks.md`,
//!   `docs/bench/results.json` and SVG charts.
//!
//! Every server binds `127.0.0.1:<port>` only and prints `listening on http://ADDR` when ready.

mod hash;
mod lib_protect;
mod lib_session;
mod report;
mod servers;
mod svg;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "rampart-baseline",
    about = "Baseline servers and report writer for ./scripts/bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Session store of the `stack` baseline.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum StoreKind {
    /// In-process memory store.
    Memory,
    /// The Redis store crate for the same session library.
    Redis,
}

#[derive(Subcommand)]
enum Command {
    /// The ceiling: `GET /api/auth/me` returns the JSON with no layers at all.
    Plain {
        /// Loopback port to bind.
        #[arg(long)]
        port: u16,
    },
    /// Published crates assembled by hand: sessions + rate limit + security headers.
    Stack {
        /// Loopback port to bind.
        #[arg(long)]
        port: u16,
        /// Session store.
        #[arg(long, value_enum, default_value = "memory")]
        store: StoreKind,
        /// Redis URL for `--store redis`.
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
    },
    /// `rampart-session` (memory store) in an axum app: `POST /login`, `GET /api/auth/me`.
    LibMemory {
        /// Loopback port to bind.
        #[arg(long)]
        port: u16,
    },
    /// `plain` behind the workspace's protection layers (headers, method guard, client IP,
    /// rate limit, CSRF, body limit).
    LibProtect {
        /// Loopback port to bind.
        #[arg(long)]
        port: u16,
    },
    /// `plain` with the response headers `lib-protect` sends on `GET /api/auth/me`, added by one
    /// map over the response; nothing checked.
    PlainHeaders {
        /// Loopback port to bind.
        #[arg(long)]
        port: u16,
    },
    /// A tiny upstream application (`GET /` answers a small HTML page, `/json` a small JSON).
    Upstream {
        /// Loopback port to bind.
        #[arg(long)]
        port: u16,
    },
    /// The bare axum + hyper client reverse proxy to `--upstream`: no authentication, no
    /// headers added beyond `X-Forwarded-For` and `-Proto` (what the nginx baseline adds).
    HyperProxy {
        /// Loopback port to bind.
        #[arg(long)]
        port: u16,
        /// The upstream's address.
        #[arg(long)]
        upstream: SocketAddr,
    },
    /// Times Argon2id hashes with Rampart's default parameters; prints JSON.
    HashTime {
        /// Number of hashes.
        #[arg(long, default_value_t = 20)]
        iterations: u32,
        /// Memory in KiB.
        #[arg(long, default_value_t = 19456)]
        memory_kib: u32,
        /// Iterations (time cost).
        #[arg(long, default_value_t = 2)]
        time_cost: u32,
        /// Lanes.
        #[arg(long, default_value_t = 1)]
        lanes: u32,
    },
    /// Writes results.json, benchmarks.md and the charts from a run directory.
    Report {
        /// The directory the script filled with JSON files.
        #[arg(long)]
        run_dir: PathBuf,
        /// The docs directory (`benchmarks.md` goes here, the rest under `bench/`).
        #[arg(long)]
        docs: PathBuf,
    },
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The allocator of the `rampart` binary, for every server this binary runs (plain included),
/// so that no target is faster or slower than another only by its allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Plain { port } => servers::run(servers::plain(), loopback(port)),
        Command::Stack { port, store, redis_url } => {
            servers::run_stack(store, &redis_url, loopback(port))
        }
        Command::LibMemory { port } => lib_session::run(loopback(port)),
        Command::LibProtect { port } => lib_protect::run(loopback(port)),
        Command::PlainHeaders { port } => {
            servers::run(lib_protect::plain_headers(), loopback(port))
        }
        Command::Upstream { port } => servers::run(servers::upstream(), loopback(port)),
        Command::HyperProxy { port, upstream } => servers::run_per_core(
            move || servers::hyper_proxy(upstream),
            loopback(port),
            std::thread::available_parallelism().map_or(2, usize::from),
        ),
        Command::HashTime { iterations, memory_kib, time_cost, lanes } => {
            let r = hash::time_hashes(iterations, memory_kib, time_cost, lanes)?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Command::Report { run_dir, docs } => report::write(&run_dir, &docs),
    }
}
