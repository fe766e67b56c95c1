//! Where events go: the [`AuditSink`] trait, an in-memory sink and a JSON-lines writer.
//!
//! # Security
//! - Every sink refuses the reserved `audit_checkpoint` kind from callers
//!   ([`NewEvent::check`]); only the chain writes checkpoints.
//! - [`MemoryAuditSink`] keeps every event in memory without bound. It exists for tests and
//!   examples; a server must use a persistent, bounded store.
//! - [`JsonLinesSink`] writes while holding a lock, on the calling task. Give it a buffered
//!   writer, and prefer a database-backed sink under load.
//! - An export written with [`write_json_line`] verifies like the store it came from: the
//!   canonical encoding does not depend on JSON formatting.

use std::fmt;
use std::io::Write;
use std::sync::{Mutex, MutexGuard};

use rampart_core::{Keyring, SharedClock};

use crate::chain::Chain;
use crate::checkpoint::{mirror_checkpoint, Checkpoint, CheckpointPolicy};
use crate::error::AuditError;
use crate::event::AuditEvent;
use crate::new_event::NewEvent;

/// Appends events to an audit log.
///
/// Implementations seal each event with their instance's [`Chain`] and store it atomically with
/// the chain's advance: an event that was not stored must not consume a seq.
#[async_trait::async_trait]
pub trait AuditSink: fmt::Debug + Send + Sync + 'static {
    /// Seals and stores `event`, returning it as stored. Refuses reserved kinds with
    /// [`AuditError::ReservedKind`].
    async fn append(&self, event: NewEvent) -> Result<AuditEvent, AuditError>;
}

/// Signs checkpoints for a sink: the key and when to write one.
#[derive(Debug, Clone)]
struct Checkpointing {
    keyring: Keyring,
    policy: CheckpointPolicy,
}

#[derive(Debug)]
struct MemoryState {
    chain: Chain,
    events: Vec<AuditEvent>,
    checkpoints: Vec<Checkpoint>,
}

/// An unbounded in-memory sink for tests and examples.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use rampart_audit::{AuditSink, EventKind, MemoryAuditSink, NewEvent};
/// use rampart_core::SystemClock;
///
/// let sink = MemoryAuditSink::new("node-a", SystemClock::shared());
/// let stored = sink.append(NewEvent::success(EventKind::UserLogin).user("u1")).await.unwrap();
/// assert_eq!(stored.seq, 1);
/// assert_eq!(sink.events().len(), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryAuditSink {
    state: Mutex<MemoryState>,
    clock: SharedClock,
    checkpointing: Option<Checkpointing>,
}

impl MemoryAuditSink {
    /// An empty sink for `instance`, writing no checkpoints.
    pub fn new(instance: impl Into<String>, clock: SharedClock) -> Self {
        let state = MemoryState {
            chain: Chain::new(instance),
            events: Vec::new(),
            checkpoints: Vec::new(),
        };
        Self { state: Mutex::new(state), clock, checkpointing: None }
    }

    /// Writes a signed checkpoint after an append whenever `policy` says one is due, and mirrors
    /// it to the operational log ([`mirror_checkpoint`]).
    #[must_use]
    pub fn with_checkpoints(mut self, keyring: Keyring, policy: CheckpointPolicy) -> Self {
        self.checkpointing = Some(Checkpointing { keyring, policy });
        self
    }

    /// Writes a checkpoint now if one is configured and due (for a periodic task).
    pub fn checkpoint_if_due(&self) -> Result<Option<Checkpoint>, AuditError> {
        let mut state = self.lock()?;
        Ok(self.maybe_checkpoint(&mut state))
    }

    /// A copy of every stored event, in seq order.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.lock().map(|s| s.events.clone()).unwrap_or_default()
    }

    /// A copy of every checkpoint written, oldest first.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.lock().map(|s| s.checkpoints.clone()).unwrap_or_default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, MemoryState>, AuditError> {
        self.state.lock().map_err(|_| AuditError::Poisoned)
    }

    fn maybe_checkpoint(&self, state: &mut MemoryState) -> Option<Checkpoint> {
        let cfg = self.checkpointing.as_ref()?;
        let now = self.clock.now();
        if !state.chain.checkpoint_due(&cfg.policy, now) {
            return None;
        }
        let (checkpoint, event) = state.chain.checkpoint(&cfg.keyring, now);
        mirror_checkpoint(&checkpoint);
        state.events.push(event);
        state.checkpoints.push(checkpoint.clone());
        Some(checkpoint)
    }
}

#[async_trait::async_trait]
impl AuditSink for MemoryAuditSink {
    async fn append(&self, event: NewEvent) -> Result<AuditEvent, AuditError> {
        event.check()?;
        let mut state = self.lock()?;
        let sealed = state.chain.seal(event, self.clock.now());
        state.events.push(sealed.clone());
        self.maybe_checkpoint(&mut state);
        Ok(sealed)
    }
}

/// Writes `event` as one line of JSON followed by `\n` (the export and SIEM stream format).
pub fn write_json_line<W: Write>(writer: &mut W, event: &AuditEvent) -> Result<(), AuditError> {
    serde_json::to_writer(&mut *writer, event).map_err(|e| {
        if e.is_io() {
            AuditError::Io(e.into())
        } else {
            AuditError::Json(e)
        }
    })?;
    writer.write_all(b"\n")?;
    Ok(())
}

