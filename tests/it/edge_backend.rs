//! The edge against a misbehaving contract backend (issue 10, D2–D4 and the early 413):
//! every reply becomes one complete JSON-RPC answer with a `Content-Length`, whatever the
//! backend does, and a backend call is bounded as a whole.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common;
use common::raw::{self, RawConn};
use common::rogue_backend::{RogueBackend, EARLY_413_ERROR};
use common::{eventually, Gateway, TestConfig};

/// A gateway in front of the rogue backend (id `rogue`, so its tools are `rogue_<name>`),
/// with a 1 s backend timeout.
async fn rogue_gateway() -> (Gateway, RogueBackend) {
    let rogue = RogueBackend::start().await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .backend_with("rogue", &rogue.url(), &["timeout: 1s"])
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let client = gateway.client();
    eventually(Duration::from_secs(10), "the rogue tools listed", || {
        let client = client.clone();
        async move {
            let names = client.tool_names().await;
            names.iter().any(|n| n == "rogue_forever").then_some(())
        }
    })
    .await;
    (gateway, rogue)
}

fn call(id: u64, tool: &str, arguments: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":arguments}})
        .to_string()
}

/// Calls `tool` over a raw socket and returns the response, checking that it is one whole
/// JSON-RPC answer delimited by a `Content-Length` (not an empty or chunked 200).
async fn raw_call(gateway: &Gateway, tool: &str, arguments: Value) -> Value {
    let mut conn = RawConn::connect(gateway.port()).await;
    assert!(
        conn.send(&raw::post("/mcp", "", &call(7, tool, arguments)))
            .await
    );
    let response = conn
        .response(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("{tool}: no complete response\n{}", gateway.logs()));
    assert_eq!(response.status, 200, "{tool}: {response:?}");
    assert!(
        response.header("transfer-encoding").is_none(),
        "{tool}: not chunked: {response:?}"
    );
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str()),
        "{tool}: a Content-Length: {response:?}"
    );
    let body = response.json();
    assert_eq!(
        body["jsonrpc"], "2.0",
        "{tool}: a JSON-RPC answer: {response:?}"
    );
    assert_eq!(body["id"], 7, "{tool}: {body}");
    body
}

/// D2: a 204, an empty 200, a 302, an empty 404 and an empty 500 become the answers
/// docs/backend-contract.md §8 promises, never an empty 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_backend_replies_become_jsonrpc_answers() {
    let (gateway, _rogue) = rogue_gateway().await;
    for tool in ["rogue_no_content", "rogue_empty_ok"] {
        let body = raw_call(&gateway, tool, json!({})).await;
        assert_eq!(
            body["result"]["content"],
            json!([{"type": "text", "text": ""}]),
            "{tool}: an empty 2xx is an empty text result: {body}"
        );
    }
    for (tool, status) in [("rogue_redirect", "302"), ("rogue_error_empty", "500")] {
        let body = raw_call(&gateway, tool, json!({})).await;
        assert_eq!(body["error"]["code"], -32603, "{tool}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(status)),
            "{tool}: the message names the status: {body}"
        );
    }
    let body = raw_call(&gateway, "rogue_not_found_empty", json!({})).await;
    assert_eq!(
        body["result"]["isError"], true,
        "an empty 404 is a tool error: {body}"
    );
    assert!(
        body["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("404")),
        "{body}"
    );
}

/// D3: a backend that closes mid-reply (announced length or chunked) gives the documented
/// `-32603 … unreachable`, not a truncated 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_closing_mid_reply_is_unreachable() {
    let (gateway, _rogue) = rogue_gateway().await;
    for tool in ["rogue_cut", "rogue_cut_chunked"] {
        let body = raw_call(&gateway, tool, json!({})).await;
        assert_eq!(body["error"]["code"], -32603, "{tool}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("unreachable")),
            "{tool}: {body}"
        );
    }
}

/// D4: the backend timeout bounds the whole call: a reply dripping a byte every 300 ms
/// (each read well within 1 s) times out at the call's 1 s, and the gateway hangs up on it;
/// an endless reply is cut at the reply limit and no longer read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_timeout_bounds_the_whole_call() {
    let (gateway, rogue) = rogue_gateway().await;
    let body = raw_call(&gateway, "rogue_drip", json!({})).await;
    assert_eq!(body["error"]["code"], -32603, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("timed out after 1000ms")),
        "{body}"
    );
    eventually(
        Duration::from_secs(10),
        "the gateway hangs up on the drip",
        || async { rogue.drip_closed().then_some(()) },
    )
    .await;

    let body = raw_call(&gateway, "rogue_forever", json!({})).await;
    assert_eq!(body["error"]["code"], -32603, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("reply larger than") || message.contains("timed out"),
        "{body}"
    );
    eventually(
        Duration::from_secs(10),
        "the gateway hangs up on the endless reply",
        || async { rogue.forever_closed().then_some(()) },
    )
    .await;
    let written = rogue
        .stats()
        .forever_bytes
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        written < 64 * 1024 * 1024,
        "the endless reply stopped being read near the 16 MiB limit, not drained: {written} bytes written"
    );
}

/// A backend's early 413 (sent while the gateway still writes the body) is mapped with its
/// message, not reported as "unreachable: WriteError".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_backend_413_keeps_its_message() {
    let (gateway, rogue) = rogue_gateway().await;
    let big = "z".repeat(1024 * 1024);
    let body = raw_call(&gateway, "rogue_empty_ok", json!({"message": big})).await;
    assert!(
        rogue
            .stats()
            .early_413s
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    assert_eq!(
        body["result"]["isError"], true,
        "a 413 is a tool error: {body}"
    );
    let text = body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("413") && text.contains(EARLY_413_ERROR),
        "the backend's own message survives: {body}"
    );
}
