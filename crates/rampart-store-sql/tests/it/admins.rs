use rampart_store_sql::{Db, KeepAdmin, NewUser, Role, UserChange};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2030-01-01 00:00:00 UTC);

fn new_user(id: &str, role: Role) -> NewUser {
    NewUser {
        id: id.into(),
        email: format!("{id}@example.com"),
        role,
        password_hash: "$argon2id$fake".into(),
    }
}

/// One way of removing an admin.
#[derive(Debug, Clone, Copy)]
enum Op {
    Demote,
    Disable,
    Delete,
}

const OPS: [Op; 3] = [Op::Demote, Op::Disable, Op::Delete];

/// `Some(true)` if done, `Some(false)` if refused as the last admin, `None` if not found.
fn done<T>(outcome: &KeepAdmin<T>) -> Option<bool> {
    match outcome {
        KeepAdmin::Done(_) => Some(true),
        KeepAdmin::LastAdmin => Some(false),
        KeepAdmin::NotFound => None,
    }
}

/// Applies `op` to `id`: `true` if done, `false` if refused as the last admin.
async fn apply(db: &Db, op: Op, id: &str) -> bool {
    let outcome = match op {
        Op::Demote => {
            db.update_user_keeping_admin(id, Some(Role::User), None, NOW).await.map(|o| done(&o))
        }
        Op::Disable => {
            db.update_user_keeping_admin(id, None, Some(true), NOW).await.map(|o| done(&o))
        }
        Op::Delete => db.delete_user_keeping_admin(id).await.map(|o| done(&o)),
    };
    match outcome {
        Ok(Some(done)) => done,
        other => panic!("{op:?} {id}: {other:?}"),
    }
}

#[tokio::test]
async fn last_active_admin_cannot_be_demoted_disabled_or_deleted() {
    for (db, _guard) in crate::backends().await {
        db.migrate_up().await.unwrap();
        db.create_user(&new_user("a", Role::Admin), NOW).await.unwrap();
        db.create_user(&new_user("u", Role::User), NOW).await.unwrap();
        db.create_user(&new_user("d", Role::Admin), NOW).await.unwrap();
        db.update_user("d", None, Some(true), NOW).await.unwrap().unwrap();
        assert_eq!(db.count_active_admins().await.unwrap(), 1);

        for op in OPS {
            assert!(!apply(&db, op, "a").await, "{op:?} on the last admin");
        }
        let a = db.user_by_id("a").await.unwrap().unwrap().user;
        assert_eq!((a.role, a.disabled), (Role::Admin, false));

        // Changes that leave the last admin in place go through.
        let UserChange { before, after } =
            match db.update_user_keeping_admin("a", Some(Role::Admin), Some(false), NOW).await {
                Ok(KeepAdmin::Done(c)) => c,
                other => panic!("{other:?}"),
            };
        assert_eq!(before, after);
        // A disabled admin and a plain user are not the last active admin.
        assert!(apply(&db, Op::Demote, "d").await);
        assert!(apply(&db, Op::Disable, "u").await);
        let UserChange { before, after } =
            match db.update_user_keeping_admin("u", Some(Role::Admin), Some(false), NOW).await {
                Ok(KeepAdmin::Done(c)) => c,
                other => panic!("{other:?}"),
            };
        assert_eq!((before.role, before.disabled), (Role::User, true));
        assert_eq!((after.role, after.disabled), (Role::Admin, false));
        // With a second active admin, the first may go.
        match db.delete_user_keeping_admin("a").await {
            Ok(KeepAdmin::Done(u)) => assert_eq!(u.id, "a"),
            other => panic!("{other:?}"),
        }
        assert!(db.user_by_id("a").await.unwrap().is_none());
        assert!(!apply(&db, Op::Delete, "u").await, "u is now the last admin");
        assert!(matches!(db.delete_user_keeping_admin("a").await, Ok(KeepAdmin::NotFound)));
        assert!(matches!(
            db.update_user_keeping_admin("a", None, Some(true), NOW).await,
            Ok(KeepAdmin::NotFound)
        ));
        assert_eq!(db.count_active_admins().await.unwrap(), 1);
        db.close().await;
    }
}

/// Two admins remove each other at the same moment, on separate connections, for every pair of
/// demote / disable / delete: exactly one succeeds and an active admin always remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admin_removals_always_leave_an_active_admin() {
    const ROUNDS: usize = 20;
    for (db, _guard) in crate::backends().await {
        db.migrate_up().await.unwrap();
        for round in 0..ROUNDS {
            for op_a in OPS {
                for op_b in OPS {
                    for u in db.list_users().await.unwrap() {
                        assert!(db.delete_user(&u.id).await.unwrap());
                    }
                    let a = format!("a{round}{op_a:?}{op_b:?}");
                    let b = format!("b{round}{op_a:?}{op_b:?}");
                    db.create_user(&new_user(&a, Role::Admin), NOW).await.unwrap();
                    db.create_user(&new_user(&b, Role::Admin), NOW).await.unwrap();
                    // `a` removes `b` while `b` removes `a`, each task on its own connection.
                    let (da, db_) = (db.clone(), db.clone());
                    let (ta, tb) = (b.clone(), a.clone());
                    let (by_a, by_b) = tokio::join!(
                        tokio::spawn(async move { apply(&da, op_a, &ta).await }),
                        tokio::spawn(async move { apply(&db_, op_b, &tb).await }),
                    );
                    let (by_a, by_b) = (by_a.unwrap(), by_b.unwrap());
                    let ctx = format!("{:?} round {round}: {op_a:?} vs {op_b:?}", db.backend());
                    assert!(by_a != by_b, "exactly one may succeed ({by_a}, {by_b}), {ctx}");
                    assert_eq!(db.count_active_admins().await.unwrap(), 1, "{ctx}");
                }
            }
        }
        db.close().await;
    }
}
