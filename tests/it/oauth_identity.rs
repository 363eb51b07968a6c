//! The three identity modes, observed at test backends: `passthrough` forwards the caller's
//! token; `mint` sends a gateway-signed token for the backend's audience whose signature
//! verifies against the gateway's `/.well-known/jwks.json`; `exchange` sends an RFC 8693 token
//! obtained from the authorization server for the backend's audience.

use crate::common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::oidc::{decode_jwt, unix_now, OAuthSetup};
use common::{tool, BackendSpec, TestBackend, TestConfig};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{json, Value};

const READ: &str = "mcp:demo:read";

fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

/// Verifies a compact JWS against a JWKS document with ring (independently of the gateway).
fn verify_with_jwks(token: &str, jwks: &Value) -> bool {
    let (header, _) = decode_jwt(token);
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = b64d(sig);
    let Some(key) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
    else {
        return false;
    };
    match header["alg"].as_str().unwrap() {
        "ES256" => {
            let mut point = vec![4u8];
            point.extend(b64d(key["x"].as_str().unwrap()));
            point.extend(b64d(key["y"].as_str().unwrap()));
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(input.as_bytes(), &sig)
                .is_ok()
        }
        "RS256" => RsaPublicKeyComponents {
            n: b64d(key["n"].as_str().unwrap()),
            e: b64d(key["e"].as_str().unwrap()),
        }
        .verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &sig,
        )
        .is_ok(),
        other => panic!("unexpected alg {other}"),
    }
}

fn bearer(call: &common::Recorded) -> String {
    call.header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .expect("a bearer token")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_backend_receives_the_credential_its_identity_mode_calls_for() {
    let pass = TestBackend::start(BackendSpec::tools(&["echo"], READ)).await;
    let minted = TestBackend::start(BackendSpec {
        tools: vec![tool("echo", READ), tool("save", "mcp:demo:write")],
        ..BackendSpec::default()
    })
    .await;
    let swapped = TestBackend::start(BackendSpec {
        tools: vec![tool("echo", READ), tool("crm", "mcp:crm:read")],
        ..BackendSpec::default()
    })
    .await;
    let config = TestConfig::new()
        .backend("pass", &pass.url())
        .backend_with(
            "minted",
            &minted.url(),
            &["identity: mint", "audience: \"https://minted.example\""],
        )
        .backend_with(
            "swapped",
            &swapped.url(),
            &[
                "identity: exchange",
                "audience: \"https://swapped.example\"",
            ],
        )
        .top("data_dir: \"{DIR}/data\"");
    let setup = OAuthSetup::start_with_auth(
        config,
        &[
            "token_exchange:",
            "  client_id: gateway",
            "  client_secret: gateway-secret",
        ],
        &["mint:", "  ttl: 120s"],
    )
    .await;
    let caller = setup.token(&format!("{READ} mcp:crm:read")).await;
    let caller_exp = decode_jwt(&caller).1["exp"].as_u64().unwrap();
    let client = setup.client(&caller);
    for tool in ["pass_echo", "minted_echo", "swapped_echo"] {
        let r = client.call_tool(tool, json!({"message": "hi"})).await;
        assert_ne!(r["isError"], true, "{tool}: {r}");
    }

    // passthrough: the caller's own token, plus the X-Cortex-* headers.
    let call = pass.calls("echo").pop().unwrap();
    assert_eq!(bearer(&call), caller);
    assert_eq!(call.header("x-cortex-user-id"), Some("m2m"));

    // mint: a gateway token for the backend's audience, verifiable with the gateway's JWKS.
    let call = minted.calls("echo").pop().unwrap();
    let token = bearer(&call);
    assert_ne!(token, caller, "never the caller's token");
    let (header, claims) = decode_jwt(&token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(
        claims["iss"],
        setup.gateway.url(),
        "iss = the gateway's public origin"
    );
    assert_eq!(claims["aud"], "https://minted.example");
    assert_eq!(claims["sub"], "m2m");
    assert_eq!(
        claims["scope"], READ,
        "only the caller's scopes that concern this backend"
    );
    assert_eq!(claims["azp"], "m2m");
    assert_eq!(claims["act"]["sub"], "m2m");
    assert_eq!(claims["pool"], "pool-a");
    let exp = claims["exp"].as_u64().unwrap();
    assert!(
        exp <= unix_now() + 120 && exp <= caller_exp,
        "short-lived: {claims}"
    );
    let (status, jwks) = setup.gateway.get_json("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    assert!(
        verify_with_jwks(&token, &jwks),
        "signature verifies against {jwks}"
    );
    let mut tampered: Vec<&str> = token.split('.').collect();
    let other_payload = URL_SAFE_NO_PAD.encode(json!({"sub": "mallory"}).to_string());
    tampered[1] = &other_payload;
    assert!(
        !verify_with_jwks(&tampered.join("."), &jwks),
        "the check can fail"
    );
    assert_eq!(
        call.header("x-cortex-user-id"),
        Some("m2m"),
        "the contract headers still come"
    );
    let stored = std::fs::read_to_string(setup.gateway.path("data/keys/mint-keys.json"))
        .expect("persisted key");
    assert!(
        stored.contains(header["kid"].as_str().unwrap()),
        "the key is persisted under data_dir"
    );

    // exchange: a token from the authorization server for the backend's audience.
    let call = swapped.calls("echo").pop().unwrap();
    let token = bearer(&call);
    assert_ne!(token, caller);
    let (_, claims) = decode_jwt(&token);
    assert_eq!(claims["iss"], setup.oidc.issuer());
    assert_eq!(claims["aud"], "https://swapped.example");
    assert_eq!(claims["sub"], "m2m");
    assert_eq!(
        claims["act"]["sub"], "gateway",
        "the gateway's client acted"
    );
    assert_eq!(
        claims["scope"],
        format!("mcp:crm:read {READ}"),
        "the scopes concerning this backend"
    );
    assert!(
        verify_with_jwks(&token, &setup.oidc.jwks().await),
        "signed by the authorization server"
    );

    // Both are cached: a second round makes no new exchange and reuses the minted token.
    let exchanges = setup.oidc.stats().await["exchanges"].as_u64().unwrap();
    client.call_tool("swapped_echo", json!({})).await;
    client.call_tool("minted_echo", json!({})).await;
    assert_eq!(
        setup.oidc.stats().await["exchanges"].as_u64().unwrap(),
        exchanges
    );
    assert_eq!(bearer(&swapped.calls("echo").pop().unwrap()), token);
    assert_eq!(minted.calls("echo").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_exchange_is_a_clear_error_and_nothing_reaches_the_backend() {
    let swapped = TestBackend::start(BackendSpec::tools(&["echo"], READ)).await;
    let config = TestConfig::new().backend_with(
        "swapped",
        &swapped.url(),
        &[
            "identity: exchange",
            "audience: \"https://swapped.example\"",
        ],
    );
    let setup = OAuthSetup::start(
        config,
        &[
            "token_exchange:",
            "  client_id: gateway",
            "  client_secret: wrong-secret",
        ],
    )
    .await;
    let client = setup.client(&setup.token(READ).await);
    let err = client
        .error("tools/call", json!({"name": "swapped_echo"}))
        .await;
    assert_eq!(err["code"], -32603, "{err}");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("swapped") && msg.contains("token exchange failed"),
        "{msg}"
    );
    assert!(swapped.calls("echo").is_empty());
}
