//! The 2026-07-28 era on the MCP endpoint, over raw HTTP: each server-side MUST of the
//! stateless era (docs/mcp-endpoint.md, "The 2026-07-28 era"), against the real binary and a
//! scriptable contract backend, beside legacy clients on the same endpoint.

use crate::common;

use std::time::Duration;

use common::sse::SseStream;
use common::{tool, BackendSpec, Gateway, HttpReply, McpClient, TestBackend, TestConfig};
use serde_json::{json, Value};

const V: &str = "2026-07-28";

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-http-test", "version": "1.0"}
    })
}

/// A modern request body: `params` with `_meta` added.
fn body(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"] = meta();
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A region-routed tool: its `region` argument is mirrored into `Mcp-Param-Region`.
fn routed_tool() -> Value {
    json!({
        "name": "routed",
        "scope": "mcp:app:read",
        "description": "Routed by region.",
        "inputSchema": {
            "type": "object",
            "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}
        },
        "version": "1.0.0"
    })
}

struct Setup {
    backend: TestBackend,
    gateway: Gateway,
}

impl Setup {
    async fn start() -> Setup {
        let backend = TestBackend::start(BackendSpec {
            tools: vec![tool("echo", "mcp:app:read"), routed_tool()],
            ..BackendSpec::default()
        })
        .await;
        let gateway = Gateway::start(
            &TestConfig::new()
                .catalog("refresh: 1s")
                .catalog("page_size: 2")
                .principal_scopes(&["mcp:app:read"])
                .backend_with("app", &backend.url(), &["naming: none"])
                .build(),
        )
        .await;
        gateway.wait_ready().await;
        Setup { backend, gateway }
    }

    /// A modern POST: the mirrored headers derived from the body, then `extra` (an empty
    /// value removes a header).
    async fn modern(&self, body: &Value, extra: &[(&str, &str)]) -> HttpReply {
        let method = body["method"].as_str().unwrap_or("");
        let name = body["params"]["name"]
            .as_str()
            .or_else(|| body["params"]["uri"].as_str())
            .map(str::to_owned);
        let mut headers: Vec<(&str, &str)> =
            vec![("mcp-protocol-version", V), ("mcp-method", method)];
        if let Some(n) = &name {
            headers.push(("mcp-name", n));
        }
        headers.extend_from_slice(extra);
        self.gateway.client().post(body, &headers).await
    }
}

fn error_of(reply: &HttpReply) -> (u16, i64, Value) {
    let b = reply.json();
    (
        reply.status,
        b["error"]["code"].as_i64().unwrap_or(0),
        b["id"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_discover_answers_without_a_session_and_lists_both_eras() {
    let s = Setup::start().await;
    let reply = s.modern(&body(7, "server/discover", json!({})), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.header("mcp-session-id").is_none());
    let r = &reply.json()["result"];
    assert_eq!(
        r["supportedVersions"],
        json!(["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"])
    );
    assert_eq!(r["resultType"], "complete");
    assert_eq!(
        r["cacheScope"], "public",
        "nothing in discover depends on the caller"
    );
    assert!(r["ttlMs"].as_u64().is_some());
    assert_eq!(r["capabilities"]["tools"]["listChanged"], true);
    assert!(
        r["capabilities"]["logging"].is_null(),
        "the gateway logs nothing to clients"
    );
    assert!(r["instructions"].as_str().unwrap_or("").contains("app"));
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "cortex-gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_envelope_musts_answer_with_their_status_and_code() {
    let s = Setup::start().await;
    // _meta missing, or missing one of its required fields → 400, -32602.
    let no_meta = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    assert_eq!(
        error_of(&s.modern(&no_meta, &[]).await),
        (400, -32602, json!(1))
    );
    let mut no_caps = body(2, "tools/list", json!({}));
    no_caps["params"]["_meta"]
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientCapabilities");
    assert_eq!(
        error_of(&s.modern(&no_caps, &[]).await),
        (400, -32602, json!(2))
    );
    // clientInfo is optional.
    let mut no_info = body(3, "tools/list", json!({}));
    no_info["params"]["_meta"]
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientInfo");
    assert_eq!(s.modern(&no_info, &[]).await.status, 200);

    // MCP-Protocol-Version missing or different from _meta → 400, -32020.
    let list = body(4, "tools/list", json!({}));
    assert_eq!(
        error_of(&s.modern(&list, &[("mcp-protocol-version", "")]).await),
        (400, -32020, json!(4))
    );
    assert_eq!(
        error_of(
            &s.modern(&list, &[("mcp-protocol-version", "2025-11-25")])
                .await
        ),
        (400, -32020, json!(4))
    );

    // A version the gateway does not serve → 400, -32022 with the supported list.
    let mut future = body(5, "tools/list", json!({}));
    future["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let reply = s
        .modern(&future, &[("mcp-protocol-version", "2099-01-01")])
        .await;
    assert_eq!(error_of(&reply), (400, -32022, json!(5)));
    let data = &reply.json()["error"]["data"];
    assert_eq!(data["requested"], "2099-01-01");
    assert!(data["supported"]
        .as_array()
        .unwrap()
        .contains(&json!("2026-07-28")));

    // Unknown and retired methods → HTTP 404, -32601, the id kept.
    for (id, method) in [(6, "nope/never"), (7, "initialize"), (8, "ping")] {
        let reply = s.modern(&body(id, method, json!({})), &[]).await;
        assert_eq!(error_of(&reply), (404, -32601, json!(id)), "{method}");
    }
    let retired = s
        .modern(&body(9, "logging/setLevel", json!({"level": "info"})), &[])
        .await;
    assert!(
        retired.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("2026-07-28"),
        "{}",
        retired.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_headers_must_match_the_body() {
    let s = Setup::start().await;
    let call = body(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hi"}}),
    );
    assert_eq!(s.modern(&call, &[]).await.status, 200);
    // Mcp-Method missing or different → 400, -32020.
    assert_eq!(
        error_of(&s.modern(&call, &[("mcp-method", "")]).await),
        (400, -32020, json!(1))
    );
    assert_eq!(
        error_of(&s.modern(&call, &[("mcp-method", "tools/list")]).await),
        (400, -32020, json!(1))
    );
    // Mcp-Name different, or missing → 400, -32020; its base64 form is decoded.
    assert_eq!(
        error_of(&s.modern(&call, &[("mcp-name", "routed")]).await),
        (400, -32020, json!(1))
    );
    assert_eq!(
        error_of(&s.modern(&call, &[("mcp-name", "")]).await),
        (400, -32020, json!(1))
    );
    let b64 = s
        .modern(&call, &[("mcp-name", "=?base64?ZWNobw==?=")])
        .await;
    assert_eq!(b64.status, 200, "{}", b64.text());

    // Mcp-Param-Region mirrors the annotated argument.
    let routed = body(
        2,
        "tools/call",
        json!({"name": "routed", "arguments": {"region": "eu"}}),
    );
    let ok = s.modern(&routed, &[("mcp-param-region", "eu")]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["result"]["resultType"], "complete");
    let ok = s
        .modern(&routed, &[("mcp-param-region", "=?base64?ZXU=?=")])
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        error_of(&s.modern(&routed, &[("mcp-param-region", "us")]).await),
        (400, -32020, json!(2))
    );
    assert_eq!(
        error_of(&s.modern(&routed, &[]).await),
        (400, -32020, json!(2))
    );
    // Refused requests never reached the backend: two accepted routed calls only.
    assert_eq!(s.backend.calls("routed").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_carry_their_type_and_caching_hints() {
    let s = Setup::start().await;
    // Every page of tools/list: resultType, the same private scope and ttl, stable order.
    let mut cursor: Option<String> = None;
    let mut names = Vec::new();
    let mut hints = Vec::new();
    for page in 0..10 {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let reply = s.modern(&body(page, "tools/list", params), &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let r = reply.json()["result"].clone();
        assert_eq!(r["resultType"], "complete");
        hints.push((r["cacheScope"].clone(), r["ttlMs"].clone()));
        for t in r["tools"].as_array().unwrap() {
            names.push(t["name"].as_str().unwrap().to_owned());
        }
        cursor = r["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert!(hints.len() >= 2, "page_size 2 pages the list: {names:?}");
    assert!(
        hints.iter().all(|h| h == &(json!("private"), json!(1000))),
        "{hints:?}"
    );
    assert!(names.contains(&"echo".to_owned()) && names.contains(&"routed".to_owned()));
    let again = s
        .modern(&body(20, "tools/list", json!({})), &[])
        .await
        .json();
    let first: Vec<&str> = again["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(first, names[..first.len()].to_vec(), "deterministic order");

    // A tool result: resultType, no caching hints; the backend's reply unchanged.
    let call = s
        .modern(
            &body(
                21,
                "tools/call",
                json!({"name": "echo", "arguments": {"message": "m"}}),
            ),
            &[],
        )
        .await
        .json();
    assert_eq!(call["result"]["resultType"], "complete", "{call}");
    assert!(call["result"]["ttlMs"].is_null() && call["result"]["cacheScope"].is_null());

    // An unknown resource is -32602 (the retired -32002 never leaves in this era).
    let reply = s
        .modern(
            &body(
                22,
                "resources/read",
                json!({"uri": "cortex://nothing-here"}),
            ),
            &[],
        )
        .await;
    assert_eq!(reply.json()["error"]["code"], -32602, "{}", reply.text());
    // A readable resource carries the hints.
    let reply = s
        .modern(
            &body(
                23,
                "resources/read",
                json!({"uri": "cortex://architecture"}),
            ),
            &[],
        )
        .await;
    let r = &reply.json()["result"];
    assert_eq!(
        (&r["resultType"], &r["cacheScope"], &r["ttlMs"]),
        (&json!("complete"), &json!("private"), &json!(0)),
        "{}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_forged_request_state_is_refused_before_any_backend_call() {
    let s = Setup::start().await;
    for state in [
        "not-a-state",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let retry = body(
            1,
            "tools/call",
            json!({"name": "echo", "arguments": {}, "requestState": state,
                   "inputResponses": {"k": {"action": "accept", "content": {}}}}),
        );
        let reply = s.modern(&retry, &[]).await;
        assert_eq!(error_of(&reply), (400, -32602, json!(1)), "{}", reply.text());
    }
    assert!(
        s.backend.calls("echo").is_empty(),
        "no refused retry reached the backend"
    );
    // inputResponses alone (no state) are ignored, as the spec asks of unrecognised input.
    let extra = body(
        2,
        "tools/call",
        json!({"name": "echo", "arguments": {},
               "inputResponses": {"k": {"action": "accept", "content": {}}}}),
    );
    assert_eq!(s.modern(&extra, &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_and_modern_clients_interleave_on_one_endpoint_without_cross_talk() {
    let s = Setup::start().await;
    let url = s.gateway.mcp_url();
    let mut tasks = Vec::new();
    for c in 0..6u64 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let modern = c % 2 == 0;
            let mut client = McpClient::new(&url);
            if !modern {
                client.initialize("2025-11-25").await;
                assert!(client.session.is_some());
            }
            for i in 0..15u64 {
                let message = format!("client {c} call {i}");
                let args = json!({"name": "echo", "arguments": {"message": message}});
                let reply = if modern {
                    client
                        .post(
                            &body(i + 1, "tools/call", args),
                            &[
                                ("mcp-protocol-version", V),
                                ("mcp-method", "tools/call"),
                                ("mcp-name", "echo"),
                            ],
                        )
                        .await
                } else {
                    client
                        .post(&client.request_body("tools/call", args), &[])
                        .await
                };
                assert_eq!(reply.status, 200, "{}", reply.text());
                assert!(reply.header("mcp-session-id").is_none() || !modern);
                let v = reply.json();
                let r = &v["result"];
                // The default backend echoes what it received: this client's own message.
                let echoed = r["structuredContent"]["params"]["message"].clone();
                assert_eq!(echoed, json!(message), "{v}");
                assert_eq!(r["resultType"].is_string(), modern, "{v}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let calls = s.backend.calls("echo");
    assert_eq!(calls.len(), 6 * 15);
    // The contract backend cannot tell the eras apart: every call has the same body shape
    // (only the message differs) and the same headers, whichever era the client spoke.
    let shape = |r: &common::Recorded| {
        let mut body = r.json();
        body["params"]["message"] = json!("");
        let mut names: Vec<String> = r
            .headers
            .keys()
            .map(|n| n.as_str().to_owned())
            .filter(|n| n != "content-length")
            .collect();
        names.sort();
        let cortex: Vec<String> = names
            .iter()
            .filter(|n| n.starts_with("x-cortex-"))
            .map(|n| format!("{n}={}", r.header(n).unwrap_or("")))
            .filter(|h| !h.starts_with("x-cortex-request-id") && !h.starts_with("x-cortex-trace"))
            .collect();
        (body, names, cortex)
    };
    let first = shape(&calls[0]);
    for r in &calls[1..] {
        assert_eq!(shape(r), first, "the contract request depends on the era");
    }
}

/// Opens `subscriptions/listen` (a POST answered with an SSE stream).
async fn listen(s: &Setup, id: u64, filter: Value) -> SseStream {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let resp = http
        .post(s.gateway.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", V)
        .header("mcp-method", "subscriptions/listen")
        .json(&body(
            id,
            "subscriptions/listen",
            json!({"notifications": filter}),
        ))
        .send()
        .await
        .expect("listen");
    assert_eq!(resp.status().as_u16(), 200);
    SseStream::new(resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_acknowledges_first_then_announces_only_visible_changes_asked_for() {
    let s = Setup::start().await;
    let mut stream = listen(
        &s,
        41,
        json!({"toolsListChanged": true, "resourceSubscriptions": ["cortex://architecture"]}),
    )
    .await;
    let (_, ack) = stream
        .next_message(Duration::from_secs(10))
        .await
        .expect("acknowledgement");
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        41
    );
    // Only what the gateway can honour: tool list changes; no resource updates.
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true})
    );

    // A tool the caller may not see appears, and a prompt: nothing for this subscriber.
    s.backend.set_tools(vec![
        tool("echo", "mcp:app:read"),
        routed_tool(),
        tool("hidden", "mcp:other:admin"),
    ]);
    s.backend
        .set_prompts(vec![json!({"name": "p", "description": "A prompt."})]);
    let before = s.backend.calls("list_tools").len();
    s.backend
        .wait_for_calls("list_tools", before + 2, Duration::from_secs(20))
        .await;
    // Two refreshes later the hidden change is published: nothing reached this subscriber.
    assert!(
        stream.next_message(Duration::from_secs(2)).await.is_none(),
        "a change the caller cannot see, or did not ask for, must not be announced"
    );
    // Now a visible tool: the first message after the acknowledgement is its list change.
    s.backend.set_tools(vec![
        tool("echo", "mcp:app:read"),
        routed_tool(),
        tool("hidden", "mcp:other:admin"),
        tool("visible", "mcp:app:read"),
    ]);
    let (_, n) = stream
        .next_message(Duration::from_secs(20))
        .await
        .expect("tools list_changed");
    assert_eq!(n["method"], "notifications/tools/list_changed", "{n}");
    assert_eq!(
        n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        41
    );
}

/// Over HTTP/1 a listen stream is written by its connection's own small task once it is
/// acknowledged; it still ends with `notifications/cancelled` for the listen request when the
/// gateway shuts down, and the process exits without waiting its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_ends_with_cancelled_when_the_gateway_shuts_down() {
    let backend = TestBackend::start(BackendSpec {
        tools: vec![tool("echo", "mcp:app:read")],
        ..BackendSpec::default()
    })
    .await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .sessions("keepalive_interval: 1s")
            .principal_scopes(&["mcp:app:read"])
            .backend_with("app", &backend.url(), &["naming: none"])
            .build()
            .replace("grace_period: 0s", "grace_period: 60s"),
    )
    .await;
    gateway.wait_ready().await;
    let mut s = Setup { backend, gateway };
    let mut stream = listen(&s, 9, json!({"toolsListChanged": true})).await;
    let (_, ack) = stream
        .next_message(Duration::from_secs(10))
        .await
        .expect("acknowledgement");
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    s.gateway.signal(libc::SIGTERM);
    let (_, bye) = stream
        .next_message(Duration::from_secs(15))
        .await
        .expect("notifications/cancelled ends the stream");
    assert_eq!(bye["method"], "notifications/cancelled", "{bye}");
    assert_eq!(bye["params"]["requestId"], 9, "{bye}");
    let code = s
        .gateway
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("the listen stream held the shutdown:\n{}", s.gateway.logs()));
    assert_eq!(code, Some(0), "{}", s.gateway.logs());
}
