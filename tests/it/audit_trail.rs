//! The audit trail end to end, on the real binary: every request reaching the MCP endpoint
//! is recorded (rejected ones with their stage and reason), pseudonymised, on stdout and in
//! the store; `audit verify` catches edited and deleted rows on SQLite and PostgreSQL; the
//! chain continues across restarts; a store outage never fails a request.

use crate::audit_support;
use crate::common;
use crate::store_support;

use std::time::Duration;

use serde_json::{json, Value};

use audit_support::{audit_lines, run_verify, wait_lines, Relay};
use common::{eventually, tool, unused_port, BackendSpec, Gateway, TestBackend, TestConfig};
use store_support::{Kind, TestDb};

/// A secret every test gateway shares (≥ 32 characters).
const AUDIT_SECRET: &str = "audit-test-secret-0123456789abcdef0123";

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn by_stage<'a>(lines: &'a [Value], stage: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["stage"] == stage)
        .unwrap_or_else(|| panic!("no record with stage {stage}: {lines:#?}"))
}

/// Rows in a SQLite store file (read behind the gateway's back).
fn sqlite_count(file: &std::path::Path) -> i64 {
    match rusqlite::Connection::open(file) {
        Ok(c) => c
            .query_row("SELECT COUNT(*) FROM cortex_audit", [], |r| r.get(0))
            .unwrap_or(0),
        Err(_) => 0,
    }
}

async fn wait_stored(db: &TestDb, n: i64) {
    eventually(
        Duration::from_secs(30),
        &format!("{n} audit rows stored"),
        || async {
            let stored = db.try_query_i64("SELECT COUNT(*) FROM cortex_audit").await;
            (stored.unwrap_or(0) >= n).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn requests_are_audited_rejected_ones_included() {
    let backend = TestBackend::start(BackendSpec {
        tools: vec![
            tool("search", "mcp:crm:read"),
            tool("purge", "mcp:crm:write"),
        ],
        ..BackendSpec::default()
    })
    .await;
    let yaml = TestConfig::new()
        .principal_scopes(&["mcp:crm:read"])
        .backend("crm", &backend.url())
        .top(&format!("audit:\n  secret: \"{AUDIT_SECRET}\""))
        .build();
    let mut g = Gateway::start(&yaml).await;
    g.wait_ready().await;
    let c = g.client();

    // Allowed calls: the same params hash alike, other params differently.
    c.call_tool("crm_search", json!({"message": "s3cr3t-argument"}))
        .await;
    c.call_tool("crm_search", json!({"message": "s3cr3t-argument"}))
        .await;
    c.call_tool("crm_search", json!({"message": "other"})).await;
    // A tool the caller's scopes do not allow.
    c.error("tools/call", json!({"name": "crm_purge", "arguments": {}}))
        .await;
    // Refusals before dispatch.
    let list = c.request_body("tools/list", json!({}));
    assert_eq!(
        c.post(&list, &[("origin", "https://evil.example")])
            .await
            .status,
        403
    );
    assert_eq!(c.post_raw(b"{not json".to_vec(), &[]).await.status, 400);
    assert_eq!(
        c.post(&list, &[("mcp-session-id", "bogus")]).await.status,
        404
    );
    assert_eq!(
        c.post(&list, &[("mcp-protocol-version", "1999-01-01")])
            .await
            .status,
        400
    );
    assert_eq!(c.post(&list, &[("host", "evil.example")]).await.status, 403);
    let listed = c.result("tools/list", json!({})).await;
    let listed_count = listed["tools"].as_array().map(Vec::len).unwrap();

    let lines = wait_lines(&g, 10).await;
    assert_eq!(lines.len(), 10, "{lines:#?}");
    let calls: Vec<&Value> = lines.iter().filter(|l| l["tool"] == "crm_search").collect();
    assert_eq!(calls.len(), 3);
    for l in &calls {
        assert_eq!(l["decision"], "allowed");
        assert_eq!(l["success"], true);
        assert_eq!(l["method"], "tools/call");
        assert_eq!(l["target_app"], "crm");
        assert_eq!(l["scope_used"], "mcp:crm:read");
        assert_eq!(l["http_status"], 200);
        assert!(l["latency_ms"].as_f64().unwrap() > 0.0);
        assert!(l["response_size"].as_i64().unwrap() > 0);
        assert_eq!(l["caller_role"], "admin");
        // Pseudonyms, not the subject.
        let sub = l["caller_sub"].as_str().unwrap();
        assert_eq!(sub.len(), 32, "{sub}");
        assert_ne!(sub, "test-user");
    }
    assert_eq!(calls[0]["params_hash"], calls[1]["params_hash"]);
    assert_ne!(calls[0]["params_hash"], calls[2]["params_hash"]);
    assert_eq!(calls[0]["params_hash"].as_str().unwrap().len(), 32);

    let scope = by_stage(&lines, "scope");
    assert_eq!(scope["decision"], "rejected");
    assert_eq!(scope["tool"], "crm_purge");
    assert_eq!(scope["error_code"], -32602);
    assert!(scope["reason"].as_str().unwrap().contains("mcp:crm:write"));
    let origin = by_stage(&lines, "origin");
    assert_eq!(
        (origin["http_status"].as_i64(), origin["success"].as_bool()),
        (Some(403), Some(false))
    );
    assert_eq!(origin["origin"], "https://evil.example");
    assert!(
        origin["caller_sub"].is_null(),
        "refused before authentication"
    );
    assert_eq!(by_stage(&lines, "parse")["http_status"], 400);
    assert_eq!(by_stage(&lines, "session")["http_status"], 404);
    assert_eq!(by_stage(&lines, "version")["http_status"], 400);
    assert!(by_stage(&lines, "host")["reason"]
        .as_str()
        .unwrap()
        .contains("evil.example"));
    let list_line = lines
        .iter()
        .find(|l| l["method"] == "tools/list" && l["decision"] == "allowed")
        .unwrap();
    assert_eq!(list_line["tools_listed"], listed_count as i64);
    assert!(list_line["tokens_estimate"].as_i64().unwrap() > 0);

    // The same records reach the store.
    let db_file = g.dir().join("data").join("cortex-gateway.db");
    eventually(Duration::from_secs(10), "10 rows in SQLite", || async {
        (sqlite_count(&db_file) == 10).then_some(())
    })
    .await;
    g.stop();
    // Never the raw params, the subject or the bearer token, in either sink.
    let mut everything = g.stdout().into_bytes();
    for f in ["cortex-gateway.db", "cortex-gateway.db-wal"] {
        everything.extend(std::fs::read(g.dir().join("data").join(f)).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&everything);
    for secret in ["s3cr3t-argument", "test-user", "user-token"] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the audit trail"
        );
    }
    let (code, out, err) = run_verify(g.dir(), &g.path("gateway.yaml")).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audit chain OK: 10 records"), "{out}");
}

#[tokio::test]
async fn authentication_refusals_are_audited_without_the_token() {
    let yaml = TestConfig::new()
        .auth(&[
            "mode: oauth",
            "oauth:",
            &format!("  issuer: \"http://127.0.0.1:{}\"", unused_port()),
        ])
        .top(&format!("audit:\n  secret: \"{AUDIT_SECRET}\""))
        .build();
    let g = Gateway::start(&yaml).await;
    let c = g.client();
    let list = c.request_body("tools/list", json!({}));
    assert_eq!(c.post(&list, &[]).await.status, 401);
    let bogus = "Bearer not-a-jwt-but-a-secret-token-value";
    assert_eq!(c.post(&list, &[("authorization", bogus)]).await.status, 401);
    let lines = wait_lines(&g, 2).await;
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["decision"], "rejected");
        assert_eq!(l["stage"], "auth");
        assert_eq!(l["http_status"], 401);
        assert!(l["caller_sub"].is_null());
        assert!(!l["reason"].as_str().unwrap_or("").is_empty());
    }
    assert!(!g.stdout().contains("secret-token-value"));
}

