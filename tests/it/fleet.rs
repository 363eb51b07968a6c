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
    let fleet = Fleet::start(
        "spread",
        TestConfig::new().backend("crm", &backend.url()),
    )
    .await;
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
