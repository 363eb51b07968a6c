//! Account linking against a real third-party authorization server: the gateway (whose own
//! callers authenticate at one oidc-provider) links each user's account at a second
//! oidc-provider (the "provider"), through the real flow driven by a scripted browser (an HTTP
//! client that follows redirects by hand, keeps cookies per host and posts the provider's
//! login and consent forms). The gateway registers itself at the provider (RFC 7591), sends
//! PKCE S256, `resource` and a sealed `state`, checks `iss`, stores the grant sealed, then
//! hands the user's own provider token to a backend named `vault_provider`, refreshing it,
//! and revokes it on unlink. The whole flow runs on both stores.

use crate::common;
use crate::store_support::{Kind, TestDb};

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use common::oidc::{decode_jwt, OAuthSetup, OidcProvider};
use common::{tool, BackendSpec, TestBackend, TestConfig};
use cortex_gateway::vault::KeyRing;
use serde_json::{json, Value};

const SCOPE: &str = "mcp:crm:read";
const KEY: [u8; 32] = [0x5a; 32];

/// A scripted browser: no automatic redirects, cookies kept per host:port.
pub(crate) struct Browser {
    http: reqwest::Client,
    jars: HashMap<String, Vec<(String, String)>>,
}

pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) body: String,
}

impl Browser {
    pub(crate) fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            jars: HashMap::new(),
        }
    }

    /// A browser that also trusts the CA certificate at `ca` (PEM), for a gateway on https.
    pub(crate) fn with_ca(ca: &std::path::Path) -> Browser {
        let pem = std::fs::read(ca).expect("read the CA certificate");
        Browser {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM CA"))
                .build()
                .expect("client"),
            jars: HashMap::new(),
        }
    }

    fn authority(url: &str) -> String {
        let u = url::Url::parse(url).expect("absolute URL");
        format!(
            "{}:{}",
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        )
    }

    /// The cookie `name` the browser holds for `url`'s host.
    fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.jars
            .get(&Self::authority(url))?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn drop_cookies(&mut self, url: &str) {
        self.jars.remove(&Self::authority(url));
    }

    async fn send(&mut self, url: &str, req: reqwest::RequestBuilder) -> Page {
        let key = Self::authority(url);
        let jar = self.jars.entry(key.clone()).or_default();
        let req = if jar.is_empty() {
            req
        } else {
            let header = jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req.header("cookie", header)
        };
        let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = resp.status().as_u16();
        for v in resp.headers().get_all("set-cookie") {
            let text = v.to_str().unwrap_or("");
            let pair = text.split(';').next().unwrap_or("");
            if let Some((k, val)) = pair.split_once('=') {
                let jar = self.jars.entry(key.clone()).or_default();
                jar.retain(|(name, _)| name != k.trim());
                let expired = text.to_ascii_lowercase().contains("max-age=0") || val.is_empty();
                if !expired {
                    jar.push((k.trim().to_string(), val.to_string()));
                }
            }
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| {
                url::Url::parse(url)
                    .and_then(|base| base.join(l))
                    .map(String::from)
                    .unwrap_or_else(|_| l.to_string())
            });
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            location,
            body,
        }
    }

    pub(crate) async fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Page {
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(url, req).await
    }

    async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> Page {
        let req = self.http.post(url).form(fields);
        self.send(url, req).await
    }

    /// From the provider's authorization URL to the gateway's callback URL: signs in as
    /// `login` and consents. Returns the callback URL (not yet opened).
    pub(crate) async fn sign_in_and_consent(
        &mut self,
        authorize_url: &str,
        login: &str,
        gateway: &str,
    ) -> String {
        let mut url = authorize_url.to_string();
        for _ in 0..16 {
            if url.starts_with(gateway) {
                return url;
            }
            let page = self.get(&url, &[]).await;
            if let Some(next) = page.location {
                url = next;
                continue;
            }
            assert_eq!(page.status, 200, "{url}: {}", page.body);
            let action = form_action(&page.body)
                .unwrap_or_else(|| panic!("no form at {url}: {}", page.body));
            let action = url::Url::parse(&url)
                .unwrap()
                .join(&action)
                .unwrap()
                .to_string();
            let fields: Vec<(&str, &str)> = if page.body.contains("name=\"login\"") {
                vec![("prompt", "login"), ("login", login), ("password", "any")]
            } else {
                vec![("prompt", "consent")]
            };
            let after = self.post_form(&action, &fields).await;
            url = after.location.unwrap_or_else(|| {
                panic!(
                    "{action} did not redirect ({}): {}",
                    after.status, after.body
                )
            });
        }
        panic!("the provider never redirected back to the gateway");
    }
}

fn form_action(html: &str) -> Option<String> {
    let at = html.find("<form")?;
    let rest = &html[at..];
    let a = rest.find("action=\"")? + "action=\"".len();
    let end = rest[a..].find('"')?;
    Some(rest[a..a + end].replace("&amp;", "&"))
}

/// A gateway whose callers authenticate at one oidc-provider, with vault provider `design`
/// at a second one, and a backend `crm` that receives each user's linked token.
pub(crate) struct Linked {
    pub(crate) setup: OAuthSetup,
    provider: OidcProvider,
    pub(crate) upstream: TestBackend,
    resource: String,
    /// The database this setup created (dropped with it), if any.
    _fresh: Option<TestDb>,
    /// Opens handles on the database.
    pub(crate) _db: DbHandle,
}

