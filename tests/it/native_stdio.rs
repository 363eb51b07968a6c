//! A native MCP server behind the gateway over stdio: the Python SDK fixture
//! (tests/python/native_fixture.py, `mcp` 2.3.0 from the toolbox) run by the gateway as a
//! `kind: stdio` child. What happens during a call is relayed both ways (progress with the
//! caller's own token, log messages at the caller's level, elicitation and sampling answered
//! by the caller and only by it, cancellation), list changes re-discover the server, resource
//! updates reach subscribers, and the child is supervised: restarted when killed, gone (with
//! its whole process group) when the gateway exits.

use crate::common;

use std::time::{Duration, Instant};

use common::{interop, Gateway, McpClient, TestConfig};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// A gateway serving the Python fixture over stdio as backend `py`.
pub async fn gateway_with_fixture(extra: &[&str]) -> Gateway {
    let python = interop::python();
    let script = interop::repo_path("tests/python/native_fixture.py");
    let yaml = TestConfig::new()
        .catalog("refresh: 60s")
        .stdio_backend(
            "py",
            &python.display().to_string(),
            &["-W", "ignore", &script.display().to_string(), "stdio"],
            extra,
        )
        .build();
    // Not `wait_ready` (15 s): on a busy machine the Python child may take longer to start;
    // `wait_listed` waits (60 s) for the first discovery that succeeds.
    let gateway = Gateway::start(&yaml).await;
    wait_listed(&gateway, "py_whoami_pid").await;
    gateway
}

/// Waits until the gateway lists `tool` (the first discovery of a process that starts slowly
/// on a busy machine may fail and be retried).
pub async fn wait_listed(gateway: &Gateway, tool: &str) {
    let c = gateway.client();
    common::eventually(
        Duration::from_secs(60),
        &format!("{tool} listed"),
        || async {
            let names = c.tool_names().await;
            if names.iter().any(|n| n == tool) {
                return Some(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            None
        },
    )
    .await;
}

/// An initialized client declaring sampling, elicitation and roots.
pub async fn client(gateway: &Gateway) -> McpClient {
    let mut c = gateway.client();
    let body = c.request_body(
        "initialize",
        json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"sampling": {}, "elicitation": {"form": {}}, "roots": {}},
            "clientInfo": {"name": "native-tests", "version": "0"}
        }),
    );
    let reply = c.post(&body, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    c.session = reply.header("mcp-session-id").map(str::to_owned);
    c.protocol_version = Some("2025-11-25".into());
    c.notify("notifications/initialized", json!({})).await;
    c
}

/// Every message of a streamed call up to (and with) its response, the last item.
pub async fn messages_until_response(
    stream: &mut common::sse::SseStream,
    id: &Value,
) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let Some((_, m)) = stream.next_message(WAIT).await else {
            break;
        };
        let done = m.get("method").is_none() && &m["id"] == id;
        out.push(m);
        if done {
            return out;
        }
    }
    panic!("no response to {id} on the stream; got {out:?}");
}

