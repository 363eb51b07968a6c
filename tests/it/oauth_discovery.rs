//! Issuer discovery in the MCP 2025-11-25 order, with an issuer that has a path: the gateway
//! tries the RFC 8414 path-inserted URL, then the OIDC path-inserted one, then the OIDC
//! path-appended one, refuses a document describing another issuer, and finds the keys at the
//! `jwks_uri` of the right document. `OAUTH_JWKS_URL` (auth.oauth.jwks_url) overrides it.
//!
//! The issuer is a tiny metadata server in this test (oidc-provider's issuers have no path);
//! its keys are the real oidc-provider's, so tokens are signed by a real authorization server.

use crate::common;

use std::sync::{Arc, Mutex};

use common::http_server::{json_response, Server};
use common::oidc::{wait_auth_ready, OidcProvider, OTHER_RESOURCE};
use common::{free_port, BackendSpec, Gateway, TestBackend, TestConfig};
use hyper::Request;
use serde_json::{json, Value};
use tokio::net::TcpListener;

const READ: &str = "mcp:demo:read";

/// Serves `routes` (path → JSON) and records every path asked for.
struct MetadataServer {
    seen: Arc<Mutex<Vec<String>>>,
    _server: Server,
}

impl MetadataServer {
    async fn start_on(port: u16, routes: Vec<(String, Value)>) -> MetadataServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let routes = Arc::new(routes);
        let log = seen.clone();
        let server = Server::spawn(listener, move |req: Request<hyper::body::Incoming>| {
            let path = req.uri().path().to_string();
            log.lock().unwrap().push(path.clone());
            let found = routes
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, v)| v.to_string());
            async move {
                match found {
                    Some(body) => json_response(200, body),
                    None => json_response(404, "{\"error\":\"not_found\"}"),
                }
            }
        })
        .unwrap();
        MetadataServer {
            seen,
            _server: server,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_issuer_is_discovered_in_the_spec_order() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], READ)).await;
    // The real authorization server, for its keys and signatures.
    let gw_port_hint = free_port();
    let oidc = OidcProvider::start_on(
        free_port(),
        &[
            format!("http://127.0.0.1:{gw_port_hint}/mcp"),
            OTHER_RESOURCE.into(),
        ],
    )
    .await;
    let jwks = oidc.jwks().await;

    // The metadata server needs its own port in the documents: bind first, then fill in.
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}/tenant/a");
    let routes = vec![
        // 1st candidate: a document for another issuer → refused.
        (
            "/.well-known/oauth-authorization-server/tenant/a".to_string(),
            json!({"issuer": format!("http://127.0.0.1:{port}/tenant/b"), "jwks_uri": format!("http://127.0.0.1:{port}/wrong-keys")}),
        ),
        // 2nd candidate: absent (404). 3rd: the right one.
        (
            "/tenant/a/.well-known/openid-configuration".to_string(),
            json!({"issuer": issuer, "jwks_uri": format!("http://127.0.0.1:{port}/keys")}),
        ),
        ("/keys".to_string(), jwks.clone()),
    ];
    let server = MetadataServer::start_on(port, routes).await;

    let issuer_line = format!("  issuer: \"{issuer}\"");
    let config = TestConfig::new().backend("demo", &backend.url()).auth(&[
        "mode: oauth",
        "oauth:",
        &issuer_line,
    ]);
    let gateway = Gateway::start(&config.build()).await;
    let ready = wait_auth_ready(&gateway).await;
    assert_eq!(
        ready["auth"]["jwksUri"],
        format!("http://127.0.0.1:{port}/keys"),
        "{ready}"
    );
    let seen = server.seen();
    assert_eq!(
        &seen[..4],
        &[
            "/.well-known/oauth-authorization-server/tenant/a",
            "/.well-known/openid-configuration/tenant/a",
            "/tenant/a/.well-known/openid-configuration",
            "/keys",
        ],
        "{seen:?}"
    );
    assert!(
        !seen.contains(&"/wrong-keys".to_string()),
        "the other issuer's keys are never fetched"
    );

    let now = common::oidc::unix_now();
    let claims = json!({"iss": issuer, "aud": gateway.mcp_url(), "sub": "u", "scope": READ, "iat": now, "exp": now + 300});
    let token = oidc.sign(claims, json!({"alg": "ES256"})).await;
    let client = gateway
        .client()
        .with_header("authorization", &format!("Bearer {token}"));
    assert!(client.tool_names().await.contains(&"demo_echo".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_url_setting_overrides_discovery() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], READ)).await;
    let oidc = OidcProvider::start_on(free_port(), &["http://127.0.0.1:1/mcp".into()]).await;
    // The issuer has no metadata at all; the keys come from the configured URL.
    let issuer = "http://127.0.0.1:9/nowhere";
    let jwks_line = format!("  jwks_url: \"{}/jwks\"", oidc.issuer());
    let issuer_line = format!("  issuer: \"{issuer}\"");
    let config = TestConfig::new().backend("demo", &backend.url()).auth(&[
        "mode: oauth",
        "oauth:",
        &issuer_line,
        &jwks_line,
    ]);
    let gateway = Gateway::start(&config.build()).await;
    let ready = wait_auth_ready(&gateway).await;
    assert_eq!(ready["auth"]["jwksUri"], format!("{}/jwks", oidc.issuer()));
    let now = common::oidc::unix_now();
    let claims = json!({"iss": issuer, "aud": gateway.mcp_url(), "sub": "u", "scope": READ, "iat": now, "exp": now + 300});
    let token = oidc.sign(claims, json!({})).await;
    let client = gateway
        .client()
        .with_header("authorization", &format!("Bearer {token}"));
    assert!(client.tool_names().await.contains(&"demo_echo".to_string()));
}
