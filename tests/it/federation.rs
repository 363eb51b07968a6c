//! Federation of contract backends: naming, forwarding (body and identity headers), the reply
//! mapping, pagination, collisions, stale backends, large bodies and scope filtering.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    eventually, tool, unused_port, BackendSpec, DemoBackend, Discovery, Gateway, TestBackend,
    TestConfig,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

/// The JSON in the first text content block of a CallToolResult.
fn text_json(result: &Value) -> Value {
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_forwarded_with_the_contract_body_and_identity_headers() {
    let alpha = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:a:read")).await;
    let beta = TestBackend::start(BackendSpec::tools(&["ping_me"], "mcp:b:read")).await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .auth(&[
                "mode: none",
                "principal:",
                "  sub: user-1",
                "  email: u1@example.com",
                "  role: editor",
                "  pool: staff",
                "  scopes: [\"mcp:a:read\", \"mcp:b:read\", \"mcp:a:write\"]",
                "  token: user-token",
            ])
            .backend("alpha", &alpha.url())
            .backend_with("beta", &beta.url(), &["technical_token: beta-discovery"])
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let client = gateway.client();
    let names = client.backend_tool_names().await;
    assert!(names.contains(&"alpha_echo".to_owned()), "{names:?}");
    assert!(names.contains(&"beta_ping_me".to_owned()), "{names:?}");

    // Discovery carries the technical token (per-backend override) and no user identity.
    let discovery = alpha.calls("list_tools").pop().expect("discovery");
    assert_eq!(
        discovery.header("authorization"),
        Some("Bearer tech-secret")
    );
    assert!(discovery.header("x-cortex-user-id").is_none());
    assert_eq!(discovery.json()["params"], json!({}));
    let discovery = beta.calls("list_tools").pop().expect("discovery");
    assert_eq!(
        discovery.header("authorization"),
        Some("Bearer beta-discovery")
    );

    alpha.clear_requests();
    let result = client
        .call_tool("alpha_echo", json!({"message": "hi"}))
        .await;
    assert!(
        result.get("isError").is_none() || result["isError"] == false,
        "{result}"
    );
    let echoed = &result["structuredContent"];
    assert_eq!(echoed["method"], "echo", "original tool name: {result}");
    assert_eq!(echoed["params"], json!({"message": "hi"}));
    assert_eq!(result["content"][0]["type"], "text");
    assert_eq!(&text_json(&result), echoed, "text carries the same JSON");

    let calls = alpha.calls("echo");
    assert_eq!(calls.len(), 1, "exactly one call, no retry");
    let call = &calls[0];
    assert_eq!(call.http_method, "POST");
    assert_eq!(call.path, "/api/cortex/backend");
    assert_eq!(
        call.json(),
        json!({"method":"echo","params":{"message":"hi"}})
    );
    assert_eq!(call.header("authorization"), Some("Bearer user-token"));
    assert_eq!(call.header("x-cortex-user-id"), Some("user-1"));
    assert_eq!(call.header("x-cortex-user-email"), Some("u1@example.com"));
    assert_eq!(call.header("x-cortex-user-role"), Some("editor"));
    assert_eq!(call.header("x-cortex-user-pool"), Some("staff"));
    assert!(
        call.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{:?}",
        call.headers
    );
    let scopes: BTreeSet<&str> = call
        .header("x-cortex-scopes")
        .unwrap_or_default()
        .split(' ')
        .collect();
    assert_eq!(
        scopes,
        BTreeSet::from(["mcp:a:read", "mcp:b:read", "mcp:a:write"])
    );

    // No arguments → params {}.
    client
        .result("tools/call", json!({"name": "beta_ping_me"}))
        .await;
    let call = beta.calls("ping_me").pop().expect("call reached beta");
    assert_eq!(call.json(), json!({"method":"ping_me","params":{}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naming_none_exposes_raw_names() {
    let raw = TestBackend::start(BackendSpec::tools(&["search"], "mcp:x:read")).await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .backend_with("raw", &raw.url(), &["naming: none"])
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let client = gateway.client();
    assert_eq!(client.backend_tool_names().await, vec!["search".to_owned()]);
    let result = client.call_tool("search", json!({"message": "q"})).await;
    assert_eq!(result["structuredContent"]["method"], "search");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_walks_every_page_and_rejects_bad_cursors() {
    let backend = TestBackend::start(BackendSpec::tools(
        &["t1", "t2", "t3", "t4", "t5"],
        "mcp:p:read",
    ))
    .await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog("page_size: 2")
            .backend("pg", &backend.url())
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let client = gateway.client();

    let mut sizes = Vec::new();
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let params = cursor
            .as_ref()
            .map_or_else(|| json!({}), |c| json!({ "cursor": c }));
        let page = client.result("tools/list", params).await;
        let tools = page["tools"].as_array().cloned().unwrap_or_default();
        sizes.push(tools.len());
        names.extend(
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned)),
        );
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) => {
                assert!(!next.is_empty());
                cursor = Some(next.to_owned());
            }
            None => {
                cursor = None;
                break;
            }
        }
    }
    assert!(cursor.is_none(), "pagination ended");
    // Every page is full but the last; the catalog may also hold the gateway's builtins.
    let (last, full) = sizes.split_last().expect("at least one page");
    assert!(full.iter().all(|n| *n == 2), "page sizes {sizes:?}");
    assert!((1..=2).contains(last), "page sizes {sizes:?}");
    assert!(sizes.len() >= 3, "5 tools need 3 pages of 2: {sizes:?}");
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "no duplicates: {names:?}");
    assert_eq!(
        common::without_builtins(unique.into_iter()),
        vec!["pg_t1", "pg_t2", "pg_t3", "pg_t4", "pg_t5"]
    );

    for bad in [json!("garbage"), json!("!!!"), json!(5)] {
        let error = client.error("tools/list", json!({ "cursor": bad })).await;
        assert_eq!(error["code"], -32602, "cursor {bad}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_collisions_keep_the_first_backend() {
    let one = TestBackend::start(BackendSpec::tools(&["search", "only_one"], "mcp:c:read")).await;
    let two = TestBackend::start(BackendSpec::tools(&["search", "only_two"], "mcp:c:read")).await;
    // Prefix naming can collide too: a + b_c and a_b + c are both `a_b_c`.
    let a = TestBackend::start(BackendSpec::tools(&["b_c"], "mcp:c:read")).await;
    let a_b = TestBackend::start(BackendSpec::tools(&["c"], "mcp:c:read")).await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .backend_with("one", &one.url(), &["naming: none"])
            .backend_with("two", &two.url(), &["naming: none"])
            .backend("a", &a.url())
            .backend("a_b", &a_b.url())
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let client = gateway.client();
    let names = client.backend_tool_names().await;
    let count = |name: &str| names.iter().filter(|n| *n == name).count();
    assert_eq!(count("search"), 1, "{names:?}");
    assert_eq!(count("a_b_c"), 1, "{names:?}");
    assert_eq!(count("only_one"), 1, "{names:?}");
    assert_eq!(count("only_two"), 1, "{names:?}");

    client.call_tool("search", json!({})).await;
    assert_eq!(one.calls("search").len(), 1, "first backend keeps the name");
    assert!(two.calls("search").is_empty());
    client.call_tool("a_b_c", json!({})).await;
    assert_eq!(a.calls("b_c").len(), 1, "first backend keeps the name");
    assert!(a_b.calls("c").is_empty());

    let logs = gateway.logs().to_ascii_lowercase();
    assert!(
        logs.contains("colli"),
        "collisions are reported in the logs:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_keeps_its_tools_while_stale() {
    let backend = TestBackend::start(BackendSpec::tools(&["keep"], "mcp:s:read")).await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog("stale_grace: 60s")
            .catalog("max_backoff: 1s")
            .backend("st", &backend.url())
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let client = gateway.client();
    assert_eq!(
        client.backend_tool_names().await,
        vec!["st_keep".to_owned()]
    );

    backend.set_discovery(Discovery::Fail500);
    let status = eventually(WAIT, "backend marked stale in /readyz", || async {
        let s = gateway.backend_status("st").await;
        (s["stale"] == true).then_some(s)
    })
    .await;
    assert_eq!(status["healthy"], false, "{status}");
    assert!(status["lastError"].is_string(), "{status}");
    assert_eq!(status["tools"], 1, "{status}");
    let (code, _) = gateway.readyz().await;
    assert_eq!(code, 200, "a stale backend had its discovery attempts");

    assert_eq!(
        client.backend_tool_names().await,
        vec!["st_keep".to_owned()]
    );
    let result = client
        .call_tool("st_keep", json!({"message": "still"}))
        .await;
    assert_eq!(result["structuredContent"]["params"]["message"], "still");

    backend.set_discovery(Discovery::Ok);
    eventually(WAIT, "backend healthy again", || async {
        let s = gateway.backend_status("st").await;
        (s["stale"] == false && s["healthy"] == true).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_tools_disappear_after_the_grace_period() {
    let backend = TestBackend::start(BackendSpec::tools(&["fleeting"], "mcp:s:read")).await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog("stale_grace: 2s")
            .catalog("max_backoff: 1s")
            .backend_with("gr", &backend.url(), &["timeout: 300ms"])
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let client = gateway.client();
    assert_eq!(
        client.backend_tool_names().await,
        vec!["gr_fleeting".to_owned()]
    );

    // Discovery now hangs: the per-backend timeout fires, the backend goes stale, and after
    // the grace period its tools are gone.
    backend.set_discovery(Discovery::Hang);
    eventually(WAIT, "backend marked stale", || async {
        (gateway.backend_status("gr").await["stale"] == true).then_some(())
    })
    .await;
    eventually(
        WAIT,
        "stale tools removed after the grace period",
        || async { client.backend_tool_names().await.is_empty().then_some(()) },
    )
    .await;
    let error = client
        .error("tools/call", json!({"name":"gr_fleeting"}))
        .await;
    assert_eq!(error["code"], -32602);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_64_kib_reach_the_backend_intact() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:e:read")).await;
    let gateway = Gateway::start(&TestConfig::new().backend("big", &backend.url()).build()).await;
    gateway.wait_ready().await;
    let client = gateway.client();

    for size in [200 * 1024, 1536 * 1024] {
        // Mixed ASCII and multi-byte text, so any truncation or re-chunking shows.
        let unit = "0123456789abcdef-é€😀|";
        let message: String = unit.repeat(size / unit.len() + 1);
        backend.clear_requests();
        let result = client
            .call_tool("big_echo", json!({ "message": message }))
            .await;
        assert_eq!(
            result["structuredContent"]["params"]["message"]
                .as_str()
                .map(str::len),
            Some(message.len()),
            "echoed back through the gateway"
        );
        assert!(
            result["structuredContent"]["params"]["message"] == message,
            "echoed text identical"
        );
        let call = backend
            .calls("echo")
            .pop()
            .expect("call reached the backend");
        assert_eq!(
            call.json(),
            json!({"method":"echo","params":{"message": message}}),
            "the backend got the whole body"
        );
        if let Some(len) = call.header("content-length") {
            assert_eq!(len.parse::<usize>().ok(), Some(call.body.len()));
        }
    }
}

/// Every row of the reply mapping (filters/src/contract.rs, docs/backend-contract.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_mapping_row() {
    let names = [
        "ok_object",
        "ok_array",
        "ok_text",
        "passthrough",
        "bad_request",
        "not_found",
        "conflict",
        "unprocessable",
        "scope_required",
        "acl_denied",
        "unauthorized",
        "server_error",
        "bad_gateway",
        "slow",
    ];
    let backend = TestBackend::start(BackendSpec::tools(&names, "mcp:m:read")).await;
    backend.respond("ok_object", 200, json!({"a": 1, "b": [true]}));
    backend.respond("ok_array", 200, json!([1, 2, 3]));
    backend.respond_raw("ok_text", 200, "text/plain", b"plain words");
    backend.respond_with_headers(
        "passthrough",
        200,
        json!({"content":[{"type":"text","text":"rich"}],"isError":false}),
        &[("x-cortex-reply", "call-tool-result")],
    );
    backend.respond("bad_request", 400, json!({"error":"bad thing"}));
    backend.respond("not_found", 404, json!({"error":"no such item"}));
    backend.respond("conflict", 409, json!({"error":"version clash"}));
    backend.respond("unprocessable", 422, json!({"error":"cannot process"}));
    backend.respond(
        "scope_required",
        403,
        json!({"error":"Scope mcp:m:write required","required":"mcp:m:write"}),
    );
    backend.respond("acl_denied", 403, json!({"error":"not your record"}));
    backend.respond("unauthorized", 401, json!({"error":"token expired"}));
    backend.respond("server_error", 500, json!({"error":"boom"}));
    backend.respond("bad_gateway", 502, json!({"error":"upstream down"}));
    backend.delay("slow", Duration::from_secs(3));

    let gateway = Gateway::start(
        &TestConfig::new()
            .backend_with("m", &backend.url(), &["timeout: 500ms"])
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let client = gateway.client();
    let call = |name: &str| {
        let client = client.clone();
        let name = format!("m_{name}");
        async move {
            client
                .rpc("tools/call", json!({"name": name, "arguments": {}}))
                .await
        }
    };

    // 2xx object → text + structuredContent.
    let r = call("ok_object").await;
    assert_eq!(
        r["result"]["structuredContent"],
        json!({"a": 1, "b": [true]}),
        "{r}"
    );
    assert_eq!(text_json(&r["result"]), json!({"a": 1, "b": [true]}));
    assert_ne!(r["result"]["isError"], true);

    // 2xx non-object JSON → text only.
    let r = call("ok_array").await;
    assert_eq!(text_json(&r["result"]), json!([1, 2, 3]), "{r}");
    assert!(r["result"].get("structuredContent").is_none(), "{r}");

    // 2xx non-JSON → the body as text.
    let r = call("ok_text").await;
    assert_eq!(r["result"]["content"][0]["text"], "plain words", "{r}");

    // X-Cortex-Reply: call-tool-result → passed through.
    let r = call("passthrough").await;
    assert_eq!(
        r["result"]["content"],
        json!([{"type":"text","text":"rich"}]),
        "{r}"
    );
    assert_ne!(r["result"]["isError"], true);

    // 4xx (not 401/403) → isError result "Backend <status>: <error>".
    for (name, status, error) in [
        ("bad_request", 400, "bad thing"),
        ("not_found", 404, "no such item"),
        ("conflict", 409, "version clash"),
        ("unprocessable", 422, "cannot process"),
    ] {
        let r = call(name).await;
        assert!(
            r.get("error").is_none(),
            "{name}: a tool-level failure: {r}"
        );
        assert_eq!(r["result"]["isError"], true, "{name}: {r}");
        let text = r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.contains(&format!("Backend {status}: {error}")),
            "{name}: {text}"
        );
    }

    // 403 with `required` → backend_scope_required.
    let r = call("scope_required").await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert_eq!(
        r["result"]["structuredContent"]["error"],
        "backend_scope_required"
    );
    assert_eq!(r["result"]["structuredContent"]["required"], "mcp:m:write");
    assert!(r["result"]["content"][0]["text"]
        .as_str()
        .is_some_and(|t| t.contains("mcp:m:write")));

    // 403 without `required` → backend_acl_denied.
    let r = call("acl_denied").await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert_eq!(
        r["result"]["structuredContent"]["error"],
        "backend_acl_denied"
    );
    assert!(r["result"]["content"][0]["text"]
        .as_str()
        .is_some_and(|t| t.contains("not your record")));

    // 401 → JSON-RPC -32603.
    let r = call("unauthorized").await;
    assert_eq!(r["error"]["code"], -32603, "{r}");
    assert_eq!(
        r["error"]["message"],
        "Backend auth failed — token may have expired"
    );

    // 5xx → JSON-RPC -32603 "Backend <status>: <error>".
    for (name, message) in [
        ("server_error", "Backend 500: boom"),
        ("bad_gateway", "Backend 502: upstream down"),
    ] {
        let r = call(name).await;
        assert_eq!(r["error"]["code"], -32603, "{name}: {r}");
        assert_eq!(r["error"]["message"], message, "{name}");
    }

    // Timeout → JSON-RPC -32603, and the call is not retried.
    let started = std::time::Instant::now();
    let r = call("slow").await;
    assert_eq!(r["error"]["code"], -32603, "{r}");
    assert_eq!(r["error"]["message"], "Backend timed out after 500ms");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "timed out early"
    );
    assert_eq!(
        backend.calls("slow").len(),
        1,
        "no retry of a call that reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_is_a_jsonrpc_error() {
    let backend = TestBackend::start(BackendSpec::tools(&["work"], "mcp:u:read")).await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog("stale_grace: 60s")
            .backend_with("gone", &backend.url(), &["timeout: 2s"])
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let client = gateway.client();
    assert_eq!(
        client.backend_tool_names().await,
        vec!["gone_work".to_owned()]
    );
    backend.stop();
    drop(backend);
    // Let any pooled connection notice the close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = client
        .rpc("tools/call", json!({"name":"gone_work","arguments":{}}))
        .await;
    assert_eq!(r["error"]["code"], -32603, "{r}");
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("Backend gone unreachable"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answered_is_reported_but_does_not_block() {
    let port = unused_port();
    let good = TestBackend::start(BackendSpec::tools(&["fine"], "mcp:g:read")).await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .backend("good", &good.url())
            .backend_with(
                "down",
                &format!("http://127.0.0.1:{port}"),
                &["timeout: 500ms"],
            )
            .build(),
    )
    .await;
    let ready = gateway.wait_ready().await;
    let down = ready["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["id"] == "down"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(down["healthy"], false, "{ready}");
    assert_eq!(down["tools"], 0, "{ready}");
    assert!(down["lastError"].is_string(), "{ready}");
    let client = gateway.client();
    assert_eq!(
        client.backend_tool_names().await,
        vec!["good_fine".to_owned()]
    );
}

/// A principal with only `mcp:demo:read` neither sees nor can call the write tools, and a
/// hidden tool is indistinguishable from an unknown one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_filter_the_catalog_and_calls() {
    let demo = DemoBackend::start().await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .principal_scopes(&["mcp:demo:read"])
            .backend("demo", &demo.url())
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let client = gateway.client();
    let names: BTreeSet<String> = client.backend_tool_names().await.into_iter().collect();
    assert_eq!(
        names,
        [
            "demo_echo",
            "demo_get_help",
            "demo_get_time",
            "demo_list_notes"
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<BTreeSet<_>>()
    );
    let hidden = client
        .error(
            "tools/call",
            json!({"name":"demo_save_note","arguments":{"text":"x"}}),
        )
        .await;
    assert_eq!(hidden["code"], -32602);
    assert_eq!(hidden["message"], "Unknown tool: demo_save_note");
    let unknown = client
        .error("tools/call", json!({"name":"demo_nothing","arguments":{}}))
        .await;
    assert_eq!(unknown["code"], hidden["code"]);
    assert_eq!(unknown["message"], "Unknown tool: demo_nothing");

    let result = client
        .call_tool("demo_echo", json!({"message": "read is fine"}))
        .await;
    assert_eq!(
        result["structuredContent"],
        json!({"echoed": "read is fine"})
    );

    // The descriptions and schemas survive federation.
    let tools = client.list_all_tools().await;
    let get_time = tools
        .iter()
        .find(|t| t["name"] == "demo_get_time")
        .expect("get_time");
    assert_eq!(
        get_time["inputSchema"]["properties"]["timezone"]["enum"],
        json!(["utc", "local"])
    );
    let echo = tools
        .iter()
        .find(|t| t["name"] == "demo_echo")
        .expect("echo");
    assert_eq!(echo["inputSchema"]["type"], "object");
    assert_eq!(echo["inputSchema"]["required"], json!(["message"]));
    assert!(echo["description"].as_str().is_some_and(|d| !d.is_empty()));
}

/// A tool definition built by the shared helper is what the catalog shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_shorthand_becomes_a_json_schema() {
    let backend = TestBackend::start(BackendSpec {
        tools: vec![
            tool("plain", "mcp:s:read"),
            json!({"name":"typed","scope":"mcp:s:read","description":"d",
                   "params":{"q":"string","tags":"string[]?","n":"number?"}}),
        ],
        ..BackendSpec::default()
    })
    .await;
    let gateway = Gateway::start(&TestConfig::new().backend("sh", &backend.url()).build()).await;
    gateway.wait_ready().await;
    let tools = gateway.client().list_all_tools().await;
    let typed = tools
        .iter()
        .find(|t| t["name"] == "sh_typed")
        .expect("typed");
    let schema = &typed["inputSchema"];
    assert_eq!(schema["type"], "object", "{schema}");
    assert_eq!(schema["properties"]["q"]["type"], "string");
    assert_eq!(schema["properties"]["tags"]["type"], "array");
    assert_eq!(schema["properties"]["tags"]["items"]["type"], "string");
    assert_eq!(schema["properties"]["n"]["type"], "number");
    assert_eq!(schema["required"], json!(["q"]));
}

/// A backend whose host name does not resolve at start does not keep the gateway down: the
/// other backends are served, the broken one is reported, and its calls fail as unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_backend_host_does_not_stop_the_gateway() {
    let alpha = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:a:read")).await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .top("allow_insecure_backends: true")
            .backend("alpha", &alpha.url())
            .backend("ghost", "http://ghost-backend.invalid:8080")
            .build(),
    )
    .await;
    let ready = gateway.wait_ready().await;
    let ghost = gateway.backend_status("ghost").await;
    assert_eq!(ghost["healthy"], false, "{ready}");
    let error = ghost["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("resolve"), "{error}");
    assert_eq!(
        gateway.backend_status("alpha").await["healthy"],
        true,
        "{ready}"
    );
    let client = gateway.client();
    let result = client
        .call_tool("alpha_echo", json!({"message": "still here"}))
        .await;
    assert!(result.get("content").is_some(), "{result}");
}
