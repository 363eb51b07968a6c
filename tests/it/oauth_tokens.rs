//! Token validation against a real authorization server (oidc-provider, tests/oidc/as.mjs):
//! good tokens of every supported algorithm are accepted; wrong audience, expired, tampered,
//! `alg: none`, HS256 signed with the public key, unknown kid, wrong issuer, missing sub and
//! future nbf all get 401 with the right challenge; the token is never logged.

use crate::common;

use std::time::Duration;

use common::oidc::{b64, decode_jwt, with_payload, OAuthSetup, OTHER_RESOURCE};
use common::{BackendSpec, TestBackend, TestConfig};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const READ: &str = "mcp:demo:read";

async fn backend() -> TestBackend {
    let mut spec = BackendSpec::tools(&["echo"], READ);
    spec.tools.push(common::tool("save", "mcp:demo:write"));
    TestBackend::start(spec).await
}

fn config(backend: &TestBackend) -> TestConfig {
    TestConfig::new()
        .backend("demo", &backend.url())
        // Debug logs: the assertion that the token never appears in them means something.
        .top("logging: {level: \"cortex_gateway=debug,info\"}")
}

/// The backend's tools in `tools/list` (the gateway's own builtins left out).
async fn demo_tools(client: &common::McpClient) -> Vec<String> {
    client
        .tool_names()
        .await
        .into_iter()
        .filter(|n| n.starts_with("demo_"))
        .collect()
}

