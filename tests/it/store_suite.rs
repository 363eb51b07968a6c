//! The store contract, run against both implementations: every case below runs once on
//! SQLite (`sqlite::…`) and once on PostgreSQL (`postgres::…`).

use crate::store_support;

use std::collections::HashSet;
use std::sync::Arc;

use cortex_gateway::audit::chain::{ChainKey, GENESIS};
use cortex_gateway::audit::record::AuditRecord;
use cortex_gateway::audit::retention::purge_older_than;
use cortex_gateway::audit::verify::{verify, BreakKind};
use cortex_gateway::store::*;
use store_support::{Kind, TestDb};

const SECRET: &[u8] = b"store-suite-secret-0123456789abcdef0123";

fn key() -> Arc<ChainKey> {
    Arc::new(ChainKey::derive(SECRET))
}

fn record(ts_ms: i64, tool: &str) -> AuditRecord {
    let mut r = AuditRecord::new(ts_ms, "POST");
    r.http_status = 200;
    r.method = Some("tools/call".into());
    r.tool = Some(tool.into());
    r.target_app = Some("crm".into());
    r.caller_sub = Some("0123456789abcdef0123456789abcdef".into());
    r.latency_ms = 1.234;
    r.response_size = 321;
    r.success = true;
    r.params_hash = Some("ffeeddccbbaa99887766554433221100".into());
    r.tools_listed = Some(7);
    r.reason = Some("ünïcode ✓ and \"quotes\"".into());
    r
}

fn records(from_ts: i64, n: usize) -> Arc<Vec<AuditRecord>> {
    Arc::new(
        (0..n)
            .map(|i| record(from_ts + i as i64, &format!("tool_{i}")))
            .collect(),
    )
}

async fn append(store: &dyn Store, from_ts: i64, n: usize) -> ChainHead {
    store
        .append_audit(records(from_ts, n), key())
        .await
        .expect("append")
}

async fn verifies(store: &dyn Store) -> u64 {
    match verify(store, &key()).await.expect("read chain") {
        Ok(report) => report.records,
        Err(broken) => panic!("chain should verify: {broken}"),
    }
}

async fn broken_at(store: &dyn Store) -> (i64, BreakKind) {
    match verify(store, &key()).await.expect("read chain") {
        Ok(report) => panic!("chain should be broken, but verifies: {report}"),
        Err(b) => (b.seq, b.kind),
    }
}

// ----- the cases ---------------------------------------------------------------------------

async fn migrations_are_applied_once(db: TestDb) {
    let store = db.open();
    store.ping().await.expect("ping");
    let latest = cortex_gateway::store::sqlite::MIGRATIONS.len() as i64;
    assert_eq!(
        cortex_gateway::store::postgres::MIGRATIONS.len() as i64,
        latest
    );
    assert_eq!(store.schema_version().await.unwrap(), latest);
    // A second handle (restart, or a replica starting at the same time) migrates nothing.
    let (a, b) = (db.open(), db.open());
    let (ra, rb) = tokio::join!(a.ping(), b.ping());
    ra.unwrap();
    rb.unwrap();
    assert_eq!(b.schema_version().await.unwrap(), latest);
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM cortex_schema_migrations")
            .await,
        latest
    );
}

