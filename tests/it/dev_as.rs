//! The built-in development authorization server, end to end over loopback on the real
//! binary (`cortex-gateway demo --oauth`): metadata, JWKS, dynamic registration, the
//! authorization code flow with PKCE through the picker page (and its failures),
//! client_credentials, refresh rotation with reuse detection, revocation, and the persisted
//! key. The MCP side (tools/list per user, the Python SDK) is in `dev_as_e2e`.

use crate::common;
use crate::dev_as_common;

use common::Gateway;
use dev_as_common::{http, pkce, As, Reply, DEMO_CLIENT, REDIRECT};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_jwks_describe_the_server() {
    let a = As::start().await;
    let issuer = a.gw.url();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = a.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        let m = r.json();
        // Byte for byte the gateway's origin: no trailing slash.
        assert_eq!(m["issuer"], json!(issuer));
        assert_eq!(
            m["authorization_endpoint"],
            json!(format!("{issuer}/oauth/authorize"))
        );
        assert_eq!(m["token_endpoint"], json!(format!("{issuer}/oauth/token")));
        assert_eq!(
            m["registration_endpoint"],
            json!(format!("{issuer}/oauth/register"))
        );
        assert_eq!(m["jwks_uri"], json!(format!("{issuer}/oauth/jwks")));
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            m["authorization_response_iss_parameter_supported"],
            json!(true)
        );
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            json!(["none", "client_secret_basic", "client_secret_post"])
        );
        assert_eq!(
            m["grant_types_supported"],
            json!(["authorization_code", "refresh_token", "client_credentials"])
        );
        assert_eq!(m["response_types_supported"], json!(["code"]));
        assert_eq!(
            m["scopes_supported"],
            json!(["mcp:demo:read", "mcp:demo:write"])
        );
    }
    let jwks = a.get("/oauth/jwks").await;
    assert_eq!(jwks.status, 200);
    let keys = jwks.json()["keys"].as_array().cloned().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(
        keys[0].get("d").is_none(),
        "the private part is never published"
    );
    // CORS preflight for browser clients; unknown paths and methods.
    let pre = Reply::from(
        a.http
            .request(reqwest::Method::OPTIONS, a.url("/oauth/token"))
            .header("origin", "http://localhost:6274")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert_eq!(a.get("/oauth/nope").await.status, 404);
    assert_eq!(a.get("/oauth/token").await.status, 405);
    // The key was created under the data directory.
    let key_file = a.gw.dir().join("data/keys/dev-authorization-server.pem");
    let pem = std::fs::read_to_string(&key_file).expect("key file");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(
        a.gw.logs().contains("DEVELOPMENT AUTHORIZATION SERVER"),
        "loud warning at start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_with_pkce_issues_verifiable_tokens_per_user() {
    let a = As::start().await;
    let client = a.public_client().await;
    let issuer = a.gw.url();

    // The picker page offers both users, with what each would get.
    let (verifier, challenge) = pkce("reader");
    let page = a.authorize(&client, &challenge, &[]).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page.text.contains("value=\"reader\"") && page.text.contains("value=\"writer\""));
    assert!(page.text.contains("test client"));

    // POSTing the form: 303 back to the client with code, state and iss (RFC 9207).
    let done = a.pick(&page, ("user", "reader")).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let params = done.location_params();
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["iss"], issuer);
    let code = &params["code"];

    let r = a.redeem(&client, code, &verifier).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let t = r.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    assert_eq!(
        t["scope"], "mcp:demo:read",
        "reader gets only what it holds"
    );
    assert!(t["refresh_token"].is_string());

    let (header, claims) = a.verify(t["access_token"].as_str().unwrap()).await;
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["iss"], json!(issuer));
    assert_eq!(claims["sub"], "reader");
    assert_eq!(claims["email"], "reader@localhost");
    assert_eq!(
        claims["aud"],
        json!(a.gw.mcp_url()),
        "aud = the RFC 8707 resource"
    );
    assert_eq!(claims["scope"], "mcp:demo:read");
    assert_eq!(claims["client_id"], json!(client));
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 32));
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 900);

    let writer = a.login(&client, "writer").await;
    assert_eq!(writer["scope"], "mcp:demo:read mcp:demo:write");
    let (_, claims) = a.verify(writer["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], "writer");

    // No scope requested: the user's scopes. Only read requested: only read, even for writer.
    let (verifier, challenge) = pkce("noscope");
    let page = a.authorize(&client, &challenge, &[("scope", "")]).await;
    let params = a.pick(&page, ("user", "writer")).await.location_params();
    let t = a.redeem(&client, &params["code"], &verifier).await.json();
    assert_eq!(t["scope"], "mcp:demo:read mcp:demo:write");
    let (verifier, challenge) = pkce("readonly");
    let page = a
        .authorize(&client, &challenge, &[("scope", "mcp:demo:read")])
        .await;
    let params = a.pick(&page, ("user", "writer")).await.location_params();
    let t = a.redeem(&client, &params["code"], &verifier).await.json();
    assert_eq!(t["scope"], "mcp:demo:read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_that_must_fail() {
    let a = As::start().await;
    let client = a.public_client().await;
    let other = a.public_client().await;
    let (verifier, challenge) = pkce("f");
    let err = |r: &Reply| r.json()["error"].as_str().unwrap_or("").to_string();

    // Missing verifier.
    let code = a.code_for(&client, &challenge, "reader").await["code"].clone();
    let r = a
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
            None,
        )
        .await;
    assert_eq!(
        (r.status, err(&r).as_str()),
        (400, "invalid_request"),
        "{}",
        r.text
    );
    assert!(r.text.contains("code_verifier"));

    // Wrong verifier.
    let code = a.code_for(&client, &challenge, "reader").await["code"].clone();
    let (wrong, _) = pkce("other");
    let r = a.redeem(&client, &code, &wrong).await;
    assert_eq!(
        (r.status, err(&r).as_str()),
        (400, "invalid_grant"),
        "{}",
        r.text
    );
    // A code is good for one attempt: the right verifier now fails too.
    let r = a.redeem(&client, &code, &verifier).await;
    assert_eq!(err(&r), "invalid_grant");

    // Wrong redirect_uri.
    let code = a.code_for(&client, &challenge, "reader").await["code"].clone();
    let r = a
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", "http://127.0.0.1:45871/elsewhere"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (r.status, err(&r).as_str()),
        (400, "invalid_grant"),
        "{}",
        r.text
    );

    // Another client's code; an unknown client.
    let code = a.code_for(&client, &challenge, "reader").await["code"].clone();
    let r = a.redeem(&other, &code, &verifier).await;
    assert_eq!(err(&r), "invalid_grant", "{}", r.text);
    let code = a.code_for(&client, &challenge, "reader").await["code"].clone();
    let r = a.redeem("no-such-client", &code, &verifier).await;
    assert_eq!(
        (r.status, err(&r).as_str()),
        (401, "invalid_client"),
        "{}",
        r.text
    );
    let forged = format!("{client}x");
    assert_eq!(a.redeem(&forged, &code, &verifier).await.status, 401);

    // A wrong resource at the token endpoint.
    let code = a.code_for(&client, &challenge, "reader").await["code"].clone();
    let r = a
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", REDIRECT),
                ("resource", "http://127.0.0.1:1/other"),
            ],
            None,
        )
        .await;
    assert_eq!(err(&r), "invalid_target", "{}", r.text);

    // Reused code: refused, and the tokens of its first redemption are revoked.
    let code = a.code_for(&client, &challenge, "writer").await["code"].clone();
    let first = a.redeem(&client, &code, &verifier).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let again = a.redeem(&client, &code, &verifier).await;
    assert_eq!(
        (again.status, err(&again).as_str()),
        (400, "invalid_grant"),
        "{}",
        again.text
    );
    let rt = first.json()["refresh_token"].as_str().unwrap().to_string();
    let r = a.refresh(&client, &rt).await;
    assert_eq!(
        err(&r),
        "invalid_grant",
        "refresh token of a replayed code: {}",
        r.text
    );

    // Unknown grant, malformed requests.
    let r = a
        .token(&[("grant_type", "password"), ("client_id", &client)], None)
        .await;
    assert_eq!(err(&r), "unsupported_grant_type");
    let r = a
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client),
                ("client_id", &client),
            ],
            None,
        )
        .await;
    assert_eq!(err(&r), "invalid_request", "repeated parameter: {}", r.text);
    let r = a.token(&[("grant_type", "authorization_code")], None).await;
    assert_eq!((r.status, err(&r).as_str()), (401, "invalid_client"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_requests_that_must_fail() {
    let a = As::start().await;
    let client = a.public_client().await;
    let (_, challenge) = pkce("a");
    let issuer = a.gw.url();

    // Errors about the client or redirect URI are shown, never redirected.
    for r in [
        a.authorize("no-such-client", &challenge, &[]).await,
        a.authorize(
            &client,
            &challenge,
            &[("redirect_uri", "http://127.0.0.1:45871/other")],
        )
        .await,
        a.authorize(
            &client,
            &challenge,
            &[("redirect_uri", "https://evil.example/callback")],
        )
        .await,
    ] {
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.header("location").is_none());
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
    // A loopback redirect URI may change port (RFC 8252).
    let r = a
        .authorize(
            &client,
            &challenge,
            &[("redirect_uri", "http://127.0.0.1:50000/callback")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Everything else goes back to the client, with state and iss.
    for (extra, error) in [
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (
            vec![("resource", "http://127.0.0.1:1/mcp")],
            "invalid_target",
        ),
    ] {
        let r = a.authorize(&client, &challenge, &extra).await;
        assert_eq!(r.status, 302, "{extra:?}: {}", r.text);
        let p = r.location_params();
        assert_eq!(p["error"], error, "{extra:?}");
        assert_eq!(p["state"], "st-123");
        assert_eq!(p["iss"], issuer);
        assert!(!p.contains_key("code"));
    }

    // The picker: cancel → access_denied; a used or unknown request id → error page.
    let page = a.authorize(&client, &challenge, &[]).await;
    let r = a.pick(&page, ("decision", "deny")).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location_params()["error"], "access_denied");
    let r = a.pick(&page, ("user", "reader")).await;
    assert_eq!(r.status, 400, "a request id is single use");
    assert!(r.header("location").is_none());
    // Reader asked only for write: nothing to grant.
    let page = a
        .authorize(&client, &challenge, &[("scope", "mcp:demo:write")])
        .await;
    assert!(page.text.contains("holds none of the requested scopes"));
    let r = a.pick(&page, ("user", "reader")).await;
    assert_eq!(r.location_params()["error"], "access_denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_registration_validates_metadata() {
    let a = As::start().await;
    for (metadata, error) in [
        (
            json!({"redirect_uris": ["http://example.com/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["myapp://callback"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["implicit"]}),
            "invalid_client_metadata",
        ),
        (json!("not an object"), "invalid_client_metadata"),
    ] {
        let r = a.register(metadata.clone()).await;
        assert_eq!(r.status, 400, "{metadata}: {}", r.text);
        assert_eq!(r.json()["error"], error, "{metadata}");
    }
    let r = Reply::from(
        a.http
            .post(a.url("/oauth/register"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_client_metadata");

    // https and loopback redirect URIs are fine; defaults per RFC 7591.
    let r = a
        .register(json!({"redirect_uris": ["https://app.example/cb", "http://localhost:8080/cb"]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let c = r.json();
    assert_eq!(c["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(c["grant_types"], json!(["authorization_code"]));
    assert!(c["client_secret"].is_string());
    assert_eq!(c["client_secret_expires_at"], 0);
    assert!(c["client_id_issued_at"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_for_configured_and_registered_clients() {
    let a = As::start().await;
    let resource = a.gw.mcp_url();
    let err = |r: &Reply| r.json()["error"].as_str().unwrap_or("").to_string();

    // The demo's pre-registered client, Basic.
    let r = a
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "mcp:demo:read"),
                ("resource", &resource),
            ],
            Some(DEMO_CLIENT),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = r.json();
    assert_eq!(t["scope"], "mcp:demo:read");
    assert!(t.get("refresh_token").is_none());
    let (_, claims) = a.verify(t["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], "demo-service");
    assert_eq!(claims["client_id"], "demo-service");
    assert_eq!(claims["aud"], json!(resource));
    assert!(claims.get("email").is_none());

    // client_secret_post; no scope → every scope it may have.
    let r = a
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", DEMO_CLIENT.0),
                ("client_secret", DEMO_CLIENT.1),
            ],
            None,
        )
        .await;
    assert_eq!(
        r.json()["scope"],
        "mcp:demo:read mcp:demo:write",
        "{}",
        r.text
    );

    // Wrong secret (Basic → challenge), missing secret, unknown scope, wrong resource.
    let r = a
        .token(
            &[("grant_type", "client_credentials")],
            Some(("demo-service", "nope")),
        )
        .await;
    assert_eq!((r.status, err(&r).as_str()), (401, "invalid_client"));
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Basic")));
    let r = a
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "demo-service"),
            ],
            None,
        )
        .await;
    assert_eq!((r.status, err(&r).as_str()), (401, "invalid_client"));
    let r = a
        .token(
            &[("grant_type", "client_credentials"), ("scope", "admin")],
            Some(DEMO_CLIENT),
        )
        .await;
    assert_eq!(err(&r), "invalid_scope");
    let r = a
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("resource", "http://127.0.0.1:1/x"),
            ],
            Some(DEMO_CLIENT),
        )
        .await;
    assert_eq!(err(&r), "invalid_target");

    // A dynamically registered confidential client, restricted to read.
    let reg = a
        .register(json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "scope": "mcp:demo:read"}))
        .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let reg = reg.json();
    let (id, secret) = (
        reg["client_id"].as_str().unwrap(),
        reg["client_secret"].as_str().unwrap(),
    );
    let r = a
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["scope"], "mcp:demo:read");
    let r = a
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "mcp:demo:write"),
            ],
            Some((id, secret)),
        )
        .await;
    assert_eq!(err(&r), "invalid_scope");

    // A public client may not.
    let public = a.public_client().await;
    let r = a
        .token(
            &[("grant_type", "client_credentials"), ("client_id", &public)],
            None,
        )
        .await;
    assert_eq!(err(&r), "unauthorized_client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_reuse_revokes_the_chain() {
    let a = As::start().await;
    let client = a.public_client().await;
    let first = a.login(&client, "writer").await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_string();

    let r = a.refresh(&client, &rt1).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let second = r.json();
    let rt2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "rotation");
    assert_eq!(second["scope"], "mcp:demo:read mcp:demo:write");
    let (_, claims) = a.verify(second["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], "writer");
    assert_eq!(claims["aud"], json!(a.gw.mcp_url()));

    // Narrowing on refresh is allowed, widening is not.
    let r = a
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client),
                ("refresh_token", &rt2),
                ("scope", "mcp:demo:admin"),
            ],
            None,
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_scope", "{}", r.text);
    let r = a
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client),
                ("refresh_token", &rt2),
                ("scope", "mcp:demo:read"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["scope"], "mcp:demo:read");
    let rt3 = r.json()["refresh_token"].as_str().unwrap().to_string();

    // Another client cannot use it.
    let other = a.public_client().await;
    assert_eq!(
        a.refresh(&other, &rt3).await.json()["error"],
        "invalid_grant"
    );

    // Reusing rt1 (already rotated) revokes the whole chain, including the live rt3.
    let r = a.refresh(&client, &rt1).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
    assert!(r.text.contains("reuse"), "{}", r.text);
    let r = a.refresh(&client, &rt3).await;
    assert_eq!(
        r.json()["error"],
        "invalid_grant",
        "the chain is revoked: {}",
        r.text
    );
    // A separate sign-in is unaffected.
    let fresh = a.login(&client, "reader").await;
    let r = a
        .refresh(&client, fresh["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // RFC 7009 revocation ends a chain too.
    let rt = r.json()["refresh_token"].as_str().unwrap().to_string();
    let rev = Reply::from(
        a.http
            .post(a.url("/oauth/revoke"))
            .form(&[("token", rt.as_str()), ("client_id", client.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(rev.status, 200, "{}", rev.text);
    assert_eq!(
        a.refresh(&client, &rt).await.json()["error"],
        "invalid_grant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_and_registered_clients_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let start = || async {
        Gateway::start_with_env(
            &[],
            &[
                "demo",
                "--oauth",
                "--listen",
                "127.0.0.1:{PORT}",
                "--data-dir",
                data_dir.as_str(),
            ],
        )
        .await
    };
    let mut first = As {
        gw: start().await,
        http: http(),
    };
    let kid = first.get("/oauth/jwks").await.json()["keys"][0]["kid"].clone();
    let client = first.public_client().await;
    let token = first.login(&client, "reader").await;
    first.gw.stop();

    let second = As {
        gw: start().await,
        http: http(),
    };
    assert_eq!(
        second.get("/oauth/jwks").await.json()["keys"][0]["kid"],
        kid
    );
    // The registration is sealed in the client id: still known after the restart.
    let (_, challenge) = pkce("again");
    let page = second.authorize(&client, &challenge, &[]).await;
    assert_eq!(page.status, 200, "{}", page.text);
    // Tokens issued before still verify against the (same) published key; refresh tokens
    // lived in memory and are gone.
    let (header, _) = second.verify(token["access_token"].as_str().unwrap()).await;
    assert_eq!(header["kid"], kid);
    let r = second
        .refresh(&client, token["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(r.json()["error"], "invalid_grant");
}

/// `check-config` (and `serve`) refuse the development authorization server off loopback or
/// with an issuer that is not byte for byte its own.
#[test]
fn configuration_refuses_it_off_loopback_or_with_another_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let check = |yaml: &str| {
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cortex-gateway"));
        cmd.arg("check-config").arg(&path).current_dir(dir.path());
        let out = common::process::scrub_env(&mut cmd).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let base = |listen: &str, issuer: &str| {
        format!(
            "server:\n  listen: [\"{listen}\"]\n  canonical_uri: http://127.0.0.1:4555/mcp\nauth:\n  mode: oauth\n  oauth:\n    issuer: {issuer}\ntechnical_token: t\nbackends:\n  - id: demo\n    url: http://127.0.0.1:4556\ndev_authorization_server:\n  enabled: true\n"
        )
    };
    let (code, stderr) = check(&base("127.0.0.1:4555", "http://127.0.0.1:4555"));
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = check(&base("0.0.0.0:4555", "http://127.0.0.1:4555"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
    let (code, stderr) = check(&base("127.0.0.1:4555", "http://127.0.0.1:4555/"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("exactly `http://127.0.0.1:4555`"),
        "{stderr}"
    );
}
