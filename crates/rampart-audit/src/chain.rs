//! [`Chain`]: one instance's hash chain, which seals events in order.
//!
//! # Security
//! - One `Chain` per instance and one writer per chain: two writers sealing with the same seq
//!   produce a fork that the verifier reports. Stores serialize appends (a lock, a single writer
//!   task) and rely on the `(instance, seq)` primary key as a last line of defence.
//! - After a restart, [`Chain::resume`] must be given the last stored seq and hash, never a
//!   fresh chain, or the next event will not link.

use rampart_core::Keyring;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::canonical::{decode_hex32, encode_into, hash_with_prev};
use crate::checkpoint::{Checkpoint, CheckpointPolicy};
use crate::error::AuditError;
use crate::event::{truncate_to_micros, AuditEvent, EventKind, Outcome};
use crate::new_event::NewEvent;

/// Length in bytes of the random part of an event id (base64url-encoded to 22 characters).
const ID_BYTES: usize = 16;
/// Leading bytes of an event id that hold the creation time (milliseconds, big-endian).
const ID_TIME_BYTES: usize = 6;

/// A new event id: 16 bytes, base64url. The first 6 bytes are the milliseconds since the Unix
/// epoch (big-endian), the other 10 are random (80 bits per millisecond). Ids made close in
/// time share their leading characters, so the database's unique index on ids receives them
/// next to each other instead of at random places: a batch of events dirties a few index pages
/// rather than one page per event.
fn event_id(now: OffsetDateTime) -> String {
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut bytes = [0u8; ID_BYTES];
    let (time, random) = bytes.split_at_mut(ID_TIME_BYTES);
    time.copy_from_slice(&millis.to_be_bytes()[8 - ID_TIME_BYTES..]);
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), random);
    rampart_core::token::b64url(&bytes)
}

/// The state of one instance's chain: its name, the next seq and the last hash.
#[derive(Debug, Clone)]
pub struct Chain {
    instance: String,
    next_seq: u64,
    last_hash: [u8; 32],
    uncovered: u64,
    first_uncovered_at: Option<OffsetDateTime>,
}

