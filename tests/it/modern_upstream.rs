//! A 2026-07-28 upstream behind the gateway (docs/mcp-endpoint.md §14.7): a `kind: mcp`
//! backend with `protocol: 2026-07-28`, served by the Python SDK 2.3.0
//! (tests/python/modern_upstream.py) over streamable HTTP. The gateway discovers it with
//! `server/discover`, sends `_meta` and the mirrored headers on every request and keeps no
//! session; the upstream's `InputRequiredResult` reaches a session-based caller as requests on
//! its call's event stream (the answers go upstream in the retried request), and a 2026-07-28
//! caller as an input-required result of the gateway's own.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::native_stdio::{client, messages_until_response, wait_listed};
use common::{interop, Gateway, HttpReply, McpClient, TestConfig};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
const V: &str = "2026-07-28";

/// The Python 2026-07-28 server, killed on drop.
pub struct ModernUpstream {
    child: Child,
    /// Its port on loopback.
    pub port: u16,
}

impl Drop for ModernUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts tests/python/modern_upstream.py on a fresh port and waits until it listens.
pub async fn start_upstream() -> ModernUpstream {
    start_upstream_with(&[]).await
}

/// The same with extra arguments (`sdk`: also the tools tests/python/sdk_input.py calls).
async fn start_upstream_with(extra: &[&str]) -> ModernUpstream {
    let port = common::free_port();
    let child = Command::new(interop::python())
        .arg("-W")
        .arg("ignore")
        .arg(interop::repo_path("tests/python/modern_upstream.py"))
        .arg(port.to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the modern upstream");
    let upstream = ModernUpstream { child, port };
    common::eventually(WAIT, "the modern upstream listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    upstream
}

/// A gateway with the upstream as backend `mo`, spoken to in 2026-07-28.
async fn gateway_for(upstream: &ModernUpstream) -> Gateway {
    let yaml = TestConfig::new()
        .catalog("refresh: 60s")
        .mcp_backend(
            "mo",
            &format!("http://127.0.0.1:{}/mcp", upstream.port),
            &["timeout: 30s", "protocol: 2026-07-28"],
        )
        .build();
    let gateway = Gateway::start(&yaml).await;
    gateway.wait_ready().await;
    wait_listed(&gateway, "mo_plain").await;
    gateway
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

fn call_body(id: &str, name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": name, "arguments": {}}})
}

/// Answers the relayed request `r` (from the stream) with `result`.
async fn answer(c: &McpClient, r: &Value, result: Value) {
    let reply = c
        .post(
            &json!({"jsonrpc": "2.0", "id": r["id"], "result": result}),
            &[],
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
}

/// What the upstream saw of every request so far (its own record, through its tool).
async fn seen(c: &McpClient) -> Vec<Value> {
    let r = c.call_tool("mo_seen_requests", json!({})).await;
    serde_json::from_str(&text_of(&r)).unwrap_or_else(|e| panic!("{e}: {r}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_upstream_is_discovered_and_called_statelessly_with_meta_and_headers() {
    let upstream = start_upstream().await;
    let g = gateway_for(&upstream).await;
    let c = client(&g).await;

    let r = c.call_tool("mo_plain", json!({"word": "hi"})).await;
    assert_eq!(text_of(&r), "plain hi", "{r}");
    // The modern-only members of the upstream's result do not reach a legacy caller.
    assert!(r.get("resultType").is_none(), "{r}");
    let p = c
        .result(
            "prompts/get",
            json!({"name": "mo_hello", "arguments": {"who": "Ann"}}),
        )
        .await;
    assert_eq!(p["messages"][0]["content"]["text"], "Hello, Ann!", "{p}");
    let res = c
        .result("resources/read", json!({"uri": "test://modern/info"}))
        .await;
    assert_eq!(res["contents"][0]["text"], "modern info", "{res}");
    assert!(
        res.get("ttlMs").is_none() && res.get("cacheScope").is_none(),
        "{res}"
    );

    // An argument the tool annotates with `x-mcp-header` is mirrored upstream.
    let r = c
        .call_tool("mo_regional", json!({"region": "north-é"}))
        .await;
    assert_eq!(text_of(&r), "region north-é", "{r}");

    let seen = seen(&c).await;
    let methods: Vec<&str> = seen.iter().filter_map(|s| s["method"].as_str()).collect();
    assert!(methods.contains(&"server/discover"), "{methods:?}");
    assert!(methods.contains(&"tools/list"), "{methods:?}");
    assert!(!methods.contains(&"initialize"), "{methods:?}");
    assert!(
        !methods.iter().any(|m| m.starts_with("notifications/")),
        "{methods:?}"
    );
    for s in &seen {
        assert!(s["session"].is_null(), "no session: {s}");
        assert_eq!(s["version"], V, "{s}");
        assert_eq!(s["metaVersion"], V, "{s}");
        assert_eq!(s["mcpMethod"], s["method"], "{s}");
        assert!(s["metaCaps"].is_object(), "{s}");
    }
    let plain = seen
        .iter()
        .find(|s| s["method"] == "tools/call" && s["mcpName"] == "plain")
        .unwrap_or_else(|| panic!("the call of plain: {seen:?}"));
    // The caller's own capabilities (the session's), declared upstream.
    assert_eq!(
        plain["metaCaps"],
        json!({"sampling": {}, "elicitation": {"form": {}}, "roots": {}}),
        "{plain}"
    );
    let regional = seen
        .iter()
        .find(|s| s["mcpName"] == "regional")
        .unwrap_or_else(|| panic!("the call of regional: {seen:?}"));
    // Not plain ASCII: the base64 form ("north-é").
    assert_eq!(
        regional["params"],
        json!({"mcp-param-region": "=?base64?bm9ydGgtw6k=?="}),
        "{regional}"
    );
    assert_eq!(plain["params"], json!({}), "{plain}");
    let read = seen
        .iter()
        .find(|s| s["method"] == "resources/read")
        .expect("the read");
    assert_eq!(read["mcpName"], "test://modern/info", "{read}");
    let discover = seen
        .iter()
        .find(|s| s["method"] == "server/discover")
        .expect("discover");
    assert_eq!(discover["metaCaps"], json!({}), "{discover}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_caller_answers_the_upstreams_input_requests_on_its_stream() {
    let upstream = start_upstream().await;
    let g = gateway_for(&upstream).await;
    let c = client(&g).await;

    // One elicitation: a request on the call's stream; the answer is the retried upstream
    // call (with the upstream's own requestState), whose result answers the call.
    let mut s = c.post_stream(&call_body("g-1", "mo_greet")).await;
    let (_, r) = s
        .wait_for_method("elicitation/create", WAIT)
        .await
        .unwrap_or_else(|| panic!("no elicitation on the stream\n{}", g.logs()));
    assert_eq!(r["params"]["message"], "What is your name?", "{r}");
    assert_eq!(r["params"]["requestedSchema"]["required"], json!(["name"]));
    answer(
        &c,
        &r,
        json!({"action": "accept", "content": {"name": "Ann"}}),
    )
    .await;
    let msgs = messages_until_response(&mut s, &json!("g-1")).await;
    let last = msgs.last().expect("response");
    assert_eq!(text_of(&last["result"]), "Hello Ann (accept)", "{last}");
    assert!(last["result"].get("resultType").is_none(), "{last}");

    // Three requests in one round (elicitation, sampling, roots), answered in any order.
    let mut s = c.post_stream(&call_body("s-1", "mo_survey")).await;
    let mut asked = Vec::new();
    for _ in 0..3 {
        let (_, m) = s
            .next_message(WAIT)
            .await
            .unwrap_or_else(|| panic!("three requests\n{}", g.logs()));
        asked.push(m);
    }
    let mut methods: Vec<&str> = asked.iter().filter_map(|m| m["method"].as_str()).collect();
    methods.sort_unstable();
    assert_eq!(
        methods,
        vec!["elicitation/create", "roots/list", "sampling/createMessage"]
    );
    for m in asked.iter().rev() {
        let result = match m["method"].as_str() {
            Some("elicitation/create") => json!({"action": "accept", "content": {"color": "teal"}}),
            Some("sampling/createMessage") => json!({"role": "assistant",
                "content": {"type": "text", "text": "roses"}, "model": "test-model"}),
            _ => json!({"roots": [{"uri": "file:///client/root"}]}),
        };
        answer(&c, m, result).await;
    }
    let msgs = messages_until_response(&mut s, &json!("s-1")).await;
    let out: Value = serde_json::from_str(&text_of(&msgs.last().expect("response")["result"]))
        .unwrap_or_else(|e| panic!("{e}: {msgs:?}"));
    assert_eq!(
        out,
        json!({"color": "teal", "poem": "roses", "roots": ["file:///client/root"]})
    );

    // Two rounds: one request per round, each answer carried in the next retry.
    let mut s = c.post_stream(&call_body("t-1", "mo_two_rounds")).await;
    for value in ["left", "right"] {
        let (_, r) = s
            .wait_for_method("elicitation/create", WAIT)
            .await
            .unwrap_or_else(|| panic!("round for {value}\n{}", g.logs()));
        answer(&c, &r, json!({"action": "accept", "content": {"v": value}})).await;
    }
    let msgs = messages_until_response(&mut s, &json!("t-1")).await;
    assert_eq!(
        text_of(&msgs.last().expect("response")["result"]),
        "left+right",
        "{msgs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_cannot_answer_gets_a_clear_error() {
    let upstream = start_upstream().await;
    let g = gateway_for(&upstream).await;

    // A session that declared no capability: the upstream is told so, and whoever refuses
    // (the upstream, or the gateway if it asks anyway) the caller gets -32021 naming what
    // is missing.
    let mut bare = g.client();
    bare.initialize("2025-11-25").await;
    let reply = bare.post(&call_body("n-1", "mo_greet"), &[]).await;
    let body = reply_message(&reply, "n-1");
    assert_eq!(body["error"]["code"], -32021, "{body}\n{}", g.logs());

    // A caller that answers with an error: the call ends with an error that says so (the
    // 2026-07-28 upstream has no error answer to take).
    let c = client(&g).await;
    let mut s = c.post_stream(&call_body("e-1", "mo_greet")).await;
    let (_, r) = s
        .wait_for_method("elicitation/create", WAIT)
        .await
        .expect("elicitation");
    let refusal = json!({"jsonrpc": "2.0", "id": r["id"],
        "error": {"code": -1, "message": "the user closed the dialog"}});
    assert_eq!(c.post(&refusal, &[]).await.status, 202);
    let msgs = messages_until_response(&mut s, &json!("e-1")).await;
    let last = msgs.last().expect("response");
    let message = last["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("elicitation/create") && message.contains("the user closed the dialog"),
        "{last}"
    );
}

/// The JSON-RPC message with id `id` in a reply (JSON or an event stream).
fn reply_message(reply: &HttpReply, id: &str) -> Value {
    if reply.is_sse() {
        common::sse::parse_sse_body(&reply.body)
            .iter()
            .filter_map(|e| e.json())
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no response to {id}: {}", reply.text()))
    } else {
        reply.json()
    }
}

/// A 2026-07-28 `tools/call` of `name` declaring every client capability, plus retry fields.
fn modern_call(id: u64, name: &str, retry: Value) -> Value {
    let mut params = json!({"name": name, "arguments": {}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities":
            {"elicitation": {"form": {}}, "sampling": {}, "roots": {}}}});
    if let (Some(p), Some(r)) = (params.as_object_mut(), retry.as_object()) {
        p.extend(r.clone());
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

async fn post_modern(g: &Gateway, body: &Value) -> Value {
    let name = body["params"]["name"].as_str().unwrap_or("").to_owned();
    let reply = g
        .client()
        .post(
            body,
            &[
                ("mcp-protocol-version", V),
                ("mcp-method", "tools/call"),
                ("mcp-name", &name),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), g.logs());
    let id = body["id"].clone();
    if reply.is_sse() {
        common::sse::parse_sse_body(&reply.body)
            .iter()
            .filter_map(|e| e.json())
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no response: {}", reply.text()))["result"]
            .clone()
    } else {
        reply.json()["result"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_caller_gets_the_upstreams_input_requests_under_a_state_of_the_gateways() {
    let upstream = start_upstream().await;
    let g = gateway_for(&upstream).await;

    // Two rounds upstream, two input-required results downstream; each state is the
    // gateway's own (sealed), never the upstream's.
    let first = post_modern(&g, &modern_call(1, "mo_two_rounds", json!({}))).await;
    assert_eq!(first["resultType"], "input_required", "{first}");
    let (key, ask) = first["inputRequests"]
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap_or_else(|| panic!("one input request: {first}"));
    assert_eq!(ask["method"], "elicitation/create", "{first}");
    assert_eq!(ask["params"]["message"], "First?", "{first}");
    let state = first["requestState"].as_str().expect("state").to_owned();
    assert!(
        !state.starts_with("v1."),
        "the upstream's state stays in the gateway: {state}"
    );

    let second = post_modern(
        &g,
        &modern_call(
            2,
            "mo_two_rounds",
            json!({"requestState": state, "inputResponses":
                {key: {"action": "accept", "content": {"v": "up"}}}}),
        ),
    )
    .await;
    assert_eq!(second["resultType"], "input_required", "{second}");
    let (key2, ask2) = second["inputRequests"]
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.clone(), v.clone()))
        .expect("second request");
    assert_eq!(ask2["params"]["message"], "Second?", "{second}");
    let state2 = second["requestState"].as_str().expect("state").to_owned();

    let done = post_modern(
        &g,
        &modern_call(
            3,
            "mo_two_rounds",
            json!({"requestState": state2, "inputResponses":
                {key2: {"action": "accept", "content": {"v": "down"}}}}),
        ),
    )
    .await;
    assert_eq!(done["resultType"], "complete", "{done}");
    assert_eq!(text_of(&done), "up+down", "{done}");

    // A plain call answers at once, decorated for the modern caller.
    let plain = post_modern(&g, &{
        let mut b = modern_call(4, "mo_plain", json!({}));
        b["params"]["arguments"] = json!({"word": "now"});
        b
    })
    .await;
    assert_eq!(plain["resultType"], "complete", "{plain}");
    assert_eq!(text_of(&plain), "plain now", "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_eras_ask_the_same_modern_upstream_at_once_without_cross_talk() {
    let upstream = start_upstream().await;
    let g = gateway_for(&upstream).await;

    // Three session-based callers answer on their streams while three 2026-07-28 callers
    // retry with the gateway's state, all against the same upstream tool at the same time:
    // each gets the greeting for its own answer.
    let legacy = |n: usize| {
        let g = &g;
        async move {
            let c = client(g).await;
            let id = format!("l-{n}");
            let mut s = c.post_stream(&call_body(&id, "mo_greet")).await;
            let (_, r) = s
                .wait_for_method("elicitation/create", WAIT)
                .await
                .unwrap_or_else(|| panic!("no elicitation for {id}\n{}", g.logs()));
            let who = format!("legacy{n}");
            answer(
                &c,
                &r,
                json!({"action": "accept", "content": {"name": who}}),
            )
            .await;
            let msgs = messages_until_response(&mut s, &json!(id)).await;
            let text = text_of(&msgs.last().expect("response")["result"]);
            assert_eq!(text, format!("Hello {who} (accept)"), "{msgs:?}");
        }
    };
    let modern = |n: usize| {
        let g = &g;
        async move {
            let id = 100 + n as u64;
            let first = post_modern(g, &modern_call(id, "mo_greet", json!({}))).await;
            assert_eq!(first["resultType"], "input_required", "{first}");
            let state = first["requestState"].as_str().expect("state").to_owned();
            let who = format!("modern{n}");
            let done = post_modern(
                g,
                &modern_call(
                    id,
                    "mo_greet",
                    json!({"requestState": state, "inputResponses":
                        {"name": {"action": "accept", "content": {"name": who}}}}),
                ),
            )
            .await;
            assert_eq!(text_of(&done), format!("Hello {who} (accept)"), "{done}");
        }
    };
    tokio::join!(
        legacy(1),
        modern(1),
        legacy(2),
        modern(2),
        legacy(3),
        modern(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_in_both_eras_answers_a_modern_upstreams_input_requests() {
    let upstream = start_upstream_with(&["sdk"]).await;
    let g = gateway_for(&upstream).await;
    wait_listed(&g, "mo_test_elicitation").await;
    // The SDK client in auto mode (2026-07-28: input-required results, retried by the SDK)
    // and in legacy mode (requests on the call's stream, answered by its callbacks), at once.
    let (modern, legacy) = tokio::join!(
        crate::modern_bridge::python_sdk_input_with(&g, "auto", "mo_"),
        crate::modern_bridge::python_sdk_input_with(&g, "legacy", "mo_")
    );
    for (out, version) in [(&modern, "2026-07-28"), (&legacy, "2025-11-25")] {
        assert_eq!(out["protocolVersion"], version, "{out}");
        let elicited = out["elicited"].as_str().unwrap_or("");
        assert!(
            elicited.contains("accept") && elicited.contains("alice"),
            "{out}"
        );
        assert_eq!(
            out["sampled"], "LLM response: sampled by the client",
            "{out}"
        );
        assert_eq!(out["roots"], "file:///client/root", "{out}");
        assert_eq!(
            out["asked"],
            json!(["elicitation", "sampling", "roots"]),
            "{out}"
        );
        assert_eq!(out["progress"].as_array().map(Vec::len), Some(3), "{out}");
    }
    // The 2026-07-28 client asked for log messages (log_level "info"): its level reaches the
    // upstream, whose messages reach that request only.
    assert_eq!(modern["logs"].as_array().map(Vec::len), Some(3), "{modern}");
}
