use rampart_store_sql::Backend;

#[tokio::test]
async fn migrations_go_up_down_and_up_again_on_every_backend() {
    for (db, _guard) in crate::backends().await {
        let status = db.migration_status().await.unwrap();
        assert!(!status.is_empty());
        assert!(
            status.iter().all(|m| !m.applied),
            "{:?}: fresh database has nothing applied",
            db.backend()
        );
        assert_eq!(db.pending_migrations().await.unwrap(), status.len());

        let applied = db.migrate_up().await.unwrap();
        assert_eq!(applied.len(), status.len());
        assert_eq!(db.pending_migrations().await.unwrap(), 0);
        assert!(db.setup_needed().await.unwrap(), "tables exist after up");

        let latest = status.last().unwrap().version;
        assert_eq!(db.migrate_down().await.unwrap(), Some(latest));
        assert_eq!(db.pending_migrations().await.unwrap(), 1);
        if status.len() == 1 {
            assert!(db.setup_needed().await.is_err(), "{:?}: tables gone after down", db.backend());
        }

        assert_eq!(db.migrate_up().await.unwrap(), vec![latest]);
        assert_eq!(db.pending_migrations().await.unwrap(), 0);
        assert!(db.setup_needed().await.unwrap());
        db.close().await;
    }
}

#[tokio::test]
async fn migrate_down_with_nothing_applied_is_a_no_op() {
    for (db, _guard) in crate::backends().await {
        assert_eq!(db.migrate_down().await.unwrap(), None);
        db.close().await;
    }
}

#[test]
fn backend_is_chosen_by_url() {
    assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
    assert_eq!(Backend::from_url("postgres://h/db").unwrap(), Backend::Postgres);
    assert_eq!(Backend::from_url("postgresql://h/db").unwrap(), Backend::Postgres);
    assert!(Backend::from_url("mysql://h/db").is_err());
}
