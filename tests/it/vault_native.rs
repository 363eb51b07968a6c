//! Identity to native MCP backends against real parts on loopback: an OAuth-protected MCP
//! server on the official Python SDK (tests/python/vault_upstream.py, its `TokenVerifier`
//! checking each token's signature against the issuer's JWKS, its expiry and its audience)
//! sits behind the gateway as a `kind: mcp` backend. Its tools echo the token they were
//! called with. Accounts are linked at an oidc-provider (the "provider") through the real flow
//! by the scripted browser of `vault_link`; the official Python SDK client
//! (tests/python/vault_client.py) calls the upstream's tools through the gateway.
//!
//! Proven here: the upstream sees each user's own linked token (never the caller's gateway
//! token, never the gateway's), refreshed after expiry; an unlinked user gets the tool error
//! with the link URL, or the `-32042` URL elicitation then a successful retry; discovery
//! through the catalog subject or a static catalog; a pre-registered client; `mint` and
//! `exchange` tokens for the upstream's own audience; the warning of an explicit
//! `passthrough`. The vault flows run on both stores.

use crate::common;
use crate::store_support::{Kind, TestDb};
use crate::vault_link::{Browser, Handle};

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::oidc::{decode_jwt, OAuthSetup, OidcProvider};
use common::{interop, TestConfig};
use cortex_gateway::vault::KeyRing;
use serde_json::{json, Value};

