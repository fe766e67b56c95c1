//! Signed checkpoints and prune anchors, and when to write a checkpoint.
//!
//! # Scheme
//!
//! A hash chain alone shows that events were changed only to someone who did not recompute the
//! hashes after the change; anyone with write access to the store can recompute them. A
//! checkpoint fixes the chain's state with a MAC under the audit subkey
//! ([`rampart_core::Purpose::Audit`]), which the store does not hold.
//!
//! [`Chain::checkpoint`](crate::Chain::checkpoint) covers the last sealed event (seq `N`, hash
//! `H`) and records it as the next event of the chain (seq `N + 1`), of kind `audit_checkpoint`,
//! outcome `success`, with details exactly `{"covers_seq": N, "covers_hash": H, "mac": M}`. The
//! checkpoint's time is that event's `ts`. `M` is hex HMAC-SHA256 of
//!
//! ```text
//! "rampart-audit/checkpoint/v1\n" || u64be(len(instance)) || instance || u64be(N)
//!     || H as 32 raw bytes || i64be(ts as microseconds since the Unix epoch)
//! ```
//!
//! A [`PruneAnchor`] says "events up to seq `N` of this instance were removed on purpose; the
//! event at `N` had hash `H`". Its MAC covers
//!
//! ```text
//! "rampart-audit/prune-anchor/v1\n" || u64be(len(instance)) || instance || u64be(N)
//!     || H as 32 raw bytes
//! ```
//!
//! # Security
//! - The two MAC inputs start with different labels, so a checkpoint's MAC can never be passed
//!   off as an anchor's (which would let an attacker cut off everything before a checkpoint).
//! - Checkpoints inside the chain protect everything before them. Events after the newest
//!   checkpoint, and the removal of a chain's tail together with its checkpoints, can only be
//!   detected against checkpoints kept elsewhere: [`mirror_checkpoint`] writes each one to the
//!   operational log, and the verifier accepts them back (see
//!   [`Verifier::with_checkpoints`](crate::Verifier::with_checkpoints)).
//! - Sign an anchor only after verifying the chain up to it; an anchor vouches for its hash.
//! - Keep rotated keys in the keyring's previous keys: checkpoints signed before a rotation
//!   verify only while their key is still held.

use std::time::Duration;

use rampart_core::{Keyring, Purpose};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::canonical::decode_hex32;
use crate::error::AuditError;
use crate::event::{to_micros, ts_micros, AuditEvent};

const CHECKPOINT_DOMAIN: &[u8] = b"rampart-audit/checkpoint/v1\n";
const ANCHOR_DOMAIN: &[u8] = b"rampart-audit/prune-anchor/v1\n";

/// A signed statement that an instance's chain reached `seq` with `hash` at `ts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The instance whose chain is covered.
    pub instance: String,
    /// The seq of the last event covered.
    pub seq: u64,
    /// That event's hash, hex.
    pub hash: String,
    /// When the checkpoint was made (the `ts` of its `audit_checkpoint` event).
    #[serde(with = "ts_micros")]
    pub ts: OffsetDateTime,
    /// HMAC-SHA256 under the audit subkey, hex.
    pub mac: String,
}

impl Checkpoint {
    /// Signs a checkpoint covering `seq` / `hash` with the keyring's current key.
    pub fn sign(
        keyring: &Keyring,
        instance: impl Into<String>,
        seq: u64,
        hash: &[u8; 32],
        ts: OffsetDateTime,
    ) -> Self {
        let instance = instance.into();
        let mac =
            keyring.mac(Purpose::Audit, &checkpoint_input(&instance, seq, hash, to_micros(ts)));
        Self { instance, seq, hash: hex::encode(hash), ts, mac: hex::encode(mac) }
    }

    /// Whether the MAC is valid under any key of `keyring`.
    pub fn verify(&self, keyring: &Keyring) -> bool {
        let (Some(hash), Some(mac)) = (decode_hex32(&self.hash), decode_hex32(&self.mac)) else {
            return false;
        };
        let input = checkpoint_input(&self.instance, self.seq, &hash, to_micros(self.ts));
        keyring.verify_mac(Purpose::Audit, &input, &mac)
    }

