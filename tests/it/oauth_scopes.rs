//! The scope model with real tokens: lists are filtered, tools/call, prompts/get and
//! resources/read are enforced (a hidden entry looks exactly like a missing one), scope
//! implications and wildcards apply to token scopes, `scp` is read, the floor answers 403
//! `insufficient_scope` with a step-up challenge, and `CORTEX_REQUIRED_POOL` keeps its Cortex
//! meaning.

use crate::common;

use common::oidc::{decode_jwt, OAuthSetup};
use common::{tool, BackendSpec, TestBackend, TestConfig};
use serde_json::{json, Value};

const READ: &str = "mcp:demo:read";
const WRITE: &str = "mcp:demo:write";

async fn backend() -> TestBackend {
    TestBackend::start(BackendSpec {
        tools: vec![
            tool("echo", READ),
            tool("save", WRITE),
            tool("purge", "mcp:admin"),
        ],
        prompts: vec![
            json!({"name": "summary", "description": "read prompt", "scope": READ}),
            json!({"name": "rewrite", "description": "write prompt", "scope": WRITE}),
        ],
        templates: vec![
            json!({"uriTemplate": "notes://public/{id}", "name": "public notes", "scope": READ}),
            json!({"uriTemplate": "notes://private/{id}", "name": "private notes", "scope": WRITE}),
        ],
    })
    .await
}