async fn tool_pins_are_saved_per_backend_and_replaced(db: TestDb) {
    let store = db.open();
    assert!(store.load_pins().await.unwrap().is_empty());
    let row = |backend: &str, pins: &str, at: &str| StoredPins {
        backend: backend.into(),
        pins: pins.into(),
        saved_at: at.into(),
    };
    store
        .save_pins(vec![
            row(
                "crm",
                r#"{"a":{"fingerprint":"x"}}"#,
                "2026-12-03T10:00:00.000Z",
            ),
            row("erp", "{}", "2026-12-03T10:00:00.000Z"),
        ])
        .await
        .unwrap();
    store
        .save_pins(vec![row("crm", r#"{"b":{}}"#, "2026-12-03T11:00:00.000Z")])
        .await
        .unwrap();
    // A second handle (a restart) reads what the first wrote.
    let again = db.open();
    assert_eq!(
        again.load_pins().await.unwrap(),
        vec![
            row("crm", r#"{"b":{}}"#, "2026-12-03T11:00:00.000Z"),
            row("erp", "{}", "2026-12-03T10:00:00.000Z"),
        ]
    );
}

async fn audit_append_links_records_in_order(db: TestDb) {
    let store = db.open();
    let empty = store.audit_chain().await.unwrap();
    assert_eq!(empty.last_seq, 0);
    assert_eq!(empty.last_hash, GENESIS);
    let head = append(store.as_ref(), 1_000, 3).await;
    assert_eq!(head.last_seq, 3);
    let head = append(store.as_ref(), 2_000, 2).await;
    assert_eq!(head.last_seq, 5);

    let rows = store.read_audit(0, 100).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(rows[0].prev_hash, GENESIS);
    for pair in rows.windows(2) {
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "seq {} links to {}",
            pair[1].seq, pair[0].seq
        );
    }
    assert_eq!(rows[4].hash, head.last_hash);
    // Stored exactly as given (text, unicode, a double, nulls).
    assert_eq!(rows[0].record, record(1_000, "tool_0"));
    assert_eq!(rows[4].record, record(2_001, "tool_1"));
    assert_eq!(rows[0].key_id, key().id());
    // Paging.
    let page = store.read_audit(2, 2).await.unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(verifies(store.as_ref()).await, 5);

    // A new handle (a restart) continues the same chain.
    let reopened = db.open();
    let head = append(reopened.as_ref(), 3_000, 1).await;
    assert_eq!(head.last_seq, 6);
    assert_eq!(verifies(reopened.as_ref()).await, 6);
}

/// The audit thread appends up to 500 records at once; PostgreSQL inserts them in several
/// multi-row statements, which must still link as one batch.
async fn a_large_batch_links_in_order(db: TestDb) {
    let store = db.open();
    append(store.as_ref(), 1_000, 2).await;
    let head = append(store.as_ref(), 10_000, 450).await;
    assert_eq!(head.last_seq, 452);
    let rows = store.read_audit(0, 1_000).await.unwrap();
    assert_eq!(rows.len(), 452);
    assert_eq!(rows[451].hash, head.last_hash);
    assert_eq!(rows[451].record, record(10_449, "tool_449"));
    assert_eq!(rows[201].record, record(10_199, "tool_199"));
    assert_eq!(verifies(store.as_ref()).await, 452);
}

async fn concurrent_appenders_share_one_chain(db: TestDb) {
    let (a, b) = (db.open(), db.open());
    let writer = |s: Arc<dyn Store>, base: i64| async move {
        for i in 0..15 {
            append(s.as_ref(), base + i * 10, 3).await;
        }
    };
    tokio::join!(writer(a.clone(), 0), writer(b.clone(), 100_000));
    assert_eq!(a.audit_chain().await.unwrap().last_seq, 90);
    assert_eq!(verifies(b.as_ref()).await, 90);
}

async fn verify_names_an_edited_record(db: TestDb) {
    let store = db.open();
    append(store.as_ref(), 1_000, 6).await;
    db.exec("UPDATE cortex_audit SET tool = 'innocent' WHERE seq = 4")
        .await;
    assert_eq!(broken_at(store.as_ref()).await, (4, BreakKind::Edited));
}

async fn verify_names_an_edited_flag(db: TestDb) {
    let store = db.open();
    append(store.as_ref(), 1_000, 3).await;
    let flag = match db.kind {
        Kind::Sqlite => "0",
        Kind::Postgres => "false",
    };
    db.exec(&format!(
        "UPDATE cortex_audit SET success = {flag} WHERE seq = 2"
    ))
    .await;
    assert_eq!(broken_at(store.as_ref()).await, (2, BreakKind::Edited));
}

async fn verify_names_a_deleted_record(db: TestDb) {
    let store = db.open();
    append(store.as_ref(), 1_000, 6).await;
    db.exec("DELETE FROM cortex_audit WHERE seq = 3").await;
    assert_eq!(broken_at(store.as_ref()).await, (3, BreakKind::Missing));
}

async fn verify_catches_a_renumbered_deletion(db: TestDb) {
    // Delete seq 3 and shift the later rows down so that seq has no gap: the links break.
    let store = db.open();
    append(store.as_ref(), 1_000, 5).await;
    db.exec("DELETE FROM cortex_audit WHERE seq = 3").await;
    db.exec("UPDATE cortex_audit SET seq = seq - 1 WHERE seq = 4")
        .await;
    db.exec("UPDATE cortex_audit SET seq = seq - 1 WHERE seq = 5")
        .await;
    let (seq, kind) = broken_at(store.as_ref()).await;
    assert_eq!(seq, 3);
    assert!(
        matches!(kind, BreakKind::Edited | BreakKind::Relinked),
        "{kind:?}"
    );
}

async fn verify_catches_a_truncated_tail(db: TestDb) {
    let store = db.open();
    append(store.as_ref(), 1_000, 5).await;
    db.exec("DELETE FROM cortex_audit WHERE seq >= 4").await;
    assert_eq!(broken_at(store.as_ref()).await, (4, BreakKind::Missing));
    // Moving the head back to hide it needs the secret: the seal no longer matches.
    let hash3 = store.read_audit(2, 1).await.unwrap()[0].hash.clone();
    db.exec(&format!(
        "UPDATE cortex_audit_chain SET last_seq = 3, last_hash = '{hash3}'"
    ))
    .await;
    assert_eq!(broken_at(store.as_ref()).await, (3, BreakKind::Head));
}

async fn verify_refuses_another_secret(db: TestDb) {
    let store = db.open();
    append(store.as_ref(), 1_000, 2).await;
    let other = ChainKey::derive(b"another-secret-0123456789abcdef012345");
    let broken = verify(store.as_ref(), &other).await.unwrap().unwrap_err();
    assert_eq!(broken.kind, BreakKind::Head);
}

async fn purge_keeps_the_chain_verifiable(db: TestDb) {
    let store = db.open();
    append(store.as_ref(), 1_000, 10).await; // ts 1000..=1009
    append(store.as_ref(), 5_000, 5).await; // ts 5000..=5004
    let out = store.purge_audit(1_005, 100, key()).await.unwrap();
    assert_eq!(
        out,
        PurgeOutcome {
            purged: 5,
            anchor_seq: 5
        }
    );
    let chain = store.audit_chain().await.unwrap();
    assert_eq!(chain.anchor_seq, 5);
    assert_eq!(verifies(store.as_ref()).await, 10);
    // Chunked: at most max_rows per call.
    let out = store.purge_audit(4_000, 2, key()).await.unwrap();
    assert_eq!(
        out,
        PurgeOutcome {
            purged: 2,
            anchor_seq: 7
        }
    );
    assert_eq!(verifies(store.as_ref()).await, 8);
    // Nothing old enough: nothing happens.
    assert_eq!(store.purge_audit(10, 100, key()).await.unwrap().purged, 0);
    // Appends continue after purges.
    append(store.as_ref(), 6_000, 2).await;
    assert_eq!(verifies(store.as_ref()).await, 10);
    assert_eq!(store.read_audit(0, 100).await.unwrap()[0].seq, 8);
    // Retention by days, over everything.
    let day = 86_400_000;
    let purged = purge_older_than(store.as_ref(), &key(), 1, 10_000 + day)
        .await
        .unwrap();
    assert_eq!(purged, 10);
    assert_eq!(verifies(store.as_ref()).await, 0);
    append(store.as_ref(), 20_000, 1).await;
    assert_eq!(verifies(store.as_ref()).await, 1);
}

async fn verify_catches_a_moved_anchor(db: TestDb) {
    let store = db.open();
    append(store.as_ref(), 1_000, 6).await;
    store.purge_audit(1_002, 100, key()).await.unwrap(); // anchor at seq 2
                                                         // Delete two more old records and move the anchor to hide it.
    let hash4 = store.read_audit(3, 1).await.unwrap()[0].hash.clone();
    db.exec("DELETE FROM cortex_audit WHERE seq <= 4").await;
    db.exec(&format!(
        "UPDATE cortex_audit_chain SET anchor_seq = 4, anchor_hash = '{hash4}'"
    ))
    .await;
    assert_eq!(broken_at(store.as_ref()).await, (5, BreakKind::Anchor));
}

fn new_ticket(owner: &str, fingerprint: &str, now_ms: i64) -> NewTicket {
    NewTicket {
        id: random_id("tkt_"),
        owner: owner.into(),
        agent_sub: owner.into(),
        agent_email: Some(format!("{owner}@example.com")),
        what_i_wanted: format!("export for {fingerprint}"),
        user_intent: "monthly report".into(),
        severity: TicketSeverity::Blocking,
        context_tool: Some("crm_search".into()),
        context_app: Some("crm".into()),
        suggested_shape: Some(r#"{"name":"crm_export"}"#.into()),
        fingerprint: fingerprint.into(),
        now_ms,
    }
}

fn delivery(id: &str, now_ms: i64) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        kind: "cortex.ticket.blocking".into(),
        target: "http://127.0.0.1:9/hook".into(),
        payload: format!("{{\"delivery\":\"{id}\"}}"),
        now_ms,
    }
}

const DAY: i64 = 86_400_000;

async fn tickets_deduplicate_per_owner_within_the_window(db: TestDb) {
    let store = db.open();
    let first = store
        .create_ticket(
            new_ticket("alice", "fp1", 1_000),
            DAY,
            Some(delivery("d1", 1_000)),
        )
        .await
        .unwrap();
    assert!(!first.deduplicated);
    assert!(first.delivery_enqueued);
    let t = &first.ticket;
    assert_eq!(t.status, TicketStatus::Open);
    assert_eq!(t.severity, TicketSeverity::Blocking);
    assert_eq!(t.context_app.as_deref(), Some("crm"));
    assert_eq!(
        t.suggested_shape.as_deref(),
        Some(r#"{"name":"crm_export"}"#)
    );
    assert_eq!(
        (t.created_at_ms, t.updated_at_ms, t.repeat_count),
        (1_000, 1_000, 0)
    );

    // Same owner and fingerprint within 24 h: folded in, no second webhook.
    let again = store
        .create_ticket(
            new_ticket("alice", "fp1", 5_000),
            DAY,
            Some(delivery("d2", 5_000)),
        )
        .await
        .unwrap();
    assert!(again.deduplicated);
    assert!(!again.delivery_enqueued);
    assert_eq!(again.ticket.id, t.id);
    assert_eq!(
        (again.ticket.updated_at_ms, again.ticket.repeat_count),
        (5_000, 1)
    );
    assert!(store.get_delivery("d2").await.unwrap().is_none());

    // Another owner, or another fingerprint: new tickets.
    let bob = store
        .create_ticket(new_ticket("bob", "fp1", 6_000), DAY, None)
        .await
        .unwrap();
    assert!(!bob.deduplicated);
    let other = store
        .create_ticket(new_ticket("alice", "fp2", 7_000), DAY, None)
        .await
        .unwrap();
    assert!(!other.deduplicated);
    // After the window: a new ticket.
    let later = store
        .create_ticket(new_ticket("alice", "fp1", 1_000 + DAY + 1), DAY, None)
        .await
        .unwrap();
    assert!(!later.deduplicated);
    assert_ne!(later.ticket.id, t.id);
    assert_eq!(
        store.get_ticket(&t.id).await.unwrap().unwrap().repeat_count,
        1
    );
    assert!(store.get_ticket("tkt_nope").await.unwrap().is_none());
}

async fn concurrent_reports_make_one_ticket(db: TestDb) {
    let stores = [db.open(), db.open()];
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            s.create_ticket(new_ticket("carol", "same", 10_000 + i as i64), DAY, None)
                .await
                .unwrap()
        }));
    }
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for t in tasks {
        let created = t.await.unwrap();
        ids.insert(created.ticket.id);
        fresh += usize::from(!created.deduplicated);
    }
    assert_eq!((ids.len(), fresh), (1, 1));
    let listed = stores[0]
        .list_tickets(TicketFilter {
            owner: Some("carol".into()),
            ..TicketFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].repeat_count, 9);
}

