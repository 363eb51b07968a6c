//! Vault and linking attacks against the real binary, a real provider (oidc-provider) and a
//! real store. Covered in `vault_link` (and listed in docs/reliability.md, "Attack suites"):
//! a forged (altered) state, a replayed state and a state finished by another browser
//! (`a_state_is_single_use_and_bound_to_its_browser`), an `iss` of another server
//! (`iss_of_another_server_is_refused`); a sealed row copied onto another user's row through
//! the vault API (`vault_store::nothing_is_in_clear_and_a_swapped_row_is_refused`). This file
//! adds: a redirect URI swapped in the authorization request, a vault row moved to another
//! user in the database of a running gateway, and an authorization server that does not offer
//! PKCE with S256 (a downgrade the gateway refuses before registering or redirecting).

use crate::common;
use crate::store_support::Kind;
use crate::vault_link::{is_link_error, start, Browser};

use std::collections::HashMap;

use cortex_gateway::store::NewGrant;

/// The authorization request the gateway starts for the user of `token`: the provider URL
/// it redirects the browser to.
async fn authorize_url(t: &crate::vault_link::Linked, b: &mut Browser, token: &str) -> String {
    let start = b
        .get(
            &format!("{}/link/design/start", t.gateway()),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(start.status, 302, "start: {}", start.body);
    start.location.expect("a redirect to the provider")
}

/// An attacker who swaps the `redirect_uri` of the gateway's authorization request for a
/// URL of theirs gets no code: the gateway registered its own callback, exactly, and the
/// provider refuses any other (the code never leaves for the attacker's URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_redirect_uri_gets_no_code() {
    let t = start(Kind::Sqlite, &[]).await;
    let alice = t.token("alice").await;
    let mut b = Browser::new();
    let authorize = authorize_url(&t, &mut b, &alice).await;
    let own = format!("{}/link/design/callback", t.gateway());
    for evil in [
        "http://127.0.0.1:1/steal".to_string(),
        format!("{own}/../../steal"),
        format!("{own}?next=http://127.0.0.1:1/"),
        own.replace("127.0.0.1", "localhost"),
    ] {
        let mut u = url::Url::parse(&authorize).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .into_owned()
            .map(|(k, v)| {
                if k == "redirect_uri" {
                    (k, evil.clone())
                } else {
                    (k, v)
                }
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        let page = b.get(u.as_str(), &[]).await;
        assert!(
            page.location
                .as_deref()
                .is_none_or(|l| !l.contains("code=")),
            "{evil}: the provider sent a code to {:?}",
            page.location
        );
        assert_eq!(page.status, 400, "{evil}: {}", page.body);
        assert!(page.body.contains("redirect_uri"), "{evil}: {}", page.body);
    }
    assert!(t.stored_grant("alice").await.is_none());
    // The genuine request still links.
    let q: HashMap<String, String> = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["redirect_uri"], own);
}

/// A vault row moved to another user in the database (alice's sealed grant put under bob's
/// subject, alice's row gone): bob's call never carries alice's provider token and bob is
/// asked to link; alice is asked to link again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_row_moved_to_another_user_is_refused() {
    let t = start(Kind::Sqlite, &[]).await;
    let (alice, bob) = (t.token("alice").await, t.token("bob").await);
    t.link(&alice, "alice-at-design").await;
    let r = t.call(&alice).await;
    assert_ne!(r["isError"], true, "{r}");
    let calls_before = t.upstream.calls("lookup").len();

    let store = t._db.open();
    let row = store
        .get_grant("alice", "design")
        .await
        .unwrap()
        .expect("alice's grant");
    store
        .put_grant(NewGrant {
            subject: "bob".into(),
            provider: "design".into(),
            key_id: row.key_id.clone(),
            sealed: row.sealed.clone(),
            now_ms: common::oidc::unix_now() as i64 * 1000,
        })
        .await
        .unwrap();
    store.delete_grant("alice", "design", None).await.ok();

    let r = t.call(&bob).await;
    assert!(is_link_error(&r), "bob is asked to link: {r}");
    assert_eq!(
        t.upstream.calls("lookup").len(),
        calls_before,
        "nothing reached the upstream with a moved grant"
    );
    assert!(is_link_error(&t.call(&alice).await));
}

/// An authorization server whose metadata offers PKCE only with `plain` (or says nothing of
/// PKCE) is refused when the link starts: no registration, no redirect, a message that says
/// why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_server_without_s256_is_refused() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let registrations = Arc::new(AtomicUsize::new(0));
    let methods = Arc::new(std::sync::Mutex::new(serde_json::json!(["plain"])));
    let (iss, regs, m) = (issuer.clone(), registrations.clone(), methods.clone());
    let _as = common::http_server::Server::spawn(
        listener,
        move |req: hyper::Request<hyper::body::Incoming>| {
            let (iss, regs, m) = (iss.clone(), regs.clone(), m.clone());
            async move {
                match req.uri().path() {
                    "/.well-known/oauth-authorization-server" => {
                        let mut meta = serde_json::json!({
                            "issuer": iss,
                            "authorization_endpoint": format!("{iss}/auth"),
                            "token_endpoint": format!("{iss}/token"),
                            "registration_endpoint": format!("{iss}/reg"),
                        });
                        let methods = m.lock().map(|v| v.clone()).unwrap_or_default();
                        if !methods.is_null() {
                            meta["code_challenge_methods_supported"] = methods;
                        }
                        common::http_server::json_response(200, meta.to_string())
                    }
                    "/reg" => {
                        regs.fetch_add(1, Ordering::SeqCst);
                        common::http_server::json_response(201, r#"{"client_id":"x"}"#)
                    }
                    _ => common::http_server::json_response(404, "{}"),
                }
            }
        },
    )
    .unwrap();
    // A second provider, `legacy`, at that server (the lines continue `vault.providers`).
    let lines = [
        "  - id: legacy".to_string(),
        "    name: Legacy".to_string(),
        "    resource: \"http://127.0.0.1:1/mcp\"".to_string(),
        format!("    issuer: \"{issuer}\""),
    ];
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let t = start(Kind::Sqlite, &refs).await;
    let alice = t.token("alice").await;
    for offered in [serde_json::json!(["plain"]), serde_json::Value::Null] {
        *methods.lock().unwrap() = offered.clone();
        let mut b = Browser::new();
        let page = b
            .get(
                &format!("{}/link/legacy/start", t.gateway()),
                &[("authorization", &format!("Bearer {alice}"))],
            )
            .await;
        assert_eq!(page.status, 502, "{offered}: {}", page.body);
        assert!(page.location.is_none());
        assert!(
            page.body.contains("does not offer PKCE with S256"),
            "{offered}: {}",
            page.body
        );
    }
    assert_eq!(registrations.load(Ordering::SeqCst), 0, "never registered");
    // The other provider still links.
    t.link(&alice, "alice-at-design").await;
}
