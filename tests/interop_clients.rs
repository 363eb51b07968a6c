//! Real MCP clients that nobody here wrote, driving the real gateway binary in front of the
//! conformance fixture backend (`naming: none`, `catalog.page_size: 2` so every list pages):
//! - the Python MCP SDK (`mcp`) in legacy mode (initialize) and auto mode (server/discover
//!   probe, then fallback to initialize);
//! - the MCP Inspector v2 CLI: tools/list and tools/call, exit codes checked, `--header` used;
//! - the TypeScript MCP SDK (tests/js/client.mjs): connect over Streamable HTTP, list, call.
//!
//! Authentication: the gateway runs `auth.mode: oauth` with the Cortex dev bypass, and every
//! client sends `X-Dev-Mode: <token>` as a custom header; without it the gateway answers 401,
//! so a client that dropped its headers on some request would fail here. Bearer tokens from
//! oidc-provider replace the dev bypass once the gateway validates OAuth tokens (see
//! docs/compatibility.md).
//!
//! Needs the toolbox (scripts/toolbox.sh). A missing tool fails the test naming that script.

mod common;

use std::time::{Duration, Instant};

use common::fixture_backend::{
    self, ERROR_TEXT, PROMPT_NAMES, RESOURCE_URIS, SIMPLE_TEXT, TOOL_NAMES,
};
use common::{interop, FixtureBackend, Gateway, TestConfig};
use serde_json::{json, Value};

const DEV_TOKEN: &str = "interop-dev-bypass-token-0123456789";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The fixture backend behind a gateway that only lets dev-bypass requests in.
async fn start() -> (FixtureBackend, Gateway) {
    let backend = FixtureBackend::start().await;
    let token_line = format!("  token: {DEV_TOKEN}");
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog("refresh: 60s")
            .catalog("page_size: 2")
            .auth(&[
                "mode: oauth",
                "dev_bypass:",
                &token_line,
                "  scopes: [\"*\"]",
            ])
            .backend_with("fixture", &backend.url(), &["naming: none"])
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    // Without the header the gateway refuses: the clients below prove they send it.
    let reply = gateway
        .client()
        .post(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            &[],
        )
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    (backend, gateway)
}

fn headers_env() -> Vec<(String, String)> {
    vec![(
        "MCP_HEADERS".into(),
        json!({ "X-Dev-Mode": DEV_TOKEN }).to_string(),
    )]
}

fn parse_output(run: &interop::ToolRun, gateway: &Gateway) -> Value {
    assert_eq!(run.code(), 0, "{}\n{}", run.describe(), gateway.logs());
    let last = run.stdout.lines().last().unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last stdout line is not JSON ({e})\n{}", run.describe()))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn pages_for(n: usize) -> u64 {
    n.div_ceil(2) as u64
}

