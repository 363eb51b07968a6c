//! Real MCP clients that nobody here wrote, driving the real gateway binary in front of the
//! conformance fixture backend (`naming: none`, `catalog.page_size: 2` so every list pages):
//! - the Python MCP SDK (`mcp`) in legacy mode (initialize, a session) and auto mode
//!   (server/discover probe, then stateless 2026-07-28 requests);
//! - the MCP Inspector v2 CLI: tools/list and tools/call, exit codes checked, `--header` used;
//! - the TypeScript MCP SDK (tests/js/client.mjs): connect over Streamable HTTP, list, call.
//!
//! Authentication: the gateway runs `auth.mode: oauth` trusting a real oidc-provider
//! (tests/oidc/as.mjs), and every client sends `Authorization: Bearer <token>` with a
//! client_credentials token that server issued for the gateway's canonical URI; without it the
//! gateway answers 401, so a client that dropped its headers on some request would fail here.
//! The Cortex dev bypass is configured too, and the inspector also lists tools with
//! `X-Dev-Mode: <token>`.
//!
//! Needs the toolbox (scripts/toolbox.sh). A missing tool fails the test naming that script.

use crate::common;

use std::time::{Duration, Instant};

use common::fixture_backend::{
    self, ERROR_TEXT, PROMPT_NAMES, RESOURCE_URIS, SIMPLE_TEXT, TOOL_NAMES,
};
use common::oidc::OAuthSetup;
use common::{interop, FixtureBackend, Gateway, McpClient, TestConfig};
use serde_json::{json, Value};

const DEV_TOKEN: &str = "interop-dev-bypass-token-0123456789";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// The scope of the clients' tokens (the fixture's entries need none; this is what a real
/// deployment's clients ask for).
const TOKEN_SCOPE: &str = "mcp:tools";

/// The fixture backend, the gateway in front of it and the authorization server it trusts,
/// with a bearer token for the clients.
struct Setup {
    backend: FixtureBackend,
    oauth: OAuthSetup,
    token: String,
}

impl Setup {
    fn gateway(&self) -> &Gateway {
        &self.oauth.gateway
    }

    /// `Authorization` header value.
    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Our own client, with the same token as the clients under test.
    fn client(&self) -> McpClient {
        self.oauth.client(&self.token)
    }

    /// `MCP_HEADERS` for the SDK scripts.
    fn headers_env(&self) -> Vec<(String, String)> {
        vec![(
            "MCP_HEADERS".into(),
            json!({ "Authorization": self.bearer() }).to_string(),
        )]
    }
}

/// What the gateway lists for `method` (every page, read with our own client): the names
/// (`field`) of the `key` entries, in order. The gateway also lists its own built-in entries,
/// so the real clients' listings are compared with this rather than with the fixture alone.
async fn gateway_view(setup: &Setup, method: &str, key: &str, field: &str) -> Vec<String> {
    let client = setup.client();
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let page = client.result(method, params).await;
        for entry in page[key].as_array().cloned().unwrap_or_default() {
            names.push(entry[field].as_str().unwrap_or("").to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return names,
        }
    }
    panic!("{method}: pagination did not end");
}

/// Asserts a client listed exactly what the gateway lists, page by page (page size 2), and
/// that the fixture's entries are among them.
fn assert_listing(
    client_names: &Value,
    pages: &Value,
    truth: &[String],
    fixture: &[&str],
    what: &str,
) {
    assert_eq!(
        strings(client_names),
        truth.iter().map(String::as_str).collect::<Vec<_>>(),
        "{what}"
    );
    for name in fixture {
        assert!(
            truth.iter().any(|t| t == name),
            "{what}: fixture entry {name} missing in {truth:?}"
        );
    }
    assert!(truth.len() > 2, "{what}: more than one page expected");
    assert_eq!(pages, &json!(pages_for(truth.len())), "{what}: pages");
}

