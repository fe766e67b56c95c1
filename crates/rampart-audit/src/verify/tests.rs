use super::*;
use crate::canonical::event_hash;
use crate::{Chain, NewEvent, Outcome};
use rampart_core::MasterKey;
use time::macros::datetime;
use time::OffsetDateTime;

const T0: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);

fn key(first: u8) -> MasterKey {
    MasterKey::from_bytes((first..first + 32).collect()).unwrap()
}

fn ring() -> Keyring {
    Keyring::new(key(1), vec![])
}

/// `n` ordinary events for `instance`, with a checkpoint event after every `every` of them.
/// Returns the events and the checkpoints.
fn build(instance: &str, n: u64, every: u64) -> (Vec<AuditEvent>, Vec<Checkpoint>) {
    let ring = ring();
    let mut chain = Chain::new(instance);
    let mut events = Vec::new();
    let mut cps = Vec::new();
    for i in 1..=n {
        let ev = NewEvent::new(EventKind::ALL[(i % 20) as usize], Outcome::Success)
            .user(format!("u{i}"))
            .ip("192.0.2.1")
            .detail("i", i);
        events.push(chain.seal(ev, T0 + time::Duration::milliseconds(i as i64)));
        if every > 0 && i % every == 0 {
            let (cp, ev) = chain.checkpoint(&ring, T0 + time::Duration::milliseconds(i as i64));
            events.push(ev);
            cps.push(cp);
        }
    }
    (events, cps)
}

/// Recomputes hashes from `from` on, as an attacker with write access to the store could.
fn rehash(events: &mut [AuditEvent], from: usize) {
    for i in from..events.len() {
        if i > 0 {
            events[i].prev_hash = events[i - 1].hash.clone();
        }
        events[i].hash = hex::encode(event_hash(&events[i]).unwrap());
    }
}

fn failure(report: &VerifyReport) -> &Failure {
    assert!(!report.ok, "expected a failure");
    report.first_failure.as_ref().unwrap()
}

fn run(events: Vec<AuditEvent>) -> VerifyReport {
    verify(events, &ring(), |_| {})
}

/// Index in `events` of the event with `seq`.
fn at(events: &[AuditEvent], seq: u64) -> usize {
    events.iter().position(|e| e.seq == seq).unwrap()
}

#[test]
fn an_untouched_chain_verifies() {
    let (mut events, _) = build("a", 25, 10);
    events.extend(build("b", 5, 2).0);
    let total = events.len() as u64;
    let report = run(events);
    assert_eq!(report, VerifyReport { ok: true, checked: total, first_failure: None });
}

#[test]
fn an_empty_input_verifies() {
    assert!(run(Vec::new()).ok);
}

#[test]
fn a_modified_field_is_a_hash_mismatch_at_that_event() {
    let (mut events, _) = build("a", 20, 10);
    let i = at(&events, 5);
    events[i].ip = Some("198.51.100.1".into());
    let id = events[i].id.clone();
    let report = run(events);
    let f = failure(&report);
    assert_eq!(
        (f.seq, f.reason, f.id.as_deref()),
        (5, FailureReason::HashMismatch, Some(id.as_str()))
    );
    assert_eq!(report.checked, 4);
}

#[test]
fn a_modified_detail_or_timestamp_is_detected() {
    let (mut events, _) = build("a", 10, 0);
    events[2].details.insert("i".into(), 99.into());
    assert_eq!(failure(&run(events)).seq, 3);
    let (mut events, _) = build("a", 10, 0);
    events[6].ts += time::Duration::microseconds(1);
    assert_eq!(failure(&run(events)).reason, FailureReason::HashMismatch);
}

#[test]
fn a_deleted_event_is_a_seq_gap() {
    let (mut events, _) = build("a", 20, 10);
    let i = at(&events, 7);
    events.remove(i);
    let f = failure(&run(events)).clone();
    assert_eq!((f.seq, f.reason, f.expected_seq), (8, FailureReason::SeqGap, Some(7)));
}

#[test]
fn a_deletion_with_renumbering_breaks_the_link() {
    let (mut events, _) = build("a", 10, 0);
    events.remove(4);
    for e in &mut events[4..] {
        e.seq -= 1;
    }
    let f = failure(&run(events)).clone();
    assert_eq!((f.seq, f.reason), (5, FailureReason::PrevHashMismatch));
}

#[test]
fn an_inserted_event_with_a_repeated_seq_is_detected() {
    let (mut events, _) = build("a", 10, 0);
    let mut forged = events[4].clone();
    forged.id = "forged".into();
    forged.outcome = Outcome::Failure;
    events.insert(5, forged);
    let f = failure(&run(events)).clone();
    assert_eq!((f.seq, f.reason, f.expected_seq), (5, FailureReason::SeqNotIncreasing, Some(6)));
    assert_eq!(f.id.as_deref(), Some("forged"));
}

