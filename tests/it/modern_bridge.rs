//! The eras bridged across the gateway (docs/mcp-endpoint.md §14.7): a 2026-07-28 client
//! calling a tool of a legacy native upstream (the Python SDK fixture,
//! tests/python/native_fixture.py, speaking 2025-11-25 over stdio) that elicits, samples or
//! asks for roots mid-call. The upstream's request becomes an `InputRequiredResult`, the
//! upstream call is held until the retry brings the answer, and the answer reaches the
//! upstream. Over raw HTTP (every field checked), and with the Python SDK 2.3.0 client in its
//! default auto mode answering through callbacks.

use crate::common;

use std::time::Duration;

use crate::native_http::{start_fixture, HttpFixture};
use common::sse::parse_sse_body;
use common::{interop, Gateway, HttpReply, TestConfig};
use serde_json::{json, Value};

const V: &str = "2026-07-28";

/// A gateway serving the Python fixture over stdio as backend `py`, with `sessions` lines.
async fn gateway(sessions: &[&str]) -> Gateway {
    let python = interop::python();
    let script = interop::repo_path("tests/python/native_fixture.py");
    let mut cfg = TestConfig::new().catalog("refresh: 60s");
    for line in sessions {
        cfg = cfg.sessions(line);
    }
    let yaml = cfg
        .stdio_backend(
            "py",
            &python.display().to_string(),
            &["-W", "ignore", &script.display().to_string(), "stdio"],
            &[],
        )
        .build();
    start(&yaml).await
}

/// A gateway serving the Python fixture over streamable HTTP as backend `py` (server requests
/// arrive on each call's own stream, so concurrent calls that all ask something stay apart),
/// with `sessions` lines.
async fn http_gateway(fixture: &HttpFixture, sessions: &[&str]) -> Gateway {
    let mut cfg = TestConfig::new().catalog("refresh: 60s");
    for line in sessions {
        cfg = cfg.sessions(line);
    }
    let url = format!("http://127.0.0.1:{}/mcp", fixture.port);
    start(&cfg.mcp_backend("py", &url, &["timeout: 60s"]).build()).await
}

async fn start(yaml: &str) -> Gateway {
    let gateway = Gateway::start(yaml).await;
    // Listed is ready enough (a Python child may take long to start on a busy machine).
    crate::native_stdio::wait_listed(&gateway, "py_whoami_pid").await;
    gateway
}

/// `_meta` of a modern request declaring `caps`, plus `extra` members.
fn meta(caps: Value, extra: Value) -> Value {
    let mut m = json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": caps,
    });
    if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    m
}

fn all_caps() -> Value {
    json!({"elicitation": {"form": {}}, "sampling": {}, "roots": {}})
}