async fn python_sdk(mode: &str) {
    let started = Instant::now();
    let python = interop::python();
    let (backend, gateway) = start().await;
    let script = interop::repo_path("tests/python/sdk_fixture.py");
    let run = interop::run_tool_async(
        python,
        vec![script.display().to_string(), gateway.mcp_url(), mode.into()],
        headers_env(),
        gateway.dir().to_owned(),
        "python-sdk",
        CLIENT_TIMEOUT,
    )
    .await;
    let out = parse_output(&run, &gateway);

    assert_eq!(out["mode"], mode);
    assert_eq!(out["protocolVersion"], "2025-11-25", "{out}");
    assert_eq!(out["serverName"], "cortex-gateway", "{out}");
    assert_eq!(strings(&out["tools"]), TOOL_NAMES.to_vec(), "{out}");
    assert_eq!(out["toolPages"], pages_for(TOOL_NAMES.len()), "{out}");
    assert_eq!(strings(&out["prompts"]), PROMPT_NAMES.to_vec(), "{out}");
    assert_eq!(out["promptPages"], pages_for(PROMPT_NAMES.len()), "{out}");
    assert_eq!(strings(&out["resources"]), RESOURCE_URIS.to_vec(), "{out}");
    assert_eq!(out["resourcePages"], 1, "{out}");
    assert_eq!(
        strings(&out["templates"]),
        vec![fixture_backend::TEMPLATE_URI]
    );

    assert_eq!(
        out["echo"]["structuredContent"],
        json!({"echoed": "hello from the python sdk"})
    );
    assert_ne!(out["echo"]["isError"], true, "{out}");
    assert_eq!(
        out["image"]["content"],
        json!([{"type": "image", "data": fixture_backend::PNG_BASE64, "mimeType": "image/png"}])
    );
    assert_eq!(out["error"]["isError"], true, "{out}");
    assert_eq!(out["error"]["content"][0]["text"], ERROR_TEXT);
    assert_eq!(
        out["staticText"]["contents"],
        json!([{"uri": "test://static-text", "mimeType": "text/plain", "text": fixture_backend::STATIC_TEXT}])
    );
    let templated = &out["templated"]["contents"][0];
    assert_eq!(templated["uri"], "test://template/42/data", "{out}");
    let data: Value =
        serde_json::from_str(templated["text"].as_str().unwrap_or("")).unwrap_or_default();
    assert_eq!(
        data,
        json!({"id": "42", "templateTest": true, "data": "Data for ID: 42"})
    );
    assert_eq!(
        out["prompt"]["messages"],
        json!([{"role": "user", "content": {"type": "text", "text": "Prompt with arguments: arg1='hello', arg2='world'"}}])
    );
    assert_eq!(
        strings(&out["completion"]["completion"]["values"]),
        vec!["paris", "parma"]
    );

    // Everything reached the backend through the gateway.
    for method in [
        "echo",
        "test_image_content",
        "test_error_handling",
        "get_prompt",
        "complete",
    ] {
        assert_eq!(
            backend.call_count(method),
            1,
            "{method}: {:?}",
            backend.calls()
        );
    }
    assert_eq!(
        backend.call_count("read_resource"),
        2,
        "{:?}",
        backend.calls()
    );
    println!("python sdk ({mode} mode): {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_in_legacy_mode_lists_calls_reads_and_gets_prompts() {
    python_sdk("legacy").await;
}

/// Auto mode probes `server/discover` at the 2026 protocol version first: the gateway refuses
/// that version (400 listing the supported ones) and the SDK falls back to `initialize`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_in_auto_mode_falls_back_to_initialize_and_works() {
    python_sdk("auto").await;
}

