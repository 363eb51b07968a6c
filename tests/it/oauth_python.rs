//! The official Python MCP SDK's own OAuth client (`OAuthClientProvider`, mcp 2.3.0 from the
//! toolbox venv) through the gateway: discovery from the 401, dynamic client registration and
//! the PKCE authorization-code flow at oidc-provider (its dev login scripted as user `alice`),
//! then tools/list and tools/call with the token it obtained.

use crate::common;

use std::time::Duration;

use common::oidc::{decode_jwt, OAuthSetup};
use common::{tool, BackendSpec, TestBackend, TestConfig};
use serde_json::Value;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_oauth_client_reaches_the_tools_through_the_gateway() {
    let backend = TestBackend::start(BackendSpec {
        tools: vec![
            tool("echo", "mcp:demo:read"),
            tool("save", "mcp:demo:write"),
        ],
        ..BackendSpec::default()
    })
    .await;
    let setup = OAuthSetup::start(TestConfig::new().backend("demo", &backend.url()), &[]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/oauth_flow.py").to_string();
    let args = vec![
        script,
        setup.gateway.mcp_url(),
        "alice".to_string(),
        "demo_save".to_string(),
        r#"{"message": "from the python oauth client"}"#.to_string(),
    ];
    let dir = setup.gateway.dir().to_owned();
    let stdout = common::interop::run_python_script(args, dir, SCRIPT_TIMEOUT).await;
    let out: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));

    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"demo_echo") && tools.contains(&"demo_save"),
        "{out}"
    );
    assert_ne!(out["call"]["isError"], true, "{out}");
    assert_eq!(
        out["registered"], true,
        "dynamic client registration: {out}"
    );
    let auth = &out["authorization"];
    assert_eq!(
        auth["resource"],
        setup.gateway.mcp_url(),
        "RFC 8707 resource = canonical URI: {out}"
    );
    assert_eq!(auth["code_challenge_method"], "S256");
    let scope = auth["scope"].as_str().unwrap_or_default();
    assert!(
        scope.contains("mcp:demo:read") && scope.contains("mcp:demo:write"),
        "scopes from the challenge: {out}"
    );

    // The call reached the backend as alice, with alice's token.
    let call = backend
        .calls("save")
        .pop()
        .expect("demo_save reached the backend");
    assert_eq!(call.header("x-cortex-user-id"), Some("alice"));
    assert_eq!(
        call.header("x-cortex-user-email"),
        Some("alice@example.com")
    );
    assert_eq!(
        call.header("x-cortex-user-role"),
        Some("admin"),
        "metadata.role"
    );
    let token = call
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap();
    let (_, claims) = decode_jwt(token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], setup.gateway.mcp_url());
    assert_eq!(call.params["message"], "from the python oauth client");
}