struct JsonLinesState<W> {
    chain: Chain,
    writer: W,
}

/// A sink that seals events and writes each as one line of JSON to `W`.
///
/// The chain advances only when the line was written. The writer is not flushed after each
/// event; call [`JsonLinesSink::flush`], or give it an unbuffered writer.
pub struct JsonLinesSink<W> {
    state: Mutex<JsonLinesState<W>>,
    clock: SharedClock,
}

impl<W> fmt::Debug for JsonLinesSink<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSink").finish_non_exhaustive()
    }
}

impl<W: Write> JsonLinesSink<W> {
    /// A sink continuing `chain` (use [`Chain::resume`] when appending to an existing file).
    pub fn new(writer: W, chain: Chain, clock: SharedClock) -> Self {
        Self { state: Mutex::new(JsonLinesState { chain, writer }), clock }
    }

    /// Seals `event` and writes it. The synchronous form of [`AuditSink::append`].
    pub fn append_sync(&self, event: NewEvent) -> Result<AuditEvent, AuditError> {
        event.check()?;
        let mut state = self.state.lock().map_err(|_| AuditError::Poisoned)?;
        let mut next = state.chain.clone();
        let sealed = next.seal(event, self.clock.now());
        write_json_line(&mut state.writer, &sealed)?;
        state.chain = next;
        Ok(sealed)
    }

    /// Flushes the writer.
    pub fn flush(&self) -> Result<(), AuditError> {
        let mut state = self.state.lock().map_err(|_| AuditError::Poisoned)?;
        state.writer.flush()?;
        Ok(())
    }

    /// The writer, once the sink is no longer needed.
    pub fn into_inner(self) -> Result<W, AuditError> {
        let state = self.state.into_inner().map_err(|_| AuditError::Poisoned)?;
        Ok(state.writer)
    }
}

#[async_trait::async_trait]
impl<W: Write + Send + 'static> AuditSink for JsonLinesSink<W> {
    async fn append(&self, event: NewEvent) -> Result<AuditEvent, AuditError> {
        self.append_sync(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{verify, EventKind};
    use rampart_core::{ManualClock, MasterKey};
    use std::sync::Arc;
    use std::time::Duration;

    fn ring() -> Keyring {
        Keyring::new(MasterKey::from_bytes((1..=32).collect()).unwrap(), vec![])
    }

    #[tokio::test]
    async fn memory_sink_writes_checkpoints_by_policy_and_verifies() {
        let clock = ManualClock::at_epoch();
        let policy = CheckpointPolicy { every_n: 3, every: Duration::from_secs(60) };
        let sink =
            MemoryAuditSink::new("a", Arc::new(clock.clone())).with_checkpoints(ring(), policy);
        for _ in 0..7 {
            sink.append(NewEvent::success(EventKind::UserLogin)).await.unwrap();
        }
        // 3 events, checkpoint, 3 events, checkpoint, 1 event.
        let kinds: Vec<EventKind> = sink.events().iter().map(|e| e.event).collect();
        assert_eq!(kinds.iter().filter(|k| **k == EventKind::AuditCheckpoint).count(), 2);
        assert_eq!(kinds[3], EventKind::AuditCheckpoint);
        assert_eq!(sink.checkpoints()[1].seq, 7);
        assert!(sink.checkpoint_if_due().unwrap().is_none());
        clock.advance(time::Duration::seconds(60));
        let cp = sink.checkpoint_if_due().unwrap().unwrap();
        assert_eq!(cp.seq, 9);
        let report = verify(sink.events(), &ring(), |_| {});
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checked, 10);
    }

    #[tokio::test]
    async fn sinks_refuse_checkpoints_from_callers() {
        let sink = MemoryAuditSink::new("a", Arc::new(ManualClock::at_epoch()));
        let err = sink.append(NewEvent::success(EventKind::AuditCheckpoint)).await.unwrap_err();
        assert!(matches!(err, AuditError::ReservedKind));
        assert!(sink.events().is_empty());
        let lines =
            JsonLinesSink::new(Vec::new(), Chain::new("a"), Arc::new(ManualClock::at_epoch()));
        assert!(lines.append(NewEvent::success(EventKind::AuditCheckpoint)).await.is_err());
    }

    #[tokio::test]
    async fn json_lines_sink_writes_one_verifiable_event_per_line() {
        let sink =
            JsonLinesSink::new(Vec::new(), Chain::new("a"), Arc::new(ManualClock::at_epoch()));
        sink.append(NewEvent::success(EventKind::UserLogin).ip("192.0.2.1")).await.unwrap();
        sink.append(NewEvent::denied(EventKind::CsrfRejected)).await.unwrap();
        sink.flush().unwrap();
        let text = String::from_utf8(sink.into_inner().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(text.ends_with('\n'));
        let events: Vec<AuditEvent> =
            lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events[1].seq, 2);
        assert!(verify(events, &ring(), |_| {}).ok);
    }

    struct FailingWriter;
    impl Write for FailingWriter {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_does_not_consume_a_seq() {
        let sink =
            JsonLinesSink::new(FailingWriter, Chain::new("a"), Arc::new(ManualClock::at_epoch()));
        assert!(matches!(
            sink.append_sync(NewEvent::success(EventKind::UserLogin)),
            Err(AuditError::Io(_))
        ));
        let state = sink.state.lock().unwrap();
        assert_eq!(state.chain.next_seq(), 1);
    }
}
