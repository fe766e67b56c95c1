use rampart_store_sql::{NewUser, Role, StoreError};
use time::macros::datetime;

fn new_user(id: &str, email: &str, role: Role) -> NewUser {
    NewUser { id: id.into(), email: email.into(), role, password_hash: "$argon2id$fake".into() }
}

#[tokio::test]
async fn users_round_trip_with_case_insensitive_unique_email() {
    let now = datetime!(2030-01-01 00:00:00 UTC);
    for (db, _guard) in crate::backends().await {
        db.migrate_up().await.unwrap();
        let u = db.create_user(&new_user("u1", "Jane@Example.com", Role::User), now).await.unwrap();
        assert_eq!(u.email, "Jane@Example.com");
        assert!(!u.disabled);
        assert_eq!(u.created_at, now);
        let found = db.user_by_email("jane@EXAMPLE.com").await.unwrap().unwrap();
        assert_eq!(found.user.id, "u1");
        assert_eq!(found.password_hash, "$argon2id$fake");
        let dup = db.create_user(&new_user("u2", "JANE@example.com", Role::User), now).await;
        assert!(matches!(dup, Err(StoreError::Conflict)), "{dup:?}");

        let updated =
            db.update_user("u1", Some(Role::Admin), Some(true), now).await.unwrap().unwrap();
        assert_eq!(updated.role, Role::Admin);
        assert!(updated.disabled);
        assert_eq!(db.update_user("nope", None, Some(false), now).await.unwrap(), None);
        assert_eq!(db.count_active_admins().await.unwrap(), 0);
        assert!(db.set_password_hash("u1", "$2b$new", now).await.unwrap());
        assert_eq!(db.user_by_id("u1").await.unwrap().unwrap().password_hash, "$2b$new");
        assert_eq!(db.list_users().await.unwrap().len(), 1);
        assert!(db.delete_user("u1").await.unwrap());
        assert!(!db.delete_user("u1").await.unwrap());
        // Creating a user closed setup; deleting every user does not reopen it.
        assert!(!db.setup_needed().await.unwrap());
        db.close().await;
    }
}

#[tokio::test]
async fn concurrent_first_user_setup_creates_exactly_one_admin() {
    let now = datetime!(2030-01-01 00:00:00 UTC);
    for (db, _guard) in crate::backends().await {
        db.migrate_up().await.unwrap();
        assert!(db.setup_needed().await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..40 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.setup_first_user(
                    &new_user(&format!("id{i}"), &format!("a{i}@example.com"), Role::Admin),
                    now,
                )
                .await
            }));
        }
        let mut created = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(Some(u)) => {
                    assert_eq!(u.role, Role::Admin);
                    created += 1;
                }
                Ok(None) => {}
                // SQLite may report a busy database under this contention; never two winners.
                Err(e) => assert!(!matches!(e, StoreError::Conflict), "{e:?}"),
            }
        }
        assert_eq!(created, 1, "{:?}", db.backend());
        assert_eq!(db.list_users().await.unwrap().len(), 1);
        assert!(!db.setup_needed().await.unwrap());
        db.close().await;
    }
}

/// A Postgres database that refuses connections (an operator closed it, or dropped it) is
/// unavailable, so the server answers 503 `database_unavailable` and not 500.
#[tokio::test]
async fn a_database_that_refuses_connections_is_unavailable_not_a_failed_statement() {
    use sqlx::{Connection, Executor};
    let Some(pg) = rampart_testkit::postgres_database().await else { return };
    let db = rampart_store_sql::Db::connect(&pg.url, &rampart_store_sql::PoolConfig::default())
        .await
        .unwrap();
    db.migrate_up().await.unwrap();
    assert!(db.user_by_id("u_nobody").await.unwrap().is_none());
    let name = pg.url.rsplit('/').next().unwrap().to_owned();
    let mut admin =
        sqlx::PgConnection::connect(&rampart_testkit::postgres_admin_url()).await.unwrap();
    admin.execute(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false").as_str()).await.unwrap();
    admin
        .execute(
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            .as_str(),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        let err = db.user_by_id("u_nobody").await.unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
    }
    admin.execute(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true").as_str()).await.unwrap();
}