impl Chain {
    /// A new, empty chain: the first event gets seq 1 and the genesis `prev_hash`.
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            next_seq: 1,
            last_hash: [0u8; 32],
            uncovered: 0,
            first_uncovered_at: None,
        }
    }

    /// Continues a chain whose last stored event has `last_seq` and `last_hash` (hex). Use
    /// `(0, GENESIS_HASH)` for an empty chain, or a prune anchor's seq and hash when every event
    /// was pruned.
    pub fn resume(
        instance: impl Into<String>,
        last_seq: u64,
        last_hash: &str,
    ) -> Result<Self, AuditError> {
        let last_hash = decode_hex32(last_hash).ok_or(AuditError::MalformedHex("last_hash"))?;
        let mut chain = Self::new(instance);
        chain.next_seq = last_seq.saturating_add(1);
        chain.last_hash = last_hash;
        Ok(chain)
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The seq the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The hash of the last sealed event (the genesis hash for an empty chain), hex.
    pub fn last_hash(&self) -> String {
        hex::encode(self.last_hash)
    }

    /// Seals `event` at time `now` (truncated to microseconds): assigns a random id, the
    /// instance, the next seq and the hashes, and advances the chain.
    ///
    /// Callers should append through an [`crate::AuditSink`], which refuses the reserved
    /// `audit_checkpoint` kind; a checkpoint sealed here by hand fails verification.
    pub fn seal(&mut self, event: NewEvent, now: OffsetDateTime) -> AuditEvent {
        let now = truncate_to_micros(now);
        if event.kind != EventKind::AuditCheckpoint {
            self.uncovered = self.uncovered.saturating_add(1);
            self.first_uncovered_at.get_or_insert(now);
        }
        let mut sealed = AuditEvent {
            id: event_id(now),
            ts: now,
            instance: self.instance.clone(),
            seq: self.next_seq,
            event: event.kind,
            outcome: event.outcome,
            actor: event.actor,
            session: event.session,
            ip: event.ip,
            user_agent: event.user_agent,
            request_id: event.request_id,
            resource: event.resource,
            details: event.details,
            prev_hash: hex::encode(self.last_hash),
            hash: String::new(),
        };
        let mut buf = Vec::with_capacity(512);
        encode_into(&mut buf, &sealed, &self.last_hash);
        let hash = hash_with_prev(&self.last_hash, &buf);
        sealed.hash = hex::encode(hash);
        self.last_hash = hash;
        self.next_seq = self.next_seq.saturating_add(1);
        sealed
    }

    /// Signs a checkpoint covering the last sealed event and seals it as the next event
    /// (see [`crate::checkpoint`] for the exact scheme). Returns the checkpoint, for mirroring
    /// outside the store, and the event to store.
    pub fn checkpoint(
        &mut self,
        keyring: &Keyring,
        now: OffsetDateTime,
    ) -> (Checkpoint, AuditEvent) {
        let now = truncate_to_micros(now);
        let covers_seq = self.next_seq.saturating_sub(1);
        let checkpoint =
            Checkpoint::sign(keyring, self.instance.clone(), covers_seq, &self.last_hash, now);
        let mut details = Map::new();
        details.insert("covers_seq".into(), Value::from(covers_seq));
        details.insert("covers_hash".into(), Value::from(checkpoint.hash.clone()));
        details.insert("mac".into(), Value::from(checkpoint.mac.clone()));
        let mut event = NewEvent::new(EventKind::AuditCheckpoint, Outcome::Success);
        event.details = details;
        let sealed = self.seal(event, now);
        self.uncovered = 0;
        self.first_uncovered_at = None;
        (checkpoint, sealed)
    }

    /// Whether `policy` calls for a checkpoint now. Counts only events sealed by this `Chain`
    /// value since its last checkpoint (a resumed chain starts counting from zero).
    pub fn checkpoint_due(&self, policy: &CheckpointPolicy, now: OffsetDateTime) -> bool {
        policy.is_due(self.uncovered, self.first_uncovered_at, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{event_hash, GENESIS_HASH};
    use rampart_core::MasterKey;
    use std::time::Duration;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);

    #[test]
    fn event_ids_lead_with_their_time_and_never_repeat() {
        let later = T0 + Duration::from_millis(1);
        let ids: Vec<String> = (0..1000).map(|_| event_id(T0)).collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            assert_eq!(id.len(), 22, "16 bytes in base64url: {id}");
            // 6 time bytes are exactly 8 base64 characters: same millisecond, same prefix.
            assert_eq!(id[..8], ids[0][..8]);
        }
        let next = event_id(later);
        assert_ne!(next[..8], ids[0][..8], "the next millisecond changes the prefix");
        assert_eq!(next[..6], ids[0][..6], "but only its last characters");
        assert_eq!(
            event_id(T0)[..8],
            rampart_core::token::b64url(&(T0.unix_timestamp() as u64 * 1000).to_be_bytes()[2..])
        );
    }

    #[test]
    fn sealed_events_link_to_their_predecessor() {
        let mut chain = Chain::new("a");
        let e1 = chain.seal(NewEvent::success(EventKind::UserLogin), T0);
        let e2 = chain.seal(NewEvent::success(EventKind::UserLogout), T0);
        assert_eq!((e1.seq, e2.seq), (1, 2));
        assert_eq!(e1.prev_hash, GENESIS_HASH);
        assert_eq!(e2.prev_hash, e1.hash);
        assert_eq!(hex::encode(event_hash(&e2).unwrap()), e2.hash);
        assert_eq!(chain.last_hash(), e2.hash);
        assert_ne!(e1.id, e2.id);
        assert_eq!(e1.instance, "a");
    }

    #[test]
    fn sealing_truncates_the_time_to_microseconds_in_utc() {
        let mut chain = Chain::new("a");
        let e = chain.seal(
            NewEvent::success(EventKind::UserLogin),
            datetime!(2030-01-01 02:00:00.123456789 +02:00),
        );
        assert_eq!(e.ts, datetime!(2030-01-01 00:00:00.123456 UTC));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["ts"], "2030-01-01T00:00:00.123456Z");
    }

    #[test]
    fn a_resumed_chain_continues_where_the_old_one_stopped() {
        let mut chain = Chain::new("a");
        let e1 = chain.seal(NewEvent::success(EventKind::UserLogin), T0);
        let mut resumed = Chain::resume("a", e1.seq, &e1.hash).unwrap();
        let e2 = resumed.seal(NewEvent::success(EventKind::UserLogout), T0);
        assert_eq!(e2.seq, 2);
        assert_eq!(e2.prev_hash, e1.hash);
        assert!(matches!(Chain::resume("a", 1, "abc"), Err(AuditError::MalformedHex(_))));
    }

    #[test]
    fn checkpoint_event_records_covers_seq_hash_and_mac() {
        let ring =
            rampart_core::Keyring::new(MasterKey::from_bytes((1..=32).collect()).unwrap(), vec![]);
        let mut chain = Chain::new("a");
        let e1 = chain.seal(NewEvent::success(EventKind::UserLogin), T0);
        let policy = CheckpointPolicy { every_n: 1, every: Duration::ZERO };
        assert!(chain.checkpoint_due(&policy, T0));
        let (cp, ev) = chain.checkpoint(&ring, T0);
        assert!(!chain.checkpoint_due(&policy, T0));
        assert_eq!((cp.seq, cp.hash.as_str()), (1, e1.hash.as_str()));
        assert_eq!((ev.seq, ev.event), (2, EventKind::AuditCheckpoint));
        assert_eq!(ev.details["covers_seq"], 1);
        assert_eq!(ev.details["covers_hash"], e1.hash.as_str());
        assert_eq!(ev.details["mac"], cp.mac.as_str());
        assert_eq!(Checkpoint::from_event(&ev), Some(cp.clone()));
        assert!(cp.verify(&ring));
    }
}
