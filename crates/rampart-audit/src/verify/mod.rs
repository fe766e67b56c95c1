//! Verifying stored chains: hashes, links, checkpoints, anchors.
//!
//! # Input order
//!
//! Events must arrive grouped by instance and, within an instance, in ascending seq order, as
//! from `SELECT … ORDER BY instance, seq`. The order of the instances themselves does not
//! matter, but each instance's events must be contiguous.
//!
//! # What is checked, per event
//!
//! 1. The first event of an instance is seq 1 with the genesis `prev_hash`, or follows a valid
//!    [`PruneAnchor`] (seq = anchor seq + 1, `prev_hash` = anchor hash). Otherwise
//!    [`FailureReason::UnanchoredStart`].
//! 2. `seq` is one more than the previous event's ([`FailureReason::SeqGap`],
//!    [`FailureReason::SeqNotIncreasing`]).
//! 3. `prev_hash` equals the previous event's hash ([`FailureReason::PrevHashMismatch`]).
//! 4. `hash` equals SHA-256 of `prev_hash` and the canonical encoding
//!    ([`FailureReason::HashMismatch`]).
//! 5. An `audit_checkpoint` event holds exactly `covers_seq`, `covers_hash` and `mac`
//!    ([`FailureReason::MalformedCheckpoint`]), covers the event just before it
//!    ([`FailureReason::CheckpointMismatch`]) and carries a MAC valid under some key of the
//!    keyring ([`FailureReason::ForgedCheckpoint`]).
//! 6. Where an external checkpoint or anchor names this seq, the hashes agree
//!    ([`FailureReason::CheckpointMismatch`]).
//!
//! At the end of each instance, a chain that stops before the seq of an external checkpoint or
//! anchor is reported as [`FailureReason::Truncated`]; so is an instance with external
//! checkpoints and no events at all. External checkpoints and anchors with a bad MAC are reported
//! before any event is read.
//!
//! # Security
//! - Someone who can write to the store can rewrite an event and recompute every later hash.
//!   That is caught at the next signed checkpoint (`CheckpointMismatch` at the checkpoint's seq,
//!   which is after the rewritten event). Events after the newest checkpoint are protected only
//!   by checkpoints supplied from outside the store ([`Verifier::with_checkpoints`]).
//! - Verification stops at the first failure: after one, later results could not be trusted.

use std::collections::{HashMap, HashSet};

use rampart_core::Keyring;
use serde::{Deserialize, Serialize};

use crate::canonical::{decode_hex32, encode_into, hash_with_prev, is_hex_of};
use crate::checkpoint::{Checkpoint, PruneAnchor};
use crate::event::{AuditEvent, EventKind};

#[cfg(test)]
mod tests;

/// How often `progress` is called, in events.
const PROGRESS_EVERY: u64 = 4096;
const GENESIS: [u8; 32] = [0u8; 32];

/// The outcome of a verification. Serializes as `{"ok", "checked", "first_failure"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Whether every event and every supplied checkpoint and anchor checked out.
    pub ok: bool,
    /// How many events passed every check before the first failure (all of them when `ok`).
    pub checked: u64,
    /// The first problem found, if any.
    pub first_failure: Option<Failure>,
}

/// Where and why verification failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The instance concerned.
    pub instance: String,
    /// The seq of the offending event, or for [`FailureReason::Truncated`] and forged external
    /// checkpoints and anchors, the seq they name.
    pub seq: u64,
    /// The offending event's id, when there is an event.
    pub id: Option<String>,
    /// What was wrong.
    pub reason: FailureReason,
    /// For gaps, repeats and truncation: the seq that should have come next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_seq: Option<u64>,
}

/// What was wrong. Serialized as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureReason {
    /// The stored hash does not match the event's contents: the event was modified.
    HashMismatch,
    /// `prev_hash` is not the previous event's hash: an event was deleted, inserted or moved.
    PrevHashMismatch,
    /// A seq is missing: an event was deleted.
    SeqGap,
    /// A seq repeats or goes backwards: an event was inserted or events were reordered.
    SeqNotIncreasing,
    /// The chain starts after seq 1 (or with a non-genesis `prev_hash`) and no valid prune
    /// anchor explains it: its beginning was deleted.
    UnanchoredStart,
    /// A hash field is not 64 hexadecimal characters.
    MalformedHash,
    /// A checkpoint's MAC is invalid under every key: forged, or signed with a key the keyring
    /// no longer holds.
    ForgedCheckpoint,
    /// A checkpoint or anchor names a hash the chain does not have at that seq: events before
    /// it were rewritten.
    CheckpointMismatch,
    /// An `audit_checkpoint` event whose details are not the checkpoint scheme's.
    MalformedCheckpoint,
    /// A prune anchor's MAC is invalid under every key.
    ForgedAnchor,
    /// The chain ends before a seq that a checkpoint or anchor says it reached: its tail was
    /// deleted.
    Truncated,
    /// An instance's events are not contiguous in the input.
    InstanceNotContiguous,
    /// A stored row's search columns (event, outcome, user, address, time, id, position)
    /// disagree with its sealed body: the row was edited outside the chain, which hides the
    /// event from searches. Reported by stores that keep such columns.
    IndexMismatch,
}