/// Opens store handles on a test database and queries it, without owning it.
pub(crate) struct DbHandle {
    kind: Kind,
    sqlite_file: Option<std::path::PathBuf>,
    pg_url: Option<String>,
}

impl DbHandle {
    pub(crate) fn open(&self) -> std::sync::Arc<dyn cortex_gateway::store::Store> {
        match self.kind {
            Kind::Sqlite => std::sync::Arc::new(cortex_gateway::store::SqliteStore::open(
                self.sqlite_file.clone().expect("sqlite"),
            )),
            Kind::Postgres => std::sync::Arc::new(
                cortex_gateway::store::PostgresStore::new(self.pg_url.as_deref().expect("pg"))
                    .expect("postgres store"),
            ),
        }
    }

    /// Grants whose sealed record contains `needle` (nothing may be stored in clear).
    async fn grants_containing(&self, needle: &str) -> usize {
        let store = self.open();
        let mut n = 0;
        for sub in ["alice", "bob", "carol"] {
            for g in store.list_grants(sub).await.unwrap() {
                if g.sealed.contains(needle) || g.key_id.contains(needle) {
                    n += 1;
                }
            }
        }
        n
    }
}

pub(crate) trait Handle {
    fn handle(&self) -> DbHandle;
}

impl Handle for TestDb {
    fn handle(&self) -> DbHandle {
        match self.kind {
            Kind::Sqlite => DbHandle {
                kind: Kind::Sqlite,
                sqlite_file: Some(self.sqlite_file()),
                pg_url: None,
            },
            Kind::Postgres => DbHandle {
                kind: Kind::Postgres,
                sqlite_file: None,
                pg_url: Some(self.pg_url()),
            },
        }
    }
}

pub(crate) async fn start(kind: Kind, vault_lines: &[&str]) -> Linked {
    start_with(None, kind, vault_lines).await
}

/// The setup on `db` when given (its data survives this gateway), else on a fresh one.
async fn start_with(db: Option<&TestDb>, kind: Kind, vault_lines: &[&str]) -> Linked {
    start_full(db, kind, vault_lines, None, &[]).await
}

/// With `discovered`: the provider's resource is that URL, and its issuer and scopes are not
/// configured (RFC 9728 discovery finds them); `provider_port` is the provider's port.
async fn start_full(
    db: Option<&TestDb>,
    kind: Kind,
    vault_lines: &[&str],
    discovered: Option<(String, u16)>,
    provider_lines: &[&str],
) -> Linked {
    let upstream = TestBackend::start(BackendSpec {
        tools: vec![tool("lookup", SCOPE)],
        ..BackendSpec::default()
    })
    .await;
    let provider_port = discovered
        .as_ref()
        .map_or_else(common::free_port, |(_, port)| *port);
    let resource = discovered
        .as_ref()
        .map_or_else(|| format!("{}/mcp", upstream.url()), |(r, _)| r.clone());
    let as_lines = if discovered.is_some() {
        String::new()
    } else {
        format!("\n      issuer: \"http://127.0.0.1:{provider_port}\"\n      scopes: [\"{SCOPE}\"]")
    };
    let fresh = match db {
        Some(_) => None,
        None => Some(TestDb::new(kind).await),
    };
    let dbr = db.or(fresh.as_ref()).expect("a database");
    let storage = match kind {
        Kind::Sqlite => format!("storage:\n  data_dir: \"{}\"", dbr.data_dir().display()),
        Kind::Postgres => format!("storage:\n  database_url: \"{}\"", dbr.pg_uri()),
    };
    let db_handle = dbr.handle();
    let key = base64::engine::general_purpose::STANDARD.encode(KEY);
    let mut vault = format!(
        "vault:\n  key: \"{key}\"\n  providers:\n    - id: design\n      name: Design\n      resource: \"{resource}\"{as_lines}"
    );
    for line in provider_lines {
        vault.push_str(&format!("\n      {line}"));
    }
    for line in vault_lines {
        vault.push_str(&format!("\n  {line}"));
    }
    let config = TestConfig::new().top(&storage).top(&vault).backend_with(
        "crm",
        &upstream.url(),
        &["vault_provider: design"],
    );
    let setup = OAuthSetup::start(config, &[]).await;
    let provider = OidcProvider::start_on(provider_port, std::slice::from_ref(&resource)).await;
    Linked {
        setup,
        provider,
        upstream,
        resource,
        _fresh: fresh,
        _db: db_handle,
    }
}

impl Linked {
    /// A gateway token for user `sub`.
    pub(crate) async fn token(&self, sub: &str) -> String {
        let mut claims = self.setup.claims(SCOPE);
        claims["sub"] = json!(sub);
        self.setup.oidc.sign(claims, json!({})).await
    }

    pub(crate) fn gateway(&self) -> String {
        self.setup.gateway.url()
    }

    /// Links `login`'s provider account for the user of `token`, in a fresh browser.
    pub(crate) async fn link(&self, token: &str, login: &str) -> Browser {
        let mut b = Browser::new();
        let callback = self.start_link(&mut b, token, login).await;
        let done = b.get(&callback, &[]).await;
        assert_eq!(done.status, 200, "callback: {}", done.body);
        assert!(done.body.contains("linked"), "{}", done.body);
        b
    }

