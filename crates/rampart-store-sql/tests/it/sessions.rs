use std::sync::Arc;

use rampart_core::{Keyring, ManualClock, MasterKey, SharedClock};
use rampart_store_sql::SqlSessionStore;

#[tokio::test]
async fn sql_session_store_passes_the_session_store_conformance_suite() {
    for (db, _guard) in crate::backends().await {
        db.migrate_up().await.unwrap();
        let clock = ManualClock::at_epoch();
        let shared: SharedClock = Arc::new(clock.clone());
        let keyring = Keyring::new(MasterKey::generate(), Vec::new());
        let store = SqlSessionStore::new(db.clone(), keyring, shared);
        rampart_session::conformance::run_all(Arc::new(store), clock).await;
        db.close().await;
    }
}
