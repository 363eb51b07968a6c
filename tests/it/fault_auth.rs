//! The authorization server down, then back (docs/reliability.md, "The authorization server
//! down"): the keys already fetched keep validating through failed refreshes, a token with a
//! new `kid` gets a clear 401, and the server's return with new keys is picked up without a
//! restart. (An issuer down from the start: oauth_rotation.rs.)

use std::time::Duration;

use serde_json::json;

use crate::common;
use common::oidc::{decode_jwt, OAuthSetup};
use common::{eventually, strip_ansi, BackendSpec, McpClient, TestBackend, TestConfig};

const READ: &str = "mcp:demo:read";
const WAIT: Duration = Duration::from_secs(30);

async fn status_of(client: &McpClient) -> (u16, serde_json::Value) {
    let reply = client
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[])
        .await;
    let body = serde_json::from_slice(&reply.body).unwrap_or_default();
    (reply.status, body)
}

fn listed(body: &serde_json::Value) -> bool {
    common::tool_names(&body["result"])
        .iter()
        .any(|n| n == "demo_echo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_outlive_an_authorization_server_outage_and_its_return_needs_no_restart() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], READ)).await;
    // No validated-token cache: every request is checked against the keys held now. A
    // background refresh every second, so the outage makes refreshes fail.
    let mut setup = OAuthSetup::start(
        TestConfig::new().backend("demo", &backend.url()),
        &["token_cache_ttl: 0s", "jwks_refresh: 1s"],
    )
    .await;
    let token = setup.token(READ).await;
    // A token signed with a key the server does not publish: a new kid.
    let foreign = setup
        .oidc
        .sign(setup.claims(READ), json!({"foreign": true, "alg": "ES256"}))
        .await;
    let foreign_kid = decode_jwt(&foreign).0["kid"]
        .as_str()
        .expect("kid")
        .to_string();
    let (status, body) = status_of(&setup.client(&token)).await;
    assert!(status == 200 && listed(&body), "{status} {body}");

    setup.oidc.stop();
    // Refreshes fail: /readyz says so, the keys stay.
    let failed = eventually(WAIT, "a failed refresh in /readyz", || async {
        let (_, ready) = setup.gateway.readyz().await;
        ready["auth"]["lastError"].as_str().map(str::to_owned)
    })
    .await;
    let logs_at_first_failure = strip_ansi(&setup.gateway.logs());
    eventually(WAIT, "three more refreshes tried", || async {
        let logs = strip_ansi(&setup.gateway.logs());
        (count_failures(&logs) >= count_failures(&logs_at_first_failure) + 3).then_some(())
    })
    .await;
    for _ in 0..5 {
        let (status, body) = status_of(&setup.client(&token)).await;
        assert!(
            status == 200 && listed(&body),
            "the known key still validates after failed refreshes ({failed}): {status} {body}"
        );
    }
    let (_, ready) = setup.gateway.readyz().await;
    assert_eq!(ready["auth"]["ready"], true, "{ready}");

    // A new kid: one refetch, which fails; a clear 401.
    let reply = setup
        .client(&foreign)
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[])
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let body = reply.json();
    assert_eq!(body["error"], "invalid_token", "{body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(&foreign_kid) && description.contains("does not publish"),
        "{description}"
    );

    // Back, with new keys: a token signed with them is accepted on first use, and the
    // background refresh drops the old key (the key set is replaced whole).
    setup.oidc.restart().await;
    let new = setup.token(READ).await;
    let (status, body) = eventually(WAIT, "the new key accepted", || async {
        let (status, body) = status_of(&setup.client(&new)).await;
        (status == 200).then_some((status, body))
    })
    .await;
    assert!(status == 200 && listed(&body), "{body}");
    eventually(WAIT, "the old key dropped", || async {
        let (status, _) = status_of(&setup.client(&token)).await;
        (status == 401).then_some(())
    })
    .await;
    let logs = strip_ansi(&setup.gateway.logs());
    assert!(!logs.contains("panicked"), "{logs}");
}

/// Failed JWKS refreshes in the logs.
fn count_failures(logs: &str) -> usize {
    logs.matches("cannot load the issuer's signing keys")
        .count()
}
