//! A fleet of three replicas behind a real nginx (round-robin, no stickiness), sharing one
//! PostgreSQL schema and one Redis prefix (docs/fleet.md): requests of one session land on
//! every replica, keys that differ refuse to start, a DELETE on one replica is honoured by
//! the others, one webhook delivery per blocking ticket, notification streams that move
//! between replicas, a replica killed under load, Redis going away and coming back.

use crate::common;
use crate::fleet_support;

use std::collections::BTreeSet;

use common::{BackendSpec, TestBackend, TestConfig, VERSIONS};
use fleet_support::Fleet;
use serde_json::json;

/// The replica that answered (nginx's `X-Upstream`), as an index into `fleet.replicas`.
fn answered_by(fleet: &Fleet, reply: &common::HttpReply) -> usize {
    let addr = reply.header("x-upstream").expect("nginx adds X-Upstream");
    fleet
        .replica_at(addr)
        .unwrap_or_else(|| panic!("X-Upstream {addr} is not a replica"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_through_nginx_lands_on_every_replica() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:a:read")).await;
    let fleet = Fleet::start("spread", TestConfig::new().backend("crm", &backend.url())).await;
    let mut client = fleet.client();
    client.initialize(VERSIONS[0]).await;
    let mut seen = BTreeSet::new();
    for _ in 0..9 {
        let reply = client
            .post(&client.request_body("tools/list", json!({})), &[])
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            reply.json()["result"]["tools"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["name"] == "crm_echo")),
            "{}",
            reply.text()
        );
        seen.insert(answered_by(&fleet, &reply));
    }
    assert_eq!(
        seen.len(),
        3,
        "round-robin spreads one session over every replica: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_keys_differ_refuses_to_start() {
    let fleet = Fleet::start_n("keys", TestConfig::new(), 1).await;
    // The fleet recorded fingerprints of its two configured keys, never the keys.
    assert_eq!(
        fleet
            .db
            .query_i64("SELECT count(*) FROM cortex_fleet_keys WHERE name IN ('sessions.secret', 'audit.secret')")
            .await,
        2
    );
    assert_eq!(
        fleet
            .db
            .query_i64(&format!(
                "SELECT count(*) FROM cortex_fleet_keys WHERE fingerprint LIKE '%{}%' OR fingerprint LIKE '%{}%'",
                &common::SECRET_A[..12],
                &fleet_support::AUDIT_SECRET[..12]
            ))
            .await,
        0
    );
    // Another session secret: refused, naming the key and the way out.
    let other = Fleet::yaml(
        &fleet.db,
        &fleet.prefix,
        TestConfig::new().sessions(&format!("secret: \"{}\"", common::SECRET_B)),
    );
    let (code, logs) = fleet_support::start_refused(&other).await;
    assert_ne!(code, Some(0), "{logs}");
    assert!(logs.contains("keys differ from the fleet's"), "{logs}");
    assert!(logs.contains("sessions.secret"), "{logs}");
    assert!(
        !logs.contains("audit.secret ("),
        "only the differing key is named: {logs}"
    );
    assert!(
        !logs.contains(common::SECRET_B),
        "never the key itself: {logs}"
    );
    // Another audit secret: refused too.
    let other = Fleet::yaml(&fleet.db, &fleet.prefix, TestConfig::new()).replace(
        fleet_support::AUDIT_SECRET,
        "another-audit-secret-0123456789abcdef0123456789",
    );
    let (_, logs) = fleet_support::start_refused(&other).await;
    assert!(logs.contains("audit.secret"), "{logs}");
    // A replica with the fleet's keys joins.
    let same = common::Gateway::start(fleet.replica_yaml()).await;
    same.wait_ready().await;
    // A fleet on Redis without a shared session secret cannot work at all.
    let no_secret = Fleet::yaml(&fleet.db, &fleet.prefix, TestConfig::new()).replace(
        &format!("secret: \"{}\"", common::SECRET_A),
        "idle_timeout: 30m",
    );
    let (_, logs) = fleet_support::start_refused(&no_secret).await;
    assert!(logs.contains("sessions.secret is not"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_deleted_on_one_replica_is_404_on_the_others() {
    let fleet = Fleet::start("revoke", TestConfig::new()).await;
    let mut client = fleet.client();
    client.initialize(VERSIONS[0]).await;
    for _ in 0..3 {
        client.result("ping", json!({})).await;
    }
    let deleted = client.delete(&[]).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let by = answered_by(&fleet, &deleted);
    let started = std::time::Instant::now();
    // Each other replica, asked directly, refuses the id (within the bus's delivery time).
    for (i, replica) in fleet.replicas.iter().enumerate() {
        if i == by {
            continue;
        }
        let mut direct = replica.client();
        direct.session = client.session.clone();
        direct.protocol_version = client.protocol_version.clone();
        common::eventually(
            std::time::Duration::from_secs(5),
            "the other replica refuses the deleted session",
            || {
                let direct = direct.clone();
                async move {
                    let r = direct
                        .post(&direct.request_body("ping", json!({})), &[])
                        .await;
                    (r.status == 404).then_some(())
                }
            },
        )
        .await;
    }
    eprintln!(
        "fleet: a DELETE was honoured by every replica within {:?}",
        started.elapsed()
    );
    // And through nginx, whichever replica answers.
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let r = client
            .post(&client.request_body("ping", json!({})), &[])
            .await;
        assert_eq!(r.status, 404, "{}", r.text());
        seen.insert(answered_by(&fleet, &r));
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_saw_an_active_session_serves_it_after_the_idle_timeout() {
    let fleet = Fleet::start_n("idle", TestConfig::new().sessions("idle_timeout: 2s"), 2).await;
    let mut on_first = fleet.replicas[0].client();
    on_first.initialize(VERSIONS[0]).await;
    // Active on the first replica for longer than the idle timeout.
    for _ in 0..8 {
        on_first.result("ping", json!({})).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let mut on_second = fleet.replicas[1].client();
    on_second.session = on_first.session.clone();
    on_second.protocol_version = on_first.protocol_version.clone();
    let r = on_second
        .post(&on_second.request_body("ping", json!({})), &[])
        .await;
    assert_eq!(
        r.status,
        200,
        "the fleet saw the session within its idle timeout: {}",
        r.text()
    );
    // Idle everywhere past the timeout: refused on both.
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    for replica in &fleet.replicas {
        let mut c = replica.client();
        c.session = on_first.session.clone();
        c.protocol_version = on_first.protocol_version.clone();
        let r = c.post(&c.request_body("ping", json!({})), &[]).await;
        assert_eq!(r.status, 404, "{}", r.text());
    }
}

const WEBHOOK_SECRET: &str = "fleet-webhook-secret-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_tickets_reach_the_webhook_once_and_audit_verify_checks_the_fleet() {
    use crate::builtins_support::{call_ok, signature_valid, WebhookReceiver};
    let receiver = WebhookReceiver::start_on(common::free_port()).await;
    let fleet = Fleet::start(
        "webhook",
        TestConfig::new().top(&format!(
            "tickets:\n  webhook_url: \"{}\"\n  webhook_secret: \"{WEBHOOK_SECRET}\"\n  webhook_max_backoff: 1s\n  webhook_timeout: 2s",
            receiver.url()
        )),
    )
    .await;
    let mut client = fleet.client();
    client.initialize(VERSIONS[0]).await;
    let mut tickets = BTreeSet::new();
    let mut replicas = BTreeSet::new();
    for i in 0..6 {
        let body = client.request_body(
            "tools/call",
            json!({"name": "report_missing_capability", "arguments": {
                "whatIWanted": format!("Fleet capability {i}"), "userIntent": "help the user",
                "severity": "blocking", "contextApp": "erp"}}),
        );
        let reply = client.post(&body, &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        replicas.insert(answered_by(&fleet, &reply));
        let text = reply.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let result: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| reply.json()["result"]["structuredContent"].clone());
        let id = result["ticketId"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", reply.text()));
        tickets.insert(id.to_owned());
    }
    let _ = call_ok;
    assert_eq!(replicas.len(), 3, "tickets were made on every replica");
    receiver
        .wait_for(6, std::time::Duration::from_secs(20))
        .await;
    // Every replica's delivery service polls the one outbox: give a duplicate the time to
    // show up (several of their claim rounds).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let got = receiver.received();
    let mut delivered = std::collections::BTreeMap::<String, usize>::new();
    for r in &got {
        assert!(signature_valid(WEBHOOK_SECRET, r));
        *delivered
            .entry(r.json()["ticketId"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(delivered.keys().cloned().collect::<BTreeSet<_>>(), tickets);
    assert!(
        delivered.values().all(|n| *n == 1),
        "exactly once each: {delivered:?}"
    );

    // One audit chain for the fleet: every replica appended to it, and `audit verify` from
    // any replica checks all of it.
    common::eventually(
        std::time::Duration::from_secs(10),
        "audit rows of every request",
        || async {
            let n = fleet
                .db
                .query_i64("SELECT count(*) FROM cortex_audit")
                .await;
            (n >= 7).then_some(())
        },
    )
    .await;
    let r = &fleet.replicas[1];
    let (code, out, err) = crate::audit_support::run_verify(r.dir(), &r.path("gateway.yaml")).await;
    assert_eq!(code, 0, "{out}\n{err}");
}