/// Starts a gateway on `storage`, makes `n` audited requests, and waits until they are
/// stored.
async fn gateway_with_records(storage_yaml: &str, n: usize) -> Gateway {
    let yaml = TestConfig::new()
        .top(storage_yaml)
        .top(&format!("audit:\n  secret: \"{AUDIT_SECRET}\""))
        .build();
    let g = Gateway::start(&yaml).await;
    let c = g.client();
    for _ in 0..n {
        c.result("tools/list", json!({})).await;
    }
    wait_lines(&g, n).await;
    g
}

async fn verify_catches_edited_and_deleted_rows(db: TestDb, storage_yaml: String) {
    let mut g = gateway_with_records(&storage_yaml, 5).await;
    wait_stored(&db, 5).await;
    g.stop();
    let config = g.path("gateway.yaml");
    let verify = || run_verify(g.dir(), &config);
    let (code, out, err) = verify().await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("5 records"), "{out}");

    db.exec("UPDATE cortex_audit SET http_status = 500 WHERE seq = 3")
        .await;
    let (code, out, _) = verify().await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("BROKEN") && out.contains("seq 3") && out.contains("edited"),
        "{out}"
    );
    // Put the value back: the chain verifies again, so the check is about content.
    db.exec("UPDATE cortex_audit SET http_status = 200 WHERE seq = 3")
        .await;
    assert_eq!(verify().await.0, 0);

    db.exec("DELETE FROM cortex_audit WHERE seq = 2").await;
    let (code, out, _) = verify().await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seq 2") && out.contains("missing"), "{out}");
}