    /// Start → provider sign-in and consent; returns the callback URL (not opened).
    pub(crate) async fn start_link(&self, b: &mut Browser, token: &str, login: &str) -> String {
        let auth = format!("Bearer {token}");
        let start = b
            .get(
                &format!("{}/link/design/start", self.gateway()),
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(start.status, 302, "start: {}", start.body);
        let authorize = start.location.expect("a redirect to the provider");
        let q: HashMap<String, String> = url::Url::parse(&authorize)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert!(
            authorize.starts_with(&self.provider.issuer()),
            "{authorize}"
        );
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["resource"], self.resource);
        assert_eq!(
            q["redirect_uri"],
            format!("{}/link/design/callback", self.gateway())
        );
        // The state is sealed: it names neither the user nor the verifier.
        let (_, claims) = decode_jwt(token);
        assert!(!q["state"].contains(claims["sub"].as_str().unwrap()));
        assert!(b.cookie(&self.gateway(), "cortex_link_design").is_some());
        b.sign_in_and_consent(&authorize, login, &self.gateway())
            .await
    }

    /// Calls `crm_lookup` as the user of `token`.
    pub(crate) async fn call(&self, token: &str) -> Value {
        self.setup
            .client(token)
            .call_tool("crm_lookup", json!({ "message": "hi" }))
            .await
    }