fn text_of(result: &Value) -> String {
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
async fn a_python_sdk_server_over_stdio_is_federated_and_its_calls_relayed() {
    let gateway = gateway_with_fixture(&[]).await;
    let c = client(&gateway).await;

    // The catalog: tools, prompts and resources of the server, prefixed with the backend id.
    let names = c.tool_names().await;
    for name in [
        "py_test_tool_with_progress",
        "py_test_tool_with_logging",
        "py_test_elicitation",
        "py_test_sampling",
        "py_whoami_pid",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let prompts = c.result("prompts/list", json!({})).await;
    assert!(
        prompts["prompts"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "py_native_prompt")),
        "{prompts}"
    );
    let prompt = c
        .result(
            "prompts/get",
            json!({"name": "py_native_prompt", "arguments": {"topic": "gateways"}}),
        )
        .await;
    assert_eq!(
        prompt["messages"][0]["content"]["text"], "Tell me about gateways",
        "{prompt}"
    );
    let read = c
        .result("resources/read", json!({"uri": "test://watched-resource"}))
        .await;
    assert_eq!(read["contents"][0]["text"], "watched content", "{read}");

    // A plain call: answered with JSON.
    let r = c.call_tool("py_whoami_pid", json!({})).await;
    assert!(text_of(&r).split(' ').count() == 2, "{r}");

    // Progress: the caller's own token comes back, three increasing values, then the result.
    let body = json!({"jsonrpc": "2.0", "id": "p-1", "method": "tools/call", "params": {
        "name": "py_test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "my-token"}}});
    let mut s = c.post_stream(&body).await;
    assert_eq!(s.status, 200);
    assert!(
        s.header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "a call that reports progress is answered as a stream"
    );
    let msgs = messages_until_response(&mut s, &json!("p-1")).await;
    let progress: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{msgs:?}");
    for p in &progress {
        assert_eq!(p["params"]["progressToken"], "my-token", "{p}");
    }
    let values: Vec<f64> = progress
        .iter()
        .filter_map(|p| p["params"]["progress"].as_f64())
        .collect();
    assert_eq!(values, vec![0.0, 50.0, 100.0]);
    let last = msgs.last().unwrap();
    assert_eq!(
        text_of(&last["result"]),
        "Tool with progress executed successfully"
    );

    // Log messages: relayed at the caller's level, not below it.
    c.result("logging/setLevel", json!({"level": "info"})).await;
    let body = json!({"jsonrpc": "2.0", "id": "l-1", "method": "tools/call", "params": {
        "name": "py_test_tool_with_logging", "arguments": {}}});
    let mut s = c.post_stream(&body).await;
    let msgs = messages_until_response(&mut s, &json!("l-1")).await;
    let logs: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .collect();
    assert_eq!(logs.len(), 3, "{msgs:?}");
    assert_eq!(logs[0]["params"]["data"], "Tool execution started");
    c.result("logging/setLevel", json!({"level": "error"}))
        .await;
    let r = c.call_tool("py_test_tool_with_logging", json!({})).await;
    assert_eq!(text_of(&r), "Tool with logging executed successfully");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elicitation_and_sampling_are_answered_by_the_caller_and_only_by_it() {
    let gateway = gateway_with_fixture(&[]).await;
    let alice = client(&gateway).await;
    let mallory = client(&gateway).await;

    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "py_test_elicitation", "arguments": {"message": "Who are you?"}}});
    let mut s = alice.post_stream(&body).await;
    let (_, request) = s
        .wait_for_method("elicitation/create", WAIT)
        .await
        .unwrap_or_else(|| panic!("no elicitation request\n{}", gateway.logs()));
    assert_eq!(request["params"]["message"], "Who are you?", "{request}");
    assert_eq!(
        request["params"]["requestedSchema"]["required"],
        json!(["username", "email"])
    );
    let relayed_id = request["id"].clone();
    assert!(
        relayed_id
            .as_str()
            .is_some_and(|i| i.starts_with("cortex-sr-")),
        "{request}"
    );

    // Another caller cannot answer it: accepted (202), but it goes nowhere.
    let forged = json!({"jsonrpc": "2.0", "id": relayed_id, "result": {
        "action": "accept", "content": {"username": "mallory", "email": "m@evil"}}});
    assert_eq!(mallory.post(&forged, &[]).await.status, 202);
    assert!(
        s.next_message(Duration::from_millis(500)).await.is_none(),
        "a forged answer must not complete the call"
    );

    let answer = json!({"jsonrpc": "2.0", "id": relayed_id, "result": {
        "action": "accept", "content": {"username": "alice", "email": "a@example.com"}}});
    assert_eq!(alice.post(&answer, &[]).await.status, 202);
    let msgs = messages_until_response(&mut s, &json!(7)).await;
    let text = text_of(&msgs.last().unwrap()["result"]);
    assert!(
        text.contains("accept") && text.contains("alice") && !text.contains("mallory"),
        "{text}"
    );

    // Sampling: the same relay, the caller's answer goes back to the server.
    let body = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {
        "name": "py_test_sampling", "arguments": {"prompt": "Say hi"}}});
    let mut s = alice.post_stream(&body).await;
    let (_, request) = s
        .wait_for_method("sampling/createMessage", WAIT)
        .await
        .expect("sampling request");
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"],
        "Say hi"
    );
    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "hi from the caller"},
        "model": "test-model", "stopReason": "endTurn"}});
    assert_eq!(alice.post(&answer, &[]).await.status, 202);
    let msgs = messages_until_response(&mut s, &json!(8)).await;
    assert_eq!(
        text_of(&msgs.last().unwrap()["result"]),
        "LLM response: hi from the caller"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_is_cancelled_upstream() {
    let gateway = gateway_with_fixture(&[]).await;
    let c = client(&gateway).await;
    let body = json!({"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call", "params": {
        "name": "py_slow", "arguments": {"seconds": 30}}});
    let pending = {
        let c = c.clone();
        tokio::spawn(async move { c.post(&body, &[]).await })
    };
    // Once the server runs the call, the caller cancels it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.notify(
        "notifications/cancelled",
        json!({"requestId": "slow-1", "reason": "changed my mind"}),
    )
    .await;
    let reply = tokio::time::timeout(WAIT, pending)
        .await
        .expect("the cancelled POST ends")
        .expect("task");
    assert_eq!(reply.status, 202, "{}", reply.text());
    common::eventually(WAIT, "the server saw the cancellation", || async {
        let r = c.call_tool("py_cancelled_calls", json!({})).await;
        (!text_of(&r).is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changes_rediscover_and_resource_updates_reach_subscribers() {
    let gateway = gateway_with_fixture(&[]).await;
    let c = client(&gateway).await;
    let mut stream = c.open_stream(&[]).await;
    assert_eq!(stream.status, 200);

    // Subscribed: the server's resource update reaches this session's stream.
    let r = c
        .result(
            "resources/subscribe",
            json!({"uri": "test://watched-resource"}),
        )
        .await;
    assert_eq!(r, json!({}));
    let r = c.call_tool("py_notify_changes", json!({})).await;
    assert!(
        text_of(&r).contains("test://watched-resource"),
        "the subscription reached the server: {r}"
    );
    let (_, updated) = stream
        .wait_for_method("notifications/resources/updated", WAIT)
        .await
        .unwrap_or_else(|| panic!("no resources/updated\n{}", gateway.logs()));
    assert_eq!(updated["params"]["uri"], "test://watched-resource");
    let r = c
        .result(
            "resources/unsubscribe",
            json!({"uri": "test://watched-resource"}),
        )
        .await;
    assert_eq!(r, json!({}));

    // A resource the caller cannot see cannot be subscribed to.
    let e = c
        .error("resources/subscribe", json!({"uri": "test://nowhere"}))
        .await;
    assert_eq!(e["code"], -32002, "{e}");

    // The server adds a tool and says so: the catalog follows long before the 60 s refresh.
    let started = Instant::now();
    c.call_tool("py_add_tool", json!({})).await;
    common::eventually(WAIT, "py_added_later listed", || async {
        c.tool_names()
            .await
            .iter()
            .any(|n| n == "py_added_later")
            .then_some(())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(30));
    let (_, changed) = stream
        .wait_for_method("notifications/tools/list_changed", WAIT)
        .await
        .expect("tools/list_changed to the session");
    assert_eq!(changed["method"], "notifications/tools/list_changed");
    let r = c.call_tool("py_added_later", json!({})).await;
    assert_eq!(text_of(&r), "added later");
}

/// Whether any process of group `pgid` is alive.
fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks that the group exists and may be signalled.
    unsafe { libc::killpg(pgid, 0) == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_is_restarted_and_none_outlives_the_gateway() {
    let mut gateway = gateway_with_fixture(&[]).await;
    let c = client(&gateway).await;
    let ids = |r: &Value| -> (i32, i32) {
        let t = text_of(r);
        let mut it = t.split(' ').filter_map(|x| x.parse().ok());
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let (pid, pgid) = ids(&c.call_tool("py_whoami_pid", json!({})).await);
    assert!(
        pid > 1 && pgid == pid,
        "the child leads a process group of its own: {pid} {pgid}"
    );

    // SAFETY: kills the child the gateway started (its pid as the child reported it).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let (pid2, pgid2) = common::eventually(WAIT, "a new child answers", || async {
        let reply = c
            .rpc(
                "tools/call",
                json!({"name": "py_whoami_pid", "arguments": {}}),
            )
            .await;
        let (p, g) = ids(&reply["result"]);
        (reply.get("result").is_some() && p != pid && p > 1).then_some((p, g))
    })
    .await;
    assert_ne!(pid2, pid);
    assert!(group_alive(pgid2));

    // The gateway stops: the child's whole group is gone with it.
    gateway.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while group_alive(pgid2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !group_alive(pgid2),
        "process group {pgid2} outlived the gateway"
    );
}