/// Runs `mcp-inspector --cli <url> --transport http …` with Node 22.
async fn inspector(gateway: &Gateway, args: &[&str], label: &'static str) -> interop::ToolRun {
    let mut full = vec![
        interop::inspector_cli().display().to_string(),
        "--cli".into(),
        gateway.mcp_url(),
        "--transport".into(),
        "http".into(),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    interop::run_tool_async(
        interop::node(),
        full,
        vec![
            // No OS keychain on CI machines; the inspector suggests this itself.
            ("MCP_INSPECTOR_SECRET_STORE".into(), "memory".into()),
            ("HOME".into(), gateway.dir().display().to_string()),
        ],
        gateway.dir().to_owned(),
        label,
        CLIENT_TIMEOUT,
    )
    .await
}

/// The JSON document the inspector printed (`--format json`).
fn inspector_json(run: &interop::ToolRun) -> Value {
    let start = run.stdout.find('{').unwrap_or(0);
    serde_json::from_str(run.stdout[start..].trim())
        .unwrap_or_else(|e| panic!("inspector output is not JSON ({e})\n{}", run.describe()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_inspector_cli_lists_and_calls_tools_with_a_custom_header() {
    let started = Instant::now();
    let (backend, gateway) = start().await;
    let header = format!("X-Dev-Mode: {DEV_TOKEN}");

    let list = inspector(
        &gateway,
        &[
            "--method",
            "tools/list",
            "--header",
            &header,
            "--format",
            "json",
        ],
        "inspector-list",
    )
    .await;
    assert_eq!(list.code(), 0, "{}\n{}", list.describe(), gateway.logs());
    let listed = inspector_json(&list);
    let tools = listed
        .pointer("/result/tools")
        .or_else(|| listed.get("tools"))
        .unwrap_or_else(|| panic!("no tools in {listed}"));
    let names: Vec<&str> = tools
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, TOOL_NAMES.to_vec(), "every page, in order: {listed}");

    let call = inspector(
        &gateway,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "message=hello from the inspector",
            "--header",
            &header,
            "--format",
            "json",
        ],
        "inspector-call",
    )
    .await;
    assert_eq!(call.code(), 0, "{}\n{}", call.describe(), gateway.logs());
    let called = inspector_json(&call);
    let result = called.get("result").unwrap_or(&called);
    assert_eq!(
        result["structuredContent"],
        json!({"echoed": "hello from the inspector"}),
        "{called}"
    );

    let rich = inspector(
        &gateway,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "test_simple_text",
            "--header",
            &header,
            "--format",
            "json",
        ],
        "inspector-rich",
    )
    .await;
    assert_eq!(rich.code(), 0, "{}", rich.describe());
    let rich_json = inspector_json(&rich);
    let result = rich_json.get("result").unwrap_or(&rich_json);
    assert_eq!(
        result["content"],
        json!([{"type": "text", "text": SIMPLE_TEXT}])
    );

    // A tool that reports isError: exit code 5 (tool error).
    let failing = inspector(
        &gateway,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "test_error_handling",
            "--header",
            &header,
            "--format",
            "json",
        ],
        "inspector-tool-error",
    )
    .await;
    assert_eq!(
        failing.code(),
        5,
        "isError → exit 5\n{}",
        failing.describe()
    );

    // Without the header the gateway answers 401: exit code 3 (auth required), no browser flow.
    let refused = inspector(
        &gateway,
        &[
            "--method",
            "tools/list",
            "--stored-auth-only",
            "--format",
            "json",
        ],
        "inspector-no-auth",
    )
    .await;
    assert_eq!(refused.code(), 3, "401 → exit 3\n{}", refused.describe());

    assert_eq!(backend.call_count("echo"), 1, "{:?}", backend.calls());
    assert_eq!(backend.call_count("test_simple_text"), 1);
    assert_eq!(backend.call_count("test_error_handling"), 1);
    println!("mcp inspector cli: {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_connects_lists_and_calls() {
    let started = Instant::now();
    let sdk = interop::ts_sdk_dir();
    let (backend, gateway) = start().await;
    let mut env = headers_env();
    env.push(("CORTEX_TS_SDK_DIR".into(), sdk.display().to_string()));
    let run = interop::run_tool_async(
        interop::node(),
        vec![
            interop::repo_path("tests/js/client.mjs")
                .display()
                .to_string(),
            gateway.mcp_url(),
        ],
        env,
        gateway.dir().to_owned(),
        "ts-sdk",
        CLIENT_TIMEOUT,
    )
    .await;
    let out = parse_output(&run, &gateway);

    assert_eq!(out["protocolVersion"], "2025-11-25", "{out}");
    assert!(
        out["sessionId"].as_str().is_some_and(|s| !s.is_empty()),
        "{out}"
    );
    assert_eq!(out["serverName"], "cortex-gateway", "{out}");
    assert_eq!(strings(&out["tools"]), TOOL_NAMES.to_vec(), "{out}");
    assert_eq!(out["pages"], pages_for(TOOL_NAMES.len()), "{out}");
    assert_eq!(out["echo"]["isError"], false, "{out}");
    assert_eq!(
        out["echo"]["structured"],
        json!({"echoed": "hello from the ts sdk"})
    );
    assert_eq!(
        out["simple"]["content"],
        json!([{"type": "text", "text": SIMPLE_TEXT}])
    );
    assert_eq!(backend.call_count("echo"), 1, "{:?}", backend.calls());
    assert_eq!(backend.call_count("test_simple_text"), 1);
    println!("typescript sdk: {:.1?}", started.elapsed());
}
