//! The blocking-ticket webhook through the real binary: a receiver that is down and then up
//! gets each blocking ticket exactly once with a valid signature; a receiver that fails
//! sees the same delivery id until it accepts; a gateway restart loses nothing pending.
//! The outage and restart scenarios run against SQLite and PostgreSQL.

use crate::builtins_support;
use crate::common;
use crate::store_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use builtins_support::{call_ok, signature_valid, Received, WebhookReceiver};
use common::{unused_port, Gateway, McpClient, TestConfig};
use serde_json::{json, Value};
use store_support::{Kind, TestDb};

const SECRET: &str = "webhook-secret-for-tests-0123456789";

/// A gateway whose webhook goes to `127.0.0.1:<port>`, retrying at least every second, on
/// the store of `db` (SQLite in its directory, or its PostgreSQL schema).
fn yaml(port: u16, db: Option<&TestDb>) -> String {
    let mut tickets = format!(
        "tickets:\n  webhook_url: \"http://127.0.0.1:{port}/hooks/cortex?src=test\"\n  webhook_secret: \"{SECRET}\"\n  webhook_max_backoff: 1s\n  webhook_timeout: 2s"
    );
    match db {
        None => {}
        Some(db) if db.kind == Kind::Sqlite => {
            tickets.push_str(&format!(
                "\nstorage:\n  data_dir: \"{}\"",
                db.data_dir().display()
            ));
        }
        Some(db) => tickets.push_str(&format!("\nstorage:\n  database_url: \"{}\"", db.pg_uri())),
    }
    TestConfig::new().top(&tickets).build()
}

async fn report(client: &McpClient, what: &str, severity: &str) -> Value {
    call_ok(
        client,
        "report_missing_capability",
        json!({"whatIWanted": what, "userIntent": "help the user", "severity": severity, "contextApp": "erp"}),
    )
    .await
}

/// Checks every delivery (signature, headers, payload) and returns ticket id → deliveries.
fn by_ticket(got: &[Received]) -> BTreeMap<String, Vec<Received>> {
    let mut map: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    for r in got {
        assert!(signature_valid(SECRET, r), "bad signature: {:?}", r.headers);
        assert_eq!(r.header("x-cortex-event"), Some("cortex.ticket.blocking"));
        assert_eq!(r.path, "/hooks/cortex?src=test");
        let body = r.json();
        assert_eq!(body["type"], "cortex.ticket.blocking");
        assert_eq!(body["severity"], "blocking");
        assert_eq!(body["contextApp"], "erp");
        assert_eq!(body["source"], "cortex-local");
        assert!(body["agent"].as_str().is_some_and(|a| !a.is_empty()));
        assert_eq!(r.header("x-cortex-delivery"), body["deliveryId"].as_str());
        map.entry(body["ticketId"].as_str().unwrap().to_string())
            .or_default()
            .push(r.clone());
    }
    map
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_each_blocking_ticket_exactly_once_sqlite() {
    down_then_up(Kind::Sqlite).await;
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_each_blocking_ticket_exactly_once_postgres() {
    down_then_up(Kind::Postgres).await;
}

async fn down_then_up(kind: Kind) {
    let db = TestDb::new(kind).await;
    let port = unused_port();
    let gw = Gateway::start(&yaml(port, Some(&db))).await;
    let client = gw.client();

    let mut blocking = BTreeSet::new();
    for what in ["Export invoices", "Refund an order", "Merge two accounts"] {
        let r = report(&client, what, "blocking").await;
        assert_eq!(r["adminNotified"], true, "{r}");
        blocking.insert(r["ticketId"].as_str().unwrap().to_string());
    }
    // Not blocking, or a repeat: no delivery.
    report(&client, "Dark mode", "nice_to_have").await;
    let repeat = report(&client, "Export invoices", "blocking").await;
    assert_eq!(repeat["deduplicated"], true);
    assert!(repeat.get("adminNotified").is_none());

    // Let several attempts fail against the closed port, then bring the receiver up.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let receiver = WebhookReceiver::start_on(port).await;
    receiver.wait_for(3, Duration::from_secs(15)).await;
    // Give any stray retry the chance to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = receiver.received();
    let map = by_ticket(&got);
    assert_eq!(map.keys().cloned().collect::<BTreeSet<_>>(), blocking);
    assert!(
        map.values().all(|d| d.len() == 1),
        "each delivered once: {} requests",
        got.len()
    );
    let ids: BTreeSet<&str> = got
        .iter()
        .filter_map(|r| r.header("x-cortex-delivery"))
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(
        gw.logs().contains("webhook delivery failed; will retry"),
        "failed attempts are logged"
    );
}

#[tokio::test]
async fn a_failing_receiver_sees_one_delivery_id_until_it_accepts() {
    let receiver = WebhookReceiver::start_on(unused_port()).await;
    receiver.set_status(503);
    let gw = Gateway::start(&yaml(receiver.addr.port(), None)).await;
    let client = gw.client();
    let t = report(&client, "Cancel a subscription", "blocking").await;
    let failed = receiver.wait_for(2, Duration::from_secs(10)).await;
    receiver.set_status(200);
    let n_failed = failed.len();
    receiver
        .wait_for(n_failed + 1, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = receiver.received();
    let map = by_ticket(&got);
    let attempts = &map[t["ticketId"].as_str().unwrap()];
    let ids: BTreeSet<&str> = attempts
        .iter()
        .filter_map(|r| r.header("x-cortex-delivery"))
        .collect();
    assert_eq!(ids.len(), 1, "one delivery id across attempts");
    // Accepted once: nothing after the first 2xx (the status changed after n_failed or n_failed+1).
    assert!(
        got.len() <= n_failed + 2,
        "{} requests after acceptance",
        got.len() - n_failed
    );
    // Timestamps differ per attempt and each signature covers its own.
    let stamps: BTreeSet<&str> = attempts
        .iter()
        .filter_map(|r| r.header("x-cortex-timestamp"))
        .collect();
    assert!(!stamps.is_empty());
}

#[tokio::test]
async fn pending_deliveries_and_tickets_survive_a_restart_sqlite() {
    restart(Kind::Sqlite).await;
}

#[tokio::test]
async fn pending_deliveries_and_tickets_survive_a_restart_postgres() {
    restart(Kind::Postgres).await;
}

async fn restart(kind: Kind) {
    let db = TestDb::new(kind).await;
    let port = unused_port();

    let mut first = Gateway::start(&yaml(port, Some(&db))).await;
    let client = first.client();
    let a = report(&client, "Export invoices", "blocking").await;
    let b = report(&client, "Refund an order", "blocking").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    first.stop();

    let second = Gateway::start(&yaml(port, Some(&db))).await;
    let client = second.client();
    // The tickets are still there, and deduplication still applies.
    let listed = call_ok(&client, "list_cortex_tickets", json!({})).await;
    assert_eq!(listed["count"], 2);
    let again = report(&client, "Export invoices", "blocking").await;
    assert_eq!(again["deduplicated"], true);
    assert_eq!(again["ticketId"], a["ticketId"]);

    let receiver = WebhookReceiver::start_on(port).await;
    receiver.wait_for(2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let map = by_ticket(&receiver.received());
    let expected: BTreeSet<String> = [&a, &b]
        .iter()
        .map(|t| t["ticketId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(map.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(
        map.values().all(|d| d.len() == 1),
        "each delivered once across the restart"
    );
}