#[tokio::test]
async fn verify_catches_edited_and_deleted_rows_sqlite() {
    let db = TestDb::new(Kind::Sqlite).await;
    let yaml = format!("storage:\n  data_dir: \"{}\"", db.data_dir().display());
    verify_catches_edited_and_deleted_rows(db, yaml).await;
}

#[tokio::test]
async fn verify_catches_edited_and_deleted_rows_postgres() {
    let db = TestDb::new(Kind::Postgres).await;
    let yaml = format!("storage:\n  database_url: \"{}\"", db.pg_uri());
    verify_catches_edited_and_deleted_rows(db, yaml).await;
}

#[tokio::test]
async fn records_survive_a_restart_and_the_chain_continues() {
    let db = TestDb::new(Kind::Sqlite).await;
    let storage = format!("storage:\n  data_dir: \"{}\"", db.data_dir().display());
    let yaml = TestConfig::new().top(&storage).build();
    let mut first = Gateway::start(&yaml).await;
    let c = first.client();
    for _ in 0..3 {
        c.result("ping", json!({})).await;
    }
    // Stop as soon as the audit thread has the records: they are flushed at shutdown.
    wait_lines(&first, 3).await;
    first.stop();
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM cortex_audit").await,
        3,
        "{}",
        first.logs()
    );
    assert!(
        db.data_dir().join("audit.key").exists(),
        "generated secret kept with the data"
    );

    let mut second = Gateway::start(&yaml).await;
    let c = second.client();
    for _ in 0..2 {
        c.result("ping", json!({})).await;
    }
    wait_lines(&second, 2).await;
    second.stop();
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM cortex_audit").await, 5);
    assert_eq!(db.query_i64("SELECT MAX(seq) FROM cortex_audit").await, 5);
    assert_eq!(
        db.query_i64("SELECT COUNT(DISTINCT key_id) FROM cortex_audit")
            .await,
        1
    );
    let (code, out, err) = run_verify(second.dir(), &second.path("gateway.yaml")).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("5 records"), "{out}");
}

#[tokio::test]
async fn an_unreachable_store_never_fails_requests_and_drops_are_counted() {
    let yaml = TestConfig::new()
        .top(&format!(
            "storage:\n  database_url: \"postgres://postgres@127.0.0.1:{}/test\"",
            unused_port()
        ))
        .top(&format!(
            "audit:\n  secret: \"{AUDIT_SECRET}\"\n  queue: 16"
        ))
        .build();
    let mut g = Gateway::start(&yaml).await;
    let c = g.client();
    for _ in 0..40 {
        c.result("tools/list", json!({})).await;
    }
    // Stdout does not depend on the store.
    assert_eq!(wait_lines(&g, 40).await.len(), 40);
    eventually(Duration::from_secs(10), "a logged drop", || async {
        strip_ansi(&g.logs())
            .contains("records are being dropped")
            .then_some(())
    })
    .await;
    g.stop();
    let logs = strip_ansi(&g.logs());
    assert!(logs.contains("cannot write to the store"), "{logs}");
    assert!(logs.contains("audit: closed stored=0 dropped=40"), "{logs}");
}

#[tokio::test]
async fn records_written_during_a_database_outage_arrive_after_it() {
    let db = TestDb::new(Kind::Postgres).await;
    let relay = Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/test?options=-c%20search_path%3D{}",
        relay.port(),
        db.schema()
    );
    let yaml = TestConfig::new()
        .top(&format!("storage:\n  database_url: \"{url}\""))
        .top(&format!("audit:\n  secret: \"{AUDIT_SECRET}\""))
        .build();
    let mut g = Gateway::start(&yaml).await;
    let c = g.client();
    for _ in 0..3 {
        c.result("ping", json!({})).await;
    }
    wait_stored(&db, 3).await;

    relay.cut().await;
    for _ in 0..5 {
        c.result("ping", json!({})).await;
    }
    wait_lines(&g, 8).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM cortex_audit").await, 3);

    relay.restore().await;
    wait_stored(&db, 8).await;
    // The commit is visible a moment before the gateway hears of it (through the relay).
    eventually(Duration::from_secs(10), "the recovery logged", || async {
        strip_ansi(&g.logs())
            .contains("the store accepts records again")
            .then_some(())
    })
    .await;
    g.stop();
    let logs = strip_ansi(&g.logs());
    assert!(!logs.contains("records are being dropped"), "{logs}");
    assert!(logs.contains("audit: closed stored=8 dropped=0"), "{logs}");
    let (code, out, err) = run_verify(g.dir(), &g.path("gateway.yaml")).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("8 records"), "{out}");
    assert_eq!(audit_lines(&g).len(), 8);
}