#[test]
fn an_inserted_event_with_renumbering_breaks_the_link() {
    let (mut events, _) = build("a", 10, 0);
    let mut forged = events[4].clone();
    forged.seq = 6;
    forged.prev_hash = events[4].hash.clone();
    forged.hash = hex::encode(event_hash(&forged).unwrap());
    for e in &mut events[5..] {
        e.seq += 1;
    }
    events.insert(5, forged);
    let f = failure(&run(events)).clone();
    assert_eq!((f.seq, f.reason), (7, FailureReason::PrevHashMismatch));
}

#[test]
fn swapped_events_are_detected() {
    // Delivered out of order.
    let (mut events, _) = build("a", 10, 0);
    events.swap(4, 5);
    let f = failure(&run(events)).clone();
    assert_eq!((f.seq, f.reason, f.expected_seq), (6, FailureReason::SeqGap, Some(5)));
    // Contents swapped in the store while the seq column stays in order.
    let (mut events, _) = build("a", 10, 0);
    events.swap(4, 5);
    events[4].seq = 5;
    events[5].seq = 6;
    let f = failure(&run(events)).clone();
    assert_eq!((f.seq, f.reason), (5, FailureReason::PrevHashMismatch));
}

#[test]
fn a_rewritten_and_rehashed_chain_fails_at_the_next_checkpoint() {
    let (mut events, _) = build("a", 20, 10);
    events[2].outcome = Outcome::Denied;
    rehash(&mut events, 2);
    let cp_seq = events.iter().find(|e| e.event == EventKind::AuditCheckpoint).unwrap().seq;
    let f = failure(&run(events)).clone();
    assert_eq!((f.seq, f.reason), (cp_seq, FailureReason::CheckpointMismatch));
    assert_eq!(cp_seq, 11);
}

#[test]
fn a_forged_checkpoint_mac_is_detected() {
    let (mut events, _) = build("a", 20, 10);
    let i = at(&events, 11);
    events[i].details.insert("mac".into(), hex::encode([7u8; 32]).into());
    rehash(&mut events, i);
    let f = failure(&run(events)).clone();
    assert_eq!((f.seq, f.reason), (11, FailureReason::ForgedCheckpoint));
}

#[test]
fn a_checkpoint_sealed_by_hand_is_malformed() {
    let mut chain = Chain::new("a");
    let events = vec![chain.seal(NewEvent::success(EventKind::AuditCheckpoint), T0)];
    assert_eq!(failure(&run(events)).reason, FailureReason::MalformedCheckpoint);
}

#[test]
fn the_wrong_key_fails_at_the_first_checkpoint_and_a_rotated_key_still_verifies() {
    let (events, _) = build("a", 20, 10);
    let other = Keyring::new(key(50), vec![]);
    let report = verify(events.clone(), &other, |_| {});
    let f = failure(&report);
    assert_eq!((f.seq, f.reason), (11, FailureReason::ForgedCheckpoint));
    assert_eq!(report.checked, 10);
    let rotated = Keyring::new(key(50), vec![key(1)]);
    assert!(verify(events, &rotated, |_| {}).ok);
}

#[test]
fn truncation_after_a_mirrored_checkpoint_is_detected() {
    let (mut events, cps) = build("a", 30, 10);
    // Keep events up to seq 18: the checkpoint at seq 22 (covering 21) is gone from the store.
    events.truncate(at(&events, 18) + 1);
    assert!(run(events.clone()).ok, "without outside checkpoints a clean cut is invisible");
    let report = Verifier::new(&ring()).with_checkpoints(&cps).verify(events, |_| {});
    let f = failure(&report).clone();
    assert_eq!((f.seq, f.reason, f.expected_seq), (21, FailureReason::Truncated, Some(19)));
    assert_eq!(f.id, None);
}

#[test]
fn a_deleted_instance_is_detected_from_its_mirrored_checkpoints() {
    let (events, _) = build("a", 5, 0);
    let (_, cps_b) = build("b", 10, 5);
    let report = Verifier::new(&ring()).with_checkpoints(&cps_b).verify(events, |_| {});
    let f = failure(&report).clone();
    assert_eq!((f.instance.as_str(), f.seq, f.reason), ("b", 5, FailureReason::Truncated));
}

#[test]
fn a_mirrored_checkpoint_reveals_a_rewrite_after_the_last_stored_checkpoint() {
    let (mut events, cps) = build("a", 10, 10);
    // Drop the stored checkpoint event, rewrite event 3 and recompute everything.
    events.pop();
    events[2].ip = None;
    rehash(&mut events, 2);
    assert!(run(events.clone()).ok);
    let report = Verifier::new(&ring()).with_checkpoints(&cps).verify(events, |_| {});
    let f = failure(&report).clone();
    assert_eq!((f.seq, f.reason), (10, FailureReason::CheckpointMismatch));
}

#[test]
fn a_forged_mirrored_checkpoint_is_reported_before_any_event() {
    let (events, mut cps) = build("a", 10, 5);
    cps[1].seq = 12;
    let report = Verifier::new(&ring()).with_checkpoints(&cps).verify(events, |_| {});
    let f = failure(&report).clone();
    assert_eq!((f.seq, f.reason), (12, FailureReason::ForgedCheckpoint));
    assert_eq!(report.checked, 0);
}

