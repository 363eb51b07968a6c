//! The gateway's client identity at a provider, against real parts on loopback: a gateway
//! serving https (a test CA and certificate made with openssl) and oidc-provider with OAuth
//! Client ID Metadata Documents on, trusting that CA. The provider really fetches the
//! gateway's document over https and takes its `redirect_uris` as the client's, so the link
//! completes with client_id = the document's URL and a redirect URI not in the document is
//! refused. Also the order of the MCP authorization spec: a pre-registered client first, then
//! the metadata document, then dynamic registration for a server without documents.

use crate::common;
use crate::prod_tls::{make_ca, make_leaf};
use crate::store_support::{Kind, TestDb};
use crate::vault_link::{Browser, Handle};

use std::collections::HashMap;

use base64::Engine;
use common::oidc::{decode_jwt, OAuthSetup, OidcProvider};
use common::{tool, BackendSpec, TestBackend, TestConfig};
use cortex_gateway::vault::KeyRing;
use serde_json::{json, Value};

const SCOPE: &str = "mcp:crm:read";
const KEY: [u8; 32] = [0x3c; 32];

/// A gateway on https with vault provider `design` at its own oidc-provider.
struct Https {
    setup: OAuthSetup,
    provider: OidcProvider,
    upstream: TestBackend,
    /// `https://127.0.0.1:<tls port>`.
    origin: String,
    db: TestDb,
    pki: tempfile::TempDir,
}

/// `cimd`: the provider supports metadata documents; `preregistered`: the gateway has a
/// configured client there.
async fn start(kind: Kind, cimd: bool, preregistered: bool) -> Https {
    let pki = tempfile::tempdir().expect("temp dir");
    make_ca(pki.path());
    let (cert, key) = make_leaf(pki.path(), "gateway");
    let db = TestDb::new(kind).await;
    let upstream = TestBackend::start(BackendSpec {
        tools: vec![tool("lookup", SCOPE)],
        ..BackendSpec::default()
    })
    .await;
    let resource = format!("{}/mcp", upstream.url());
    let (tls_port, provider_port) = (common::free_port(), common::free_port());
    let origin = format!("https://127.0.0.1:{tls_port}");
    let storage = match kind {
        Kind::Sqlite => format!("storage:\n  data_dir: \"{}\"", db.data_dir().display()),
        Kind::Postgres => format!("storage:\n  database_url: \"{}\"", db.pg_uri()),
    };
    let vault_key = base64::engine::general_purpose::STANDARD.encode(KEY);
    let mut vault = format!(
        "vault:\n  key: \"{vault_key}\"\n  refresh_before: 11m\n  providers:\n    - id: design\n      name: Design\n      resource: \"{resource}\"\n      issuer: \"http://127.0.0.1:{provider_port}\"\n      scopes: [\"{SCOPE}\"]"
    );
    if preregistered {
        vault.push_str(
            "\n      client_id: gateway-vault\n      client_secret: gateway-vault-secret",
        );
    }
    let config = TestConfig::new()
        .server(&format!("canonical_uri: \"{origin}/mcp\""))
        .server("tls:")
        .server(&format!("  listen: [\"127.0.0.1:{tls_port}\"]"))
        .server(&format!("  cert_file: \"{}\"", cert.display()))
        .server(&format!("  key_file: \"{}\"", key.display()))
        .top(&storage)
        .top(&vault)
        .backend_with("crm", &upstream.url(), &["vault_provider: design"]);
    let setup = OAuthSetup::start(config, &[]).await;
    let clients = preregistered.then(|| {
        json!([{
            "client_id": "gateway-vault",
            "client_secret": "gateway-vault-secret",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": [format!("{origin}/link/design/callback")],
            "token_endpoint_auth_method": "client_secret_basic",
        }])
    });
    let ca = pki.path().join("ca.pem").display().to_string();
    let env: Vec<(&str, &str)> = if cimd {
        vec![("CIMD", "1"), ("NODE_EXTRA_CA_CERTS", ca.as_str())]
    } else {
        vec![("NODE_EXTRA_CA_CERTS", ca.as_str())]
    };
    let provider = OidcProvider::start_with_env(
        provider_port,
        std::slice::from_ref(&resource),
        clients,
        &env,
    )
    .await;
    Https {
        setup,
        provider,
        upstream,
        origin,
        db,
        pki,
    }
}

impl Https {
    /// A gateway token for user `sub` (the gateway's audience is its https canonical URI).
    async fn token(&self, sub: &str) -> String {
        let mut claims = self.setup.claims(SCOPE);
        claims["sub"] = json!(sub);
        claims["aud"] = json!(format!("{}/mcp", self.origin));
        self.setup.oidc.sign(claims, json!({})).await
    }

    fn browser(&self) -> Browser {
        Browser::with_ca(&self.pki.path().join("ca.pem"))
    }