    /// Reads the checkpoint recorded in an `audit_checkpoint` event, without checking its MAC.
    /// `None` when the event is of another kind or its details are not exactly the scheme's.
    pub fn from_event(event: &AuditEvent) -> Option<Self> {
        if event.event != crate::EventKind::AuditCheckpoint || event.details.len() != 3 {
            return None;
        }
        let seq = event.details.get("covers_seq")?.as_u64()?;
        let hash = event.details.get("covers_hash")?.as_str()?;
        let mac = event.details.get("mac")?.as_str()?;
        Some(Self {
            instance: event.instance.clone(),
            seq,
            hash: hash.to_owned(),
            ts: event.ts,
            mac: mac.to_owned(),
        })
    }
}

/// A signed marker that lets a pruned chain start after seq 1.
///
/// Events `..= seq` of `instance` were removed; the event at `seq` had `hash`, so the first
/// retained event must be `seq + 1` with `prev_hash == hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneAnchor {
    /// The instance whose chain was pruned.
    pub instance: String,
    /// The seq of the last removed event.
    pub seq: u64,
    /// That event's hash, hex.
    pub hash: String,
    /// HMAC-SHA256 under the audit subkey, hex.
    pub mac: String,
}

impl PruneAnchor {
    /// Signs an anchor for pruning `instance` up to `seq`, whose event had `hash`.
    pub fn sign(keyring: &Keyring, instance: impl Into<String>, seq: u64, hash: &[u8; 32]) -> Self {
        let instance = instance.into();
        let mac = keyring.mac(Purpose::Audit, &anchor_input(&instance, seq, hash));
        Self { instance, seq, hash: hex::encode(hash), mac: hex::encode(mac) }
    }

    /// Signs an anchor for pruning up to and including `event`.
    pub fn for_event(keyring: &Keyring, event: &AuditEvent) -> Result<Self, AuditError> {
        let hash = decode_hex32(&event.hash).ok_or(AuditError::MalformedHex("hash"))?;
        Ok(Self::sign(keyring, event.instance.clone(), event.seq, &hash))
    }

    /// Whether the MAC is valid under any key of `keyring`.
    pub fn verify(&self, keyring: &Keyring) -> bool {
        let (Some(hash), Some(mac)) = (decode_hex32(&self.hash), decode_hex32(&self.mac)) else {
            return false;
        };
        keyring.verify_mac(Purpose::Audit, &anchor_input(&self.instance, self.seq, &hash), &mac)
    }
}

fn checkpoint_input(instance: &str, seq: u64, hash: &[u8; 32], ts_micros: i64) -> Vec<u8> {
    let mut v = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + instance.len() + 56);
    v.extend_from_slice(CHECKPOINT_DOMAIN);
    v.extend_from_slice(&(instance.len() as u64).to_be_bytes());
    v.extend_from_slice(instance.as_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(hash);
    v.extend_from_slice(&ts_micros.to_be_bytes());
    v
}

fn anchor_input(instance: &str, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ANCHOR_DOMAIN.len() + instance.len() + 48);
    v.extend_from_slice(ANCHOR_DOMAIN);
    v.extend_from_slice(&(instance.len() as u64).to_be_bytes());
    v.extend_from_slice(instance.as_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(hash);
    v
}

/// When a checkpoint is due: after `every_n` events, or `every` after the first event not yet
/// covered, whichever comes first. A zero value turns that trigger off. Nothing is due while no
/// event awaits a checkpoint, so an idle instance writes none.
///
/// Sinks check the policy on each append; a periodic task should also call
/// [`Chain::checkpoint_due`](crate::Chain::checkpoint_due) so a quiet instance still gets its
/// last events covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Events between checkpoints (0: no count trigger).
    pub every_n: u64,
    /// Longest time an event waits for a checkpoint (zero: no time trigger).
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    /// Every 1000 events or 5 minutes.
    fn default() -> Self {
        Self { every_n: 1000, every: Duration::from_secs(300) }
    }
}