/// Asserts a 401 with `error="invalid_token"` and returns the error description.
async fn assert_invalid(setup: &OAuthSetup, token: &str, what: &str) -> String {
    let reply = setup
        .client(token)
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[])
        .await;
    assert_eq!(reply.status, 401, "{what}: {}", reply.text());
    let challenge = reply
        .header("www-authenticate")
        .unwrap_or_default()
        .to_string();
    assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
    let prm = format!(
        "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        setup.gateway.url()
    );
    assert!(challenge.contains(&prm), "{what}: {challenge}");
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge}"
    );
    assert!(challenge.contains("scope=\""), "{what}: {challenge}");
    assert!(
        challenge.contains("error_description=\""),
        "{what}: {challenge}"
    );
    let body = reply.json();
    assert_eq!(body["error"], "invalid_token", "{what}: {body}");
    body["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_credentials_token_is_accepted_and_passed_through() {
    let backend = backend().await;
    let setup = OAuthSetup::start(config(&backend), &[]).await;
    let token = setup.token(READ).await;
    let client = setup.client(&token);

    let names = demo_tools(&client).await;
    assert_eq!(
        names,
        vec!["demo_echo".to_string()],
        "only the granted scope's tools"
    );
    let result = client
        .call_tool("demo_echo", json!({"message": "hi"}))
        .await;
    assert_ne!(result["isError"], true, "{result}");
    let call = backend.calls("echo").pop().expect("the backend was called");
    assert_eq!(
        call.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(call.header("x-cortex-user-id"), Some("m2m"));
    assert_eq!(call.header("x-cortex-user-pool"), Some("pool-a"));
    assert_eq!(call.header("x-cortex-scopes"), Some(READ));
    assert!(
        !setup.gateway.logs().contains(&token),
        "the token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supported_algorithm_is_accepted() {
    let backend = backend().await;
    let setup = OAuthSetup::start(config(&backend), &[]).await;
    for (client, alg) in [
        ("m2m-ps256", "PS256"),
        ("m2m-es256", "ES256"),
        ("m2m-es384", "ES384"),
        ("m2m-eddsa", "EdDSA"),
    ] {
        let secret = format!("{client}-secret");
        let token = setup
            .oidc
            .client_credentials(client, &secret, READ, Some(&setup.gateway.mcp_url()))
            .await;
        assert_eq!(decode_jwt(&token).0["alg"], alg);
        let names = demo_tools(&setup.client(&token)).await;
        assert_eq!(names, vec!["demo_echo".to_string()], "{alg}");
    }
    // RS384/RS512/PS384/PS512 through the test signer (same RSA key, other hashes).
    for alg in ["RS384", "RS512", "PS384", "PS512"] {
        let token = setup
            .oidc
            .sign(setup.claims(READ), json!({"alg": alg}))
            .await;
        let names = demo_tools(&setup.client(&token)).await;
        assert_eq!(names, vec!["demo_echo".to_string()], "{alg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_with_the_invalid_token_challenge() {
    let backend = backend().await;
    let setup = OAuthSetup::start(config(&backend), &[]).await;
    let good = setup.token(READ).await;
    let (header, payload) = decode_jwt(&good);

    let wrong_aud = setup.oidc.m2m_token(READ, OTHER_RESOURCE).await;
    assert_eq!(decode_jwt(&wrong_aud).1["aud"], OTHER_RESOURCE);
    let why = assert_invalid(&setup, &wrong_aud, "wrong audience").await;
    assert!(
        why.contains("audience") && why.contains(&setup.gateway.mcp_url()),
        "{why}"
    );

    let mut expired = setup.claims(READ);
    expired["exp"] = json!(common::oidc::unix_now() - 3600);
    expired["iat"] = json!(common::oidc::unix_now() - 7200);
    let why = assert_invalid(
        &setup,
        &setup.oidc.sign(expired, json!({})).await,
        "expired",
    )
    .await;
    assert!(why.contains("expired"), "{why}");

    let mut escalated = payload.clone();
    escalated["scope"] = json!("mcp:demo:read mcp:demo:write mcp:admin");
    let why = assert_invalid(&setup, &with_payload(&good, &escalated), "tampered").await;
    assert!(why.contains("signature"), "{why}");

    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(payload.to_string().as_bytes())
    );
    let why = assert_invalid(&setup, &none, "alg none").await;
    assert!(why.contains("none"), "{why}");

    // The classic confusion attack: HS256 with the RSA public key (as the JWK JSON and as the
    // modulus bytes) as the HMAC secret.
    let jwks = setup.oidc.jwks().await;
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap()
        .clone();
    for secret in [
        rsa.to_string().into_bytes(),
        rsa["n"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let h = json!({"alg": "HS256", "typ": "at+jwt", "kid": rsa["kid"]});
        let input = format!(
            "{}.{}",
            b64(h.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
        mac.update(input.as_bytes());
        let forged = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        let why = assert_invalid(&setup, &forged, "HS256 with the public key").await;
        assert!(why.contains("HS256"), "{why}");
    }

    let foreign = setup
        .oidc
        .sign(setup.claims(READ), json!({"foreign": true}))
        .await;
    let why = assert_invalid(&setup, &foreign, "unknown kid").await;
    assert!(why.contains("key id"), "{why}");

    let mut other_iss = setup.claims(READ);
    other_iss["iss"] = json!(format!("{}/", setup.oidc.issuer()));
    let why = assert_invalid(
        &setup,
        &setup.oidc.sign(other_iss, json!({})).await,
        "issuer with a trailing slash",
    )
    .await;
    assert!(why.contains("issued by"), "{why}");

    let mut no_sub = setup.claims(READ);
    no_sub.as_object_mut().unwrap().remove("sub");
    let why = assert_invalid(&setup, &setup.oidc.sign(no_sub, json!({})).await, "no sub").await;
    assert!(why.contains("sub"), "{why}");

    let mut future = setup.claims(READ);
    future["nbf"] = json!(common::oidc::unix_now() + 3600);
    assert_invalid(
        &setup,
        &setup.oidc.sign(future, json!({})).await,
        "nbf in the future",
    )
    .await;

    assert_invalid(&setup, "not-a-jwt", "garbage").await;
    assert_invalid(&setup, &format!("{}x", good), "signature bytes changed").await;
    assert_eq!(header["typ"], "at+jwt");

    assert!(
        backend.calls("echo").is_empty(),
        "nothing reached the backend"
    );
    assert!(
        !setup.gateway.logs().contains(&good),
        "the token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_is_refused_after_its_exp_even_when_cached() {
    let backend = backend().await;
    // No leeway, so the 2-second token of `m2m-short` expires for real.
    let setup = OAuthSetup::start(config(&backend), &["leeway: 0s", "token_cache_ttl: 60s"]).await;
    let token = setup
        .oidc
        .client_credentials(
            "m2m-short",
            "short-secret",
            READ,
            Some(&setup.gateway.mcp_url()),
        )
        .await;
    let (_, claims) = decode_jwt(&token);
    assert!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 2,
        "{claims}"
    );
    assert_eq!(
        demo_tools(&setup.client(&token)).await,
        vec!["demo_echo".to_string()]
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let why = assert_invalid(&setup, &token, "expired for real").await;
    assert!(why.contains("expired"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_challenge_has_no_error_and_lowercase_bearer_works() {
    let backend = backend().await;
    let setup = OAuthSetup::start(config(&backend), &[]).await;
    let anonymous = setup.gateway.client();
    let reply = anonymous
        .post(
            &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}),
            &[],
        )
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    let challenge = reply.header("www-authenticate").unwrap().to_string();
    assert!(
        !challenge.contains("error="),
        "RFC 6750 §3.1: no error without a token: {challenge}"
    );
    let scope = challenge
        .split("scope=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default();
    let scopes: Vec<&str> = scope.split(' ').collect();
    assert!(
        scopes.contains(&"mcp:demo:read") && scopes.contains(&"mcp:demo:write"),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            setup.gateway.url()
        )),
        "{challenge}"
    );
    let body: Value = reply.json();
    assert_eq!(body["error"], "unauthorized");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("Bearer"),
        "{body}"
    );

    let token = setup.token(READ).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let client = setup
            .gateway
            .client()
            .with_header("authorization", &format!("{scheme} {token}"));
        assert_eq!(
            demo_tools(&client).await,
            vec!["demo_echo".to_string()],
            "{scheme}"
        );
    }
    let call = {
        let client = setup
            .gateway
            .client()
            .with_header("authorization", &format!("bearer {token}"));
        client.call_tool("demo_echo", json!({})).await;
        backend.calls("echo").pop().unwrap()
    };
    assert_eq!(
        call.header("authorization"),
        Some(format!("Bearer {token}").as_str()),
        "the token, not an empty one"
    );
}
