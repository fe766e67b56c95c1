//! Audit operations: pruning with anchors, the JSON-lines stream, and checkpoints read back from
//! the operational log.

use serde_json::{json, Value};

use crate::support::{self, run, Server};

const PW: &str = "correct-horse-battery-staple-42";

async fn make_events(s: &Server, n: usize) {
    let c = support::client();
    let origin = s.base.clone();
    let r = c
        .post(s.url("/api/setup"))
        .header("origin", &origin)
        .json(&json!({"email":"admin@example.com","password":PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for _ in 0..n {
        let r = c
            .post(s.url("/api/auth/login"))
            .header("origin", &origin)
            .json(&json!({"email":"nobody@example.com","password":"wrong-password-123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
}

#[tokio::test]
async fn prune_removes_old_events_and_verification_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("RAMPART_RATE_LIMIT", "100000/1s"),
        ("RAMPART_LOGIN_MAX_FAILURES", "1000"),
        ("RAMPART_LOGIN_IP_MAX_FAILURES", "1000"),
        ("RAMPART_SECRET_KEY", support::KEY),
    ];
    let mut s = Server::start_in(dir.path(), &env, &[]);
    make_events(&s, 5).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let cut = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let c = support::client();
    for _ in 0..3 {
        let r = c
            .post(s.url("/api/auth/login"))
            .header("origin", &s.base)
            .json(&json!({"email":"nobody@example.com","password":"wrong-password-123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert!(s.terminate().success());
    let (code, out, err) = run(dir.path(), &["audit", "prune", "--before", &cut], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pruned 6 audit event(s)"), "{out}");
    let (code, out, err) = run(dir.path(), &["audit", "verify"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"ok\":true") && out.contains("\"checked\":3"), "{out}");
    let (_, export, _) = run(dir.path(), &["audit", "export"], &env);
    assert_eq!(export.lines().count(), 3);
    // Without --before or a retention setting, prune refuses to guess.
    let (code, _, err) = run(dir.path(), &["audit", "prune"], &env);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn audit_events_stream_as_json_lines_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("audit.jsonl");
    let stream_s = stream.display().to_string();
    let s = Server::start_in(
        dir.path(),
        &[("RAMPART_AUDIT_STREAM", stream_s.as_str()), ("RAMPART_RATE_LIMIT", "100000/1s")],
        &[],
    );
    make_events(&s, 2).await;
    let text = std::fs::read_to_string(&stream).unwrap();
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["setup_completed", "login_failed", "login_failed"]);
    assert!(events.iter().all(|e| e["hash"].as_str().is_some_and(|h| h.len() == 64)));
}

#[tokio::test]
async fn checkpoints_from_the_operational_log_reveal_a_truncated_tail() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("RAMPART_LOG_FORMAT", "json"),
        ("RAMPART_SECRET_KEY", support::KEY),
        ("RAMPART_RATE_LIMIT", "100000/1s"),
        ("RAMPART_LOGIN_MAX_FAILURES", "100000"),
        ("RAMPART_LOGIN_IP_MAX_FAILURES", "100000"),
    ];
    let mut s = Server::start_in(dir.path(), &env, &[]);
    // 1000 events make the writer sign and mirror a checkpoint.
    make_events(&s, 0).await;
    let origin = s.base.clone();
    let url = s.url("/api/auth/login");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (origin, url) = (origin.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let c = support::client();
            for _ in 0..130 {
                let _ = c
                    .post(&url)
                    .header("origin", &origin)
                    .json(&json!({"email":"nobody@example.com","password":"wrong-password-123"}))
                    .send()
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(s.terminate().success());
    let log = dir.path().join("server.log");
    std::fs::write(&log, s.output()).unwrap();
    let log_s = log.display().to_string();
    let (code, out, _) = run(dir.path(), &["audit", "verify", "--checkpoints", &log_s], &env);
    assert_eq!(code, 0, "{out}");
    // Remove everything from the checkpoint on: only the mirrored checkpoint can tell.
    let db = dir.path().join("data/rampart.db");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let n = sqlx::query("DELETE FROM audit_events WHERE seq >= 1000")
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert!(n > 0);
    pool.close().await;
    let (code, out, _) = run(dir.path(), &["audit", "verify"], &env);
    assert_eq!(code, 0, "without outside checkpoints the shortened chain looks whole: {out}");
    let (code, out, _) = run(dir.path(), &["audit", "verify", "--checkpoints", &log_s], &env);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("truncated"), "{out}");
}