/// The fixture backend behind a gateway in `auth.mode: oauth` (plus the dev bypass), and a
/// real token for it.
async fn start() -> Setup {
    let backend = FixtureBackend::start().await;
    let token_line = format!("  token: {DEV_TOKEN}");
    let oauth = OAuthSetup::start_with_auth(
        TestConfig::new()
            .catalog("refresh: 60s")
            .catalog("page_size: 2")
            .backend_with("fixture", &backend.url(), &["naming: none"]),
        &[],
        &["dev_bypass:", &token_line, "  scopes: [\"*\"]"],
    )
    .await;
    oauth.gateway.wait_ready().await;
    // Without credentials the gateway refuses: the clients below prove they send them.
    let reply = oauth
        .gateway
        .client()
        .post(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            &[],
        )
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    let token = oauth.token(TOKEN_SCOPE).await;
    Setup {
        backend,
        oauth,
        token,
    }
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
    let setup = start().await;
    let (backend, gateway) = (&setup.backend, setup.gateway());
    let script = interop::repo_path("tests/python/sdk_fixture.py");
    let run = interop::run_tool_async(
        python,
        vec![script.display().to_string(), gateway.mcp_url(), mode.into()],
        setup.headers_env(),
        gateway.dir().to_owned(),
        "python-sdk",
        CLIENT_TIMEOUT,
    )
    .await;
    let out = parse_output(&run, gateway);

    assert_eq!(out["mode"], mode);
    // Auto mode probes server/discover, which the gateway serves: the SDK adopts 2026-07-28 and
    // every later request is stateless (its version and capabilities in _meta, no session).
    // Legacy mode keeps the initialize handshake and its session.
    let (version, handshake) = match mode {
        "auto" => ("2026-07-28", "discover"),
        _ => ("2025-11-25", "initialize"),
    };
    assert_eq!(out["protocolVersion"], version, "{out}");
    assert_eq!(out["handshake"], handshake, "{out}");
    assert_eq!(out["serverName"], "cortex-gateway", "{out}");
    let tools = gateway_view(&setup, "tools/list", "tools", "name").await;
    assert_listing(
        &out["tools"],
        &out["toolPages"],
        &tools,
        &TOOL_NAMES,
        "tools",
    );
    let prompts = gateway_view(&setup, "prompts/list", "prompts", "name").await;
    assert_listing(
        &out["prompts"],
        &out["promptPages"],
        &prompts,
        &PROMPT_NAMES,
        "prompts",
    );
    let resources = gateway_view(&setup, "resources/list", "resources", "uri").await;
    assert_listing(
        &out["resources"],
        &out["resourcePages"],
        &resources,
        &RESOURCE_URIS,
        "resources",
    );
    assert!(
        strings(&out["templates"]).contains(&fixture_backend::TEMPLATE_URI),
        "{out}"
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

/// Auto mode probes `server/discover` at 2026-07-28 first: the gateway answers it, so the SDK
/// speaks the stateless era for the whole run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_in_auto_mode_negotiates_2026_07_28_and_works() {
    python_sdk("auto").await;
}

/// What the auto-mode probe gets: the discover result listing both eras, with its caching
/// hints; a probe without the `_meta` 2026-07-28 requires is a 400 with -32602, not a
/// silent legacy answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_discover_probe_is_answered_with_both_eras() {
    let setup = start().await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let reply = setup
        .client()
        .post(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "server/discover"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let result = &body["result"];
    assert_eq!(
        strings(&result["supportedVersions"]),
        vec!["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"],
        "{body}"
    );
    assert_eq!(result["resultType"], "complete", "{body}");
    assert!(result["ttlMs"].as_u64().is_some(), "{body}");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "cortex-gateway",
        "{body}"
    );
    assert!(
        reply.header("mcp-session-id").is_none(),
        "no session in 2026-07-28"
    );

    let reply = setup
        .client()
        .post(
            &json!({"jsonrpc": "2.0", "id": 2, "method": "server/discover", "params": {}}),
            &[("mcp-protocol-version", "2026-07-28")],
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], -32602, "{}", reply.text());
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
async fn the_mcp_inspector_cli_lists_and_calls_tools_with_a_bearer_token_header() {
    let started = Instant::now();
    let setup = start().await;
    let (backend, gateway) = (&setup.backend, setup.gateway());
    let header = format!("Authorization: {}", setup.bearer());
    let dev_header = format!("X-Dev-Mode: {DEV_TOKEN}");

    let list = inspector(
        gateway,
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
    let truth = gateway_view(&setup, "tools/list", "tools", "name").await;
    assert_eq!(names, truth, "every page, in order: {listed}");
    for name in TOOL_NAMES {
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }

    let call = inspector(
        gateway,
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
        gateway,
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
        gateway,
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
        gateway,
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

    // A token the gateway does not accept (not signed by its issuer): exit 3 as well.
    let forged = format!("Authorization: Bearer {}x", setup.token);
    let rejected = inspector(
        gateway,
        &[
            "--method",
            "tools/list",
            "--stored-auth-only",
            "--header",
            &forged,
            "--format",
            "json",
        ],
        "inspector-bad-token",
    )
    .await;
    assert_eq!(
        rejected.code(),
        3,
        "invalid token → exit 3\n{}",
        rejected.describe()
    );

    // The Cortex dev bypass header works through the inspector too.
    let dev = inspector(
        gateway,
        &[
            "--method",
            "tools/list",
            "--header",
            &dev_header,
            "--format",
            "json",
        ],
        "inspector-dev-bypass",
    )
    .await;
    assert_eq!(dev.code(), 0, "{}", dev.describe());
    let dev_json = inspector_json(&dev);
    let dev_tools = dev_json
        .pointer("/result/tools")
        .or_else(|| dev_json.get("tools"));
    assert!(
        dev_tools
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|t| t["name"] == "echo")),
        "{dev_json}"
    );

    assert_eq!(backend.call_count("echo"), 1, "{:?}", backend.calls());
    assert_eq!(backend.call_count("test_simple_text"), 1);
    assert_eq!(backend.call_count("test_error_handling"), 1);
    println!("mcp inspector cli: {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_connects_lists_and_calls() {
    let started = Instant::now();
    let sdk = interop::ts_sdk_dir();
    let setup = start().await;
    let (backend, gateway) = (&setup.backend, setup.gateway());
    let mut env = setup.headers_env();
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
    let out = parse_output(&run, gateway);

    assert_eq!(out["protocolVersion"], "2025-11-25", "{out}");
    assert!(
        out["sessionId"].as_str().is_some_and(|s| !s.is_empty()),
        "{out}"
    );
    assert_eq!(out["serverName"], "cortex-gateway", "{out}");
    let tools = gateway_view(&setup, "tools/list", "tools", "name").await;
    assert_listing(&out["tools"], &out["pages"], &tools, &TOOL_NAMES, "tools");
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

/// The TypeScript v2 client (`@modelcontextprotocol/client`, the version the pinned inspector
/// brings) in its dual-era `auto` mode: it probes `server/discover`, adopts 2026-07-28 and
/// never opens a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_v2_client_speaks_2026_07_28_statelessly() {
    let started = Instant::now();
    let dir = interop::toolbox_dir().join("inspector/node_modules/@modelcontextprotocol/client");
    assert!(
        dir.join("dist/index.mjs").exists(),
        "@modelcontextprotocol/client is not installed ({} is missing): run scripts/toolbox.sh",
        dir.display()
    );
    let setup = start().await;
    let (backend, gateway) = (&setup.backend, setup.gateway());
    let mut env = setup.headers_env();
    env.push(("CORTEX_TS_CLIENT_DIR".into(), dir.display().to_string()));
    let run = interop::run_tool_async(
        interop::node(),
        vec![
            interop::repo_path("tests/js/client_modern.mjs")
                .display()
                .to_string(),
            gateway.mcp_url(),
        ],
        env,
        gateway.dir().to_owned(),
        "ts-client-modern",
        CLIENT_TIMEOUT,
    )
    .await;
    let out = parse_output(&run, gateway);

    assert_eq!(out["protocolVersion"], "2026-07-28", "{out}");
    assert_eq!(
        out["sessionId"],
        Value::Null,
        "no session in 2026-07-28: {out}"
    );
    // The v2 client follows nextCursor itself (one listTools call returns every page).
    let tools = gateway_view(&setup, "tools/list", "tools", "name").await;
    assert!(tools.len() > 2, "page_size 2 pages the list");
    assert_eq!(
        strings(&out["tools"]),
        tools.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(
        out["echo"]["structuredContent"],
        json!({"echoed": "hello from the ts v2 client"}),
        "{out}"
    );
    assert_eq!(
        out["simple"]["content"],
        json!([{"type": "text", "text": SIMPLE_TEXT}])
    );
    assert_eq!(
        out["text"]["contents"][0]["text"],
        fixture_backend::STATIC_TEXT,
        "{out}"
    );
    assert_eq!(
        out["prompt"]["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='a', arg2='b'",
        "{out}"
    );
    assert_eq!(backend.call_count("echo"), 1, "{:?}", backend.calls());
    assert_eq!(backend.call_count("test_simple_text"), 1);
    println!(
        "typescript v2 client (2026-07-28): {:.1?}",
        started.elapsed()
    );
}

/// The MCP Inspector v2 CLI with `--protocol-era modern`: lists and calls over 2026-07-28.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_inspector_cli_lists_and_calls_in_the_modern_era() {
    let setup = start().await;
    let (backend, gateway) = (&setup.backend, setup.gateway());
    let header = format!("Authorization: {}", setup.bearer());
    let list = inspector(
        gateway,
        &[
            "--protocol-era",
            "modern",
            "--method",
            "tools/list",
            "--header",
            &header,
            "--format",
            "json",
        ],
        "inspector-modern-list",
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
    let truth = gateway_view(&setup, "tools/list", "tools", "name").await;
    assert_eq!(names, truth, "every page, in order: {listed}");

    let call = inspector(
        gateway,
        &[
            "--protocol-era",
            "modern",
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "message=hello in 2026",
            "--header",
            &header,
            "--format",
            "json",
        ],
        "inspector-modern-call",
    )
    .await;
    assert_eq!(call.code(), 0, "{}\n{}", call.describe(), gateway.logs());
    let called = inspector_json(&call);
    let result = called.get("result").unwrap_or(&called);
    assert_eq!(
        result["structuredContent"],
        json!({"echoed": "hello in 2026"}),
        "{called}"
    );
    assert_eq!(backend.call_count("echo"), 1, "{:?}", backend.calls());
    // The inspector shows results without resultType: the audit trail says which era the
    // requests spoke. Every request ran at 2026-07-28; none was an initialize.
    let lines = crate::common::eventually(
        Duration::from_secs(10),
        "audit lines of the inspector's tools/call",
        || async {
            let lines = crate::audit_support::audit_lines(gateway);
            lines
                .iter()
                .any(|l| l["method"] == "tools/call")
                .then_some(lines)
        },
    )
    .await;
    assert!(
        lines.iter().all(|l| l["method"] != "initialize"),
        "{lines:#?}"
    );
    // (The test's own reference listing, gateway_view, is a plain legacy tools/list.)
    let calls: Vec<&Value> = lines
        .iter()
        .filter(|l| l["method"] == "tools/call")
        .collect();
    assert!(!calls.is_empty());
    for l in calls {
        assert_eq!(l["protocol_version"], "2026-07-28", "{l}");
        assert_eq!(l["session_id"], Value::Null, "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["method"] == "tools/list" && l["protocol_version"] == "2026-07-28"),
        "the inspector's listing ran at 2026-07-28: {lines:#?}"
    );
}
