//! Session attacks against the real binary. Covered in `sessions` (and listed in
//! docs/reliability.md, "Attack suites"): tampered and truncated ids
//! (`unknown_and_tampered_ids_are_404`), ids sealed by another gateway's key
//! (`ids_sealed_by_another_secret_are_404_and_replicas_share_them`), another caller's id
//! (`another_subjects_session_is_404`), replay after DELETE on the same gateway
//! (`delete_ends_the_session`). This file adds: a deleted id replayed on a replica sharing the
//! key and the store, or on a replica started later, and an SSE `Last-Event-ID` taken from
//! another session.

use crate::common;

use std::time::Duration;

use crate::store_support::{Kind, TestDb};
use common::{tool, BackendSpec, Gateway, McpClient, TestBackend, TestConfig};
use serde_json::{json, Value};

/// tools/list with the client's session: (status, JSON-RPC error code if any).
async fn list_with(client: &McpClient) -> (u16, Value) {
    let body = client.request_body("tools/list", json!({}));
    let reply = client.post(&body, &[]).await;
    let code = if reply.status == 200 {
        Value::Null
    } else {
        reply.json()["error"]["code"].clone()
    };
    (reply.status, code)
}

/// A session deleted on one replica is refused on the others sharing the session key and
/// the store (the id is sealed, so each replica could open it: the end is shared through
/// the store and read every second), and after a restart of the replica that deleted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_session_replayed_on_a_replica_or_after_a_restart_is_404() {
    let db = TestDb::new(Kind::Postgres).await;
    let yaml = TestConfig::new()
        .top(&format!("storage:\n  database_url: \"{}\"", db.pg_uri()))
        .build();
    let a = Gateway::start(&yaml).await;
    let b = Gateway::start(&yaml).await;
    let mut client = a.client();
    client.initialize("2025-11-25").await;
    let mut on_b = b.client();
    on_b.session = client.session.clone();
    on_b.protocol_version = client.protocol_version.clone();
    assert_eq!(list_with(&on_b).await.0, 200, "replicas share sessions");

    let reply = client.delete(&[]).await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(list_with(&client).await, (404, json!(-32001)));
    common::eventually(
        Duration::from_secs(10),
        "the end reaches the replica",
        || async { (list_with(&on_b).await == (404, json!(-32001))).then_some(()) },
    )
    .await;

    // A replica started after the end refuses the id from its first request.
    let c = Gateway::start(&yaml).await;
    c.wait_ready().await;
    let mut on_c = c.client();
    on_c.session = client.session.clone();
    on_c.protocol_version = client.protocol_version.clone();
    common::eventually(Duration::from_secs(10), "the end read at start", || async {
        (list_with(&on_c).await == (404, json!(-32001))).then_some(())
    })
    .await;
    // Other sessions are untouched.
    let mut other = b.client();
    other.initialize("2025-11-25").await;
    assert_eq!(list_with(&other).await.0, 200);
}

/// `Last-Event-ID` is read within the caller's own session: an id taken from another
/// session's stream replays nothing of that session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_event_id_from_another_session_replays_nothing_of_it() {
    let backend = TestBackend::start(BackendSpec::tools(&["first"], "mcp:l:read")).await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog("refresh: 1s")
            .backend("live", &backend.url())
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let mut a = gateway.client();
    a.initialize("2025-11-25").await;
    let mut stream = a.open_stream(&[]).await;
    assert_eq!(stream.status, 200);
    backend.set_tools(vec![
        tool("first", "mcp:l:read"),
        tool("second", "mcp:l:read"),
    ]);
    let (event, _) = stream
        .wait_for_method("notifications/tools/list_changed", Duration::from_secs(15))
        .await
        .expect("list_changed on session A");
    let a_event: u64 = event
        .id
        .as_deref()
        .and_then(|i| i.parse().ok())
        .expect("event id");
    drop(stream);

    // Session B starts after the change: nothing of A's may reach it, whatever id it names.
    let mut b = gateway.client();
    b.initialize("2025-11-25").await;
    for last in [
        "0".to_string(),
        (a_event - 1).to_string(),
        a_event.to_string(),
    ] {
        let mut resumed = b.open_stream(&[("last-event-id", &last)]).await;
        assert_eq!(resumed.status, 200);
        let replayed = resumed
            .wait_for_method(
                "notifications/tools/list_changed",
                Duration::from_millis(1500),
            )
            .await;
        assert!(
            replayed.is_none(),
            "Last-Event-ID {last} of session A replayed on B: {replayed:?}"
        );
    }
    // A's own replay still works.
    let mut resumed = a
        .open_stream(&[("last-event-id", &(a_event - 1).to_string())])
        .await;
    resumed
        .wait_for_method("notifications/tools/list_changed", Duration::from_secs(5))
        .await
        .expect("A's own event replayed");
}
