//! Rampart audit: a tamper-evident audit log.
//!
//! - [`event`]: [`AuditEvent`], [`EventKind`], [`Outcome`], timestamps fixed to microseconds.
//! - [`new_event`]: [`NewEvent`], the builder callers fill in; secret-looking details dropped.
//! - [`canonical`]: the deterministic encoding every hash is computed over.
//! - [`chain`]: [`Chain`], one instance's hash chain, which seals events in order.
//! - [`checkpoint`]: signed [`Checkpoint`]s inside the chain, [`PruneAnchor`]s for pruning,
//!   [`CheckpointPolicy`], and [`mirror_checkpoint`] to copy them to the operational log.
//! - [`verify`](mod@verify): [`verify()`] and [`Verifier`], which find modified, deleted,
//!   inserted and reordered events, forged checkpoints and truncated chains.
//! - [`sink`]: the [`AuditSink`] trait, [`MemoryAuditSink`] (tests), [`JsonLinesSink`] and
//!   [`write_json_line`] (export, SIEM streams).
//! - [`rate_bound`]: [`RateBound`], so floods of client-caused events cannot flood the log.
//!
//! ```
//! use rampart_audit::{verify, Chain, EventKind, FailureReason, NewEvent};
//! use rampart_core::{Keyring, MasterKey};
//! use time::macros::datetime;
//!
//! let keyring = Keyring::new(MasterKey::generate(), vec![]);
//! let now = datetime!(2030-01-01 12:00 UTC);
//! let mut chain = Chain::new("node-a");
//! let mut events = vec![
//!     chain.seal(NewEvent::success(EventKind::UserLogin).user("u1").ip("192.0.2.7"), now),
//!     chain.seal(NewEvent::denied(EventKind::AccessDenied).user("u1"), now),
//! ];
//! let (_checkpoint, event) = chain.checkpoint(&keyring, now);
//! events.push(event);
//!
//! let report = verify(events.clone(), &keyring, |_checked| {});
//! assert!(report.ok);
//! assert_eq!(report.checked, 3);
//!
//! // Rewrite history: the change is found, with the event it happened to.
//! events[1].outcome = rampart_audit::Outcome::Success;
//! let report = verify(events, &keyring, |_| {});
//! let failure = report.first_failure.unwrap();
//! assert_eq!((failure.seq, failure.reason), (2, FailureReason::HashMismatch));
//! ```
//!
//! # Security
//! - Each event's hash covers every field and the previous hash, so a change, deletion,
//!   insertion or reordering breaks the chain.
//! - Anyone who can write to the store can also recompute hashes; signed checkpoints (HMAC under
//!   the audit subkey) catch that, and checkpoints mirrored outside the store catch a deleted
//!   tail. See [`checkpoint`] and [`verify`](mod@verify).
//! - Events never hold credentials: see [`is_secret_key`].

pub mod canonical;
pub mod chain;
pub mod checkpoint;
mod error;
pub mod event;
pub mod new_event;
pub mod rate_bound;
pub mod sink;
pub mod verify;

pub use canonical::{canonical_bytes, event_hash, GENESIS_HASH};
pub use chain::Chain;
pub use checkpoint::{mirror_checkpoint, Checkpoint, CheckpointPolicy, PruneAnchor};
pub use error::{AuditError, Result};
pub use event::{ts_from_micros, Actor, AuditEvent, EventKind, Outcome, Resource};
pub use new_event::{is_secret_key, NewEvent};
pub use rate_bound::RateBound;
pub use sink::{write_json_line, AuditSink, JsonLinesSink, MemoryAuditSink};
pub use verify::{verify, Failure, FailureReason, Verifier, VerifyReport};
