use std::time::Duration;

use rampart_audit::{AuditSink, CheckpointPolicy, EventKind, NewEvent};
use rampart_core::{Keyring, MasterKey, SystemClock};
use rampart_store_sql::SqlAuditSink;
use tokio_util::sync::CancellationToken;

/// The writer keeps a connection between batches; closing the pool must still finish while the
/// sink is alive and its shutdown was never signalled (the command-line tools close the pool
/// that way), and appends after that fail instead of hanging.
#[tokio::test]
async fn closing_the_pool_does_not_wait_for_the_audit_writer() {
    for (db, _guard) in crate::backends().await {
        db.migrate_up().await.unwrap();
        let (sink, _writer) = SqlAuditSink::open(
            db.clone(),
            Keyring::new(MasterKey::generate(), vec![]),
            "close-test",
            SystemClock::shared(),
            CheckpointPolicy::default(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        for _ in 0..3 {
            sink.append(NewEvent::success(EventKind::UserLogin)).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), db.close())
            .await
            .expect("the pool closes while the audit writer is alive");
        let after = tokio::time::timeout(
            Duration::from_secs(10),
            sink.append(NewEvent::success(EventKind::UserLogin)),
        )
        .await
        .expect("an append after the close answers");
        assert!(after.is_err(), "nothing is stored once the pool is closed");
    }
}
