//! The vault's tables and its sealing, run against both stores (every case once on SQLite,
//! once on PostgreSQL): versions and conditional writes, single-use states, client
//! registrations, key counts, and through a real `Vault`: nothing in clear at rest, a swapped
//! or altered row refused, key rotation without re-linking.

use crate::store_support;

use std::sync::Arc;

use base64::Engine;
use cortex_gateway::config::vault::{VaultConfig, VaultKeyConfig, VaultProviderConfig};
use cortex_gateway::store::*;
use cortex_gateway::vault::{Grant, KeyRing, Vault, VaultError};
use store_support::{Kind, TestDb};

fn new_grant(subject: &str, provider: &str, sealed: &str, now_ms: i64) -> NewGrant {
    NewGrant {
        subject: subject.into(),
        provider: provider.into(),
        key_id: "k1".into(),
        sealed: sealed.into(),
        now_ms,
    }
}

fn b64(key: [u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A vault config with the primary key, then `extra` keys (id, bytes), and provider `design`.
fn vault_config(primary: Option<[u8; 32]>, extra: &[(&str, [u8; 32])]) -> VaultConfig {
    VaultConfig {
        key: primary.map(b64),
        keys: extra
            .iter()
            .map(|(id, k)| VaultKeyConfig {
                id: id.to_string(),
                key: b64(*k),
            })
            .collect(),
        providers: vec![VaultProviderConfig {
            id: "design".into(),
            name: Some("Design".into()),
            resource: "http://127.0.0.1:1/mcp".into(),
            issuer: Some("http://127.0.0.1:1".into()),
            client_id: Some("gw".into()),
            client_secret: None,
            scopes: vec![],
            catalog_sub: None,
        }],
        ..VaultConfig::default()
    }
}

fn grant(token: &str) -> Grant {
    Grant {
        access_token: token.into(),
        refresh_token: Some(format!("{token}-refresh")),
        // Far from expiry: no refresh, no network.
        expires_at_ms: Some(cortex_gateway::clock::now_ms() + 3_600_000),
        scope: Some("read".into()),
        token_endpoint: "http://127.0.0.1:1/token".into(),
        issuer: "http://127.0.0.1:1".into(),
        resource: "http://127.0.0.1:1/mcp".into(),
        client_id: "gw".into(),
    }
}

/// Stores `token` for `subject` at `design`, sealed under the newest key of `ring`.
async fn seal_into(store: &dyn Store, ring: &KeyRing, subject: &str, token: &str) {
    let (key_id, sealed) = ring.seal_grant(subject, "design", &grant(token));
    store
        .put_grant(NewGrant {
            subject: subject.into(),
            provider: "design".into(),
            key_id,
            sealed,
            now_ms: 1,
        })
        .await
        .expect("put grant");
}

fn vault(store: Arc<dyn Store>, config: &VaultConfig) -> Vault {
    Vault::from_config(config, store as Arc<dyn VaultStore>, "http://127.0.0.1:9")
        .expect("vault")
        .expect("a key is configured")
}

// ----- the cases ---------------------------------------------------------------------------

async fn grants_are_versioned_and_written_conditionally(db: TestDb) {
    let store = db.open();
    assert!(store.get_grant("alice", "design").await.unwrap().is_none());
    let first = store
        .put_grant(new_grant("alice", "design", "s1", 10))
        .await
        .unwrap();
    assert_eq!(
        (first.version, first.created_at_ms, first.updated_at_ms),
        (1, 10, 10)
    );
    store
        .put_grant(new_grant("alice", "code", "s2", 11))
        .await
        .unwrap();
    store
        .put_grant(new_grant("bob", "design", "s3", 12))
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list_grants("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.provider)
        .collect();
    assert_eq!(listed, ["code", "design"]);

    // A conditional write succeeds on the version it read, once.
    let replaced = store
        .replace_grant(new_grant("alice", "design", "s1b", 20), 1)
        .await
        .unwrap()
        .expect("version 1 is current");
    assert_eq!((replaced.version, replaced.sealed.as_str()), (2, "s1b"));
    assert_eq!((replaced.created_at_ms, replaced.updated_at_ms), (10, 20));
    assert!(store
        .replace_grant(new_grant("alice", "design", "stale", 21), 1)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .get_grant("alice", "design")
            .await
            .unwrap()
            .unwrap()
            .sealed,
        "s1b"
    );

    // A new link replaces the row: a later version, a new link time.
    let relinked = store
        .put_grant(new_grant("alice", "design", "s1c", 30))
        .await
        .unwrap();
    assert_eq!((relinked.version, relinked.created_at_ms), (3, 30));

    // Deleting a version that is no longer current deletes nothing.
    assert!(!store
        .delete_grant("alice", "design", Some(2))
        .await
        .unwrap());
    assert!(store
        .delete_grant("alice", "design", Some(3))
        .await
        .unwrap());
    assert!(!store.delete_grant("alice", "design", None).await.unwrap());
    assert!(store.delete_grant("bob", "design", None).await.unwrap());
    assert!(store.get_grant("bob", "design").await.unwrap().is_none());
    // Replacing a deleted grant finds nothing.
    assert!(store
        .replace_grant(new_grant("bob", "design", "x", 40), 1)
        .await
        .unwrap()
        .is_none());
}

async fn concurrent_refreshes_of_one_grant_have_one_winner(db: TestDb) {
    let store = db.open();
    store
        .put_grant(new_grant("alice", "design", "s0", 1))
        .await
        .unwrap();
    let replicas: Vec<_> = (0..6).map(|_| db.open()).collect();
    let writes = replicas.iter().enumerate().map(|(i, s)| {
        let s = s.clone();
        async move {
            s.replace_grant(new_grant("alice", "design", &format!("w{i}"), 2), 1)
                .await
                .unwrap()
        }
    });
    let results = futures::future::join_all(writes).await;
    let winners: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "exactly one conditional write wins");
    let now = store.get_grant("alice", "design").await.unwrap().unwrap();
    assert_eq!(now.sealed, winners[0].sealed);
    assert_eq!(now.version, 2);
}

async fn link_states_are_single_use(db: TestDb) {
    let (a, b) = (db.open(), db.open());
    assert!(a.consume_state("st_1", 1_000, 10).await.unwrap());
    // A replay, on this replica or another: refused.
    assert!(!a.consume_state("st_1", 1_000, 20).await.unwrap());
    assert!(!b.consume_state("st_1", 1_000, 30).await.unwrap());
    assert!(b.consume_state("st_2", 500, 30).await.unwrap());
    // Marks past their expiry are cleared on the way (their states are refused anyway).
    assert!(a.consume_state("st_3", 5_000, 2_000).await.unwrap());
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM cortex_vault_states")
            .await,
        1
    );
}

async fn client_registrations_and_key_counts(db: TestDb) {
    let store = db.open();
    assert!(store.get_client("design").await.unwrap().is_none());
    let client = StoredClient {
        provider: "design".into(),
        issuer: "https://as-1".into(),
        client_id: "c1".into(),
        key_id: "k1".into(),
        sealed_secret: Some("sealed".into()),
        created_at_ms: 5,
    };
    store.put_client(client.clone()).await.unwrap();
    assert_eq!(
        store.get_client("design").await.unwrap(),
        Some(client.clone())
    );
    // The issuer changed: the new registration replaces the old one.
    let moved = StoredClient {
        issuer: "https://as-2".into(),
        client_id: "c2".into(),
        key_id: "k2".into(),
        sealed_secret: None,
        ..client
    };
    store.put_client(moved.clone()).await.unwrap();
    assert_eq!(store.get_client("design").await.unwrap(), Some(moved));

    store
        .put_grant(new_grant("alice", "design", "s", 1))
        .await
        .unwrap();
    store
        .put_grant(new_grant("bob", "design", "s", 1))
        .await
        .unwrap();
    let mut carol = new_grant("carol", "design", "s", 1);
    carol.key_id = "k2".into();
    store.put_grant(carol).await.unwrap();
    let counts = store.vault_key_counts().await.unwrap();
    assert_eq!(
        counts,
        [
            KeyCount {
                key_id: "k1".into(),
                grants: 2,
                clients: 0
            },
            KeyCount {
                key_id: "k2".into(),
                grants: 1,
                clients: 1
            }
        ]
    );
    let old: Vec<_> = store
        .grants_not_under("k2", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.subject)
        .collect();
    assert_eq!(old, ["alice", "bob"]);
    assert_eq!(store.grants_not_under("k2", 1).await.unwrap().len(), 1);
    assert!(store.clients_not_under("k2").await.unwrap().is_empty());
    assert_eq!(store.clients_not_under("k1").await.unwrap().len(), 1);
}

async fn nothing_is_in_clear_and_a_swapped_row_is_refused(db: TestDb) {
    let store = db.open();
    let config = vault_config(Some([7; 32]), &[]);
    let v = vault(store.clone(), &config);
    seal_into(store.as_ref(), v.ring(), "alice", "alice-token-123").await;
    seal_into(store.as_ref(), v.ring(), "bob", "bob-token-456").await;
    assert_eq!(
        v.credential_for("alice", "design")
            .await
            .unwrap()
            .access_token,
        "alice-token-123"
    );
    // At rest: no token, no refresh token, no endpoint in any column.
    for needle in ["alice-token", "bob-token", "refresh", "127.0.0.1"] {
        let n = db
            .query_i64(&format!(
                "SELECT COUNT(*) FROM cortex_vault_grants WHERE sealed LIKE '%{needle}%' \
                 OR key_id LIKE '%{needle}%'"
            ))
            .await;
        assert_eq!(n, 0, "`{needle}` is stored in clear");
    }
    // Bob's sealed record copied onto Alice's row: refused, never Bob's token.
    db.exec(
        "UPDATE cortex_vault_grants SET sealed = (SELECT sealed FROM cortex_vault_grants \
         WHERE subject = 'bob') WHERE subject = 'alice'",
    )
    .await;
    match v.credential_for("alice", "design").await {
        Err(e @ VaultError::Tampered { .. }) => {
            assert!(e.to_string().contains("/link/design/start"), "{e}")
        }
        other => panic!("a swapped row must be refused, got {other:?}"),
    }
    // One character of a sealed record altered: refused.
    seal_into(store.as_ref(), v.ring(), "dave", "dave-token-789").await;
    db.exec(
        "UPDATE cortex_vault_grants SET sealed = substr(sealed, 1, 20) || \
         (CASE WHEN substr(sealed, 21, 1) = 'A' THEN 'B' ELSE 'A' END) || substr(sealed, 22) \
         WHERE subject = 'dave'",
    )
    .await;
    assert!(matches!(
        v.credential_for("dave", "design").await,
        Err(VaultError::Tampered { .. })
    ));
    // Relabelled with another key id: refused too.
    db.exec("UPDATE cortex_vault_grants SET key_id = 'other' WHERE subject = 'bob'")
        .await;
    assert!(matches!(
        v.credential_for("bob", "design").await,
        Err(VaultError::Tampered { .. })
    ));
    // Not linked at all: the error carries the public link URL.
    match v.credential_for("carol", "design").await {
        Err(VaultError::NotLinked { link_url, .. }) => {
            assert_eq!(link_url, "http://127.0.0.1:9/link/design/start")
        }
        other => panic!("expected NotLinked, got {other:?}"),
    }
    assert!(matches!(
        v.credential_for("alice", "nope").await,
        Err(VaultError::UnknownProvider(_))
    ));
}

async fn rotation_reseals_every_record_without_relinking(db: TestDb) {
    let store = db.open();
    let old = vault(store.clone(), &vault_config(Some([1; 32]), &[]));
    for i in 0..5 {
        seal_into(
            store.as_ref(),
            old.ring(),
            &format!("user{i}"),
            &format!("tok{i}"),
        )
        .await;
    }
    // A new key appended: the ring opens both, seals with the new one.
    let both = vault(
        store.clone(),
        &vault_config(Some([1; 32]), &[("k2027", [2; 32])]),
    );
    assert_eq!(both.ring().newest_id(), "k2027");
    let before = both.status().await.unwrap();
    assert_eq!(
        (before[0].key_id.as_str(), before[0].grants),
        ("primary", 5)
    );
    let report = both.rotate().await.unwrap();
    assert_eq!((report.grants, report.unreadable), (5, 0));
    let after = both.status().await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].key_id.as_str(), after[0].grants), ("k2027", 5));
    // Running it again finds nothing to do.
    assert_eq!(both.rotate().await.unwrap().grants, 0);
    // The old key can go: every user's token still opens.
    let new_only = vault(store.clone(), &vault_config(None, &[("k2027", [2; 32])]));
    for i in 0..5 {
        assert_eq!(
            new_only
                .credential_for(&format!("user{i}"), "design")
                .await
                .unwrap()
                .access_token,
            format!("tok{i}")
        );
    }
    // A record under a key the ring does not hold is reported, not lost.
    let stray = vault(store.clone(), &vault_config(None, &[("lost", [3; 32])]));
    seal_into(store.as_ref(), stray.ring(), "user9", "tok9").await;
    let report = new_only.rotate().await.unwrap();
    assert_eq!((report.grants, report.unreadable), (0, 1));
}

// ----- one module per backend --------------------------------------------------------------

macro_rules! suite {
    ($kind:expr, $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case(super::TestDb::new($kind).await).await;
            }
        )*
    };
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            suite!(super::Kind::Sqlite, $($case),*);
        }
        mod postgres {
            suite!(super::Kind::Postgres, $($case),*);
        }
    };
}

both!(
    grants_are_versioned_and_written_conditionally,
    concurrent_refreshes_of_one_grant_have_one_winner,
    link_states_are_single_use,
    client_registrations_and_key_counts,
    nothing_is_in_clear_and_a_swapped_row_is_refused,
    rotation_reseals_every_record_without_relinking,
);
