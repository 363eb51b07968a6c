//! The issuer's keys over time: the authorization server restarted with new keys is picked up
//! without restarting the gateway; an unreachable issuer never stops the gateway (503 with a
//! clear body, /readyz says why, the dev bypass keeps working) and is picked up when it comes
//! back; unknown-kid refetches are rate-limited.

use crate::common;

use std::time::Duration;

use common::oidc::{decode_jwt, wait_auth_ready, OAuthSetup, OidcProvider, OTHER_RESOURCE};
use common::{free_port, BackendSpec, Gateway, TestBackend, TestConfig};
use serde_json::json;

const READ: &str = "mcp:demo:read";

async fn demo_tools(client: &common::McpClient) -> Vec<String> {
    client
        .tool_names()
        .await
        .into_iter()
        .filter(|n| n.starts_with("demo_"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_authorization_server_with_new_keys_is_picked_up_without_a_restart() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], READ)).await;
    // No validated-token cache, so the old token's fate shows the key set was replaced.
    let mut setup = OAuthSetup::start(
        TestConfig::new().backend("demo", &backend.url()),
        &["token_cache_ttl: 0s"],
    )
    .await;
    let old = setup.token(READ).await;
    let old_kid = decode_jwt(&old).0["kid"].as_str().unwrap().to_string();
    assert_eq!(demo_tools(&setup.client(&old)).await, vec!["demo_echo"]);

    setup.oidc.restart().await;
    let new = setup.token(READ).await;
    let new_kid = decode_jwt(&new).0["kid"].as_str().unwrap().to_string();
    assert_ne!(
        new_kid, old_kid,
        "the restarted server signs with a new key"
    );
    // Past jwks_min_refetch (1s in the test setup) since the gateway's last fetch.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        demo_tools(&setup.client(&new)).await,
        vec!["demo_echo"],
        "new key accepted at once"
    );
    let logs = setup.gateway.logs();
    assert!(
        logs.contains("unknown key id"),
        "picked up by the unknown-kid refetch:\n{logs}"
    );

    let reply = setup
        .client(&old)
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[])
        .await;
    assert_eq!(
        reply.status,
        401,
        "the old key is no longer published: {}",
        reply.text()
    );
    let (_, ready) = setup.gateway.readyz().await;
    assert_eq!(ready["auth"]["ready"], true, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_never_stops_the_gateway() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], READ)).await;
    let as_port = free_port();
    let issuer = format!("  issuer: \"http://127.0.0.1:{as_port}\"");
    let config = TestConfig::new().backend("demo", &backend.url()).auth(&[
        "mode: oauth",
        "oauth:",
        &issuer,
        "dev_bypass:",
        "  token: dev-secret-123",
        "  scopes: [\"mcp:demo:read\"]",
    ]);
    let gateway = Gateway::start(&config.build()).await;

    // Ready (the dev bypass can serve), but the auth part says why tokens cannot be checked.
    let body = gateway.wait_ready().await;
    assert_eq!(body["auth"]["ready"], false, "{body}");
    assert_eq!(
        body["auth"]["issuer"],
        format!("http://127.0.0.1:{as_port}")
    );
    common::eventually(
        Duration::from_secs(10),
        "the fetch error in /readyz",
        || async {
            let (_, b) = gateway.readyz().await;
            b["auth"]["lastError"].as_str().map(str::to_owned)
        },
    )
    .await;

    let bearer = gateway
        .client()
        .with_header("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln");
    let reply = bearer
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[])
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("not known yet"),
        "{body}"
    );
    assert_eq!(reply.header("retry-after"), Some("5"));

    let dev = gateway.client().with_header("x-dev-mode", "dev-secret-123");
    assert_eq!(
        demo_tools(&dev).await,
        vec!["demo_echo"],
        "the dev bypass keeps working"
    );

    // The authorization server comes up: the background retry finds it.
    let oidc =
        OidcProvider::start_on(as_port, &[gateway.mcp_url(), OTHER_RESOURCE.to_string()]).await;
    wait_auth_ready(&gateway).await;
    let token = oidc.m2m_token(READ, &gateway.mcp_url()).await;
    let client = gateway
        .client()
        .with_header("authorization", &format!("Bearer {token}"));
    assert_eq!(demo_tools(&client).await, vec!["demo_echo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dev_bypass_readiness_waits_for_the_keys() {
    let as_port = free_port();
    let issuer = format!("  issuer: \"http://127.0.0.1:{as_port}\"");
    let config = TestConfig::new().auth(&["mode: oauth", "oauth:", &issuer]);
    let gateway = Gateway::start(&config.build()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = gateway.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["auth"]["ready"], false);
    let (status, _) = gateway.get_json("/healthz").await;
    assert_eq!(status, 200, "alive all the same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_refetches_are_rate_limited() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], READ)).await;
    let setup = OAuthSetup::start(TestConfig::new().backend("demo", &backend.url()), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let forged = setup
            .oidc
            .sign(setup.claims(READ), json!({"foreign": true, "alg": "ES256"}))
            .await;
        let reply = setup
            .client(&forged)
            .post(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}), &[])
            .await;
        assert_eq!(reply.status, 401);
    }
    // jwks_min_refetch is 1s in the test setup: at most one refetch per second elapsed.
    let allowed = started.elapsed().as_secs() as usize + 1;
    let refetches = setup.gateway.logs().matches("refetching the JWKS").count();
    assert!(
        (1..=allowed).contains(&refetches),
        "20 unknown kids in {:?} → 1..={allowed} refetches, got {refetches}",
        started.elapsed()
    );
    assert!(refetches < 20, "not one per token");
}
