//! A native MCP server behind the gateway over streamable HTTP (`kind: mcp`): the Python SDK
//! fixture (tests/python/native_fixture.py) served by uvicorn on loopback. The gateway keeps
//! one upstream session per user, so two callers of the same user share it: each must see
//! only its own progress, its own server requests and its own answers.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{interop, Gateway, TestConfig};
use serde_json::{json, Value};

use crate::native_stdio::{client, messages_until_response, wait_listed};

const WAIT: Duration = Duration::from_secs(30);

/// The fixture over HTTP, killed (and reaped) when dropped.
pub struct HttpFixture {
    child: Child,
    /// Its port on loopback.
    pub port: u16,
}

impl Drop for HttpFixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn start_fixture() -> HttpFixture {
    start_fixture_on(common::free_port()).await
}

/// The fixture on `port` (to start it again where the gateway expects it).
pub async fn start_fixture_on(port: u16) -> HttpFixture {
    let child = Command::new(interop::python())
        .arg("-W")
        .arg("ignore")
        .arg(interop::repo_path("tests/python/native_fixture.py"))
        .arg("http")
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the fixture");
    let fixture = HttpFixture { child, port };
    common::eventually(Duration::from_secs(60), "the fixture listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    fixture
}

async fn gateway_for(fixture: &HttpFixture) -> Gateway {
    gateway_with(fixture, TestConfig::new()).await
}

async fn gateway_with(fixture: &HttpFixture, config: TestConfig) -> Gateway {
    let yaml = config
        .catalog("refresh: 60s")
        .mcp_backend(
            "py",
            &format!("http://127.0.0.1:{}/mcp", fixture.port),
            &["timeout: 30s", "headers:", "  X-Fixture-Key: static-value"],
        )
        .build();
    let gateway = Gateway::start(&yaml).await;
    gateway.wait_ready().await;
    wait_listed(&gateway, "py_test_tool_with_progress").await;
    gateway
}

/// The text blocks of a tool result, joined.
pub fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_streamable_http_calls_are_relayed_and_callers_sharing_a_session_stay_apart() {
    let fixture = start_fixture().await;
    let gateway = gateway_for(&fixture).await;
    let a = client(&gateway).await;
    let b = client(&gateway).await;

    // Both callers run the same progress tool at once with the same token: each stream
    // carries exactly its own three notifications and its own response.
    let call = |id: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "py_test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "same"}}})
    };
    let mut sa = a.post_stream(&call("a-1")).await;
    let mut sb = b.post_stream(&call("b-1")).await;
    let (ida, idb) = (json!("a-1"), json!("b-1"));
    let (ma, mb) = tokio::join!(
        messages_until_response(&mut sa, &ida),
        messages_until_response(&mut sb, &idb)
    );
    for (msgs, own, other) in [(&ma, "a-1", "b-1"), (&mb, "b-1", "a-1")] {
        let progress = msgs
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .count();
        assert_eq!(progress, 3, "{msgs:?}");
        assert_eq!(msgs.last().unwrap()["id"], own);
        assert!(msgs.iter().all(|m| m["id"] != other), "{msgs:?}");
    }

    // Both ask for elicitation at once: each gets its own request, and the answers cross
    // nothing.
    let elicit = |id: &str, message: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "py_test_elicitation", "arguments": {"message": message}}})
    };
    let mut sa = a.post_stream(&elicit("a-2", "for a")).await;
    let mut sb = b.post_stream(&elicit("b-2", "for b")).await;
    let (_, ra) = sa
        .wait_for_method("elicitation/create", WAIT)
        .await
        .unwrap_or_else(|| panic!("no request for a\n{}", gateway.logs()));
    let (_, rb) = sb
        .wait_for_method("elicitation/create", WAIT)
        .await
        .expect("request for b");
    assert_eq!(ra["params"]["message"], "for a");
    assert_eq!(rb["params"]["message"], "for b");
    assert_ne!(ra["id"], rb["id"]);
    // b tries to answer a's request: it goes nowhere.
    let forged = json!({"jsonrpc": "2.0", "id": ra["id"], "result": {
        "action": "accept", "content": {"username": "b", "email": "b@x"}}});
    assert_eq!(b.post(&forged, &[]).await.status, 202);
    for (who, c, r) in [("alice", &a, &ra), ("bob", &b, &rb)] {
        let answer = json!({"jsonrpc": "2.0", "id": r["id"], "result": {
            "action": "accept", "content": {"username": who, "email": format!("{who}@x")}}});
        assert_eq!(c.post(&answer, &[]).await.status, 202);
    }
    let ma = messages_until_response(&mut sa, &json!("a-2")).await;
    let mb = messages_until_response(&mut sb, &json!("b-2")).await;
    let ta = text_of(&ma.last().unwrap()["result"]);
    let tb = text_of(&mb.last().unwrap()["result"]);
    assert!(ta.contains("alice") && !ta.contains("bob"), "{ta}");
    assert!(tb.contains("bob") && !tb.contains("alice"), "{tb}");

    // Logging over HTTP too.
    let body = json!({"jsonrpc": "2.0", "id": "l", "method": "tools/call", "params": {
        "name": "py_test_tool_with_logging", "arguments": {}}});
    let mut s = a.post_stream(&body).await;
    let msgs = messages_until_response(&mut s, &json!("l")).await;
    assert_eq!(
        msgs.iter()
            .filter(|m| m["method"] == "notifications/message")
            .count(),
        3,
        "{msgs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_fails_calls_clearly_and_keeps_its_last_catalog() {
    let mut fixture = start_fixture().await;
    let gateway = gateway_for(&fixture).await;
    let c = client(&gateway).await;
    let _ = fixture.child.kill();
    let _ = fixture.child.wait();
    let reply = c
        .rpc(
            "tools/call",
            json!({"name": "py_whoami_pid", "arguments": {}}),
        )
        .await;
    let message = reply["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("backend py") && reply["error"]["code"] == -32603,
        "{reply}"
    );
    // The catalog keeps the server's entries (stale) while it is down.
    assert!(c.tool_names().await.iter().any(|n| n == "py_whoami_pid"));

    // The server comes back without the gateway's session (404 on it): the gateway
    // initializes a new one once and the call goes through.
    let _back = start_fixture_on(fixture.port).await;
    let r = c.call_tool("py_whoami_pid", json!({})).await;
    assert_eq!(text_of(&r).split(' ').count(), 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_garbage_or_an_error_status_is_reported_clearly() {
    use common::http_server::{json_response, Server};
    let garbage = Server::start(|_req| async { json_response(200, "this is not JSON-RPC") })
        .await
        .expect("garbage server");
    let failing = Server::start(|_req| async { json_response(500, "{\"oops\":true}") })
        .await
        .expect("failing server");
    let yaml = TestConfig::new()
        .catalog("refresh: 60s")
        .mcp_backend(
            "garbage",
            &format!("http://{}/mcp", garbage.addr()),
            &["timeout: 5s"],
        )
        .mcp_backend(
            "failing",
            &format!("http://{}/mcp", failing.addr()),
            &["timeout: 5s"],
        )
        .build();
    let gateway = Gateway::start(&yaml).await;
    gateway.wait_ready().await;
    let error_of = |status: &Value| status["lastError"].as_str().unwrap_or("").to_string();
    let g = gateway.backend_status("garbage").await;
    assert!(
        error_of(&g).contains("not a JSON-RPC message"),
        "{g}\n{}",
        gateway.logs()
    );
    let f = gateway.backend_status("failing").await;
    assert!(error_of(&f).contains("HTTP 500"), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_streamable_http_resource_updates_and_list_changes_outside_calls_arrive() {
    let fixture = start_fixture().await;
    let gateway = gateway_for(&fixture).await;
    let c = client(&gateway).await;
    let mut stream = c.open_stream(&[]).await;
    assert_eq!(stream.status, 200);
    let r = c
        .result(
            "resources/subscribe",
            json!({"uri": "test://watched-resource"}),
        )
        .await;
    assert_eq!(r, json!({}));
    // The server sends resources/updated on its standalone stream (outside the call).
    c.call_tool("py_notify_changes", json!({})).await;
    let (_, updated) = stream
        .wait_for_method("notifications/resources/updated", WAIT)
        .await
        .unwrap_or_else(|| panic!("no resources/updated\n{}", gateway.logs()));
    assert_eq!(updated["params"]["uri"], "test://watched-resource");
}

/// The upstream sessions the fixture saw ended (its `DELETE`s), by Mcp-Session-Id.
pub async fn deleted(fixture: &HttpFixture) -> Vec<String> {
    let url = format!("http://127.0.0.1:{}/deleted", fixture.port);
    let reply = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(url)
        .send()
        .await
        .expect("GET /deleted");
    reply.json().await.expect("a JSON list")
}

async fn wait_deleted(fixture: &HttpFixture, session: &str, gateway: &Gateway) {
    common::eventually(WAIT, &format!("DELETE of {session}"), || async {
        if deleted(fixture).await.iter().any(|s| s == session) {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        None
    })
    .await;
    assert!(!gateway.logs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_session_ends_with_the_users_last_downstream_session() {
    let fixture = start_fixture().await;
    let gateway = gateway_for(&fixture).await;
    let a = client(&gateway).await;
    let b = client(&gateway).await;
    // Both sessions belong to one user: they share one upstream session.
    let upstream = text_of(&a.call_tool("py_session_id", json!({})).await);
    assert!(!upstream.is_empty(), "the fixture saw no session id");
    assert_eq!(
        text_of(&b.call_tool("py_session_id", json!({})).await),
        upstream
    );

    // The first client ends its session: the other still uses the upstream session.
    assert_eq!(a.delete(&[]).await.status, 204);
    assert_eq!(
        text_of(&b.call_tool("py_session_id", json!({})).await),
        upstream
    );
    assert!(!deleted(&fixture).await.contains(&upstream));

    // The last one ends: the gateway ends the upstream session with DELETE.
    assert_eq!(b.delete(&[]).await.status, 204);
    wait_deleted(&fixture, &upstream, &gateway).await;

    // A new session of the user opens a new upstream session.
    let c = client(&gateway).await;
    let next = text_of(&c.call_tool("py_session_id", json!({})).await);
    assert!(!next.is_empty() && next != upstream, "{next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_session_ends_when_the_downstream_session_idles_out() {
    let fixture = start_fixture().await;
    let gateway = gateway_with(&fixture, TestConfig::new().sessions("idle_timeout: 2s")).await;
    let c = client(&gateway).await;
    let upstream = text_of(&c.call_tool("py_session_id", json!({})).await);
    assert!(!upstream.is_empty());
    // Nobody touches the gateway: the downstream session idles out, and its upstream
    // session is ended right after.
    wait_deleted(&fixture, &upstream, &gateway).await;
}