/// Verifies one or more instance chains. See the [module docs](self) for the input order and
/// the checks.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Verifier<'a> {
    keyring: &'a Keyring,
    anchors: &'a [PruneAnchor],
    checkpoints: &'a [Checkpoint],
}

/// Verifies `events` (ordered by instance, then seq) against `keyring`, with no prune anchors
/// or external checkpoints. `progress` receives the running count of checked events every
/// 4096 events and once at the end.
pub fn verify(
    events: impl IntoIterator<Item = AuditEvent>,
    keyring: &Keyring,
    progress: impl FnMut(u64),
) -> VerifyReport {
    Verifier::new(keyring).verify(events, progress)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Anchor,
    Checkpoint,
}

#[derive(Debug, Clone, Copy)]
struct Attestation {
    seq: u64,
    hash: [u8; 32],
    source: Source,
}

struct Current<'v> {
    instance: String,
    expected: u64,
    last_hash: [u8; 32],
    attestations: &'v [Attestation],
    cursor: usize,
}

impl<'a> Verifier<'a> {
    /// A verifier checking MACs against `keyring` (current and previous keys).
    pub fn new(keyring: &'a Keyring) -> Self {
        Self { keyring, anchors: &[], checkpoints: &[] }
    }

    /// Prune anchors that allow an instance's chain to start after seq 1. Each also attests
    /// that its chain reached its seq.
    pub fn with_anchors(mut self, anchors: &'a [PruneAnchor]) -> Self {
        self.anchors = anchors;
        self
    }

    /// Checkpoints kept outside the store (e.g. read back from the operational log), which
    /// reveal a truncated tail or a rewritten chain after the last checkpoint in the store.
    pub fn with_checkpoints(mut self, checkpoints: &'a [Checkpoint]) -> Self {
        self.checkpoints = checkpoints;
        self
    }

    /// Runs the verification. `progress` receives the running count of checked events every
    /// 4096 events and once at the end.
    pub fn verify(
        &self,
        events: impl IntoIterator<Item = AuditEvent>,
        mut progress: impl FnMut(u64),
    ) -> VerifyReport {
        let mut checked = 0u64;
        let result = self.run(events, &mut checked, &mut progress);
        progress(checked);
        VerifyReport { ok: result.is_ok(), checked, first_failure: result.err() }
    }

    fn run(
        &self,
        events: impl IntoIterator<Item = AuditEvent>,
        checked: &mut u64,
        progress: &mut impl FnMut(u64),
    ) -> Result<(), Failure> {
        let attested = self.attestations()?;
        let mut seen: HashSet<String> = HashSet::new();
        let mut current: Option<Current<'_>> = None;
        let mut buf = Vec::with_capacity(1024);
        for event in events {
            if current.as_ref().is_none_or(|c| c.instance != event.instance) {
                if let Some(done) = current.take() {
                    finish(&done)?;
                }
                if !seen.insert(event.instance.clone()) {
                    return Err(fail(&event, FailureReason::InstanceNotContiguous, None));
                }
                let list = attested.get(event.instance.as_str()).map_or(&[][..], Vec::as_slice);
                current = Some(start(&event, list)?);
            }
            let Some(c) = current.as_mut() else { continue };
            self.check_event(c, &event, &mut buf)?;
            *checked += 1;
            if *checked % PROGRESS_EVERY == 0 {
                progress(*checked);
            }
        }
        if let Some(done) = current.take() {
            finish(&done)?;
        }
        let mut missing: Vec<(&&str, &Vec<Attestation>)> =
            attested.iter().filter(|(name, _)| !seen.contains(**name)).collect();
        missing.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (name, list) in missing {
            let floor = list
                .iter()
                .filter(|a| a.source == Source::Anchor)
                .map(|a| a.seq)
                .max()
                .unwrap_or(0);
            if let Some(a) = list.iter().find(|a| a.seq > floor) {
                return Err(Failure {
                    instance: (*name).to_owned(),
                    seq: a.seq,
                    id: None,
                    reason: FailureReason::Truncated,
                    expected_seq: Some(floor + 1),
                });
            }
        }
        Ok(())
    }