    /// `/link/design/start` over https as the user of `token`: the provider's authorization
    /// URL and its query.
    async fn authorize(&self, b: &mut Browser, token: &str) -> (String, HashMap<String, String>) {
        let start = b
            .get(
                &format!("{}/link/design/start", self.origin),
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await;
        assert_eq!(start.status, 302, "start: {}", start.body);
        let authorize = start.location.expect("a redirect to the provider");
        assert!(
            authorize.starts_with(&self.provider.issuer()),
            "{authorize}"
        );
        let q = url::Url::parse(&authorize)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        (authorize, q)
    }

    /// Links `login`'s account for the user of `token`; the client id the gateway used.
    async fn link(&self, token: &str, login: &str) -> String {
        let mut b = self.browser();
        let (authorize, q) = self.authorize(&mut b, token).await;
        assert_eq!(
            q["redirect_uri"],
            format!("{}/link/design/callback", self.origin)
        );
        let callback = b.sign_in_and_consent(&authorize, login, &self.origin).await;
        let done = b.get(&callback, &[]).await;
        assert_eq!(done.status, 200, "callback: {}", done.body);
        q["client_id"].clone()
    }

    /// Calls `crm_lookup` as the user of `token`; the provider token the upstream received.
    async fn call(&self, token: &str) -> String {
        let r = self
            .setup
            .client(token)
            .call_tool("crm_lookup", json!({ "message": "hi" }))
            .await;
        assert_ne!(r["isError"], true, "{r}\n{}", self.setup.gateway.logs());
        let calls = self.upstream.calls("lookup");
        let last = calls.last().expect("the upstream was called");
        last.header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .expect("a bearer")
            .to_string()
    }

    async fn stored_client_id(&self, sub: &str) -> String {
        let store = self.db.handle().open();
        let row = store
            .get_grant(sub, "design")
            .await
            .unwrap()
            .expect("a grant");
        let ring = KeyRing::new(vec![("primary".into(), KEY)]).unwrap();
        ring.open_grant(sub, "design", &row.key_id, &row.sealed)
            .expect("opens")
            .client_id
    }

    async fn cimd_fetches(&self) -> Vec<String> {
        serde_json::from_value(self.provider.stats().await["cimd_fetches"].clone()).unwrap()
    }
}

async fn metadata_document_flow(kind: Kind) {
    let t = start(kind, true, false).await;
    let document_url = format!("{}/link/client-metadata.json", t.origin);
    let alice = t.token("alice").await;

    // The document the gateway serves over https: its own URL as client_id, the exact
    // callback of every provider, a public client.
    let doc: Value = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(t.pki.path().join("ca.pem")).unwrap())
                .unwrap(),
        )
        .build()
        .unwrap()
        .get(&document_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["client_id"], document_url.as_str(), "{doc}");
    assert_eq!(
        doc["redirect_uris"],
        json!([format!("{}/link/design/callback", t.origin)])
    );
    assert_eq!(doc["token_endpoint_auth_method"], "none");

    // The link: the provider fetched that document over https (trusting the test CA) and
    // accepted the gateway as that client.
    assert!(t.cimd_fetches().await.is_empty());
    let client_id = t.link(&alice, "alice-at-design").await;
    assert_eq!(client_id, document_url);
    assert!(
        t.cimd_fetches().await.contains(&document_url),
        "{:?}",
        t.cimd_fetches().await
    );
    assert_eq!(t.stored_client_id("alice").await, document_url);

    // The upstream gets alice's token, issued to the document's client; the next call
    // refreshes (refresh_before is longer than the token's life) as that public client.
    let first = t.call(&alice).await;
    let (_, claims) = decode_jwt(&first);
    assert_eq!(claims["sub"], "alice-at-design", "{claims}");
    assert_eq!(claims["client_id"], document_url.as_str(), "{claims}");
    let second = t.call(&alice).await;
    assert_ne!(second, first, "refreshed as the document's client");
    assert_eq!(decode_jwt(&second).1["client_id"], document_url.as_str());

    // A redirect URI the document does not list (here: another path of the same gateway)
    // gets no code: the provider matches it exactly against the fetched document.
    let bob = t.token("bob").await;
    let mut b = t.browser();
    let (authorize, _) = t.authorize(&mut b, &bob).await;
    let mut swapped = url::Url::parse(&authorize).unwrap();
    let pairs: Vec<(String, String)> = swapped
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "redirect_uri" {
                (k, format!("{}/link/design/callback2", t.origin))
            } else {
                (k, v)
            }
        })
        .collect();
    swapped.query_pairs_mut().clear().extend_pairs(pairs);
    let page = b.get(swapped.as_str(), &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("redirect_uri"), "{}", page.body);
    assert!(page.location.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_fetches_the_gateways_client_metadata_document_over_https_on_sqlite() {
    metadata_document_flow(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_fetches_the_gateways_client_metadata_document_over_https_on_postgres() {
    metadata_document_flow(Kind::Postgres).await;
}

/// Pre-registered beats the metadata document; a server without documents gets a dynamic
/// registration even from an https gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_order_is_pre_registered_then_metadata_document_then_registration() {
    let pre = start(Kind::Sqlite, true, true).await;
    let alice = pre.token("alice").await;
    assert_eq!(pre.link(&alice, "alice-at-design").await, "gateway-vault");
    assert!(pre.cimd_fetches().await.is_empty(), "no document fetched");
    assert_eq!(
        decode_jwt(&pre.call(&alice).await).1["client_id"],
        "gateway-vault"
    );
    drop(pre);

    let dcr = start(Kind::Sqlite, false, false).await;
    let alice = dcr.token("alice").await;
    let client_id = dcr.link(&alice, "alice-at-design").await;
    assert!(!client_id.starts_with("https://"), "{client_id}");
    assert_ne!(client_id, "gateway-vault");
    let stored = dcr
        .db
        .handle()
        .open()
        .get_client("design")
        .await
        .unwrap()
        .expect("the registration is stored");
    assert_eq!(stored.client_id, client_id);
    assert_eq!(stored.issuer, dcr.provider.issuer());
    assert!(dcr.cimd_fetches().await.is_empty());
}