/// A modern `tools/call` of `name` with `arguments` and `_meta`, plus retry fields.
fn call(id: u64, name: &str, arguments: Value, meta: Value, retry: Value) -> Value {
    let mut params = json!({"name": name, "arguments": arguments, "_meta": meta});
    if let (Some(p), Some(r)) = (params.as_object_mut(), retry.as_object()) {
        p.extend(r.clone());
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

async fn post(gateway: &Gateway, body: &Value) -> HttpReply {
    let name = body["params"]["name"].as_str().unwrap_or("").to_owned();
    gateway
        .client()
        .post(
            body,
            &[
                ("mcp-protocol-version", V),
                ("mcp-method", "tools/call"),
                ("mcp-name", &name),
            ],
        )
        .await
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
async fn a_legacy_upstreams_elicitation_becomes_an_input_required_result_and_its_answer_goes_upstream(
) {
    let g = gateway(&[]).await;
    let args = json!({"message": "Who are you?"});

    // Round 1: the upstream elicits; the modern client gets an InputRequiredResult.
    let first = post(
        &g,
        &call(
            1,
            "py_test_elicitation",
            args.clone(),
            meta(all_caps(), json!({})),
            json!({}),
        ),
    )
    .await;
    assert_eq!(first.status, 200, "{}\n{}", first.text(), g.logs());
    let r = first.json()["result"].clone();
    assert_eq!(r["resultType"], "input_required", "{r}");
    assert!(r["ttlMs"].is_null() && r["cacheScope"].is_null(), "{r}");
    let ask = &r["inputRequests"]["elicitation-1"];
    assert_eq!(ask["method"], "elicitation/create", "{r}");
    assert_eq!(ask["params"]["message"], "Who are you?", "{r}");
    assert_eq!(
        ask["params"]["requestedSchema"]["required"],
        json!(["username", "email"])
    );
    let state = r["requestState"].as_str().expect("requestState").to_owned();

    // A tampered state is refused before anything reaches the upstream.
    let mut tampered = state.clone();
    let last = if tampered.ends_with('A') { "B" } else { "A" };
    tampered.replace_range(tampered.len() - 1.., last);
    let answer = json!({"elicitation-1": {"action": "accept",
        "content": {"username": "alice", "email": "alice@example.com"}}});
    let bad = post(
        &g,
        &call(
            2,
            "py_test_elicitation",
            args.clone(),
            meta(all_caps(), json!({})),
            json!({"requestState": tampered, "inputResponses": answer}),
        ),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["error"]["code"], -32602);

    // The same state on another call (other arguments) is refused too.
    let other = post(
        &g,
        &call(
            3,
            "py_test_elicitation",
            json!({"message": "Someone else?"}),
            meta(all_caps(), json!({})),
            json!({"requestState": state, "inputResponses": answer}),
        ),
    )
    .await;
    assert_eq!(other.status, 400, "{}", other.text());

    // A retry without the answer is asked again (a new state: the old one is spent).
    let again = post(
        &g,
        &call(
            4,
            "py_test_elicitation",
            args.clone(),
            meta(all_caps(), json!({})),
            json!({"requestState": state, "inputResponses": {"unrelated": {"action": "accept"}}}),
        ),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text());
    let r2 = again.json()["result"].clone();
    assert_eq!(r2["resultType"], "input_required", "{r2}");
    assert!(r2["inputRequests"]["elicitation-1"].is_object(), "{r2}");
    let state2 = r2["requestState"].as_str().expect("state").to_owned();
    assert_ne!(state2, state);

    // The retry with the answer: delivered upstream, the held call completes.
    let done = post(
        &g,
        &call(
            5,
            "py_test_elicitation",
            args.clone(),
            meta(all_caps(), json!({})),
            json!({"requestState": state2, "inputResponses": answer}),
        ),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let r3 = done.json()["result"].clone();
    assert_eq!(r3["resultType"], "complete", "{r3}");
    let text = text_of(&r3);
    assert!(text.contains("accept") && text.contains("alice"), "{text}");

    // Replayed: the state was used once.
    let replay = post(
        &g,
        &call(
            6,
            "py_test_elicitation",
            args,
            meta(all_caps(), json!({})),
            json!({"requestState": state2, "inputResponses": answer}),
        ),
    )
    .await;
    assert_eq!(replay.status, 400, "{}", replay.text());
    assert!(
        replay.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("already used"),
        "{}",
        replay.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_and_roots_cross_the_same_way_and_undeclared_capabilities_are_not_asked() {
    let g = gateway(&[]).await;
    // Sampling.
    let args = json!({"prompt": "Say hi"});
    let first = post(
        &g,
        &call(
            1,
            "py_test_sampling",
            args.clone(),
            meta(all_caps(), json!({})),
            json!({}),
        ),
    )
    .await;
    let r = first.json()["result"].clone();
    assert_eq!(
        r["inputRequests"]["sampling-1"]["method"],
        "sampling/createMessage",
        "{}",
        first.text()
    );
    assert_eq!(
        r["inputRequests"]["sampling-1"]["params"]["messages"][0]["content"]["text"],
        "Say hi"
    );
    let answer = json!({"sampling-1": {"role": "assistant",
        "content": {"type": "text", "text": "hi from the caller"},
        "model": "test-model", "stopReason": "endTurn"}});
    let done = post(
        &g,
        &call(
            2,
            "py_test_sampling",
            args,
            meta(all_caps(), json!({})),
            json!({"requestState": r["requestState"], "inputResponses": answer}),
        ),
    )
    .await;
    assert_eq!(
        text_of(&done.json()["result"]),
        "LLM response: hi from the caller"
    );

    // Roots.
    let first = post(
        &g,
        &call(
            3,
            "py_ask_roots",
            json!({}),
            meta(all_caps(), json!({})),
            json!({}),
        ),
    )
    .await;
    let r = first.json()["result"].clone();
    assert_eq!(r["inputRequests"]["roots-1"]["method"], "roots/list", "{r}");
    let answer = json!({"roots-1": {"roots": [{"uri": "file:///client/root", "name": "r"}]}});
    let done = post(
        &g,
        &call(
            4,
            "py_ask_roots",
            json!({}),
            meta(all_caps(), json!({})),
            json!({"requestState": r["requestState"], "inputResponses": answer}),
        ),
    )
    .await;
    assert_eq!(text_of(&done.json()["result"]), "file:///client/root");

    // A client that declared no sampling is not asked: the upstream is told so and the call
    // ends with the upstream's own answer (an error the tool reports).
    let refused = post(
        &g,
        &call(
            5,
            "py_test_sampling",
            json!({"prompt": "x"}),
            meta(json!({"elicitation": {"form": {}}}), json!({})),
            json!({}),
        ),
    )
    .await;
    let body = refused.json();
    assert_ne!(body["result"]["resultType"], "input_required", "{body}");
    assert!(
        body.to_string().contains("did not declare"),
        "the upstream learns why: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_only_when_the_request_asks_and_progress_with_its_own_token() {
    let g = gateway(&[]).await;
    // Without a logLevel: no log message, a plain JSON answer.
    let quiet = post(
        &g,
        &call(
            1,
            "py_test_tool_with_logging",
            json!({}),
            meta(json!({}), json!({})),
            json!({}),
        ),
    )
    .await;
    assert!(!quiet.is_sse(), "{}", quiet.text());
    assert_eq!(quiet.json()["result"]["resultType"], "complete");

    // With logLevel info: the three messages on the request's own stream, then the result.
    let loud = post(
        &g,
        &call(
            2,
            "py_test_tool_with_logging",
            json!({}),
            meta(
                json!({}),
                json!({"io.modelcontextprotocol/logLevel": "info"}),
            ),
            json!({}),
        ),
    )
    .await;
    assert!(loud.is_sse(), "{}", loud.text());
    let messages: Vec<Value> = parse_sse_body(&loud.body)
        .iter()
        .filter_map(|e| e.json())
        .collect();
    let logs: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .collect();
    assert_eq!(logs.len(), 3, "{messages:?}");
    assert_eq!(messages.last().unwrap()["id"], 2);
    assert_eq!(messages.last().unwrap()["result"]["resultType"], "complete");

    // Above the tool's level: nothing.
    let high = post(
        &g,
        &call(
            3,
            "py_test_tool_with_logging",
            json!({}),
            meta(
                json!({}),
                json!({"io.modelcontextprotocol/logLevel": "error"}),
            ),
            json!({}),
        ),
    )
    .await;
    assert!(!high.is_sse(), "{}", high.text());

    // Progress with the request's own token.
    let progressed = post(
        &g,
        &call(
            4,
            "py_test_tool_with_progress",
            json!({}),
            meta(json!({}), json!({"progressToken": "mine-7"})),
            json!({}),
        ),
    )
    .await;
    let messages: Vec<Value> = parse_sse_body(&progressed.body)
        .iter()
        .filter_map(|e| e.json())
        .collect();
    let tokens: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| &m["params"]["progressToken"])
        .collect();
    assert_eq!(tokens, vec![&json!("mine-7"); 3], "{messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_calls_are_bounded_per_caller_and_in_time_with_clear_errors() {
    let fixture = start_fixture().await;
    let g = http_gateway(
        &fixture,
        &["max_held_calls_per_caller: 1", "held_call_timeout: 1s"],
    )
    .await;
    let args = json!({"message": "Who?"});
    let first = post(
        &g,
        &call(
            1,
            "py_test_elicitation",
            args.clone(),
            meta(all_caps(), json!({})),
            json!({}),
        ),
    )
    .await;
    let r = first.json()["result"].clone();
    assert_eq!(r["resultType"], "input_required", "{r}");

    // A second call of the same caller needing input is over the bound.
    let second = post(
        &g,
        &call(
            2,
            "py_test_elicitation",
            json!({"message": "And you?"}),
            meta(all_caps(), json!({})),
            json!({}),
        ),
    )
    .await;
    let e = second.json()["error"].clone();
    assert_eq!(e["code"], -32000, "{}", second.text());
    assert_eq!(
        e["data"],
        json!({"limit": "held_calls_per_caller", "max": 1})
    );
    assert!(
        e["message"].as_str().unwrap_or("").contains("at most 1"),
        "{e}"
    );

    // Past the timeout the held call is gone (ended upstream): the retry says so.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = post(
        &g,
        &call(
            3,
            "py_test_elicitation",
            args,
            meta(all_caps(), json!({})),
            json!({"requestState": r["requestState"],
                   "inputResponses": {"elicitation-1": {"action": "decline"}}}),
        ),
    )
    .await;
    assert_eq!(late.status, 400, "{}", late.text());
    let e = late.json()["error"].clone();
    assert_eq!(e["code"], -32602);
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("no longer held"),
        "{e}"
    );
    // And the caller may be asked again.
    let again = post(
        &g,
        &call(
            4,
            "py_test_elicitation",
            json!({"message": "Again?"}),
            meta(all_caps(), json!({})),
            json!({}),
        ),
    )
    .await;
    assert_eq!(again.json()["result"]["resultType"], "input_required");
}

/// The Python SDK (2.3.0) in `mode` against the gateway serving the fixture; its JSON report.
async fn python_sdk_input(g: &Gateway, mode: &str) -> Value {
    python_sdk_input_with(g, mode, "py_").await
}

/// The same, calling the tools named with `prefix` (the backend's id and `_`).
pub async fn python_sdk_input_with(g: &Gateway, mode: &str, prefix: &str) -> Value {
    let script = interop::repo_path("tests/python/sdk_input.py");
    let out = interop::run_python_script(
        vec![
            script.display().to_string(),
            g.mcp_url(),
            mode.into(),
            prefix.into(),
        ],
        // A folder per run: the runner keeps each run's output there.
        {
            let dir = g.dir().join(format!("python-{mode}"));
            std::fs::create_dir_all(&dir).expect("run folder");
            dir
        },
        Duration::from_secs(120),
    )
    .await;
    // The report is the one line the script prints; anything else on stdout is ignored.
    let line = out
        .lines()
        .find(|l| l.starts_with("{\"mode\""))
        .unwrap_or_else(|| panic!("no report on stdout: {out}\n{}", g.logs()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {out}\n{}", g.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_in_both_eras_answers_a_legacy_upstreams_requests_interleaved() {
    let fixture = start_fixture().await;
    let g = http_gateway(&fixture, &[]).await;
    // Both eras at once on one endpoint, against the same upstream: each client gets only its
    // own requests and answers.
    let (modern, legacy) =
        tokio::join!(python_sdk_input(&g, "auto"), python_sdk_input(&g, "legacy"));
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
    // Log messages: the modern client opted in per request (log_level "info").
    assert_eq!(modern["logs"].as_array().map(Vec::len), Some(3), "{modern}");
}