    /// Checks the MACs of the supplied anchors and checkpoints and groups them by instance,
    /// sorted by seq.
    fn attestations(&self) -> Result<HashMap<&'a str, Vec<Attestation>>, Failure> {
        let mut map: HashMap<&'a str, Vec<Attestation>> = HashMap::new();
        let external = |instance: &str, seq, reason| Failure {
            instance: instance.to_owned(),
            seq,
            id: None,
            reason,
            expected_seq: None,
        };
        for a in self.anchors {
            let hash = decode_hex32(&a.hash).filter(|_| a.verify(self.keyring));
            let hash =
                hash.ok_or_else(|| external(&a.instance, a.seq, FailureReason::ForgedAnchor))?;
            let att = Attestation { seq: a.seq, hash, source: Source::Anchor };
            map.entry(a.instance.as_str()).or_default().push(att);
        }
        for cp in self.checkpoints {
            let hash = decode_hex32(&cp.hash).filter(|_| cp.verify(self.keyring));
            let hash = hash
                .ok_or_else(|| external(&cp.instance, cp.seq, FailureReason::ForgedCheckpoint))?;
            let att = Attestation { seq: cp.seq, hash, source: Source::Checkpoint };
            map.entry(cp.instance.as_str()).or_default().push(att);
        }
        for list in map.values_mut() {
            list.sort_by_key(|a| a.seq);
        }
        Ok(map)
    }

    fn check_event(
        &self,
        c: &mut Current<'_>,
        event: &AuditEvent,
        buf: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        if event.seq != c.expected {
            let reason = if event.seq > c.expected {
                FailureReason::SeqGap
            } else {
                FailureReason::SeqNotIncreasing
            };
            return Err(fail(event, reason, Some(c.expected)));
        }
        // Both hash fields are compared in their text form with what they must be, and decoded
        // only when they differ, to tell a malformed field from a wrong one.
        let prev = c.last_hash;
        if !is_hex_of(&event.prev_hash, &prev) {
            let reason = match decode_hex32(&event.prev_hash) {
                None => FailureReason::MalformedHash,
                Some(_) => FailureReason::PrevHashMismatch,
            };
            return Err(fail(event, reason, None));
        }
        encode_into(buf, event, &prev);
        let computed = hash_with_prev(&prev, buf);
        if !is_hex_of(&event.hash, &computed) {
            let reason = match decode_hex32(&event.hash) {
                None => FailureReason::MalformedHash,
                Some(_) => FailureReason::HashMismatch,
            };
            return Err(fail(event, reason, None));
        }
        if event.event == EventKind::AuditCheckpoint {
            self.check_embedded_checkpoint(event, &prev)?;
        }
        while let Some(a) = c.attestations.get(c.cursor).filter(|a| a.seq == event.seq) {
            if a.hash != computed {
                return Err(fail(event, FailureReason::CheckpointMismatch, None));
            }
            c.cursor += 1;
        }
        c.last_hash = computed;
        c.expected = event.seq.saturating_add(1);
        Ok(())
    }

    fn check_embedded_checkpoint(
        &self,
        event: &AuditEvent,
        prev: &[u8; 32],
    ) -> Result<(), Failure> {
        let cp = Checkpoint::from_event(event)
            .ok_or_else(|| fail(event, FailureReason::MalformedCheckpoint, None))?;
        let covers = decode_hex32(&cp.hash)
            .ok_or_else(|| fail(event, FailureReason::MalformedCheckpoint, None))?;
        if cp.seq.checked_add(1) != Some(event.seq) || covers != *prev {
            return Err(fail(event, FailureReason::CheckpointMismatch, None));
        }
        if !cp.verify(self.keyring) {
            return Err(fail(event, FailureReason::ForgedCheckpoint, None));
        }
        Ok(())
    }
}

/// Checks how an instance's chain begins and positions the attestation cursor.
fn start<'v>(event: &AuditEvent, attestations: &'v [Attestation]) -> Result<Current<'v>, Failure> {
    let prev = decode_hex32(&event.prev_hash)
        .ok_or_else(|| fail(event, FailureReason::MalformedHash, None))?;
    let genesis = event.seq == 1 && prev == GENESIS;
    let anchored = event.seq >= 2
        && attestations
            .iter()
            .any(|a| a.source == Source::Anchor && a.seq == event.seq - 1 && a.hash == prev);
    if !genesis && !anchored {
        return Err(fail(event, FailureReason::UnanchoredStart, None));
    }
    let mut cursor = 0;
    while let Some(a) = attestations.get(cursor).filter(|a| a.seq < event.seq) {
        // The event just before the first retained one is known by its hash: it must agree.
        if a.seq + 1 == event.seq && a.hash != prev {
            return Err(Failure {
                instance: event.instance.clone(),
                seq: a.seq,
                id: None,
                reason: FailureReason::CheckpointMismatch,
                expected_seq: None,
            });
        }
        cursor += 1;
    }
    Ok(Current {
        instance: event.instance.clone(),
        expected: event.seq,
        last_hash: prev,
        attestations,
        cursor,
    })
}

/// Reports an attested seq the chain never reached.
fn finish(c: &Current<'_>) -> Result<(), Failure> {
    match c.attestations.get(c.cursor) {
        Some(a) => Err(Failure {
            instance: c.instance.clone(),
            seq: a.seq,
            id: None,
            reason: FailureReason::Truncated,
            expected_seq: Some(c.expected),
        }),
        None => Ok(()),
    }
}

fn fail(event: &AuditEvent, reason: FailureReason, expected_seq: Option<u64>) -> Failure {
    Failure {
        instance: event.instance.clone(),
        seq: event.seq,
        id: Some(event.id.clone()),
        reason,
        expected_seq,
    }
}
