//! A gateway configured only by a Cortex env file (no YAML), as a Cortex deployment moves
//! over: the seeds' curl quick start with the dev bypass, and 401 without it.

use crate::common;

use std::collections::BTreeSet;

use common::{BackendSpec, DemoBackend, Gateway, McpClient, TestBackend};
use serde_json::json;

/// The Cortex env file: a placeholder issuer plus the dev bypass, two backends.
fn env_file(demo: &DemoBackend, probe: &TestBackend) -> String {
    format!(
        "# Cortex .env, unchanged from a Cortex deployment\n\
         OAUTH_ISSUER=https://auth.example.com\n\
         CORTEX_BACKENDS=demo,probe\n\
         CORTEX_BACKEND_DEMO_URL={}\n\
         CORTEX_BACKEND_PROBE_URL={}\n\
         CORTEX_TECHNICAL_TOKEN=tech-secret\n\
         CORTEX_DEV_BYPASS_TOKEN=dev-secret\n\
         CORTEX_DEV_BYPASS_SCOPES=mcp:demo:read\n\
         HOSTNAME=127.0.0.1\n\
         PORT={{PORT}}\n",
        demo.url(),
        probe.url()
    )
}

fn dev_client(gateway: &Gateway) -> McpClient {
    McpClient::new(&gateway.mcp_url()).with_header("x-dev-mode", "dev-secret")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_quick_start_works_with_the_dev_bypass() {
    let demo = DemoBackend::start().await;
    let probe = TestBackend::start(BackendSpec::tools(&["inspect"], "mcp:demo:read")).await;
    let gateway = Gateway::start_env_file(&env_file(&demo, &probe)).await;
    gateway.wait_ready().await;
    let client = dev_client(&gateway);

    // curl -X POST …/mcp -H 'X-Dev-Mode: dev-secret' -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
    // (no initialize, no session, no Accept header).
    let reply = client
        .post(
            &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
            &[("accept", "")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let names: BTreeSet<String> = common::tool_names(&reply.json()["result"])
        .into_iter()
        .collect();
    for name in [
        "demo_echo",
        "demo_get_help",
        "demo_get_time",
        "demo_list_notes",
        "probe_inspect",
    ] {
        assert!(names.contains(name), "{name} in {names:?}");
    }
    for hidden in ["demo_save_note", "demo_delete_note"] {
        assert!(
            !names.contains(hidden),
            "{hidden} needs mcp:demo:write: {names:?}"
        );
    }

    let result = client
        .call_tool("demo_echo", json!({"message": "hello from curl"}))
        .await;
    assert_eq!(
        result["structuredContent"],
        json!({"echoed": "hello from curl"})
    );
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("hello from curl"), "{text}");

    // What a backend sees in dev-bypass mode (Cortex behaviour).
    client.call_tool("probe_inspect", json!({})).await;
    let call = probe
        .calls("inspect")
        .pop()
        .expect("call reached the probe");
    assert_eq!(call.header("authorization"), Some("Bearer dev-secret"));
    assert_eq!(call.header("x-cortex-user-id"), Some("dev:local"));
    assert_eq!(call.header("x-cortex-user-email"), Some("dev@localhost"));
    assert_eq!(call.header("x-cortex-user-role"), Some("admin"));
    assert_eq!(call.header("x-cortex-scopes"), Some("mcp:demo:read"));
    let discovery = probe.calls("list_tools").pop().expect("discovery");
    assert_eq!(
        discovery.header("authorization"),
        Some("Bearer tech-secret")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_dev_bypass_requests_get_401_with_resource_metadata() {
    let demo = DemoBackend::start().await;
    let probe = TestBackend::start(BackendSpec::tools(&["inspect"], "mcp:demo:read")).await;
    let gateway = Gateway::start_env_file(&env_file(&demo, &probe)).await;
    let anonymous = McpClient::new(&gateway.mcp_url());
    let wrong = McpClient::new(&gateway.mcp_url()).with_header("x-dev-mode", "not-the-secret");
    for client in [anonymous, wrong] {
        let reply = client
            .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[])
            .await;
        assert_eq!(reply.status, 401, "{}", reply.text());
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        let expected = format!(
            "resource_metadata=\"http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp\"",
            gateway.port()
        );
        assert!(
            challenge.starts_with("Bearer") && challenge.contains(&expected),
            "WWW-Authenticate: {challenge}"
        );
        let body = reply.json();
        assert_eq!(body["error"], "unauthorized", "{body}");
        assert!(body["error_description"].is_string(), "{body}");
    }
    assert!(
        probe.calls("inspect").is_empty(),
        "nothing reached the backend"
    );
}

/// The same variables in the process environment (no file at all) work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_alone_configure_the_gateway() {
    let demo = DemoBackend::start().await;
    let demo_url = demo.url();
    let gateway = Gateway::start_with_env(
        &[
            ("OAUTH_ISSUER", "https://auth.example.com"),
            ("CORTEX_BACKENDS", "demo"),
            ("CORTEX_BACKEND_DEMO_URL", &demo_url),
            ("CORTEX_TECHNICAL_TOKEN", "tech-secret"),
            ("CORTEX_DEV_BYPASS_TOKEN", "dev-secret"),
            ("CORTEX_DEV_BYPASS_SCOPES", "mcp:demo:read mcp:demo:write"),
            ("HOSTNAME", "127.0.0.1"),
            ("PORT", "{PORT}"),
        ],
        &["serve"],
    )
    .await;
    gateway.wait_ready().await;
    let client = dev_client(&gateway);
    let names = client.tool_names().await;
    assert!(names.contains(&"demo_save_note".to_owned()), "{names:?}");
    let saved = client
        .call_tool("demo_save_note", json!({"text": "from env"}))
        .await;
    assert_eq!(saved["structuredContent"]["saved"]["text"], "from env");
}