    async fn links(&self, token: &str) -> Value {
        let resp = reqwest::Client::new()
            .get(format!("{}/link", self.gateway()))
            .bearer_auth(token)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn unlink(&self, token: &str) -> Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/link/design/unlink", self.gateway()))
            .bearer_auth(token)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// The provider token the upstream received with its last tool call.
    pub(crate) fn last_upstream_token(&self) -> String {
        let calls = self.upstream.calls("lookup");
        let last = calls.last().expect("the upstream was called");
        last.header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .expect("a bearer")
            .to_string()
    }

    /// The grant of `sub`, opened with the test's copy of the key.
    pub(crate) async fn stored_grant(&self, sub: &str) -> Option<cortex_gateway::vault::Grant> {
        let store = self._db.open();
        let row = store.get_grant(sub, "design").await.unwrap()?;
        let ring = KeyRing::new(vec![("primary".into(), KEY)]).unwrap();
        Some(
            ring.open_grant(sub, "design", &row.key_id, &row.sealed)
                .expect("opens"),
        )
    }
}

impl Linked {
    /// Changes `sub`'s stored grant with `change` and seals it again (as a provider's answer
    /// or the passing of time would have made it).
    async fn reseal(&self, sub: &str, change: impl FnOnce(&mut cortex_gateway::vault::Grant)) {
        let store = self._db.open();
        let row = store
            .get_grant(sub, "design")
            .await
            .unwrap()
            .expect("a grant");
        let ring = KeyRing::new(vec![("primary".into(), KEY)]).unwrap();
        let mut g = ring
            .open_grant(sub, "design", &row.key_id, &row.sealed)
            .expect("opens");
        change(&mut g);
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

pub(crate) fn is_link_error(result: &Value) -> bool {
    result["isError"] == true
        && result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("/link/design/start") && t.contains("Design"))
}

async fn the_whole_flow(kind: Kind) {
    // refresh_before longer than the provider's token lifetime (600 s): every call refreshes.
    let t = start(kind, &["refresh_before: 11m"]).await;
    let alice = t.token("alice").await;

    // Not linked: the call does not reach the upstream; the tool error says where to link.
    let r = t.call(&alice).await;
    assert!(is_link_error(&r), "{r}");
    assert!(t.upstream.calls("lookup").is_empty());
    let links = t.links(&alice).await;
    assert_eq!(links["links"][0]["provider"], "design");
    assert_eq!(links["links"][0]["linked"], false);
    // The public link URL authenticates nobody.
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/link/design/start", t.gateway()))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);

    // Link: start → provider sign-in and consent → callback → stored sealed.
    t.link(&alice, "alice-at-design").await;
    let links = t.links(&alice).await;
    assert_eq!(links["links"][0]["linked"], true, "{links}");
    let stored = t.stored_grant("alice").await.expect("a stored grant");
    assert!(
        stored.refresh_token.is_some(),
        "the provider issued a refresh token"
    );
    assert_eq!(
        t._db.grants_containing("eyJ").await,
        0,
        "a token is stored in clear"
    );
    assert_eq!(
        t._db.grants_containing(stored.access_token.as_str()).await,
        0
    );

    // A call carries alice's own provider token, never her gateway token.
    let r = t.call(&alice).await;
    assert_ne!(r["isError"], true, "{r}");
    let first = t.last_upstream_token();
    assert_ne!(first, alice);
    let (_, claims) = decode_jwt(&first);
    assert_eq!(claims["sub"], "alice-at-design");
    assert_eq!(claims["iss"], t.provider.issuer());
    assert_eq!(claims["aud"], t.resource);

    // Refresh (every call here): a new access token each time, and the rotated refresh
    // token replaced the old one (reusing a spent one would be refused by the provider).
    let rt_before = t.stored_grant("alice").await.unwrap().refresh_token;
    let r = t.call(&alice).await;
    assert_ne!(r["isError"], true, "{r}");
    let second = t.last_upstream_token();
    assert_ne!(second, first);
    let rt_after = t.stored_grant("alice").await.unwrap().refresh_token;
    assert_ne!(rt_before, rt_after, "the rotated refresh token is stored");
    let r = t.call(&alice).await;
    assert_ne!(
        r["isError"], true,
        "a second refresh with the rotated token: {r}"
    );

    // RFC 8707: the code and every refresh named the resource; the provider never had to
    // default it on its token endpoint (a request without one, made here, is counted).
    let stats = t.provider.stats().await;
    assert!(
        stats["defaulted_resource"]["token"].is_null(),
        "a token request without resource: {stats}"
    );
    t.provider
        .client_credentials("m2m", "m2m-secret", SCOPE, None)
        .await;
    assert_eq!(
        t.provider.stats().await["defaulted_resource"]["token"],
        1,
        "the counter counts"
    );

    // No token of the user's grant is in the gateway's logs or in what it tells the user.
    let logs = t.setup.gateway.logs();
    let links = t.links(&alice).await.to_string();
    let current = t.stored_grant("alice").await.unwrap();
    let secrets = [
        Some(first.clone()),
        Some(second.clone()),
        rt_before.clone(),
        rt_after.clone(),
        Some(current.access_token.clone()),
        current.refresh_token.clone(),
    ];
    for secret in secrets.iter().flatten() {
        assert!(!logs.contains(secret.as_str()), "a token in the logs");
        assert!(!links.contains(secret.as_str()), "a token in /link");
    }

    // Unlink: revoked at the provider, deleted here; the next call asks to link again.
    let spent = t.stored_grant("alice").await.unwrap();
    let out = t.unlink(&alice).await;
    assert_eq!(out["unlinked"], true);
    assert!(t.stored_grant("alice").await.is_none());
    let reuse = reqwest::Client::new()
        .post(format!("{}/token", t.provider.issuer()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", spent.refresh_token.as_deref().unwrap()),
            ("client_id", spent.client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        reuse.status(),
        400,
        "the refresh token was revoked at the provider"
    );
    assert!(is_link_error(&t.call(&alice).await));
    assert_eq!(t.unlink(&alice).await["unlinked"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_refresh_unlink_on_sqlite() {
    the_whole_flow(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_refresh_unlink_on_postgres() {
    the_whole_flow(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_reach_their_own_accounts() {
    let t = start(Kind::Sqlite, &[]).await;
    let (alice, bob) = (t.token("alice").await, t.token("bob").await);
    t.link(&alice, "alice-at-design").await;
    t.link(&bob, "bob-at-design").await;
    for (token, account) in [
        (&alice, "alice-at-design"),
        (&bob, "bob-at-design"),
        (&alice, "alice-at-design"),
    ] {
        let r = t.call(token).await;
        assert_ne!(r["isError"], true, "{r}");
        let (_, claims) = decode_jwt(&t.last_upstream_token());
        assert_eq!(claims["sub"], account);
    }
    // Carol linked nothing.
    assert!(is_link_error(&t.call(&t.token("carol").await).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_is_single_use_and_bound_to_its_browser() {
    let t = start(Kind::Sqlite, &[]).await;
    let alice = t.token("alice").await;

    // Another browser (without the binding cookie) cannot finish alice's link.
    let mut b = Browser::new();
    let callback = t.start_link(&mut b, &alice, "mallory-at-design").await;
    let mut other = Browser::new();
    let refused = other.get(&callback, &[]).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("another browser"), "{}", refused.body);
    assert!(t.stored_grant("alice").await.is_none());

    // The right browser finishes it once; replaying the callback (with the same browser's
    // cookie) is refused: the state is spent.
    let cookie = b
        .cookie(&t.gateway(), "cortex_link_design")
        .expect("the binding cookie");
    let done = b.get(&callback, &[]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(t.stored_grant("alice").await.is_some());
    let replay = reqwest::Client::new()
        .get(&callback)
        .header("cookie", format!("cortex_link_design={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    let text = replay.text().await.unwrap();
    assert!(text.contains("already used"), "{text}");

    // An altered state: refused.
    let mut u = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "state" {
                (k, "AAAA".to_string())
            } else {
                (k, v)
            }
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let bad = reqwest::Client::new()
        .get(u.as_str())
        .header("cookie", format!("cortex_link_design={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("not valid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iss_of_another_server_is_refused() {
    let t = start(Kind::Sqlite, &[]).await;
    let alice = t.token("alice").await;
    let mut b = Browser::new();
    let callback = t.start_link(&mut b, &alice, "alice-at-design").await;
    let mut u = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "iss" {
                (k, "http://127.0.0.1:1".to_string())
            } else {
                (k, v)
            }
        })
        .collect();
    assert!(
        pairs.iter().any(|(k, _)| k == "iss"),
        "oidc-provider sends iss (RFC 9207)"
    );
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let page = b.get(u.as_str(), &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("127.0.0.1:1"), "{}", page.body);
    assert!(t.stored_grant("alice").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_asks_to_link_again() {
    let t = start(Kind::Sqlite, &["refresh_before: 11m"]).await;
    let alice = t.token("alice").await;
    t.link(&alice, "alice-at-design").await;
    let grant = t.stored_grant("alice").await.unwrap();
    // The user revokes the gateway's access at the provider.
    let resp = reqwest::Client::new()
        .post(format!("{}/token/revocation", t.provider.issuer()))
        .form(&[
            ("token", grant.refresh_token.as_deref().unwrap()),
            ("token_type_hint", "refresh_token"),
            ("client_id", grant.client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "revocation: {}", resp.status());
    // The next call needs a refresh; the provider refuses it for good: the grant is deleted
    // and the user is asked to link again.
    let r = t.call(&alice).await;
    assert!(r["isError"] == true, "{r}");
    assert!(
        r["content"][0]["text"].as_str().unwrap().contains("again"),
        "{r}"
    );
    assert!(t.stored_grant("alice").await.is_none());
}

/// Calls that find the same grant expired share one refresh: the first renews it, the others
/// wait and reuse the new token (the provider rotates refresh tokens, so a second refresh
/// with the spent one would be refused and would fail a call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_on_an_expired_grant_share_one_refresh() {
    let t = start(Kind::Sqlite, &[]).await;
    let alice = t.token("alice").await;
    t.link(&alice, "alice-at-design").await;
    let linked = t.stored_grant("alice").await.unwrap().access_token;
    t.reseal("alice", |g| g.expires_at_ms = Some(1)).await;
    let calls = (0..6).map(|_| t.call(&alice));
    for r in futures::future::join_all(calls).await {
        assert_ne!(r["isError"], true, "{r}");
    }
    let tokens: std::collections::HashSet<String> = t
        .upstream
        .calls("lookup")
        .iter()
        .filter_map(|c| c.header("authorization").map(str::to_string))
        .collect();
    assert_eq!(tokens.len(), 1, "one refresh for all six calls: {tokens:?}");
    assert!(!tokens.contains(&format!("Bearer {linked}")));
}

/// A contract backend that answers 401 to the user's linked token: the gateway renews the
/// grant once and retries with the new token; refused again, the grant is deleted and the
/// user is asked to link again (a tool error, or a 2026-07-28 input-required result); once the backend accepts tokens and the user re-linked, the
/// call goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_refusing_the_linked_token_gets_one_renewal_then_a_relink() {
    let t = start(Kind::Sqlite, &[]).await;
    let alice = t.token("alice").await;
    t.link(&alice, "alice-at-design").await;
    let linked = t.stored_grant("alice").await.unwrap().access_token;
    t.upstream
        .respond("lookup", 401, json!({"error": "invalid_token"}));
    let r = t.call(&alice).await;
    assert!(is_link_error(&r), "{r}");
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("no longer accepted"),
        "{r}"
    );
    let sent: Vec<String> = t
        .upstream
        .calls("lookup")
        .iter()
        .filter_map(|c| c.header("authorization").map(str::to_string))
        .collect();
    assert_eq!(sent.len(), 2, "the call and one retry: {sent:?}");
    assert_eq!(sent[0], format!("Bearer {linked}"));
    assert_ne!(sent[1], sent[0], "the retry carried a renewed token");
    assert!(
        t.stored_grant("alice").await.is_none(),
        "the grant is deleted"
    );

    // A 2026-07-28 caller that declared URL elicitation gets the same re-link as an
    // input-required result with the URL elicitation to the link page.
    let bob = t.token("bob").await;
    t.link(&bob, "bob-at-design").await;
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "crm_lookup"),
    ];
    let modern = t
        .setup
        .client(&bob)
        .post(
            &modern_lookup(json!({"elicitation": {"url": {}}}), json!({})),
            &headers,
        )
        .await;
    let r = modern.json()["result"].clone();
    assert_eq!(r["resultType"], "input_required", "{r}");
    assert_eq!(
        r["inputRequests"]["link-design"]["params"]["url"],
        format!("{}/link/design/start", t.gateway())
    );
    assert!(
        t.stored_grant("bob").await.is_none(),
        "the grant is deleted"
    );

    t.upstream.respond(
        "lookup",
        200,
        json!({"content": [{"type": "text", "text": "ok"}]}),
    );
    t.link(&alice, "alice-at-design").await;
    let r = t.call(&alice).await;
    assert_ne!(r["isError"], true, "{r}");
}

/// A refused linked token with no refresh token to renew it: the grant is deleted and the
/// user asked to link again at once, with no second request to the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_without_a_refresh_token_asks_to_link_again_at_once() {
    let t = start(Kind::Sqlite, &[]).await;
    let alice = t.token("alice").await;
    t.link(&alice, "alice-at-design").await;
    t.reseal("alice", |g| g.refresh_token = None).await;
    t.upstream
        .respond("lookup", 401, json!({"error": "invalid_token"}));
    let r = t.call(&alice).await;
    assert!(is_link_error(&r), "{r}");
    assert_eq!(
        t.upstream.calls("lookup").len(),
        1,
        "no retry without a renewal"
    );
    assert!(
        t.stored_grant("alice").await.is_none(),
        "the grant is deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_page_lists_providers_for_a_ticket() {
    let t = start(Kind::Sqlite, &[]).await;
    let alice = t.token("alice").await;
    // With a bearer: an HTML page whose buttons carry a short-lived ticket.
    let page = reqwest::Client::new()
        .get(format!("{}/link", t.gateway()))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Design") && html.contains("not linked"),
        "{html}"
    );
    let at = html
        .find("/link/design/start?ticket=")
        .expect("a link button");
    let href: String = html[at..].chars().take_while(|c| *c != '"').collect();
    let href = href.replace("&amp;", "&");
    // A browser (no bearer) follows the button: the ticket signs it in as alice.
    let mut b = Browser::new();
    let start = b.get(&format!("{}{href}", t.gateway()), &[]).await;
    assert_eq!(start.status, 302, "{}", start.body);
    let callback = b
        .sign_in_and_consent(&start.location.unwrap(), "alice-at-design", &t.gateway())
        .await;
    assert_eq!(b.get(&callback, &[]).await.status, 200);
    assert!(t.stored_grant("alice").await.is_some());
    // A forged ticket signs in nobody.
    let forged = reqwest::Client::new()
        .get(format!(
            "{}/link?ticket=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            t.gateway()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    b.drop_cookies(&t.gateway());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_lists_linked_and_unlinked_providers() {
    let t = start(Kind::Sqlite, &[]).await;
    let alice = t.token("alice").await;
    let whoami = |token: String| {
        let client = t.setup.client(&token);
        async move {
            let r = client.call_tool("whoami", json!({})).await;
            r["structuredContent"]["linked_accounts"].clone()
        }
    };
    let before = whoami(alice.clone()).await;
    assert_eq!(before["providers"][0]["provider"], "design");
    assert_eq!(before["providers"][0]["linked"], false);
    assert_eq!(
        before["providers"][0]["link_url"],
        format!("{}/link/design/start", t.gateway())
    );
    // The public link URL names nobody.
    assert!(!before["providers"][0]["link_url"]
        .as_str()
        .unwrap()
        .contains("alice"));
    // The manage URL opens the page in a browser without a bearer.
    let manage = before["manage_url"].as_str().unwrap().to_string();
    let page = reqwest::get(&manage).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("not linked"));

    t.link(&alice, "alice-at-design").await;
    let after = whoami(alice.clone()).await;
    assert_eq!(after["providers"][0]["linked"], true, "{after}");
    // Nothing secret in whoami.
    let grant = t.stored_grant("alice").await.unwrap();
    assert!(!after.to_string().contains(&grant.access_token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_outage_keeps_the_grant_and_fails_the_call_clearly() {
    let mut t = start(Kind::Sqlite, &["refresh_before: 11m"]).await;
    let alice = t.token("alice").await;
    t.link(&alice, "alice-at-design").await;
    t.provider.stop();
    // The token still has ~10 minutes: the failed refresh is logged and the call goes on.
    let r = t.call(&alice).await;
    assert_ne!(r["isError"], true, "{r}");
    assert!(
        t.stored_grant("alice").await.is_some(),
        "a transient failure keeps the grant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_with_the_provider_down_fails_clearly_and_is_kept() {
    // Tokens of 600 s refreshed 11 minutes before expiry are "due"; with the provider down
    // and the token past its expiry the call must fail with a clear message, grant kept.
    let mut t = start(Kind::Sqlite, &["refresh_before: 11m"]).await;
    let alice = t.token("alice").await;
    t.link(&alice, "alice-at-design").await;
    // Age the stored grant: re-seal it with an expiry in the past (the test holds the key).
    let store = t._db.open();
    let row = store.get_grant("alice", "design").await.unwrap().unwrap();
    let ring = KeyRing::new(vec![("primary".into(), KEY)]).unwrap();
    let mut g = ring
        .open_grant("alice", "design", &row.key_id, &row.sealed)
        .unwrap();
    g.expires_at_ms = Some(1);
    let (key_id, sealed) = ring.seal_grant("alice", "design", &g);
    store
        .replace_grant(
            cortex_gateway::store::NewGrant {
                subject: "alice".into(),
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
    t.provider.stop();
    let reply = t
        .setup
        .client(&alice)
        .rpc("tools/call", json!({"name": "crm_lookup", "arguments": {}}))
        .await;
    let text = reply.to_string();
    assert!(text.contains("could not be reached"), "{text}");
    assert!(t.stored_grant("alice").await.is_some(), "the grant is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_under_load_fails_no_call_on_postgres() {
    key_rotation_under_load(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_under_load_fails_no_call_on_sqlite() {
    key_rotation_under_load(Kind::Sqlite).await;
}

/// `vault rotate` (the CLI, a second process on the same store) while the gateway serves
/// calls of three linked users: no call fails, every record ends under the new key.
async fn key_rotation_under_load(kind: Kind) {
    let db = TestDb::new(kind).await;
    // Phase 1: link three users under the primary key only.
    let t = start_on(&db, &[]).await;
    let users = ["alice", "bob", "carol"];
    for u in users {
        let token = t.token(u).await;
        t.link(&token, &format!("{u}-at-design")).await;
    }
    let config_path = t.setup.gateway.path("gateway.yaml");
    let yaml = std::fs::read_to_string(&config_path).unwrap();
    let new_key = base64::engine::general_purpose::STANDARD.encode([0x77u8; 32]);
    drop(t);
    // Phase 2: the ring gains a newer key; the gateway restarts with both.
    let t = start_on(
        &db,
        &["keys:", &format!("  - {{id: k2, key: \"{new_key}\"}}")],
    )
    .await;
    // New gateway tokens (the gateway's own authorization server restarted too); the
    // users' provider grants are the ones stored in phase 1.
    let mut tokens = Vec::new();
    for u in users {
        tokens.push(t.token(u).await);
    }
    let status = vault_cli(&t, "status");
    assert!(status.contains("key primary: 3 grant(s)"), "{status}");
    // Calls run before, during and after `vault rotate` re-seals every record (at least 8
    // rounds, and on until the rotation is done; bounded).
    let rotated_flag = std::sync::atomic::AtomicBool::new(false);
    let load = async {
        let mut failures = Vec::new();
        for round in 0..150 {
            if round >= 8 && rotated_flag.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            for (i, token) in tokens.iter().enumerate() {
                let r = t.call(token).await;
                if r["isError"] == true {
                    failures.push(format!("round {round} user {i}: {r}"));
                }
            }
        }
        failures
    };
    let rotate = async {
        let cfg = t.setup.gateway.path("gateway.yaml");
        let dir = t.setup.gateway.dir().to_path_buf();
        let out = tokio::task::spawn_blocking(move || run_cli(&dir, &cfg, "rotate"))
            .await
            .unwrap();
        rotated_flag.store(true, std::sync::atomic::Ordering::SeqCst);
        out
    };
    let (failures, rotated) = tokio::join!(load, rotate);
    assert!(
        failures.is_empty(),
        "calls failed during the rotation: {failures:?}"
    );
    assert!(rotated.contains("re-sealed 3 grant(s)"), "{rotated}");
    let status = vault_cli(&t, "status");
    assert!(status.contains("key k2: 3 grant(s)"), "{status}");
    assert!(!status.contains("key primary"), "{status}");
    let _ = yaml;
    // Every user still reaches their own account (no re-link).
    for (u, token) in users.iter().zip(&tokens) {
        let r = t.call(token).await;
        assert_ne!(r["isError"], true, "{r}");
        let (_, claims) = decode_jwt(&t.last_upstream_token());
        assert_eq!(claims["sub"], format!("{u}-at-design"));
    }
}

/// The gateway's dynamic registration is bound to the issuer: when the provider's issuer
/// changes (here: the gateway restarts on the same store with the provider elsewhere), the
/// gateway registers again there instead of presenting the old server's client id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_issuer_gets_a_new_registration() {
    let db = TestDb::new(Kind::Sqlite).await;
    let t = start_on(&db, &[]).await;
    let alice = t.token("alice").await;
    t.link(&alice, "alice-at-design").await;
    let first_issuer = t.provider.issuer();
    let first = t
        ._db
        .open()
        .get_client("design")
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(first.issuer, first_issuer);
    drop(t);

    let t = start_on(&db, &[]).await;
    assert_ne!(t.provider.issuer(), first_issuer);
    let alice = t.token("alice").await;
    t.link(&alice, "alice-at-design").await;
    let second = t
        ._db
        .open()
        .get_client("design")
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(second.issuer, t.provider.issuer());
    assert_ne!(second.client_id, first.client_id);
    assert_eq!(
        t.stored_grant("alice").await.unwrap().client_id,
        second.client_id
    );
    let r = t.call(&alice).await;
    assert_ne!(r["isError"], true, "{r}");
}

/// Like [`start`], on an existing database (a restart keeps the vault).
async fn start_on(db: &TestDb, vault_lines: &[&str]) -> Linked {
    start_with(Some(db), db.kind, vault_lines).await
}

fn run_cli(dir: &std::path::Path, config: &std::path::Path, action: &str) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cortex-gateway"));
    cmd.current_dir(dir)
        .args(["vault", action, "--config"])
        .arg(config)
        .stdin(std::process::Stdio::null());
    common::process::scrub_env(&mut cmd);
    let out = cmd.output().expect("run the CLI");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "vault {action}: {text}");
    text
}

fn vault_cli(t: &Linked, action: &str) -> String {
    run_cli(
        t.setup.gateway.dir(),
        &t.setup.gateway.path("gateway.yaml"),
        action,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_elicitation_client_is_sent_to_the_link_page_then_retries() {
    let t = start(Kind::Sqlite, &[]).await;
    let alice = t.token("alice").await;
    // A 2025-11-25 client that declared URL-mode elicitation.
    let client = t.setup.client(&alice);
    let init = client.request_body(
        "initialize",
        json!({
            "protocolVersion": "2025-11-25",
            "capabilities": { "elicitation": { "url": {} } },
            "clientInfo": { "name": "url-elicitation-client", "version": "1" }
        }),
    );
    let reply = client.post(&init, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let session = reply
        .header("mcp-session-id")
        .expect("a session")
        .to_string();
    let client = client
        .with_header("mcp-session-id", &session)
        .with_header("mcp-protocol-version", "2025-11-25");
    client.notify("notifications/initialized", json!({})).await;

    let call = json!({"name": "crm_lookup", "arguments": {"message": "hi"}});
    let err = client.error("tools/call", call.clone()).await;
    assert_eq!(err["code"], -32042, "{err}");
    let elicitation = &err["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    assert_eq!(
        elicitation["url"],
        format!("{}/link/design/start", t.gateway())
    );
    assert!(elicitation["elicitationId"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(t.upstream.calls("lookup").is_empty());

    // The user links (in a browser), then the client retries the same call.
    t.link(&alice, "alice-at-design").await;
    let r = client.result("tools/call", call).await;
    assert_ne!(r["isError"], true, "{r}");
    let (_, claims) = decode_jwt(&t.last_upstream_token());
    assert_eq!(claims["sub"], "alice-at-design");

    // A client without URL elicitation gets the tool error instead (tested in the_whole_flow).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_server_is_discovered_from_the_resource() {
    use http_body_util::Full;
    // The upstream MCP server's front: 401 with the RFC 9728 hint, and its metadata at a
    // non-well-known path (so only the hint can find it).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let provider_port = common::free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let meta = json!({
        "resource": resource,
        "authorization_servers": [format!("http://127.0.0.1:{provider_port}")],
        "scopes_supported": [SCOPE],
    })
    .to_string();
    let hint = format!("Bearer resource_metadata=\"http://127.0.0.1:{port}/meta/prm\"");
    let _front = common::http_server::Server::spawn(
        listener,
        move |req: hyper::Request<hyper::body::Incoming>| {
            let (meta, hint) = (meta.clone(), hint.clone());
            async move {
                let mut resp = hyper::Response::new(Full::new(bytes::Bytes::new()));
                match (req.method().as_str(), req.uri().path()) {
                    ("POST", "/mcp") => {
                        *resp.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                        resp.headers_mut()
                            .insert("www-authenticate", hint.parse().unwrap());
                    }
                    ("GET", "/meta/prm") => {
                        *resp.body_mut() = Full::new(bytes::Bytes::from(meta));
                        resp.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                    }
                    _ => *resp.status_mut() = hyper::StatusCode::NOT_FOUND,
                }
                resp
            }
        },
    )
    .unwrap();
    let t = start_full(
        None,
        Kind::Sqlite,
        &[],
        Some((resource.clone(), provider_port)),
        &[],
    )
    .await;
    let alice = t.token("alice").await;
    let mut b = Browser::new();
    let start = b
        .get(
            &format!("{}/link/design/start", t.gateway()),
            &[("authorization", &format!("Bearer {alice}"))],
        )
        .await;
    assert_eq!(start.status, 302, "{}", start.body);
    let authorize = start.location.unwrap();
    assert!(authorize.starts_with(&t.provider.issuer()), "{authorize}");
    let q: HashMap<String, String> = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert!(
        q["scope"].split(' ').any(|s| s == SCOPE),
        "scopes from the metadata: {q:?}"
    );
    let callback = b
        .sign_in_and_consent(&authorize, "alice-at-design", &t.gateway())
        .await;
    assert_eq!(b.get(&callback, &[]).await.status, 200);
    let r = t.call(&alice).await;
    assert_ne!(r["isError"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_uses_the_catalog_subjects_linked_token() {
    let t = start_full(None, Kind::Sqlite, &[], None, &["catalog_sub: catalog-svc"]).await;
    // The catalog subject (a service account) links once.
    let svc = t.token("catalog-svc").await;
    t.link(&svc, "svc-at-design").await;
    t.upstream.clear_requests();
    // The next discovery rounds (catalog.refresh: 1s) carry the catalog subject's own
    // provider token, so every user sees the tools before linking.
    let calls = t
        .upstream
        .wait_for_calls("list_tools", 1, Duration::from_secs(20))
        .await;
    let bearer = calls[0]
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .expect("discovery carries a bearer");
    let (_, claims) = decode_jwt(bearer);
    assert_eq!(claims["sub"], "svc-at-design");
    // A user who linked nothing sees the tool (this stand-in upstream lists tools for any
    // caller; what the test proves is the credential above).
    let names = t.setup.client(&t.token("dave").await).tool_names().await;
    assert!(names.iter().any(|n| n == "crm_lookup"), "{names:?}");
}

/// A 2026-07-28 `tools/call` of `crm_lookup` declaring `caps`, with `retry` fields.
fn modern_lookup(caps: Value, retry: Value) -> Value {
    let mut params = json!({"name": "crm_lookup", "arguments": {"message": "hi"}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps}});
    if let (Some(p), Some(r)) = (params.as_object_mut(), retry.as_object()) {
        p.extend(r.clone());
    }
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_client_is_asked_to_link_with_an_input_required_result() {
    let t = start(Kind::Sqlite, &[]).await;
    let alice = t.token("alice").await;
    let client = t.setup.client(&alice);
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "crm_lookup"),
    ];
    let url_caps = json!({"elicitation": {"url": {}}});

    // Declared URL elicitation: an InputRequiredResult with one URL elicitation to the link
    // page (the public URL, which authenticates nobody), and nothing reached the upstream.
    let first = client
        .post(&modern_lookup(url_caps.clone(), json!({})), &headers)
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let r = first.json()["result"].clone();
    assert_eq!(r["resultType"], "input_required", "{r}");
    let ask = &r["inputRequests"]["link-design"];
    assert_eq!(ask["method"], "elicitation/create", "{r}");
    assert_eq!(ask["params"]["mode"], "url");
    assert_eq!(
        ask["params"]["url"],
        format!("{}/link/design/start", t.gateway())
    );
    assert!(t.upstream.calls("lookup").is_empty());

    // Without URL elicitation: the tool error naming the link page, as before.
    let plain = client
        .post(&modern_lookup(json!({}), json!({})), &headers)
        .await;
    let result = plain.json()["result"].clone();
    assert!(is_link_error(&result), "{result}");
    assert_eq!(result["resultType"], "complete");

    // The user links, then the client retries with the state: the call goes through.
    t.link(&alice, "alice-at-design").await;
    let retry = json!({"requestState": r["requestState"],
        "inputResponses": {"link-design": {"action": "accept"}}});
    let done = client.post(&modern_lookup(url_caps, retry), &headers).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let result = done.json()["result"].clone();
    assert_eq!(result["resultType"], "complete", "{result}");
    assert_ne!(result["isError"], true, "{result}");
    assert_eq!(t.upstream.calls("lookup").len(), 1);
}