const SCOPE: &str = "mcp:crm:read";
const KEY: [u8; 32] = [0x5a; 32];
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The Python upstream, killed (and reaped) when dropped.
struct Upstream {
    child: Child,
    resource: String,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts tests/python/vault_upstream.py on `port`, accepting tokens for its own resource URL
/// from the `trusted` issuers (`(issuer, JWKS URL)`); with `introspect`, only tokens that
/// RFC 7662 endpoint still calls active (so a token revoked at the provider is refused).
async fn start_upstream(
    port: u16,
    trusted: &[(String, String)],
    introspect: Option<&str>,
    log: &Path,
) -> Upstream {
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let mut cmd = Command::new(interop::python());
    cmd.arg("-W")
        .arg("ignore")
        .arg(interop::repo_path("tests/python/vault_upstream.py"))
        .arg(port.to_string())
        .arg(&resource);
    for (iss, jwks) in trusted {
        cmd.arg(format!("{iss}={jwks}"));
    }
    if let Some(url) = introspect {
        cmd.env("UPSTREAM_INTROSPECT", url);
    }
    let err = std::fs::File::create(log).expect("log file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("start the upstream");
    let up = Upstream { child, resource };
    common::eventually(
        Duration::from_secs(60),
        "the upstream listening",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    up
}

/// The static catalog of the upstream's tools (for backends whose discovery has no token).
const STATIC_CATALOG: [&str; 4] = [
    "static_catalog:",
    "  tools:",
    "    - {name: seen, description: Which token this call carried, inputSchema: {type: object}}",
    "    - {name: presented_tokens, description: Every token presented, inputSchema: {type: object}}",
];

#[derive(Clone, Copy, PartialEq)]
enum Catalog {
    /// `static_catalog` on the backend.
    Static,
    /// `catalog_sub: catalog-svc` on the provider.
    Subject,
}

/// A gateway (callers authenticate at one oidc-provider) with vault provider `design` at a
/// second one, and the Python upstream as native backend `design` with `identity: vault`.
struct Native {
    setup: OAuthSetup,
    provider: OidcProvider,
    upstream: Upstream,
    db: TestDb,
    _logs: tempfile::TempDir,
}

async fn start(kind: Kind, catalog: Catalog, preregistered: bool, vault_lines: &[&str]) -> Native {
    start_full(kind, catalog, preregistered, vault_lines, false).await
}

/// [`start`], with an upstream that also asks the provider whether each token is still
/// active (`revocable`), so the provider can revoke a linked token early.
async fn start_full(
    kind: Kind,
    catalog: Catalog,
    preregistered: bool,
    vault_lines: &[&str],
    revocable: bool,
) -> Native {
    let db = TestDb::new(kind).await;
    let (up_port, provider_port) = (common::free_port(), common::free_port());
    let issuer = format!("http://127.0.0.1:{provider_port}");
    let logs = tempfile::tempdir().expect("temp dir");
    let log = logs.path().join("upstream.log");
    let introspect = revocable.then(|| format!("{issuer}/test/introspect"));
    let upstream = start_upstream(
        up_port,
        &[(issuer.clone(), format!("{issuer}/jwks"))],
        introspect.as_deref(),
        &log,
    )
    .await;
    let resource = upstream.resource.clone();
    let storage = match kind {
        Kind::Sqlite => format!("storage:\n  data_dir: \"{}\"", db.data_dir().display()),
        Kind::Postgres => format!("storage:\n  database_url: \"{}\"", db.pg_uri()),
    };
    let key = base64::engine::general_purpose::STANDARD.encode(KEY);
    let mut vault = format!(
        "vault:\n  key: \"{key}\"\n  providers:\n    - id: design\n      name: Design\n      resource: \"{resource}\"\n      issuer: \"{issuer}\"\n      scopes: [\"{SCOPE}\"]"
    );
    if catalog == Catalog::Subject {
        vault.push_str("\n      catalog_sub: catalog-svc");
    }
    if preregistered {
        vault.push_str(
            "\n      client_id: gateway-vault\n      client_secret: gateway-vault-secret",
        );
    }
    for line in vault_lines {
        vault.push_str(&format!("\n  {line}"));
    }
    let mut backend = vec!["vault_provider: design", "timeout: 30s"];
    if catalog == Catalog::Static {
        backend.extend(STATIC_CATALOG);
    }
    let config = TestConfig::new()
        .top(&storage)
        .top(&vault)
        .mcp_backend("design", &resource, &backend);
    let setup = OAuthSetup::start(config, &[]).await;
    let clients = preregistered.then(|| {
        json!([{
            "client_id": "gateway-vault",
            "client_secret": "gateway-vault-secret",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": [format!("{}/link/design/callback", setup.gateway.url())],
            "token_endpoint_auth_method": "client_secret_basic",
        }])
    });
    let provider =
        OidcProvider::start_with_clients(provider_port, std::slice::from_ref(&resource), clients)
            .await;
    Native {
        setup,
        provider,
        upstream,
        db,
        _logs: logs,
    }
}

impl Native {
    /// A gateway token for user `sub`.
    async fn token(&self, sub: &str) -> String {
        let mut claims = self.setup.claims(SCOPE);
        claims["sub"] = json!(sub);
        self.setup.oidc.sign(claims, json!({})).await
    }

    fn gateway(&self) -> String {
        self.setup.gateway.url()
    }

    /// Links `login`'s provider account for the user of `token`; returns the client id the
    /// gateway used at the provider.
    async fn link(&self, token: &str, login: &str) -> String {
        let mut b = Browser::new();
        let start = b
            .get(
                &format!("{}/link/design/start", self.gateway()),
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await;
        assert_eq!(start.status, 302, "start: {}", start.body);
        let authorize = start.location.expect("a redirect to the provider");
        assert!(
            authorize.starts_with(&self.provider.issuer()),
            "{authorize}"
        );
        let q: HashMap<String, String> = url::Url::parse(&authorize)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(q["resource"], self.upstream.resource);
        let callback = b
            .sign_in_and_consent(&authorize, login, &self.gateway())
            .await;
        let done = b.get(&callback, &[]).await;
        assert_eq!(done.status, 200, "callback: {}", done.body);
        q["client_id"].clone()
    }

    /// The Python SDK client calls `tool` as the user of `token` (`plain`: no elicitation).
    async fn python(&self, token: &str, tool: &str) -> Value {
        let script = interop::repo_path("tests/python/vault_client.py");
        let out = interop::run_python_script(
            vec![
                script.display().to_string(),
                self.setup.gateway.mcp_url(),
                token.to_string(),
                tool.to_string(),
                "plain".into(),
            ],
            self.setup.gateway.dir().to_owned(),
            SCRIPT_TIMEOUT,
        )
        .await;
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// What the upstream saw on a `design_seen` call by the user of `token` (Rust client).
    async fn seen(&self, token: &str) -> Value {
        let r = self
            .setup
            .client(token)
            .call_tool("design_seen", json!({}))
            .await;
        assert_ne!(r["isError"], true, "{r}\n{}", self.setup.gateway.logs());
        seen_of(r["content"][0]["text"].as_str().unwrap_or(""))
    }

    /// Every token presented to the upstream so far (asked as `token`'s user).
    async fn presented(&self, token: &str) -> Vec<String> {
        let r = self
            .setup
            .client(token)
            .call_tool("design_presented_tokens", json!({}))
            .await;
        assert_ne!(r["isError"], true, "{r}");
        serde_json::from_str(r["content"][0]["text"].as_str().unwrap_or("[]")).unwrap()
    }

    /// The grant of `sub`, opened with the test's copy of the key.
    async fn stored_grant(&self, sub: &str) -> Option<cortex_gateway::vault::Grant> {
        let store = self.db.handle().open();
        let row = store.get_grant(sub, "design").await.unwrap()?;
        let ring = KeyRing::new(vec![("primary".into(), KEY)]).unwrap();
        Some(
            ring.open_grant(sub, "design", &row.key_id, &row.sealed)
                .expect("opens"),
        )
    }

    /// Makes `sub`'s stored grant expired (re-sealed with an expiry in the past).
    async fn expire_grant(&self, sub: &str) {
        let store = self.db.handle().open();
        let row = store.get_grant(sub, "design").await.unwrap().unwrap();
        let ring = KeyRing::new(vec![("primary".into(), KEY)]).unwrap();
        let mut g = ring
            .open_grant(sub, "design", &row.key_id, &row.sealed)
            .unwrap();
        g.expires_at_ms = Some(1);
        let (key_id, sealed) = ring.seal_grant(sub, "design", &g);
        store
            .replace_grant(
                cortex_gateway::store::NewGrant {
                    subject: sub.into(),
                    provider: "design".into(),
                    key_id,
                    sealed,
                    now_ms: 2,
                },
                row.version,
            )
            .await
            .unwrap()
            .expect("replaced");
    }
}

fn seen_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn is_link_error(outcome: &Value) -> bool {
    outcome["isError"] == true
        && outcome["text"]
            .as_str()
            .is_some_and(|t| t.contains("/link/design/start") && t.contains("Design"))
}

async fn the_whole_flow(kind: Kind) {
    let t = start(kind, Catalog::Static, false, &[]).await;
    let alice = t.token("alice").await;

    // Not linked: a client without URL elicitation gets the tool error naming the account
    // and the link URL; nothing reached the upstream.
    let r = t.python(&alice, "design_seen").await;
    assert!(is_link_error(&r["first"]), "{r}");
    assert!(r["first"]["text"]
        .as_str()
        .unwrap()
        .contains(&format!("{}/link/design/start", t.gateway())));

    // Linked through the real flow: the Python SDK client's call reaches the upstream with
    // alice's own token at the provider, for the upstream's audience.
    t.link(&alice, "alice-at-design").await;
    let r = t.python(&alice, "design_seen").await;
    assert_eq!(r["first"]["isError"], false, "{r}");
    let seen = seen_of(r["first"]["text"].as_str().unwrap());
    assert_eq!(seen["sub"], "alice-at-design", "{seen}");
    assert_eq!(seen["iss"], t.provider.issuer());
    assert_eq!(seen["aud"], t.upstream.resource);
    let first = seen["token"].as_str().unwrap().to_string();
    assert_ne!(first, alice);
    assert_eq!(
        first,
        t.stored_grant("alice").await.unwrap().access_token,
        "the stored grant's token"
    );

    // Refresh after expiry on the native path: a new token, still alice's account.
    t.expire_grant("alice").await;
    let seen = t.seen(&alice).await;
    assert_eq!(seen["sub"], "alice-at-design");
    let second = seen["token"].as_str().unwrap().to_string();
    assert_ne!(second, first, "a refreshed token");
    let stored = t.stored_grant("alice").await.unwrap();
    assert_eq!(stored.access_token, second);
    assert!(stored.expires_at_ms.unwrap() > common::oidc::unix_now() as i64 * 1000);

    // Never the caller's gateway token, never a token of the gateway's issuer.
    let presented = t.presented(&alice).await;
    assert!(!presented.is_empty());
    for token in &presented {
        assert_ne!(token, &alice, "the caller's own token reached the upstream");
        let (_, claims) = decode_jwt(token);
        assert_eq!(claims["iss"], t.provider.issuer(), "{claims}");
        assert!(
            claims["sub"].as_str().unwrap().starts_with("alice-"),
            "{claims}"
        );
    }

    // Linked again to another account: the server binds its sessions to the principal that
    // opened them, so it answers the gateway's session with 404; the gateway opens a new
    // one with the new account's token, and the call goes through.
    let resp = reqwest::Client::new()
        .post(format!("{}/link/design/unlink", t.gateway()))
        .bearer_auth(&alice)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    t.link(&alice, "alice-second-account").await;
    let seen = t.seen(&alice).await;
    assert_eq!(seen["sub"], "alice-second-account", "{seen}");
    let logs = t.setup.gateway.logs();
    assert!(
        logs.contains("upstream session expired; initializing again"),
        "the old session was refused and replaced:\n{logs}"
    );

    // whoami lists the native backend's provider, linked.
    let who = t.setup.client(&alice).call_tool("whoami", json!({})).await;
    let providers = &who["structuredContent"]["linked_accounts"]["providers"];
    assert_eq!(providers[0]["provider"], "design", "{who}");
    assert_eq!(providers[0]["linked"], true, "{who}");
    let carol = t.token("carol").await;
    let who = t.setup.client(&carol).call_tool("whoami", json!({})).await;
    assert_eq!(
        who["structuredContent"]["linked_accounts"]["providers"][0]["linked"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_backend_gets_each_users_own_linked_token_on_sqlite() {
    the_whole_flow(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_backend_gets_each_users_own_linked_token_on_postgres() {
    the_whole_flow(Kind::Postgres).await;
}

/// Runs the Python client in `elicit` mode in the background.
fn spawn_elicit_client(t: &Native, token: &str, dir: &Path) -> Child {
    Command::new(interop::python())
        .arg("-W")
        .arg("ignore")
        .arg(interop::repo_path("tests/python/vault_client.py"))
        .arg(t.setup.gateway.mcp_url())
        .arg(token)
        .arg("design_seen")
        .arg("elicit")
        .arg(dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client")
}

async fn url_elicitation_then_retry(kind: Kind) {
    let t = start(kind, Catalog::Static, false, &[]).await;
    let (alice, bob) = (t.token("alice").await, t.token("bob").await);
    t.link(&bob, "bob-at-design").await;

    // Alice has linked nothing; her client declared URL-mode elicitation: the gateway
    // answers -32042 with the link URL; the client's callback hands it to "the user", who
    // links in the browser; the client retries and the call succeeds.
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_elicit_client(&t, &alice, dir.path());
    let file = dir.path().join("elicitation.json");
    let elicitation: Value = common::eventually(
        Duration::from_secs(60),
        "the client's URL elicitation callback",
        || async {
            let text = std::fs::read_to_string(&file).ok()?;
            serde_json::from_str(&text).ok()
        },
    )
    .await;
    assert_eq!(
        elicitation["url"],
        format!("{}/link/design/start", t.gateway())
    );
    t.link(&alice, "alice-at-design").await;
    std::fs::write(dir.path().join("linked"), b"").unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["first"]["error"]["code"], -32042, "{report}");
    assert_eq!(report["answers"][0], "accept");
    assert_eq!(report["retry"]["isError"], false, "{report}");
    let seen = seen_of(report["retry"]["text"].as_str().unwrap());
    assert_eq!(seen["sub"], "alice-at-design");

    // Two users, two upstream accounts, each call with its own.
    for (token, account) in [
        (&alice, "alice-at-design"),
        (&bob, "bob-at-design"),
        (&alice, "alice-at-design"),
    ] {
        let seen = t.seen(token).await;
        assert_eq!(seen["sub"], account, "{seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlinked_user_is_sent_to_the_link_page_then_retries_two_users_apart_on_sqlite() {
    url_elicitation_then_retry(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlinked_user_is_sent_to_the_link_page_then_retries_two_users_apart_on_postgres() {
    url_elicitation_then_retry(Kind::Postgres).await;
}

/// The `jti` of a JWT access token.
fn jti(token: &str) -> String {
    decode_jwt(token).1["jti"]
        .as_str()
        .expect("a jti")
        .to_string()
}

impl Native {
    /// Revokes `sub`'s stored refresh token at the provider's RFC 7009 endpoint (the user
    /// withdrew the gateway's access there) and marks its access token revoked, so the
    /// upstream refuses it and no renewal is possible.
    async fn revoke_grant_at_provider(&self, sub: &str) {
        let g = self.stored_grant(sub).await.expect("a grant");
        let meta: Value = reqwest::get(format!(
            "{}/.well-known/oauth-authorization-server",
            self.provider.issuer()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let endpoint = meta["revocation_endpoint"].as_str().expect("RFC 7009");
        let rt = g.refresh_token.expect("a refresh token");
        let resp = reqwest::Client::new()
            .post(endpoint)
            .form(&[
                ("token", rt.as_str()),
                ("token_type_hint", "refresh_token"),
                ("client_id", g.client_id.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        self.provider.revoke(&jti(&g.access_token)).await;
    }
}

/// A linked token the provider revoked before its expiry: the upstream answers 401; the
/// gateway renews the grant once with its refresh token and the call goes through. When the
/// provider refuses the renewal too (the whole grant revoked), the grant is deleted and the
/// user is asked to link again exactly as an unlinked user: a tool error naming the account
/// and the link URL, or the `-32042` URL elicitation then a successful retry.
async fn a_revoked_token(kind: Kind) {
    let t = start_full(kind, Catalog::Static, false, &[], true).await;
    let (alice, bob) = (t.token("alice").await, t.token("bob").await);
    t.link(&alice, "alice-at-design").await;
    let first = t.seen(&alice).await["token"].as_str().unwrap().to_string();
    let grant = t.stored_grant("alice").await.unwrap();
    assert_eq!(grant.access_token, first);
    let first_refresh = grant
        .refresh_token
        .expect("a refresh token (offline_access)");

    // Revoked early (its expiry is minutes away): renewed once, the call succeeds.
    t.provider.revoke(&jti(&first)).await;
    let seen = t.seen(&alice).await;
    assert_eq!(seen["sub"], "alice-at-design", "{seen}");
    let second = seen["token"].as_str().unwrap().to_string();
    assert_ne!(second, first, "a renewed token");
    let stored = t.stored_grant("alice").await.unwrap();
    assert_eq!(stored.access_token, second);
    assert_ne!(
        stored.refresh_token.as_deref(),
        Some(first_refresh.as_str()),
        "the rotated refresh token replaced the old one"
    );
    let logs = t.setup.gateway.logs();
    assert!(
        logs.contains("the server refused the call's credential; trying once more"),
        "{logs}"
    );
    assert!(t.presented(&alice).await.contains(&first));

    // The whole grant revoked at the provider: the renewal is refused for good, the grant is
    // deleted, and a client without URL elicitation is told to link again.
    t.revoke_grant_at_provider("alice").await;
    let r = t.python(&alice, "design_seen").await;
    assert!(is_link_error(&r["first"]), "{r}");
    assert!(
        r["first"]["text"]
            .as_str()
            .unwrap()
            .contains("no longer accepted"),
        "{r}"
    );
    assert!(
        t.stored_grant("alice").await.is_none(),
        "the grant is deleted"
    );

    // Bob's client declared URL-mode elicitation: the same refusal reaches it as the
    // `-32042` URL elicitation to the link page; he links again and the retry succeeds.
    t.link(&bob, "bob-at-design").await;
    assert_eq!(t.seen(&bob).await["sub"], "bob-at-design");
    t.revoke_grant_at_provider("bob").await;
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_elicit_client(&t, &bob, dir.path());
    let file = dir.path().join("elicitation.json");
    let elicitation: Value = common::eventually(
        Duration::from_secs(60),
        "the client's URL elicitation callback",
        || async {
            let text = std::fs::read_to_string(&file).ok()?;
            serde_json::from_str(&text).ok()
        },
    )
    .await;
    assert_eq!(
        elicitation["url"],
        format!("{}/link/design/start", t.gateway())
    );
    assert!(
        t.stored_grant("bob").await.is_none(),
        "the grant is deleted"
    );
    t.link(&bob, "bob-at-design").await;
    std::fs::write(dir.path().join("linked"), b"").unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["first"]["error"]["code"], -32042, "{report}");
    assert_eq!(report["retry"]["isError"], false, "{report}");
    assert_eq!(
        seen_of(report["retry"]["text"].as_str().unwrap())["sub"],
        "bob-at-design"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_at_the_provider_is_renewed_once_then_relinked_on_sqlite() {
    a_revoked_token(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_at_the_provider_is_renewed_once_then_relinked_on_postgres() {
    a_revoked_token(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_registered_client_links_without_dynamic_registration() {
    let t = start(Kind::Sqlite, Catalog::Static, true, &[]).await;
    let alice = t.token("alice").await;
    let client_id = t.link(&alice, "alice-at-design").await;
    assert_eq!(client_id, "gateway-vault");
    assert_eq!(
        t.stored_grant("alice").await.unwrap().client_id,
        "gateway-vault"
    );
    let r = t.python(&alice, "design_seen").await;
    assert_eq!(r["first"]["isError"], false, "{r}");
    let seen = seen_of(r["first"]["text"].as_str().unwrap());
    assert_eq!(seen["sub"], "alice-at-design");
    assert_eq!(seen["client_id"], "gateway-vault");
    // A refresh authenticates with the configured secret too.
    t.expire_grant("alice").await;
    let seen = t.seen(&alice).await;
    assert_eq!(seen["client_id"], "gateway-vault");
    assert_ne!(seen["token"], r["first"]["text"]);
}

/// Waits until the user of `token` sees `tool`.
async fn wait_listed_for(t: &Native, token: &str, tool: &str) {
    let c = t.setup.client(token);
    common::eventually(
        Duration::from_secs(60),
        &format!("{tool} listed"),
        || async {
            if c.tool_names().await.iter().any(|n| n == tool) {
                return Some(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            None
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_subject_discovers_a_native_backend_for_unlinked_users() {
    let t = start(Kind::Sqlite, Catalog::Subject, false, &[]).await;
    let dave = t.token("dave").await;
    // Before the catalog subject links, the upstream refuses discovery (no token): nothing
    // is listed.
    let names = t.setup.client(&dave).tool_names().await;
    assert!(!names.iter().any(|n| n.starts_with("design_")), "{names:?}");
    // The catalog subject links once; discovery then carries its token and every user sees
    // the tools before linking.
    let svc = t.token("catalog-svc").await;
    t.link(&svc, "svc-at-design").await;
    wait_listed_for(&t, &dave, "design_seen").await;
    // Dave has not linked: calling the tool asks him to.
    let r = t.python(&dave, "design_seen").await;
    assert!(is_link_error(&r["first"]), "{r}");
    // The discovery token was the catalog subject's own.
    let presented = t.presented(&svc).await;
    assert!(presented
        .iter()
        .any(|tok| decode_jwt(tok).1["sub"] == "svc-at-design"));
    assert!(presented.iter().all(|tok| tok != &svc && tok != &dave));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_and_exchange_reach_native_backends_for_their_own_audience() {
    let dir = tempfile::tempdir().unwrap();
    let (minted_port, swapped_port) = (common::free_port(), common::free_port());
    let minted_url = format!("http://127.0.0.1:{minted_port}/mcp");
    let swapped_url = format!("http://127.0.0.1:{swapped_port}/mcp");
    let mut minted = vec!["identity: mint", "timeout: 30s"];
    minted.extend(STATIC_CATALOG);
    let mut swapped = vec!["identity: exchange", "timeout: 30s"];
    swapped.extend(STATIC_CATALOG);
    let config = TestConfig::new()
        .mcp_backend("minted", &minted_url, &minted)
        .mcp_backend("swapped", &swapped_url, &swapped)
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
    // The minted upstream trusts the gateway's keys; the other the gateway's authorization
    // server (which issues the exchanged tokens).
    let gw = setup.gateway.url();
    let _minted = start_upstream(
        minted_port,
        &[(gw.clone(), format!("{gw}/.well-known/jwks.json"))],
        None,
        &dir.path().join("minted.log"),
    )
    .await;
    let asi = setup.oidc.issuer();
    let _swapped = start_upstream(
        swapped_port,
        &[(asi.clone(), format!("{asi}/jwks"))],
        None,
        &dir.path().join("swapped.log"),
    )
    .await;
    let caller = setup.token(SCOPE).await;
    let client = setup.client(&caller);
    for (tool, issuer, audience) in [
        ("minted_seen", gw.as_str(), minted_url.as_str()),
        ("swapped_seen", asi.as_str(), swapped_url.as_str()),
    ] {
        let r = client.call_tool(tool, json!({})).await;
        assert_ne!(r["isError"], true, "{tool}: {r}\n{}", setup.gateway.logs());
        let seen = seen_of(r["content"][0]["text"].as_str().unwrap());
        assert_eq!(seen["iss"], issuer, "{tool}: {seen}");
        assert_eq!(seen["aud"], audience, "{tool}: the upstream's own audience");
        assert_eq!(seen["sub"], "m2m", "{tool}: the caller's subject");
        assert_ne!(
            seen["token"],
            caller.as_str(),
            "{tool}: never the caller's token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_passthrough_to_a_native_backend_is_warned_at_start() {
    let url = format!("http://127.0.0.1:{}/mcp", common::free_port());
    let yaml = TestConfig::new()
        .mcp_backend("first", &url, &["identity: passthrough"])
        .mcp_backend("quiet", &url.replace("/mcp", "/other"), &[])
        .build();
    let gateway = common::Gateway::start(&yaml).await;
    let logs = gateway.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("backends[0].identity") && l.contains("passthrough"))
        .unwrap_or_else(|| panic!("no passthrough warning:\n{logs}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("forbids token passthrough"), "{warning}");
    assert!(!logs.contains("backends[1].identity"), "{logs}");
    // `check-config` prints the same warning (and accepts the file).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cortex-gateway"));
    cmd.current_dir(gateway.dir())
        .arg("check-config")
        .arg(gateway.path("gateway.yaml"))
        .stdin(Stdio::null());
    common::process::scrub_env(&mut cmd);
    let out = cmd.output().expect("check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("backends[0].identity: `passthrough` hands each caller's own gateway token"),
        "{text}"
    );
}