async fn tickets_list_with_filters_newest_first(db: TestDb) {
    let store = db.open();
    let mk = |owner: &str, fp: &str, at: i64, sev: TicketSeverity, app: Option<&str>| {
        let mut t = new_ticket(owner, fp, at);
        t.severity = sev;
        t.context_app = app.map(str::to_string);
        t
    };
    for t in [
        mk("alice", "a", 1_000, TicketSeverity::Blocking, Some("crm")),
        mk("alice", "b", 2_000, TicketSeverity::NiceToHave, Some("erp")),
        mk("bob", "c", 3_000, TicketSeverity::Blocking, None),
        mk(
            "alice",
            "d",
            4_000,
            TicketSeverity::Inconvenient,
            Some("crm"),
        ),
    ] {
        store.create_ticket(t, DAY, None).await.unwrap();
    }
    let fps = |ts: Vec<Ticket>| ts.into_iter().map(|t| t.fingerprint).collect::<Vec<_>>();
    let all = store.list_tickets(TicketFilter::default()).await.unwrap();
    assert_eq!(fps(all), ["d", "c", "b", "a"]);
    let alice = TicketFilter {
        owner: Some("alice".into()),
        ..TicketFilter::default()
    };
    assert_eq!(
        fps(store.list_tickets(alice.clone()).await.unwrap()),
        ["d", "b", "a"]
    );
    let crm = TicketFilter {
        context_app: Some("crm".into()),
        ..alice.clone()
    };
    assert_eq!(fps(store.list_tickets(crm).await.unwrap()), ["d", "a"]);
    let blocking = TicketFilter {
        severity: Some(TicketSeverity::Blocking),
        ..TicketFilter::default()
    };
    assert_eq!(fps(store.list_tickets(blocking).await.unwrap()), ["c", "a"]);
    let limited = TicketFilter {
        limit: 2,
        ..TicketFilter::default()
    };
    assert_eq!(fps(store.list_tickets(limited).await.unwrap()), ["d", "c"]);
    let resolved = TicketFilter {
        status: Some(TicketStatus::Resolved),
        ..TicketFilter::default()
    };
    assert!(store.list_tickets(resolved).await.unwrap().is_empty());
}

