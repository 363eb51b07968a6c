//! Unit tests of the configuration checks and of request handling without HTTP (the HTTP
//! flows run against the real binary in tests/it/dev_as.rs).

use super::*;
use crate::config::{DevClientConfig, DevUserConfig};

fn config() -> Config {
    let mut c = Config::default();
    c.server.listen = vec!["127.0.0.1:4000".into()];
    c.auth.oauth.issuer = Some("http://127.0.0.1:4000".into());
    c.dev_authorization_server.enabled = true;
    c
}

fn server(c: &Config) -> DevAuthServer {
    let (key, _) = SigningKey::generate().unwrap();
    DevAuthServer::with_key(c, key, PathBuf::from("unused"))
}

fn get(s: &DevAuthServer, path: &str, query: &str) -> Answer {
    s.handle(&AsRequest {
        method: "GET",
        path,
        query,
        authorization: None,
        content_type: None,
        body: b"",
    })
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_valid_configuration_has_no_problems_and_disabled_is_never_checked() {
    assert!(
        config_problems(&config()).is_empty(),
        "{:?}",
        config_problems(&config())
    );
    let mut c = Config::default();
    c.server.listen = vec!["0.0.0.0:4000".into()];
    assert!(config_problems(&c).is_empty());
}

#[test]
fn off_loopback_is_refused() {
    let mut c = config();
    c.server.listen = vec!["127.0.0.1:4000".into(), "0.0.0.0:4001".into()];
    let p = config_problems(&c);
    assert!(
        p.iter()
            .any(|m| m.contains("every listener must be on loopback")),
        "{p:?}"
    );

    let mut c = config();
    c.server.canonical_uri = Some("https://mcp.example.com/mcp".into());
    c.auth.oauth.issuer = Some("https://mcp.example.com".into());
    let p = config_problems(&c);
    assert!(
        p.iter()
            .any(|m| m.contains("canonical URI must be on a loopback host")),
        "{p:?}"
    );
}

#[test]
fn the_issuer_must_match_byte_for_byte() {
    let mut c = config();
    c.auth.oauth.issuer = Some("http://127.0.0.1:4000/".into());
    let p = config_problems(&c);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("exactly `http://127.0.0.1:4000`"), "{p:?}");
    c.auth.oauth.issuer = Some("http://localhost:4000".into());
    assert_eq!(config_problems(&c).len(), 1);
}

#[test]
fn users_and_clients_are_checked() {
    let mut c = config();
    c.dev_authorization_server.users = vec![
        DevUserConfig {
            name: "a b".into(),
            email: None,
            scopes: vec!["x y".into()],
        },
        DevUserConfig {
            name: "ok".into(),
            email: None,
            scopes: vec![],
        },
        DevUserConfig {
            name: "ok".into(),
            email: None,
            scopes: vec![],
        },
    ];
    c.dev_authorization_server.clients = vec![
        DevClientConfig {
            id: "dcr.fake".into(),
            secret: Some("short".into()),
            scopes: vec![],
            redirect_uris: vec!["http://example.com/cb".into()],
        },
        DevClientConfig {
            id: "lonely".into(),
            secret: None,
            scopes: vec![],
            redirect_uris: vec![],
        },
    ];
    c.dev_authorization_server.access_token_ttl = Duration::from_secs(1);
    let p = config_problems(&c).join("\n");
    for needle in [
        "users[0].name `a b`",
        "users[0].scopes: `x y` is not a scope",
        "users[2].name `ok` is listed twice",
        "clients[0].id `dcr.fake`",
        "clients[0].secret is too short",
        "clients[0].redirect_uris[0]",
        "clients[1]: a client needs a secret",
        "access_token_ttl",
    ] {
        assert!(p.contains(needle), "missing {needle:?} in:\n{p}");
    }
    let mut c = config();
    c.dev_authorization_server.users.clear();
    assert!(config_problems(&c).join("").contains("at least one user"));
}

#[test]
fn from_config_refuses_what_config_problems_reports() {
    let mut c = config();
    c.server.listen = vec!["0.0.0.0:4000".into()];
    assert!(matches!(
        DevAuthServer::from_config(&c),
        Err(DevAsError::Config(p)) if !p.is_empty()
    ));
}

#[test]
fn metadata_issuer_is_the_public_origin() {
    let c = config();
    let s = server(&c);
    assert_eq!(s.issuer(), "http://127.0.0.1:4000");
    assert_eq!(issuer_for(&c), "http://127.0.0.1:4000");
    let a = get(&s, METADATA_PATH, "");
    assert_eq!(a.status, 200);
    let m: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(m["issuer"], "http://127.0.0.1:4000");
    assert_eq!(
        m["scopes_supported"],
        json!(["mcp:demo:read", "mcp:demo:write"])
    );
    assert_eq!(header(&a, "access-control-allow-origin"), Some("*"));
}

#[test]
fn routing() {
    assert!(DevAuthServer::owns_path(METADATA_PATH));
    assert!(DevAuthServer::owns_path(OIDC_METADATA_PATH));
    assert!(DevAuthServer::owns_path("/oauth/anything"));
    assert!(!DevAuthServer::owns_path(
        "/.well-known/oauth-protected-resource"
    ));
    assert!(!DevAuthServer::owns_path("/.well-known/jwks.json"));
    let s = server(&config());
    assert_eq!(get(&s, "/oauth/unknown", "").status, 404);
    let a = get(&s, TOKEN_PATH, "");
    assert_eq!(a.status, 405);
    assert_eq!(header(&a, "allow"), Some("POST, OPTIONS"));
}

#[test]
fn the_picker_page_escapes_what_the_client_chose() {
    let s = server(&config());
    let reg = s.clients.register(
        &json!({"client_name": "<script>alert(1)</script>", "redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"}),
        &s.scopes,
    );
    let body = reg.unwrap().unwrap();
    let id = body["client_id"].as_str().unwrap();
    let challenge = "a".repeat(43);
    let q = format!(
        "response_type=code&client_id={id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&code_challenge={challenge}&code_challenge_method=S256"
    );
    let a = get(&s, AUTHORIZE_PATH, &q);
    assert_eq!(a.status, 200);
    let html = String::from_utf8_lossy(&a.body);
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"));
    assert!(
        header(&a, "content-security-policy").is_some_and(|c| c.contains("frame-ancestors 'none'"))
    );
    // No CORS on the authorization endpoint: it is a top-level navigation.
    assert_eq!(header(&a, "access-control-allow-origin"), None);
}

#[test]
fn granted_scopes_intersect_request_user_and_client() {
    let user = DevUser {
        name: "u".into(),
        email: "u@localhost".into(),
        scopes: vec!["r".into(), "w".into()],
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(authorize::granted_scopes(None, &user, None), s(&["r", "w"]));
    assert_eq!(
        authorize::granted_scopes(Some(&s(&["w", "x"])), &user, None),
        s(&["w"])
    );
    assert_eq!(
        authorize::granted_scopes(None, &user, Some(&s(&["r"]))),
        s(&["r"])
    );
    assert!(authorize::granted_scopes(Some(&s(&["x"])), &user, None).is_empty());
}