#[test]
fn a_pruned_chain_verifies_from_its_anchor() {
    let (events, _) = build("a", 50, 10);
    let cut = at(&events, 20);
    let anchor = PruneAnchor::for_event(&ring(), &events[cut]).unwrap();
    let retained: Vec<AuditEvent> = events[cut + 1..].to_vec();
    let n = retained.len() as u64;
    let report = Verifier::new(&ring())
        .with_anchors(std::slice::from_ref(&anchor))
        .verify(retained.clone(), |_| {});
    assert_eq!((report.ok, report.checked), (true, n));
    // Without the anchor the missing beginning is reported.
    let f = failure(&run(retained.clone())).clone();
    assert_eq!((f.seq, f.reason), (21, FailureReason::UnanchoredStart));
    // An anchor for another seq does not help.
    let wrong = PruneAnchor::for_event(&ring(), &events[cut - 1]).unwrap();
    let report = Verifier::new(&ring()).with_anchors(&[wrong]).verify(retained.clone(), |_| {});
    assert_eq!(failure(&report).reason, FailureReason::UnanchoredStart);
    // A forged anchor is refused outright.
    let mut forged = anchor;
    forged.seq = 30;
    let report = Verifier::new(&ring()).with_anchors(&[forged]).verify(retained, |_| {});
    assert_eq!(failure(&report).reason, FailureReason::ForgedAnchor);
}

#[test]
fn an_anchor_beyond_the_end_of_the_chain_means_truncation() {
    let (events, _) = build("a", 30, 0);
    let anchor = PruneAnchor::for_event(&ring(), &events[24]).unwrap();
    let kept = events[..10].to_vec();
    let report = Verifier::new(&ring()).with_anchors(&[anchor]).verify(kept, |_| {});
    let f = failure(&report).clone();
    assert_eq!((f.seq, f.reason, f.expected_seq), (25, FailureReason::Truncated, Some(11)));
}

#[test]
fn a_fully_pruned_instance_with_only_an_anchor_verifies() {
    let (events, _) = build("a", 5, 0);
    let anchor = PruneAnchor::for_event(&ring(), &events[4]).unwrap();
    let report = Verifier::new(&ring()).with_anchors(&[anchor]).verify(Vec::new(), |_| {});
    assert!(report.ok);
}

#[test]
fn interleaved_instances_are_refused() {
    let (a, _) = build("a", 3, 0);
    let (b, _) = build("b", 3, 0);
    let events = vec![a[0].clone(), b[0].clone(), a[1].clone()];
    let f = failure(&run(events)).clone();
    assert_eq!(
        (f.instance.as_str(), f.seq, f.reason),
        ("a", 2, FailureReason::InstanceNotContiguous)
    );
}

#[test]
fn malformed_hashes_are_reported() {
    let (mut events, _) = build("a", 3, 0);
    events[1].hash = "xyz".into();
    assert_eq!(failure(&run(events)).reason, FailureReason::MalformedHash);
    // Not hex, with the right length, in either hash field of an event after the first.
    let (mut events, _) = build("a", 3, 0);
    events[1].prev_hash = "g".repeat(64);
    let f = failure(&run(events)).clone();
    assert_eq!((f.seq, f.reason), (2, FailureReason::MalformedHash));
    let (mut events, _) = build("a", 3, 0);
    events[2].hash.replace_range(0..1, "z");
    let f = failure(&run(events)).clone();
    assert_eq!((f.seq, f.reason), (3, FailureReason::MalformedHash));
}

#[test]
fn hashes_written_in_upper_case_still_verify() {
    let (mut events, _) = build("a", 5, 2);
    for e in &mut events {
        e.hash = e.hash.to_uppercase();
        e.prev_hash = e.prev_hash.to_uppercase();
    }
    let total = events.len() as u64;
    let report = run(events);
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, total);
}

#[test]
fn the_report_serializes_to_the_documented_shape() {
    let (mut events, _) = build("a", 3, 0);
    events[1].user_agent = Some("x".into());
    let json = serde_json::to_value(run(events)).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["checked"], 1);
    assert_eq!(json["first_failure"]["reason"], "hash_mismatch");
    assert_eq!(json["first_failure"]["seq"], 2);
    assert_eq!(json["first_failure"]["instance"], "a");
    let ok = serde_json::to_value(run(Vec::new())).unwrap();
    assert_eq!(ok, serde_json::json!({"ok": true, "checked": 0, "first_failure": null}));
}

#[test]
fn a_hundred_thousand_events_verify_with_progress() {
    let (events, _) = build("a", 100_000, 1000);
    let total = events.len() as u64;
    let mut seen = Vec::new();
    let report = verify(events, &ring(), |n| seen.push(n));
    assert!(report.ok);
    assert_eq!(report.checked, total);
    assert_eq!(seen.last(), Some(&total));
    assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    assert!(seen.len() > 20);
}
