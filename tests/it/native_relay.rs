//! What happens during `prompts/get`, `resources/read` and `completion/complete` on a native
//! backend reaches the caller as it does for `tools/call`: log messages, progress on the
//! caller's own token, and the server's requests (elicitation, sampling, roots), answered by
//! the caller on the same POST answered as an event stream. The server is the Python SDK
//! fixture (tests/python/native_fixture.py) over stdio.

use crate::common;

use std::time::{Duration, Instant};

use common::McpClient;
use serde_json::{json, Value};

use crate::native_stdio::{client, gateway_with_fixture};

const WAIT: Duration = Duration::from_secs(30);

/// Posts `body` and reads its stream to the response, answering each server request with
/// `answer(request)`; returns every message (the response last).
async fn run(c: &McpClient, body: Value, answer: impl Fn(&Value) -> Value) -> Vec<Value> {
    let id = body["id"].clone();
    let mut s = c.post_stream(&body).await;
    assert_eq!(s.status, 200);
    assert!(
        s.header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "answered as an event stream once the server sends something"
    );
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let Some((_, m)) = s.next_message(WAIT).await else {
            break;
        };
        if m.get("method").is_some() && m.get("id").is_some() {
            let reply = json!({"jsonrpc": "2.0", "id": m["id"], "result": answer(&m)});
            assert_eq!(c.post(&reply, &[]).await.status, 202);
        }
        let done = m.get("method").is_none() && m["id"] == id;
        out.push(m);
        if done {
            return out;
        }
    }
    panic!("no response to {id}; got {out:?}");
}

fn methods(msgs: &[Value]) -> Vec<&str> {
    msgs.iter().filter_map(|m| m["method"].as_str()).collect()
}

fn progress_tokens(msgs: &[Value]) -> Vec<Value> {
    msgs.iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progressToken"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_resources_and_completions_relay_what_happens_during_them() {
    let gateway = gateway_with_fixture(&[]).await;
    let c = client(&gateway).await;
    c.result("logging/setLevel", json!({"level": "info"})).await;

    // prompts/get: a log message, progress on the caller's token, an elicitation answered
    // by the caller, whose answer shapes the prompt.
    let body = json!({"jsonrpc": "2.0", "id": "g-1", "method": "prompts/get", "params": {
        "name": "py_relay_prompt", "arguments": {"topic": "gateways"},
        "_meta": {"progressToken": "pt-g"}}});
    let msgs = run(&c, body, |r| {
        assert_eq!(r["method"], "elicitation/create", "{r}");
        assert_eq!(r["params"]["message"], "Which tone?");
        json!({"action": "accept", "content": {"tone": "cheerful"}})
    })
    .await;
    let m = methods(&msgs);
    assert!(m.contains(&"notifications/message"), "{msgs:?}");
    assert!(m.contains(&"elicitation/create"), "{msgs:?}");
    assert_eq!(progress_tokens(&msgs), vec![json!("pt-g"), json!("pt-g")]);
    let last = msgs.last().unwrap();
    assert_eq!(
        last["result"]["messages"][0]["content"]["text"],
        "Tell me about gateways in a cheerful tone",
        "{last}"
    );

    // resources/read: a log message, progress, and a sampling request.
    let body = json!({"jsonrpc": "2.0", "id": "r-1", "method": "resources/read", "params": {
        "uri": "test://relay/docs", "_meta": {"progressToken": 99}}});
    let msgs = run(&c, body, |r| {
        assert_eq!(r["method"], "sampling/createMessage", "{r}");
        assert_eq!(
            r["params"]["messages"][0]["content"]["text"],
            "Summarize docs"
        );
        json!({"role": "assistant", "content": {"type": "text", "text": "short"},
            "model": "m", "stopReason": "endTurn"})
    })
    .await;
    assert!(
        methods(&msgs).contains(&"notifications/message"),
        "{msgs:?}"
    );
    assert_eq!(progress_tokens(&msgs), vec![json!(99)]);
    let last = msgs.last().unwrap();
    assert_eq!(
        last["result"]["contents"][0]["text"], "docs: short",
        "{last}"
    );

    // completion/complete: a log message and a roots/list request; the roots become the
    // completion values.
    let body = json!({"jsonrpc": "2.0", "id": "c-1", "method": "completion/complete", "params": {
        "ref": {"type": "ref/prompt", "name": "py_relay_prompt"},
        "argument": {"name": "topic", "value": ""}}});
    let msgs = run(&c, body, |r| {
        assert_eq!(r["method"], "roots/list", "{r}");
        json!({"roots": [{"uri": "file:///work/project", "name": "project"}]})
    })
    .await;
    assert!(
        methods(&msgs).contains(&"notifications/message"),
        "{msgs:?}"
    );
    let last = msgs.last().unwrap();
    assert_eq!(
        last["result"]["completion"]["values"],
        json!(["file:///work/project"]),
        "{last}"
    );

    // A read during which the server sends nothing is answered with plain JSON.
    let read = c
        .result("resources/read", json!({"uri": "test://watched-resource"}))
        .await;
    assert_eq!(read["contents"][0]["text"], "watched content");
}
