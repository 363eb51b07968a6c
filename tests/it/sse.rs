//! The GET notification stream: preconditions, priming event, keepalives,
//! `notifications/tools/list_changed` after a backend change, and `Last-Event-ID` replay.

use crate::common;

use std::time::Duration;

use common::raw::{self, RawConn};
use common::{tool, BackendSpec, Gateway, McpClient, TestBackend, TestConfig};
use serde_json::json;

/// Long enough for a 1 s catalog refresh (with jitter) to notice a change.
const CHANGE_WAIT: Duration = Duration::from_secs(10);

async fn gateway_with(backend: &TestBackend, config: TestConfig) -> Gateway {
    let gateway = Gateway::start(&config.backend("live", &backend.url()).build()).await;
    gateway.wait_ready().await;
    gateway
}

async fn session(gateway: &Gateway) -> McpClient {
    let mut client = gateway.client();
    client.initialize("2025-11-25").await;
    client
}

fn event_id(event: &common::SseEvent) -> u64 {
    event
        .id
        .as_deref()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("numeric event id: {event:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_preconditions() {
    let backend = TestBackend::start(BackendSpec::tools(&["a"], "mcp:l:read")).await;
    let gateway = gateway_with(&backend, TestConfig::new()).await;
    let client = session(&gateway).await;

    // Without Accept: text/event-stream → 405 naming the allowed methods.
    let reply = client
        .request("GET", &[("accept", "application/json")])
        .await;
    assert_eq!(reply.status, 405, "{}", reply.text());
    let allow = reply
        .header("allow")
        .unwrap_or_default()
        .to_ascii_uppercase();
    assert!(allow.contains("POST"), "Allow: {allow}");

    // Without a session → 400.
    let anonymous = McpClient::new(&gateway.mcp_url());
    let stream = anonymous.open_stream(&[]).await;
    assert_eq!(stream.status, 400);

    // Unknown session → 404.
    let stream = anonymous
        .open_stream(&[("mcp-session-id", "no-such-session")])
        .await;
    assert_eq!(stream.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priming_event_and_keepalives() {
    let backend = TestBackend::start(BackendSpec::tools(&["a"], "mcp:l:read")).await;
    let gateway = gateway_with(
        &backend,
        TestConfig::new().sessions("keepalive_interval: 1s"),
    )
    .await;
    let client = session(&gateway).await;
    let mut stream = client.open_stream(&[]).await;
    assert_eq!(stream.status, 200);
    assert!(
        stream
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/event-stream")),
        "{:?}",
        stream.headers
    );
    let priming = stream
        .next_event(Duration::from_secs(5))
        .await
        .expect("priming event");
    assert!(
        priming.id.is_some(),
        "priming event carries an id: {priming:?}"
    );
    assert_eq!(priming.data, "", "priming event has empty data");

    // Nothing happens: only keepalive comments arrive.
    let none = stream.next_event(Duration::from_millis(2500)).await;
    assert!(none.is_none(), "no event expected, got {none:?}");
    assert!(
        stream.comments.iter().any(|c| c.contains("keepalive")),
        "keepalive comments: {:?}",
        stream.comments
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changed_after_a_backend_change_and_replay() {
    let backend = TestBackend::start(BackendSpec::tools(&["first"], "mcp:l:read")).await;
    let gateway = gateway_with(&backend, TestConfig::new()).await;
    let client = session(&gateway).await;
    let mut stream = client.open_stream(&[]).await;
    assert_eq!(stream.status, 200);
    let priming = stream
        .next_event(Duration::from_secs(5))
        .await
        .expect("priming event");
    let priming_id = event_id(&priming);

    // A tool is added.
    backend.set_tools(vec![
        tool("first", "mcp:l:read"),
        tool("second", "mcp:l:read"),
    ]);
    let (added, message) = stream
        .wait_for_method("notifications/tools/list_changed", CHANGE_WAIT)
        .await
        .expect("list_changed after the tool was added");
    assert_eq!(
        message,
        json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"})
    );
    assert_eq!(added.event.as_deref(), Some("message"));
    let added_id = event_id(&added);
    assert!(
        added_id > priming_id,
        "ids increase: {priming_id} then {added_id}"
    );
    let names = client.tool_names().await;
    assert!(names.contains(&"live_second".to_owned()), "{names:?}");

    // A tool is removed.
    backend.set_tools(vec![tool("second", "mcp:l:read")]);
    let (removed, _) = stream
        .wait_for_method("notifications/tools/list_changed", CHANGE_WAIT)
        .await
        .expect("list_changed after the tool was removed");
    let removed_id = event_id(&removed);
    assert!(removed_id > added_id);
    drop(stream);

    // Reconnect after the first change: only the second is replayed.
    let mut resumed = client
        .open_stream(&[("last-event-id", &added_id.to_string())])
        .await;
    assert_eq!(resumed.status, 200);
    let (replayed, message) = resumed
        .next_message(Duration::from_secs(5))
        .await
        .expect("replayed event");
    assert_eq!(event_id(&replayed), removed_id);
    assert_eq!(message["method"], "notifications/tools/list_changed");

    // Reconnect from the priming id: both changes, in order.
    let mut resumed = client
        .open_stream(&[("last-event-id", &priming_id.to_string())])
        .await;
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let Some((event, _)) = resumed.next_message(Duration::from_secs(5)).await else {
            break;
        };
        ids.push(event_id(&event));
    }
    assert_eq!(ids, vec![added_id, removed_id]);
}

/// A change the session's principal cannot see sends nothing; a visible one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changed_reaches_only_sessions_whose_view_changed() {
    let backend = TestBackend::start(BackendSpec::tools(&["visible"], "mcp:l:read")).await;
    let gateway = gateway_with(
        &backend,
        TestConfig::new().principal_scopes(&["mcp:l:read"]),
    )
    .await;
    let client = session(&gateway).await;
    let mut stream = client.open_stream(&[]).await;
    assert_eq!(stream.status, 200);

    // A tool under a scope the principal lacks: the gateway sees it, the session does not.
    backend.set_tools(vec![
        tool("visible", "mcp:l:read"),
        tool("hidden", "mcp:l:admin"),
    ]);
    common::eventually(
        CHANGE_WAIT,
        "gateway discovered the hidden tool",
        || async { (gateway.backend_status("live").await["tools"] == 2).then_some(()) },
    )
    .await;
    let early = stream
        .wait_for_method(
            "notifications/tools/list_changed",
            Duration::from_millis(1500),
        )
        .await;
    assert!(early.is_none(), "invisible change notified: {early:?}");

    backend.set_tools(vec![
        tool("visible", "mcp:l:read"),
        tool("hidden", "mcp:l:admin"),
        tool("new_visible", "mcp:l:read"),
    ]);
    stream
        .wait_for_method("notifications/tools/list_changed", CHANGE_WAIT)
        .await
        .expect("visible change notified");
}

/// Prompts have their own list_changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_list_changed() {
    let backend = TestBackend::start(BackendSpec::tools(&["a"], "mcp:l:read")).await;
    let gateway = gateway_with(&backend, TestConfig::new()).await;
    let client = session(&gateway).await;
    let mut stream = client.open_stream(&[]).await;
    assert_eq!(stream.status, 200);
    backend.set_prompts(vec![json!({
        "name": "brief", "description": "A brief.", "scope": "mcp:l:read"
    })]);
    stream
        .wait_for_method("notifications/prompts/list_changed", CHANGE_WAIT)
        .await
        .expect("prompts list_changed");
}

/// A stream on a raw HTTP/1.1 connection is a chunked answer; when it ends (here because a
/// second stream of the session replaces it, `max_streams_per_session: 1`) its last chunk
/// completes the answer and the same connection serves the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_stream_leaves_its_connection_usable() {
    let backend = TestBackend::start(BackendSpec::tools(&["a"], "mcp:l:read")).await;
    let gateway = gateway_with(
        &backend,
        TestConfig::new()
            .sessions("keepalive_interval: 1s")
            .sessions("max_streams_per_session: 1"),
    )
    .await;
    let client = session(&gateway).await;
    let sid = client.session.clone().expect("a session id");
    let mut conn = RawConn::connect(gateway.port()).await;
    let get = format!(
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\nmcp-protocol-version: 2025-11-25\r\n\r\n"
    );
    assert!(conn.send(get.as_bytes()).await);
    // Long enough for the priming event and a keep-alive comment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut second = client.open_stream(&[]).await;
    assert_eq!(second.status, 200);
    let ended = conn
        .response(Duration::from_secs(10))
        .await
        .expect("the first stream ends with its last chunk");
    assert_eq!(ended.status, 200);
    let body = String::from_utf8_lossy(&ended.body).to_string();
    assert!(body.starts_with("id: "), "priming event first: {body:?}");
    assert!(
        body.contains(": keepalive"),
        "keep-alive comments: {body:?}"
    );
    // The same connection serves a request after the stream.
    let ping = json!({"jsonrpc":"2.0","id":7,"method":"ping"}).to_string();
    let extra = format!("mcp-session-id: {sid}\r\nmcp-protocol-version: 2025-11-25\r\n");
    assert!(conn.send(&raw::post("/mcp", &extra, &ping)).await);
    let pong = conn
        .response(Duration::from_secs(10))
        .await
        .expect("an answer on the connection the stream used");
    assert_eq!(pong.status, 200, "{pong:?}");
    assert_eq!(pong.json()["id"], 7, "{pong:?}");
    // The second stream is still live.
    assert!(second.next_event(Duration::from_secs(5)).await.is_some());
}

/// A stream's record reaches the audit trail when the stream ends (here the client leaves),
/// with the stream's lifetime and the bytes it carried, not when its head is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_record_is_written_when_the_stream_ends() {
    let backend = TestBackend::start(BackendSpec::tools(&["a"], "mcp:l:read")).await;
    let gateway = gateway_with(
        &backend,
        TestConfig::new()
            .sessions("keepalive_interval: 1s")
            .top("audit:\n  secret: \"audit-test-secret-0123456789abcdef0123\""),
    )
    .await;
    let client = session(&gateway).await;
    let mut stream = client.open_stream(&[]).await;
    assert_eq!(stream.status, 200);
    stream
        .next_event(Duration::from_secs(5))
        .await
        .expect("priming event");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let gets = |g: &Gateway| {
        crate::audit_support::audit_lines(g)
            .into_iter()
            .filter(|l| l["http_method"] == "GET")
            .collect::<Vec<_>>()
    };
    assert!(
        gets(&gateway).is_empty(),
        "no record while the stream is open"
    );
    drop(stream);
    let line = common::eventually(Duration::from_secs(10), "the stream's record", || async {
        gets(&gateway).into_iter().next()
    })
    .await;
    assert_eq!(line["http_status"], 200, "{line}");
    assert!(
        line["latency_ms"].as_f64().unwrap_or(0.0) >= 1000.0,
        "the stream's lifetime: {line}"
    );
    assert!(
        line["response_size"].as_i64().unwrap_or(0) > 20,
        "the priming event and a keep-alive: {line}"
    );
}
