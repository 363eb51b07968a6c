//! The MCP Streamable HTTP endpoint: routes, version negotiation, the MCP-Protocol-Version
//! header, JSON-RPC framing (parse errors, shapes, batches, notifications), body limits,
//! Origin/Host checks, CORS preflight and the method table.

use crate::common;

use common::{DemoBackend, Gateway, McpClient, TestConfig, VERSIONS};
use serde_json::{json, Value};

/// A gateway in front of the demo backend (auth none, all scopes).
async fn demo_gateway(config: TestConfig) -> (Gateway, DemoBackend) {
    let demo = DemoBackend::start().await;
    let gateway = Gateway::start(&config.backend("demo", &demo.url()).build()).await;
    gateway.wait_ready().await;
    (gateway, demo)
}

fn assert_jsonrpc_error(body: &Value, code: i64) {
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_unknown_paths() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let (status, body) = gateway.get_json("/healthz").await;
    assert_eq!((status, body), (200, json!({"status":"ok"})));

    let (status, body) = gateway.readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    let demo = &body["backends"][0];
    assert_eq!(demo["id"], "demo");
    assert_eq!(demo["healthy"], true);
    assert_eq!(demo["stale"], false);
    assert_eq!(demo["tools"], 6);
    assert!(demo["lastError"].is_null(), "{body}");

    let (status, body) = gateway.get_json("/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_negotiates_each_supported_version() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    for version in VERSIONS {
        let client = gateway.client();
        let reply = client.post(&client.initialize_body(version), &[]).await;
        assert_eq!(reply.status, 200, "{version}: {}", reply.text());
        assert!(
            reply
                .header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "{version}: {:?}",
            reply.headers
        );
        let session = reply.header("mcp-session-id").unwrap_or_default();
        assert!(!session.is_empty(), "{version}: Mcp-Session-Id issued");
        assert!(
            session.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "session id is visible ASCII: {session}"
        );
        let result = &reply.json()["result"];
        assert_eq!(result["protocolVersion"], version);
        let caps = &result["capabilities"];
        assert_eq!(caps["tools"]["listChanged"], true, "{caps}");
        assert_eq!(caps["resources"]["listChanged"], true, "{caps}");
        assert_eq!(caps["resources"]["subscribe"], false, "{caps}");
        assert_eq!(caps["prompts"]["listChanged"], true, "{caps}");
        assert!(caps["completions"].is_object(), "{caps}");
        assert!(caps["logging"].is_object(), "{caps}");
        assert_eq!(result["serverInfo"]["name"], "cortex-gateway");
        assert!(result["serverInfo"]["version"].is_string());
        let instructions = result["instructions"].as_str().unwrap_or_default();
        assert!(
            instructions.contains("demo"),
            "instructions name the live backends: {instructions}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_with_an_unknown_version_gets_the_latest() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let mut client = gateway.client();
    let result = client.initialize("1999-01-01").await;
    assert_eq!(result["protocolVersion"], "2025-11-25");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_is_never_refused_for_the_version_header() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let client = gateway.client();
    for header in ["bogus", "2024-11-05", "2025-03-26"] {
        let reply = client
            .post(
                &client.initialize_body("2025-06-18"),
                &[("mcp-protocol-version", header)],
            )
            .await;
        assert_eq!(reply.status, 200, "header {header}: {}", reply.text());
        assert_eq!(reply.json()["result"]["protocolVersion"], "2025-06-18");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_version_header_rules() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let client = gateway.client();
    let list = client.request_body("tools/list", json!({}));

    // Absent → 2025-03-26 assumed; every supported version is accepted.
    let reply = client.post(&list, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for version in VERSIONS {
        let reply = client
            .post(&list, &[("mcp-protocol-version", version)])
            .await;
        assert_eq!(reply.status, 200, "{version}: {}", reply.text());
        assert!(reply.json()["result"]["tools"].is_array());
    }

    // Unsupported → 400 naming the supported ones.
    for bad in ["2024-11-05", "garbage"] {
        let reply = client.post(&list, &[("mcp-protocol-version", bad)]).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
        let body = reply.json();
        assert_jsonrpc_error(&body, -32600);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        for version in VERSIONS {
            assert!(message.contains(version), "{message}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_notifications_and_responses() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let client = gateway.client();
    assert_eq!(client.result("ping", json!({})).await, json!({}));
    // Params may be absent on ping.
    let reply = client
        .post(&json!({"jsonrpc":"2.0","id":"p-1","method":"ping"}), &[])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"jsonrpc":"2.0","id":"p-1","result":{}})
    );

    client.notify("notifications/initialized", json!({})).await;
    client
        .notify("notifications/cancelled", json!({"requestId": 7}))
        .await;

    // A JSON-RPC response sent by the client (e.g. to a server request) → 202.
    for message in [
        json!({"jsonrpc":"2.0","id":5,"result":{}}),
        json!({"jsonrpc":"2.0","id":6,"error":{"code":-1,"message":"no"}}),
    ] {
        let reply = client.post(&message, &[]).await;
        assert_eq!(reply.status, 202, "{message}: {}", reply.text());
        assert!(reply.body.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_parse_error() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let client = gateway.client();
    for body in [&b"{\"jsonrpc\":"[..], b"not json at all", b"", b"\xff\xfe"] {
        let reply = client.post_raw(body.to_vec(), &[]).await;
        assert_eq!(reply.status, 400, "{body:?}: {}", reply.text());
        let json = reply.json();
        assert_jsonrpc_error(&json, -32700);
        assert!(json["id"].is_null(), "{json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_jsonrpc_shapes_are_invalid_requests() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let client = gateway.client();
    for body in [
        json!({"foo": 1}),
        json!({"jsonrpc":"1.0","id":1,"method":"ping"}),
        json!({"jsonrpc":"2.0","id":1,"method":5}),
        json!({"jsonrpc":"2.0","id":{"x":1},"method":"ping"}),
        json!("just a string"),
        json!(42),
    ] {
        let reply = client.post(&body, &[]).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert_jsonrpc_error(&reply.json(), -32600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_are_not_found() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let client = gateway.client();
    let error = client.error("foo/bar", json!({})).await;
    assert_eq!(error["code"], -32601);
    assert_eq!(error["message"], "Method not found: foo/bar");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_per_protocol_version() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let client = gateway.client();
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"ping"},
        {"jsonrpc":"2.0","method":"notifications/initialized"},
        {"jsonrpc":"2.0","id":"two","method":"tools/list","params":{}}
    ]);

    // 2025-06-18 and later: rejected.
    for version in ["2025-06-18", "2025-11-25"] {
        let reply = client
            .post(&batch, &[("mcp-protocol-version", version)])
            .await;
        assert_eq!(reply.status, 400, "{version}: {}", reply.text());
        let body = reply.json();
        assert_jsonrpc_error(&body, -32600);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("batches are not supported in protocol version")
                && message.contains(version),
            "{message}"
        );
    }

    // 2025-03-26 (explicit or by absence of the header): processed.
    for headers in [vec![("mcp-protocol-version", "2025-03-26")], vec![]] {
        let reply = client.post(&batch, &headers).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let responses = reply.json();
        let responses = responses.as_array().expect("array of responses");
        assert_eq!(
            responses.len(),
            2,
            "one response per request: {responses:?}"
        );
        let ping = responses.iter().find(|r| r["id"] == 1).expect("ping");
        assert_eq!(ping["result"], json!({}));
        let list = responses.iter().find(|r| r["id"] == "two").expect("list");
        assert!(list["result"]["tools"].is_array());
    }

    // Only notifications/responses → 202.
    let reply = client
        .post(
            &json!([
                {"jsonrpc":"2.0","method":"notifications/initialized"},
                {"jsonrpc":"2.0","id":9,"result":{}}
            ]),
            &[],
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(reply.body.is_empty());

    // Empty and oversized batches are invalid.
    let reply = client.post(&json!([]), &[]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_jsonrpc_error(&reply.json(), -32600);
    let big: Vec<Value> = (0..65)
        .map(|i| json!({"jsonrpc":"2.0","id":i,"method":"ping"}))
        .collect();
    let reply = client.post(&Value::Array(big), &[]).await;
    assert_eq!(reply.status, 400, "65 > 64: {}", reply.text());
    assert_jsonrpc_error(&reply.json(), -32600);
    let ok: Vec<Value> = (0..64)
        .map(|i| json!({"jsonrpc":"2.0","id":i,"method":"ping"}))
        .collect();
    let reply = client.post(&Value::Array(ok), &[]).await;
    assert_eq!(reply.status, 200, "64 is allowed: {}", reply.text());
    assert_eq!(reply.json().as_array().map(Vec::len), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_max_body_bytes_are_413() {
    let (gateway, _demo) = demo_gateway(TestConfig::new().server("max_body_bytes: 2048")).await;
    let client = gateway.client();
    let big = json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"demo_echo","arguments":{"message":"x".repeat(4000)}}});
    let reply = client.post(&big, &[]).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    let body = reply.json();
    assert_jsonrpc_error(&body, -32600);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("2048") || m.contains("2KiB")),
        "the message names the limit: {body}"
    );

    // Under the limit still works.
    let echoed = client
        .call_tool("demo_echo", json!({"message": "x".repeat(1500)}))
        .await;
    assert_eq!(
        echoed["structuredContent"]["echoed"].as_str().map(str::len),
        Some(1500)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_set_level_validates_the_level() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let client = gateway.client();
    for level in [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ] {
        assert_eq!(
            client
                .result("logging/setLevel", json!({ "level": level }))
                .await,
            json!({})
        );
    }
    for bad in [json!({"level":"verbose"}), json!({}), json!({"level": 3})] {
        let error = client.error("logging/setLevel", bad.clone()).await;
        assert_eq!(error["code"], -32602, "{bad}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_call_validates_its_params() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let client = gateway.client();
    for (params, what) in [
        (json!({}), "missing name"),
        (json!({"name": 5}), "name not a string"),
        (
            json!({"name":"demo_echo","arguments":"hello"}),
            "arguments not an object",
        ),
        (
            json!({"name":"demo_echo","arguments":[1]}),
            "arguments an array",
        ),
    ] {
        let error = client.error("tools/call", params).await;
        assert_eq!(error["code"], -32602, "{what}: {error}");
    }
    let error = client
        .error("tools/call", json!({"name":"no_such_tool","arguments":{}}))
        .await;
    assert_eq!(error["code"], -32602);
    assert_eq!(error["message"], "Unknown tool: no_such_tool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_resources_and_completion() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let client = gateway.client();

    let prompts = client.result("prompts/list", json!({})).await;
    let prompt = prompts["prompts"]
        .as_array()
        .and_then(|p| {
            p.iter().find(|p| {
                p["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("summarize_notes"))
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("summarize_notes listed: {prompts}"));
    assert!(
        prompt["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("demo")),
        "prompts are namespaced by backend: {prompt}"
    );

    client
        .call_tool("demo_save_note", json!({"text": "remember the milk"}))
        .await;
    let got = client
        .result(
            "prompts/get",
            json!({"name": prompt["name"], "arguments": {"style": "bullets"}}),
        )
        .await;
    let text = got["messages"][0]["content"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("remember the milk"), "{got}");
    let error = client
        .error("prompts/get", json!({"name": "demo_nope"}))
        .await;
    assert_eq!(error["code"], -32602, "{error}");

    let templates = client.result("resources/templates/list", json!({})).await;
    let template = templates["resourceTemplates"]
        .as_array()
        .and_then(|t| {
            t.iter().find(|t| {
                t["uriTemplate"]
                    .as_str()
                    .is_some_and(|u| u.contains("notes/{id}"))
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("demo notes template listed: {templates}"));
    let uri = template["uriTemplate"]
        .as_str()
        .unwrap_or_default()
        .replace("{id}", "n1");
    let read = client.result("resources/read", json!({ "uri": uri })).await;
    assert_eq!(read["contents"][0]["text"], "remember the milk", "{read}");

    let resources = client.result("resources/list", json!({})).await;
    assert!(resources["resources"].is_array(), "{resources}");

    let completion = client
        .result(
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": prompt["name"]},
                   "argument": {"name": "style", "value": "b"}}),
        )
        .await;
    assert!(
        completion["completion"]["values"].is_array(),
        "{completion}"
    );
}

/// Origin rules: absent → allowed; exact and `*.suffix` allowlist entries; anything else →
/// 403 with a JSON-RPC body; localhost allowed in auth mode none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_rules() {
    let (gateway, _demo) = demo_gateway(
        TestConfig::new()
            .server("allowed_origins: [\"https://app.example.com\", \"*.example.org\"]"),
    )
    .await;
    let client = gateway.client();
    let ping = client.request_body("ping", json!({}));
    for origin in [
        None,
        Some("https://app.example.com"),
        Some("https://team.example.org"),
        Some("http://localhost:5173"),
        Some("http://127.0.0.1:8080"),
    ] {
        let headers: Vec<(&str, &str)> = origin.iter().map(|o| ("origin", *o)).collect();
        let reply = client.post(&ping, &headers).await;
        assert_eq!(reply.status, 200, "{origin:?}: {}", reply.text());
    }
    for origin in [
        "https://evil.example.com",
        "https://app.example.com.evil.net",
        "null",
    ] {
        let reply = client.post(&ping, &[("origin", origin)]).await;
        assert_eq!(reply.status, 403, "{origin}: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["jsonrpc"], "2.0");
        assert!(body["id"].is_null());
        assert_eq!(body["error"]["code"], -32000);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("Forbidden: origin") && message.contains(origin),
            "{message}"
        );
    }
}

/// In OAuth mode without a dev bypass, a localhost Origin is refused (before authentication).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_origins_are_refused_outside_dev_modes() {
    let gateway = Gateway::start(
        &TestConfig::new()
            .auth(&[
                "mode: oauth",
                "oauth:",
                "  issuer: https://auth.example.com",
            ])
            .build(),
    )
    .await;
    let client = gateway.client();
    let ping = client.request_body("ping", json!({}));
    let reply = client
        .post(&ping, &[("origin", "http://localhost:5173")])
        .await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], -32000);
    // Without Origin the request reaches authentication.
    let reply = client.post(&ping, &[]).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
}

/// DNS-rebinding protection on loopback listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rules_on_loopback() {
    let (gateway, _demo) =
        demo_gateway(TestConfig::new().server("allowed_hosts: [\"gw.internal\"]")).await;
    let client = gateway.client();
    let ping = client.request_body("ping", json!({}));
    let own = format!("127.0.0.1:{}", gateway.port());
    for host in [
        own.as_str(),
        "localhost",
        "localhost:9999",
        "127.0.0.1",
        "[::1]:1234",
        "gw.internal",
    ] {
        let reply = client.post(&ping, &[("host", host)]).await;
        assert_eq!(reply.status, 200, "Host {host}: {}", reply.text());
    }
    for host in [
        "evil.example.com",
        "evil.example.com:80",
        "127.0.0.1.nip.io",
    ] {
        let reply = client.post(&ping, &[("host", host)]).await;
        assert_eq!(reply.status, 403, "Host {host}: {}", reply.text());
        assert_eq!(reply.json()["error"], "forbidden_host");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight() {
    let (gateway, _demo) =
        demo_gateway(TestConfig::new().server("allowed_origins: [\"https://app.example.com\"]"))
            .await;
    let client = gateway.client();
    let reply = client
        .request(
            "OPTIONS",
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type, mcp-session-id",
                ),
            ],
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let methods = reply
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_ascii_uppercase();
    for method in ["GET", "POST", "DELETE", "OPTIONS"] {
        assert!(methods.contains(method), "{methods}");
    }
    let allowed = reply
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for header in [
        "content-type",
        "authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
        "x-dev-mode",
        "x-cortex-backends",
        "x-cortex-tool-mode",
    ] {
        assert!(allowed.contains(header), "{header} in {allowed}");
    }
    let exposed = reply
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for header in ["mcp-session-id", "www-authenticate"] {
        assert!(exposed.contains(header), "{header} in {exposed}");
    }

    let reply = client
        .request(
            "OPTIONS",
            &[
                ("origin", "https://evil.example.com"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.header("access-control-allow-origin").is_none());
}

/// The MCP path answers only its methods; a stateless POST works with no session at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_requests_need_no_initialize() {
    let (gateway, _demo) = demo_gateway(TestConfig::new()).await;
    let client = McpClient::new(&gateway.mcp_url());
    let names = client.tool_names().await;
    for name in [
        "demo_get_help",
        "demo_echo",
        "demo_get_time",
        "demo_list_notes",
        "demo_save_note",
        "demo_delete_note",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    // Accept is not enforced and Content-Type is lenient.
    let reply = client
        .post(
            &client.request_body("ping", json!({})),
            &[("accept", ""), ("content-type", "")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}
