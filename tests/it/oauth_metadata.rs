//! RFC 9728 protected-resource metadata at both well-known URLs, as clients read it: the
//! issuer byte for byte, live scopes (never offline_access), CORS for browsers; the 401's
//! `resource_metadata` leads to it; nothing is served where it would mislead.

use crate::common;

use std::time::Duration;

use common::oidc::OAuthSetup;
use common::{eventually, tool, BackendSpec, Gateway, TestBackend, TestConfig};
use serde_json::{json, Value};

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
    get_method("GET", url, headers).await
}

async fn get_method(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut req = http.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    (
        status,
        h,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_served_at_both_urls_with_the_issuer_byte_for_byte() {
    let backend = TestBackend::start(BackendSpec {
        tools: vec![
            tool("echo", "mcp:demo:read"),
            tool("save", "mcp:demo:write"),
            tool("sync", "offline_access"),
        ],
        ..BackendSpec::default()
    })
    .await;
    let config = TestConfig::new()
        .backend("demo", &backend.url())
        .server("name: acme-gateway")
        .server("website_url: \"https://docs.acme.example/gateway\"");
    let setup = OAuthSetup::start(config, &["required_scopes: [\"mcp:use\"]"]).await;
    let gw = setup.gateway.url();

    let (status, headers, root) =
        get(&format!("{gw}/.well-known/oauth-protected-resource"), &[]).await;
    assert_eq!(status, 200, "{root}");
    assert_eq!(headers["content-type"], "application/json");
    let (status, _, inserted) = get(
        &format!("{gw}/.well-known/oauth-protected-resource/mcp"),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(root, inserted, "same document at both URLs");

    assert_eq!(root["resource"], setup.gateway.mcp_url());
    let (_, _, as_meta) = get(
        &format!(
            "{}/.well-known/oauth-authorization-server",
            setup.oidc.issuer()
        ),
        &[],
    )
    .await;
    assert_eq!(
        root["authorization_servers"],
        json!([as_meta["issuer"]]),
        "byte for byte with the AS's issuer"
    );
    assert_eq!(
        root["scopes_supported"],
        json!(["cortex:admin", "mcp:demo:read", "mcp:demo:write", "mcp:use"]),
        "catalog scopes, the builtins' admin scope and the floor, never offline_access"
    );
    assert_eq!(root["bearer_methods_supported"], json!(["header"]));
    assert_eq!(root["resource_name"], "acme-gateway");
    assert_eq!(
        root["resource_documentation"],
        "https://docs.acme.example/gateway"
    );

    // The 401 challenge's resource_metadata is exactly the path-inserted URL.
    let reply = setup
        .gateway
        .client()
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}), &[])
        .await;
    assert_eq!(reply.status, 401);
    let challenge = reply.header("www-authenticate").unwrap().to_string();
    let url = challenge
        .split("resource_metadata=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    let (status, _, followed) = get(url, &[]).await;
    assert_eq!((status, &followed), (200, &root));
    assert!(
        challenge.contains("scope=\"mcp:demo:read mcp:demo:write mcp:use\""),
        "the challenge leaves the builtins' admin scope to step-up: {challenge}"
    );

    // Other paths under the prefix are not metadata.
    let (status, _, _) = get(
        &format!("{gw}/.well-known/oauth-protected-resource/other"),
        &[],
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = get(&format!("{gw}/.well-known/jwks.json"), &[]).await;
    assert_eq!(status, 404, "no minting backend, no gateway JWKS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_can_read_the_metadata() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:demo:read")).await;
    let setup = OAuthSetup::start(TestConfig::new().backend("demo", &backend.url()), &[]).await;
    let url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        setup.gateway.url()
    );
    let origin = [("origin", "https://app.example")];
    let (status, headers, _) = get(&url, &origin).await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], "*");
    let (status, headers, _) = get_method(
        "OPTIONS",
        &url,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "mcp-protocol-version"),
        ],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
    assert!(headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("mcp-protocol-version"));
    let (status, _, _) = get_method("POST", &url, &[]).await;
    assert_eq!(status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_supported_follows_the_live_catalog() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:demo:read")).await;
    let setup = OAuthSetup::start(TestConfig::new().backend("demo", &backend.url()), &[]).await;
    let url = format!(
        "{}/.well-known/oauth-protected-resource",
        setup.gateway.url()
    );
    let (_, _, before) = get(&url, &[]).await;
    assert_eq!(
        before["scopes_supported"],
        json!(["cortex:admin", "mcp:demo:read"])
    );
    backend.set_tools(vec![
        tool("echo", "mcp:demo:read"),
        tool("bill", "mcp:billing:write"),
    ]);
    eventually(
        Duration::from_secs(10),
        "the new scope in scopes_supported",
        || {
            let url = url.clone();
            async move {
                let (_, _, doc) = get(&url, &[]).await;
                (doc["scopes_supported"]
                    == json!(["cortex:admin", "mcp:billing:write", "mcp:demo:read"]))
                .then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metadata_without_oauth() {
    let gateway = Gateway::start(&TestConfig::new().build()).await;
    let (status, _) = gateway
        .get_json("/.well-known/oauth-protected-resource")
        .await;
    assert_eq!(
        status, 404,
        "auth.mode none: clients must not be sent looking for an authorization server"
    );
    let (status, _) = gateway
        .get_json("/.well-known/oauth-protected-resource/mcp")
        .await;
    assert_eq!(status, 404);
}
