use std::time::Duration;

use rampart_store_sql::{NewApiKey, NewUser, Role, SealedTokens, StoreError};
use time::macros::datetime;

fn user(id: &str, role: Role) -> NewUser {
    NewUser {
        id: id.into(),
        email: format!("{id}@example.com"),
        role,
        password_hash: "$argon2id$fake".into(),
    }
}

fn key(id: &str, by: &str) -> NewApiKey {
    NewApiKey {
        id: id.into(),
        name: format!("key {id}"),
        key_hash: "ab".repeat(32),
        hash_key_id: "k1".into(),
        created_by: by.into(),
        expires_at: Some(datetime!(2031-01-01 00:00:00 UTC)),
    }
}

fn sealed(tag: u8, key_id: &str) -> SealedTokens {
    SealedTokens {
        access_token: vec![tag; 40],
        refresh_token: Some(vec![tag ^ 0xff; 40]),
        expires_at: Some(datetime!(2030-01-01 01:00:00 UTC)),
        key_id: key_id.into(),
    }
}

#[tokio::test]
async fn api_keys_round_trip_with_the_creators_current_role_and_cascade_on_delete() {
    let now = datetime!(2030-01-01 00:00:00 UTC);
    for (db, _guard) in crate::backends().await {
        db.migrate_up().await.unwrap();
        db.create_user(&user("u1", Role::Admin), now).await.unwrap();
        let rec = db.create_api_key(&key("k1", "u1"), now).await.unwrap();
        assert_eq!(rec.created_at, now);
        assert_eq!(rec.last_used_at, None);
        assert!(matches!(
            db.create_api_key(&key("k1", "u1"), now).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(db.list_api_keys().await.unwrap(), vec![rec.clone()]);
        assert_eq!(db.api_key_by_id("k1").await.unwrap(), Some(rec));

        let cred = db.api_key_credential("k1").await.unwrap().unwrap();
        assert_eq!(cred.creator_role, Role::Admin);
        assert!(!cred.creator_disabled);
        assert_eq!(cred.key_hash, "ab".repeat(32));
        db.update_user("u1", Some(Role::User), Some(true), now).await.unwrap();
        let cred = db.api_key_credential("k1").await.unwrap().unwrap();
        assert_eq!(cred.creator_role, Role::User, "the role is read fresh, never cached");
        assert!(cred.creator_disabled);

        // Last use is written at most once per interval.
        let minute = Duration::from_secs(60);
        assert!(db.touch_api_key("k1", now, minute).await.unwrap());
        assert!(!db.touch_api_key("k1", now + Duration::from_secs(30), minute).await.unwrap());
        assert!(db.touch_api_key("k1", now + Duration::from_secs(61), minute).await.unwrap());
        let listed = db.api_key_by_id("k1").await.unwrap().unwrap();
        assert_eq!(listed.last_used_at, Some(now + Duration::from_secs(61)));

        assert_eq!(db.count_api_keys_not_hashed_with("k2").await.unwrap(), 1);
        assert!(!db.rehash_api_key("k1", "stale", "cd", "k2").await.unwrap());
        assert!(db.rehash_api_key("k1", &"ab".repeat(32), "cd", "k2").await.unwrap());
        assert_eq!(db.count_api_keys_not_hashed_with("k2").await.unwrap(), 0);

        db.create_api_key(&key("k2", "u1"), now).await.unwrap();
        assert!(db.delete_api_key("k2").await.unwrap());
        assert!(!db.delete_api_key("k2").await.unwrap());
        assert!(db.delete_user("u1").await.unwrap());
        assert!(db.api_key_credential("k1").await.unwrap().is_none(), "deleted with its creator");
        assert!(db.list_api_keys().await.unwrap().is_empty());
        db.close().await;
    }
}

#[tokio::test]
async fn vault_rows_insert_replace_reseal_and_refuse_stale_writes() {
    let now = datetime!(2030-01-01 00:00:00 UTC);
    for (db, _guard) in crate::backends().await {
        db.migrate_up().await.unwrap();
        db.create_user(&user("u1", Role::User), now).await.unwrap();
        assert!(db.vault_insert("v1", "u1", "gh", &sealed(1, "old"), now).await.unwrap());
        assert!(!db.vault_insert("v2", "u1", "gh", &sealed(2, "old"), now).await.unwrap());
        let row = db.vault_get("u1", "gh").await.unwrap().unwrap();
        assert_eq!((row.id.as_str(), row.revision), ("v1", 1));
        assert_eq!(row.access_token, vec![1; 40]);
        assert_eq!(row.expires_at, Some(datetime!(2030-01-01 01:00:00 UTC)));
        assert!(db.vault_get("u1", "other").await.unwrap().is_none());

        assert_eq!(db.vault_count_not_sealed_with("new").await.unwrap(), 1);
        let batch = db.vault_rows_not_sealed_with("new", "", 10).await.unwrap();
        assert_eq!(batch, vec![row.clone()]);
        assert!(db.vault_rows_not_sealed_with("new", "v1", 10).await.unwrap().is_empty());

        // A write after the read makes the re-seal of the stale copy a no-op.
        assert!(db.vault_replace("v1", &sealed(3, "old"), now).await.unwrap());
        assert!(!db.vault_reseal(&row, &sealed(4, "new")).await.unwrap());
        let fresh = db.vault_get("u1", "gh").await.unwrap().unwrap();
        assert!(db.vault_reseal(&fresh, &sealed(4, "new")).await.unwrap());
        assert_eq!(db.vault_count_not_sealed_with("new").await.unwrap(), 0);
        let after = db.vault_get("u1", "gh").await.unwrap().unwrap();
        assert_eq!((after.key_id.as_str(), after.revision, after.access_token[0]), ("new", 3, 4));

        assert!(db.vault_delete("u1", "gh").await.unwrap());
        assert!(!db.vault_delete("u1", "gh").await.unwrap());
        db.close().await;
    }
}

#[tokio::test]
async fn the_refresh_lock_has_one_holder_and_fences_out_a_lapsed_one() {
    let now = datetime!(2030-01-01 00:00:00 UTC);
    let lease = Duration::from_secs(10);
    for (db, _guard) in crate::backends().await {
        db.migrate_up().await.unwrap();
        db.create_user(&user("u1", Role::User), now).await.unwrap();
        db.vault_insert("v1", "u1", "gh", &sealed(1, "k"), now).await.unwrap();

        let mut tasks = Vec::new();
        for i in 0..20 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.vault_lock_claim("u1", "gh", &format!("h{i}"), now, lease).await.unwrap()
            }));
        }
        let mut held = Vec::new();
        for t in tasks {
            held.extend(t.await.unwrap());
        }
        assert_eq!(held.len(), 1, "exactly one concurrent claim wins");
        let first = held.pop().unwrap();
        assert_eq!(first.fence, 1);
        let state = db.vault_lock_state("u1", "gh").await.unwrap().unwrap();
        assert!(state.lease_until > rampart_store_sql::to_micros(now));

        // After the lease lapses another claim takes over with a larger fence, and the first
        // holder can no longer write or release.
        let later = now + Duration::from_secs(11);
        let second =
            db.vault_lock_claim("u1", "gh", "h-late", later, lease).await.unwrap().unwrap();
        assert_eq!(second.fence, 2);
        assert!(!db.vault_write_fenced("v1", 1, &first, &sealed(5, "k"), later).await.unwrap());
        assert!(!db.vault_lock_release(&first, false, later).await.unwrap());
        assert!(db.vault_write_fenced("v1", 1, &second, &sealed(6, "k"), later).await.unwrap());
        assert!(
            !db.vault_write_fenced("v1", 1, &second, &sealed(7, "k"), later).await.unwrap(),
            "a stale revision is refused"
        );
        assert!(db.vault_lock_release(&second, true, later).await.unwrap());
        let state = db.vault_lock_state("u1", "gh").await.unwrap().unwrap();
        assert_eq!(state.lease_until, 0);
        assert_eq!(state.failed_at, Some(rampart_store_sql::to_micros(later)));
        let third = db.vault_lock_claim("u1", "gh", "h3", later, lease).await.unwrap().unwrap();
        assert_eq!(third.fence, 3, "released locks are claimed at once");
        assert_eq!(db.vault_get("u1", "gh").await.unwrap().unwrap().access_token[0], 6);
        db.close().await;
    }
}
