//! The server's audit log: the SQL sink with group commit, verification over the stored
//! chains (with prune anchors and checkpoints mirrored outside the store), pruning and export.

use std::sync::Arc;

use rampart_audit::{AuditEvent, AuditSink, CheckpointPolicy, VerifyReport};
use rampart_core::{Keyring, SharedClock};
use rampart_store_sql::{Db, SqlAuditSink, StoreError};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Opens the audit sink for this instance, streaming events to `stream` (`stdout` or a file
/// path, appended) when configured.
pub async fn open(
    db: &Db,
    keyring: &Keyring,
    instance: &str,
    clock: SharedClock,
    shutdown: CancellationToken,
    stream: Option<&str>,
) -> Result<Arc<dyn AuditSink>, rampart_audit::AuditError> {
    let out: Option<Box<dyn std::io::Write + Send>> = match stream {
        None => None,
        Some("stdout") | Some("-") => Some(Box::new(std::io::LineWriter::new(std::io::stdout()))),
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new().create(true).append(true).open(path)?,
        ))),
    };
    let (sink, _writer) = SqlAuditSink::open_with_stream(
        db.clone(),
        keyring.clone(),
        instance,
        clock,
        CheckpointPolicy::default(),
        shutdown,
        out,
    )
    .await?;
    Ok(Arc::new(sink))
}

/// Lets the writer drain after shutdown was signalled. Appends are awaited by their requests,
/// so once the server has stopped serving only the drain is left.
pub async fn flush(state: &AppState) {
    let _ = state;
    tokio::task::yield_now().await;
}

/// Reads checkpoints mirrored to the operational log (JSON lines with target `rampart::audit`
/// and fields instance, seq, hash, ts, mac), skipping every other line.
pub fn checkpoints_from_log(text: &str) -> Vec<rampart_audit::Checkpoint> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(|v| v["target"] == "rampart::audit")
        .filter_map(|v| {
            let f = if v.get("fields").is_some() { &v["fields"] } else { &v };
            serde_json::from_value(serde_json::json!({
                "instance": f["instance"], "seq": f["seq"], "hash": f["hash"], "ts": f["ts"], "mac": f["mac"],
            }))
            .ok()
        })
        .collect()
}

/// Removes events older than `before` (Unix microseconds) on every instance, after storing a
/// signed anchor for each so verification still passes. Returns how many events were removed.
pub async fn prune(db: &Db, keyring: &Keyring, before: i64) -> Result<u64, StoreError> {
    let mut removed = 0;
    for last in db.audit_prune_points(before).await? {
        let anchor = rampart_audit::PruneAnchor::for_event(keyring, &last)
            .map_err(|_| StoreError::Corrupt("audit event hash"))?;
        removed += db.audit_prune(&anchor).await?;
    }
    Ok(removed)
}

/// Verifies every stored chain, streaming events from the database into the verifier, with the
/// stored prune anchors and the given checkpoints kept outside the store. `progress` gets the
/// running count.
pub async fn verify(
    db: &Db,
    keyring: &Keyring,
    external: Vec<rampart_audit::Checkpoint>,
    progress: impl FnMut(u64) + Send + 'static,
) -> Result<VerifyReport, StoreError> {
    let anchors = db.audit_anchors().await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<AuditEvent>(8192);
    let keyring = keyring.clone();
    let verifier = tokio::task::spawn_blocking(move || {
        let events = std::iter::from_fn(move || rx.blocking_recv());
        rampart_audit::Verifier::new(&keyring)
            .with_anchors(&anchors)
            .with_checkpoints(&external)
            .verify(events, progress)
    });
    let mut after: Option<(String, u64)> = None;
    // The first row whose search columns disagree with its sealed body, and how many events
    // came before it. It still goes to the verifier, which may name a more specific failure
    // at that row (a moved body breaks the chain there too).
    let mut edited: Option<(rampart_audit::Failure, u64)> = None;
    let mut sent = 0u64;
    let scan: Result<(), StoreError> = async {
        loop {
            let chunk = db
                .audit_chunk_with_index_check(after.as_ref().map(|(i, s)| (i.as_str(), *s)), 5000)
                .await?;
            let Some((last, _)) = chunk.last() else { return Ok(()) };
            after = Some((last.instance.clone(), last.seq));
            for (ev, agrees) in chunk {
                if !agrees && edited.is_none() {
                    let failure = rampart_audit::Failure {
                        instance: ev.instance.clone(),
                        seq: ev.seq,
                        id: Some(ev.id.clone()),
                        reason: rampart_audit::FailureReason::IndexMismatch,
                        expected_seq: None,
                    };
                    edited = Some((failure, sent));
                }
                if tx.send(ev).await.is_err() {
                    // The verifier stopped at a failure; it has what it needs.
                    return Ok(());
                }
                sent += 1;
            }
        }
    }
    .await;
    drop(tx);
    let mut report = verifier.await.map_err(|_| StoreError::Corrupt("verifier panicked"))?;
    scan?;
    // The edited row is the failure unless the chain failed at it or before it.
    if let Some((failure, before)) = edited {
        if report.ok || report.checked > before {
            report.ok = false;
            report.checked = before;
            report.first_failure = Some(failure);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_mirrored_checkpoints_from_json_logs() {
        let log = concat!(
            r#"{"timestamp":"x","level":"INFO","target":"rampart::access","message":"request"}"#,
            "\n",
            r#"{"timestamp":"x","level":"INFO","message":"audit checkpoint","instance":"i1","seq":1000,"hash":"aa","ts":"2030-01-01T00:00:00.000000Z","mac":"bb","target":"rampart::audit"}"#,
            "\nnot json\n"
        );
        let cps = super::checkpoints_from_log(log);
        assert_eq!(cps.len(), 1);
        assert_eq!(cps[0].instance, "i1");
        assert_eq!(cps[0].seq, 1000);
    }
}