fn names(result: &Value, key: &str, field: &str) -> Vec<String> {
    result[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn demo_tools(client: &common::McpClient) -> Vec<String> {
    client
        .tool_names()
        .await
        .into_iter()
        .filter(|n| n.starts_with("demo_"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_missing_a_scope_sees_filtered_lists_and_cannot_reach_hidden_entries() {
    let backend = backend().await;
    let setup = OAuthSetup::start(TestConfig::new().backend("demo", &backend.url()), &[]).await;
    let reader = setup.client(&setup.token(READ).await);
    let writer = setup.client(&setup.token(&format!("{READ} {WRITE}")).await);

    assert_eq!(demo_tools(&reader).await, vec!["demo_echo"]);
    assert_eq!(demo_tools(&writer).await, vec!["demo_echo", "demo_save"]);
    let prompts = reader.result("prompts/list", json!({})).await;
    assert_eq!(names(&prompts, "prompts", "name"), vec!["demo_summary"]);
    let templates = reader.result("resources/templates/list", json!({})).await;
    assert_eq!(
        names(&templates, "resourceTemplates", "uriTemplate"),
        vec!["notes://public/{id}"]
    );
    let templates = writer.result("resources/templates/list", json!({})).await;
    assert_eq!(
        templates["resourceTemplates"].as_array().map(Vec::len),
        Some(2)
    );

    // tools/call: a hidden tool is indistinguishable from a missing one.
    let hidden = reader
        .error("tools/call", json!({"name": "demo_save", "arguments": {}}))
        .await;
    let missing = reader
        .error("tools/call", json!({"name": "demo_nope", "arguments": {}}))
        .await;
    assert_eq!(hidden["code"], -32602);
    assert_eq!(hidden["message"], "Unknown tool: demo_save");
    assert_eq!(missing["message"], "Unknown tool: demo_nope");
    assert_eq!(hidden["code"], missing["code"]);
    let admin = reader
        .error("tools/call", json!({"name": "demo_purge"}))
        .await;
    assert_eq!(admin["message"], "Unknown tool: demo_purge");
    assert!(backend.calls("save").is_empty() && backend.calls("purge").is_empty());
    writer.call_tool("demo_save", json!({"message": "x"})).await;
    assert_eq!(backend.calls("save").len(), 1, "the writer reaches it");

    // prompts/get and resources/read are enforced the same way.
    let hidden = reader
        .error("prompts/get", json!({"name": "demo_rewrite"}))
        .await;
    let missing = reader
        .error("prompts/get", json!({"name": "demo_nope"}))
        .await;
    assert_eq!(hidden["code"], missing["code"]);
    assert_eq!(hidden["message"], "Unknown prompt: demo_rewrite");
    let hidden = reader
        .error("resources/read", json!({"uri": "notes://private/1"}))
        .await;
    let missing = reader
        .error("resources/read", json!({"uri": "nowhere://x"}))
        .await;
    assert_eq!(hidden["code"], missing["code"], "{hidden} vs {missing}");
    assert_eq!(hidden["message"], missing["message"]);
    assert!(
        backend.calls("get_prompt").is_empty(),
        "hidden prompt never reaches the backend"
    );
    assert!(
        backend.calls("read_resource").is_empty(),
        "hidden resource never reaches the backend"
    );
    writer
        .rpc("resources/read", json!({"uri": "notes://private/1"}))
        .await;
    assert_eq!(
        backend.calls("read_resource").len(),
        1,
        "the writer reaches it"
    );
    reader
        .rpc("prompts/get", json!({"name": "demo_summary"}))
        .await;
    assert_eq!(
        backend.calls("get_prompt").len(),
        1,
        "visible prompts reach the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implications_and_wildcards_apply_to_token_scopes() {
    let backend = backend().await;
    let config = TestConfig::new()
        .backend("demo", &backend.url())
        .top("scopes:\n  implies:\n    \"mcp:demo:write\": [\"mcp:demo:read\"]\n    \"mcp:admin\": [\"mcp:demo:*\"]");
    let setup = OAuthSetup::start(config, &[]).await;
    let writer = setup.client(&setup.token(WRITE).await);
    assert_eq!(
        demo_tools(&writer).await,
        vec!["demo_echo", "demo_save"],
        "write implies read"
    );
    let admin = setup.client(&setup.token("mcp:admin").await);
    assert_eq!(
        demo_tools(&admin).await,
        vec!["demo_echo", "demo_purge", "demo_save"],
        "admin → mcp:demo:*"
    );
    // X-Cortex-Scopes carries the scopes as granted (Cortex), not the expansion.
    writer.call_tool("demo_echo", json!({})).await;
    assert_eq!(
        backend
            .calls("echo")
            .pop()
            .unwrap()
            .header("x-cortex-scopes"),
        Some(WRITE)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_are_read_from_scp_arrays_too() {
    let backend = backend().await;
    let setup = OAuthSetup::start(TestConfig::new().backend("demo", &backend.url()), &[]).await;
    let mut claims = setup.claims("");
    claims.as_object_mut().unwrap().remove("scope");
    claims["scp"] = json!([READ, WRITE]);
    let token = setup.oidc.sign(claims, json!({"alg": "ES256"})).await;
    assert_eq!(
        demo_tools(&setup.client(&token)).await,
        vec!["demo_echo", "demo_save"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scope_floor_answers_403_with_a_step_up_challenge() {
    let backend = backend().await;
    let config = TestConfig::new()
        .backend("demo", &backend.url())
        .top("scopes:\n  implies:\n    \"mcp:admin\": [\"mcp:use\"]");
    let setup = OAuthSetup::start(config, &["required_scopes: [\"mcp:use\"]"]).await;
    let without = setup.client(&setup.token(READ).await);
    let reply = without
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[])
        .await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    let challenge = reply
        .header("www-authenticate")
        .unwrap_or_default()
        .to_string();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"mcp:use\""), "{challenge}");
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            setup.gateway.url()
        )),
        "{challenge}"
    );
    let body = reply.json();
    assert_eq!(body["error"], "insufficient_scope");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("mcp:use"),
        "{body}"
    );

    let with = setup.client(&setup.token(&format!("{READ} mcp:use")).await);
    assert_eq!(demo_tools(&with).await, vec!["demo_echo"]);
    let implied = setup.client(&setup.token(&format!("{READ} mcp:admin")).await);
    assert!(
        demo_tools(&implied)
            .await
            .contains(&"demo_echo".to_string()),
        "the floor honours implications"
    );

    // The floor is advertised to clients (so the first token request can include it).
    let (_, prm) = setup
        .gateway
        .get_json("/.well-known/oauth-protected-resource")
        .await;
    assert!(
        prm["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("mcp:use")),
        "{prm}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_required_pool_keeps_its_cortex_meaning() {
    let backend = backend().await;
    let setup = OAuthSetup::start(
        TestConfig::new().backend("demo", &backend.url()),
        &["required_pool: pool-a"],
    )
    .await;
    let mcp = setup.gateway.mcp_url();
    let same = setup
        .oidc
        .client_credentials("m2m", "m2m-secret", READ, Some(&mcp))
        .await;
    assert_eq!(decode_jwt(&same).1["pool"], "pool-a");
    assert_eq!(demo_tools(&setup.client(&same)).await, vec!["demo_echo"]);

    let other = setup
        .oidc
        .client_credentials("m2m-other-pool", "other-secret", READ, Some(&mcp))
        .await;
    let reply = setup
        .client(&other)
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[])
        .await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.json()["error"], "invalid_audience");

    // A token without a pool claim is not refused (Cortex: only a different, non-empty pool).
    let none = setup
        .oidc
        .client_credentials("m2m-es256", "m2m-es256-secret", READ, Some(&mcp))
        .await;
    assert!(decode_jwt(&none).1.get("pool").is_none());
    assert_eq!(demo_tools(&setup.client(&none)).await, vec!["demo_echo"]);
}