impl CheckpointPolicy {
    /// Whether a checkpoint is due, given how many events are not yet covered and when the
    /// first of them was sealed.
    pub fn is_due(
        &self,
        uncovered: u64,
        first_uncovered_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> bool {
        if uncovered == 0 {
            return false;
        }
        if self.every_n > 0 && uncovered >= self.every_n {
            return true;
        }
        match first_uncovered_at {
            Some(start) if !self.every.is_zero() => now - start >= self.every,
            _ => false,
        }
    }
}

/// Writes a checkpoint to the operational log at INFO, target `rampart::audit`, with fields
/// `instance`, `seq`, `hash`, `ts` and `mac`: a copy outside the audit store that the verifier
/// can be given back to detect a truncated chain.
pub fn mirror_checkpoint(checkpoint: &Checkpoint) {
    let ts = ts_micros::format(checkpoint.ts).unwrap_or_default();
    tracing::info!(
        target: "rampart::audit",
        instance = %checkpoint.instance,
        seq = checkpoint.seq,
        hash = %checkpoint.hash,
        ts = %ts,
        mac = %checkpoint.mac,
        "audit checkpoint"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::MasterKey;
    use time::macros::datetime;

    fn ring() -> Keyring {
        Keyring::new(MasterKey::from_bytes((1..=32).collect()).unwrap(), vec![])
    }

    #[test]
    fn checkpoints_verify_and_reject_any_change() {
        let ring = ring();
        let t = datetime!(2030-01-01 00:00:00.000001 UTC);
        let cp = Checkpoint::sign(&ring, "a", 7, &[9u8; 32], t);
        assert!(cp.verify(&ring));
        let mut c = cp.clone();
        c.seq = 8;
        assert!(!c.verify(&ring));
        let mut c = cp.clone();
        c.instance = "b".into();
        assert!(!c.verify(&ring));
        let mut c = cp.clone();
        c.ts += time::Duration::microseconds(1);
        assert!(!c.verify(&ring));
        let mut c = cp.clone();
        c.mac = "nothex".into();
        assert!(!c.verify(&ring));
        let other = Keyring::new(MasterKey::from_bytes((2..=33).collect()).unwrap(), vec![]);
        assert!(!cp.verify(&other));
    }

    #[test]
    fn a_checkpoint_mac_is_not_a_valid_anchor_mac() {
        let ring = ring();
        let cp = Checkpoint::sign(&ring, "a", 7, &[9u8; 32], datetime!(1970-01-01 00:00 UTC));
        let forged =
            PruneAnchor { instance: "a".into(), seq: 7, hash: cp.hash.clone(), mac: cp.mac };
        assert!(!forged.verify(&ring));
        assert!(PruneAnchor::sign(&ring, "a", 7, &[9u8; 32]).verify(&ring));
    }

    #[test]
    fn policy_is_due_by_count_or_by_age_but_never_when_idle() {
        let p = CheckpointPolicy { every_n: 3, every: Duration::from_secs(60) };
        let t0 = datetime!(2030-01-01 00:00 UTC);
        assert!(!p.is_due(0, None, t0));
        assert!(!p.is_due(2, Some(t0), t0 + time::Duration::seconds(59)));
        assert!(p.is_due(2, Some(t0), t0 + time::Duration::seconds(60)));
        assert!(p.is_due(3, Some(t0), t0));
        let count_only = CheckpointPolicy { every_n: 3, every: Duration::ZERO };
        assert!(!count_only.is_due(2, Some(t0), t0 + time::Duration::days(1)));
    }

    type Fields = Vec<(String, String)>;

    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<(String, tracing::Level, Fields)>>>);

    struct Visitor<'a>(&'a mut Fields);
    impl tracing::field::Visit for Visitor<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut fields = Vec::new();
            event.record(&mut Visitor(&mut fields));
            let meta = event.metadata();
            self.0.lock().unwrap().push((meta.target().to_owned(), *meta.level(), fields));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn mirror_logs_the_checkpoint_at_info_on_the_audit_target() {
        let cp =
            Checkpoint::sign(&ring(), "node-a", 42, &[3u8; 32], datetime!(2030-01-01 00:00 UTC));
        let capture = Capture::default();
        tracing::subscriber::with_default(capture.clone(), || mirror_checkpoint(&cp));
        let logged = capture.0.lock().unwrap();
        assert_eq!(logged.len(), 1);
        let (target, level, fields) = &logged[0];
        assert_eq!((target.as_str(), *level), ("rampart::audit", tracing::Level::INFO));
        let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(get("instance").as_deref(), Some("node-a"));
        assert_eq!(get("seq").as_deref(), Some("42"));
        assert_eq!(get("hash"), Some(cp.hash.clone()));
        assert_eq!(get("mac"), Some(cp.mac));
        assert_eq!(get("ts").as_deref(), Some("2030-01-01T00:00:00.000000Z"));
    }
}