async fn tickets_are_triaged(db: TestDb) {
    let store = db.open();
    let id = store
        .create_ticket(new_ticket("alice", "fp", 1_000), DAY, None)
        .await
        .unwrap()
        .ticket
        .id;
    let note = TicketNote {
        at_ms: 2_000,
        by: "admin@example.com".into(),
        text: "planned for Q3 — \"export\"".into(),
    };
    let updated = store
        .update_ticket(
            &id,
            TicketUpdate {
                status: Some(TicketStatus::Planned),
                severity: Some(TicketSeverity::Inconvenient),
                note: Some(note.clone()),
                now_ms: 2_000,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.status, TicketStatus::Planned);
    assert_eq!(updated.severity, TicketSeverity::Inconvenient);
    assert_eq!(updated.notes, vec![note.clone()]);
    assert_eq!(updated.updated_at_ms, 2_000);
    let second = TicketNote {
        at_ms: 3_000,
        by: "admin".into(),
        text: "done".into(),
    };
    let again = store
        .update_ticket(
            &id,
            TicketUpdate {
                status: Some(TicketStatus::Resolved),
                severity: None,
                note: Some(second.clone()),
                now_ms: 3_000,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.severity, TicketSeverity::Inconvenient);
    assert_eq!(
        store.get_ticket(&id).await.unwrap().unwrap().notes,
        vec![note, second]
    );
    let missing = TicketUpdate {
        status: Some(TicketStatus::Open),
        severity: None,
        note: None,
        now_ms: 1,
    };
    assert!(store
        .update_ticket("tkt_missing", missing)
        .await
        .unwrap()
        .is_none());
}

async fn outbox_claims_lease_and_finish(db: TestDb) {
    let store = db.open();
    store.enqueue_delivery(delivery("a", 1_000)).await.unwrap();
    store.enqueue_delivery(delivery("b", 1_001)).await.unwrap();
    store
        .enqueue_delivery(delivery("later", 9_000))
        .await
        .unwrap();
    // Idempotent enqueue.
    store.enqueue_delivery(delivery("a", 1_500)).await.unwrap();
    assert_eq!(
        store
            .get_delivery("a")
            .await
            .unwrap()
            .unwrap()
            .created_at_ms,
        1_000
    );

    let claimed = store.claim_deliveries(2_000, 10_000, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(claimed
        .iter()
        .all(|d| d.attempts == 1 && d.lease_until_ms == Some(12_000)));
    let token_a = claimed[0].lease_token.clone().unwrap();
    let token_b = claimed[1].lease_token.clone().unwrap();
    // Leased: nobody else gets them.
    assert!(store
        .claim_deliveries(3_000, 10_000, 10)
        .await
        .unwrap()
        .is_empty());

    assert!(store
        .finish_delivery("a", &token_a, DeliveryOutcome::Delivered { at_ms: 3_000 })
        .await
        .unwrap());
    // Finishing twice, or with a wrong token, changes nothing.
    assert!(!store
        .finish_delivery(
            "a",
            &token_a,
            DeliveryOutcome::Retry {
                at_ms: 1,
                error: "x".into()
            }
        )
        .await
        .unwrap());
    assert!(!store
        .finish_delivery(
            "b",
            "lease_wrong",
            DeliveryOutcome::Delivered { at_ms: 3_000 }
        )
        .await
        .unwrap());
    let a = store.get_delivery("a").await.unwrap().unwrap();
    assert_eq!(
        (a.state, a.delivered_at_ms, a.lease_token),
        (DeliveryState::Delivered, Some(3_000), None)
    );

    assert!(store
        .finish_delivery(
            "b",
            &token_b,
            DeliveryOutcome::Retry {
                at_ms: 20_000,
                error: "503".into()
            }
        )
        .await
        .unwrap());
    let b = store.get_delivery("b").await.unwrap().unwrap();
    assert_eq!(
        (b.state, b.next_attempt_at_ms, b.last_error.as_deref()),
        (DeliveryState::Pending, 20_000, Some("503"))
    );
    // Not due before its time; "later" is due at 9000.
    let due = store.claim_deliveries(10_000, 1_000, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["later"]
    );
    // A claimant that died: the lease expires and the delivery is claimable again.
    let again = store.claim_deliveries(11_000, 1_000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_ne!(again[0].lease_token, due[0].lease_token);
    // The dead claimant's token no longer finishes it.
    let stale = due[0].lease_token.clone().unwrap();
    assert!(!store
        .finish_delivery(
            "later",
            &stale,
            DeliveryOutcome::Delivered { at_ms: 11_500 }
        )
        .await
        .unwrap());
    let fresh = again[0].lease_token.clone().unwrap();
    assert!(store
        .finish_delivery(
            "later",
            &fresh,
            DeliveryOutcome::Dead {
                error: "410 Gone".into()
            }
        )
        .await
        .unwrap());

    let b_again = store.claim_deliveries(20_000, 1_000, 10).await.unwrap();
    assert_eq!(b_again.len(), 1);
    assert_eq!(b_again[0].attempts, 2);
    let listed = |s: DeliveryState| {
        let store = store.clone();
        async move {
            store
                .list_deliveries(s, 0)
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(DeliveryState::Delivered).await, ["a"]);
    assert_eq!(listed(DeliveryState::Dead).await, ["later"]);
    assert_eq!(listed(DeliveryState::Pending).await, ["b"]);
}

async fn concurrent_claims_never_overlap(db: TestDb) {
    let setup = db.open();
    for i in 0..60 {
        setup
            .enqueue_delivery(delivery(&format!("d{i:02}"), 1_000 + i))
            .await
            .unwrap();
    }
    let claimer = |s: Arc<dyn Store>| async move {
        let mut mine = Vec::new();
        loop {
            let batch = s.claim_deliveries(5_000, 60_000, 7).await.unwrap();
            if batch.is_empty() {
                return mine;
            }
            for d in batch {
                let token = d.lease_token.clone().unwrap();
                assert!(s
                    .finish_delivery(&d.id, &token, DeliveryOutcome::Delivered { at_ms: 5_000 })
                    .await
                    .unwrap());
                mine.push(d.id);
            }
        }
    };
    let (a, b, c) = tokio::join!(claimer(db.open()), claimer(db.open()), claimer(db.open()));
    let mut all: Vec<String> = a.into_iter().chain(b).chain(c).collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        (total, all.len()),
        (60, 60),
        "each delivery claimed exactly once"
    );
}

async fn a_ticket_and_its_webhook_are_atomic(db: TestDb) {
    let store = db.open();
    // The delivery id already exists: the ticket is still created, the delivery is not
    // duplicated (enqueue is idempotent), and the result says so.
    store.enqueue_delivery(delivery("dup", 1)).await.unwrap();
    let created = store
        .create_ticket(
            new_ticket("dora", "x", 1_000),
            DAY,
            Some(delivery("dup", 1_000)),
        )
        .await
        .unwrap();
    assert!(!created.delivery_enqueued);
    assert_eq!(
        store
            .list_deliveries(DeliveryState::Pending, 0)
            .await
            .unwrap()
            .len(),
        1
    );
    // A failing ticket insert (duplicate id) leaves no delivery behind.
    let mut clash = new_ticket("erin", "y", 2_000);
    clash.id = created.ticket.id.clone();
    assert!(store
        .create_ticket(clash, DAY, Some(delivery("orphan", 2_000)))
        .await
        .is_err());
    assert!(store.get_delivery("orphan").await.unwrap().is_none());
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
    migrations_are_applied_once,
    audit_append_links_records_in_order,
    concurrent_appenders_share_one_chain,
    a_large_batch_links_in_order,
    verify_names_an_edited_record,
    verify_names_an_edited_flag,
    verify_names_a_deleted_record,
    verify_catches_a_renumbered_deletion,
    verify_catches_a_truncated_tail,
    verify_refuses_another_secret,
    purge_keeps_the_chain_verifiable,
    verify_catches_a_moved_anchor,
    tickets_deduplicate_per_owner_within_the_window,
    concurrent_reports_make_one_ticket,
    tickets_list_with_filters_newest_first,
    tickets_are_triaged,
    outbox_claims_lease_and_finish,
    concurrent_claims_never_overlap,
    a_ticket_and_its_webhook_are_atomic,
    tool_pins_are_saved_per_backend_and_replaced,
);

/// A store that cannot be reached fails with `Unavailable`, quickly, for both kinds.
#[tokio::test]
async fn unreachable_stores_report_unavailable() {
    let file = tempfile::NamedTempFile::new().unwrap();
    // A data directory "inside" a regular file cannot be created.
    let sqlite = SqliteStore::open(file.path().join("sub").join("db.sqlite"));
    assert!(matches!(
        sqlite.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        sqlite.append_audit(records(0, 1), key()).await,
        Err(StoreError::Unavailable(_))
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pg = PostgresStore::new(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=test"
    ))
    .unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(pg.ping().await, Err(StoreError::Unavailable(_))));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(PostgresStore::new("postgres://[bad").is_err());
}
