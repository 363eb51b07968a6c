//! RFC 7662 introspection for revocation: a revoked token stops working within the cache TTL,
//! answers are cached, a failing endpoint fails closed (503) unless `fail_open`, and the
//! Cortex `OAUTH_INTROSPECT_*` variables configure it.

use crate::common;

use std::time::Duration;

use common::oidc::{decode_jwt, wait_auth_ready, OAuthSetup, OidcProvider, OTHER_RESOURCE};
use common::{free_port, BackendSpec, Gateway, TestBackend, TestConfig};
use serde_json::json;

const READ: &str = "mcp:demo:read";

async fn setup_with(extra: &[&str]) -> (TestBackend, OAuthSetup) {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], READ)).await;
    let mut oauth = vec![
        "token_cache_ttl: 30s".to_string(),
        "introspection:".into(),
        "  url: \"{AS}/test/introspect\"".into(),
        "  client_id: gateway".into(),
        "  client_secret: gateway-secret".into(),
        "  cache_ttl: 1s".into(),
    ];
    oauth.extend(extra.iter().map(|l| format!("  {l}")));
    let refs: Vec<&str> = oauth.iter().map(String::as_str).collect();
    let setup = OAuthSetup::start(TestConfig::new().backend("demo", &backend.url()), &refs).await;
    (backend, setup)
}

async fn status(setup: &OAuthSetup, token: &str) -> u16 {
    setup
        .client(token)
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[])
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stops_working_and_answers_are_cached() {
    let (_backend, setup) = setup_with(&[]).await;
    let token = setup.token(READ).await;
    assert_eq!(status(&setup, &token).await, 200);
    assert_eq!(status(&setup, &token).await, 200);
    assert_eq!(
        setup.oidc.stats().await["introspections"],
        1,
        "the second call used the cache"
    );

    let jti = decode_jwt(&token).1["jti"].as_str().unwrap().to_string();
    setup.oidc.revoke(&jti).await;
    // Within the cache TTL (1s, which also caps the validated-token cache) it is refused.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reply = setup
        .client(&token)
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}), &[])
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert!(reply.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    let other = setup.token(READ).await;
    assert_eq!(
        status(&setup, &other).await,
        200,
        "other tokens are unaffected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_introspection_endpoint_fails_closed() {
    let (_backend, setup) = setup_with(&[]).await;
    setup.oidc.set_introspection("error").await;
    let token = setup.token(READ).await;
    let reply = setup
        .client(&token)
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}), &[])
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("revocation"),
        "{}",
        reply.text()
    );
    setup.oidc.set_introspection("ok").await;
    assert_eq!(status(&setup, &token).await, 200, "errors are not cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_accepts_signature_valid_tokens_when_the_endpoint_fails() {
    let (_backend, setup) = setup_with(&["fail_open: true"]).await;
    setup.oidc.set_introspection("error").await;
    let token = setup.token(READ).await;
    assert_eq!(status(&setup, &token).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cortex_environment_variables_configure_oauth_and_introspection() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], READ)).await;
    let as_port = free_port();
    let issuer = format!("http://127.0.0.1:{as_port}");
    let introspect = format!("{issuer}/test/introspect");
    let backend_url = backend.url();
    let gateway = Gateway::start_with_env(
        &[
            ("OAUTH_ISSUER", &issuer),
            ("OAUTH_REQUIRED_SCOPES", "mcp:demo:read"),
            ("OAUTH_INTROSPECT_URL", &introspect),
            ("OAUTH_INTROSPECT_CLIENT_ID", "gateway"),
            ("OAUTH_INTROSPECT_CLIENT_SECRET", "gateway-secret"),
            ("OAUTH_INTROSPECT_CACHE_TTL_SECONDS", "1"),
            ("CORTEX_BACKENDS", "demo"),
            ("CORTEX_BACKEND_DEMO_URL", &backend_url),
            ("CORTEX_TECHNICAL_TOKEN", "tech-secret"),
            ("HOSTNAME", "127.0.0.1"),
            ("PORT", "{PORT}"),
        ],
        &["serve"],
    )
    .await;
    let oidc =
        OidcProvider::start_on(as_port, &[gateway.mcp_url(), OTHER_RESOURCE.to_string()]).await;
    wait_auth_ready(&gateway).await;
    let token = oidc.m2m_token(READ, &gateway.mcp_url()).await;
    let client = gateway
        .client()
        .with_header("authorization", &format!("Bearer {token}"));
    assert!(client.tool_names().await.contains(&"demo_echo".to_string()));
    assert_eq!(oidc.stats().await["introspections"], 1);
    assert!(
        !gateway
            .logs()
            .contains("OAUTH_INTROSPECT_URL is set but not supported"),
        "{}",
        gateway.logs()
    );
    let floorless = oidc.m2m_token("mcp:admin", &gateway.mcp_url()).await;
    let reply = gateway
        .client()
        .with_header("authorization", &format!("Bearer {floorless}"))
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}), &[])
        .await;
    assert_eq!(reply.status, 403, "OAUTH_REQUIRED_SCOPES is the floor");
}
