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
    // The vault key: the first replica configured with one records it; another is refused.
    let with_vault = |key: &str| {
        Fleet::yaml(
            &fleet.db,
            &fleet.prefix,
            TestConfig::new().top(&format!("vault:\n  key: \"{key}\"")),
        )
    };
    let vault_a = "dmF1bHQta2V5LWEtMDEyMzQ1Njc4OWFiY2RlZjAxMjM=";
    let vault_b = "dmF1bHQta2V5LWItMDEyMzQ1Njc4OWFiY2RlZjAxMjM=";
    let first = common::Gateway::start(&with_vault(vault_a)).await;
    first.wait_ready().await;
    let (_, logs) = fleet_support::start_refused(&with_vault(vault_b)).await;
    assert!(logs.contains("keys differ from the fleet's"), "{logs}");
    assert!(logs.contains("vault.key"), "{logs}");
    assert!(!logs.contains(vault_b), "never the key itself: {logs}");
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

const LIST_CHANGED: &str = "notifications/tools/list_changed";

/// A client of replica `i` directly, on the session of `client`.
fn on_replica(fleet: &Fleet, i: usize, client: &common::McpClient) -> common::McpClient {
    let mut c = fleet.replicas[i].client();
    c.session = client.session.clone();
    c.protocol_version = client.protocol_version.clone();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_on_another_replica_replays_what_it_missed() {
    use common::tool;
    use std::time::Duration;
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:a:read")).await;
    let fleet = Fleet::start("replay", TestConfig::new().backend("crm", &backend.url())).await;
    let mut client = fleet.client();
    client.initialize(VERSIONS[0]).await;
    for _ in 0..3 {
        client.result("ping", json!({})).await;
    }
    let mut stream = on_replica(&fleet, 0, &client).open_stream(&[]).await;
    backend.set_tools(vec![tool("echo", "mcp:a:read"), tool("two", "mcp:a:read")]);
    let (first, _) = stream
        .wait_for_method(LIST_CHANGED, Duration::from_secs(15))
        .await
        .expect("list_changed on the first replica's stream");
    let first_id: u64 = first
        .id
        .as_deref()
        .and_then(|i| i.parse().ok())
        .expect("an event id");
    // Every replica saw that change; the session heard of it once.
    assert!(
        stream
            .wait_for_method(LIST_CHANGED, Duration::from_secs(3))
            .await
            .is_none(),
        "one catalog change, one notification"
    );
    drop(stream);
    // A change while the client has no stream open anywhere.
    backend.set_tools(vec![
        tool("echo", "mcp:a:read"),
        tool("two", "mcp:a:read"),
        tool("three", "mcp:a:read"),
    ]);
    common::eventually(
        Duration::from_secs(15),
        "every replica lists the third tool",
        || async {
            for r in &fleet.replicas {
                let names = on_replica(
                    &fleet,
                    fleet.replica_at(&format!(":{}", r.port()))?,
                    &client,
                )
                .tool_names()
                .await;
                if !names.iter().any(|n| n == "crm_three") {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    // Reconnect to another replica with Last-Event-ID: the missed event is replayed.
    let last = first_id.to_string();
    let mut resumed = on_replica(&fleet, 1, &client)
        .open_stream(&[("last-event-id", last.as_str())])
        .await;
    let (missed, _) = resumed
        .wait_for_method(LIST_CHANGED, Duration::from_secs(5))
        .await
        .expect("the missed list_changed replayed on the other replica");
    let missed_id: u64 = missed
        .id
        .as_deref()
        .and_then(|i| i.parse().ok())
        .expect("id");
    assert!(missed_id > first_id, "{missed_id} after {first_id}");
    assert!(
        resumed
            .wait_for_method(LIST_CHANGED, Duration::from_secs(2))
            .await
            .is_none(),
        "nothing replayed twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changed_reaches_the_sessions_of_every_replica_after_one_replica_sees_it() {
    use common::tool;
    use std::time::{Duration, Instant};
    const ADMIN: &str = "fleet-admin-secret-0123456789";
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:a:read")).await;
    // Replicas rediscover only every minute by themselves.
    let fleet = Fleet::start(
        "converge",
        TestConfig::new()
            .catalog("refresh: 60s")
            .top(&format!("admin:\n  secret: \"{ADMIN}\""))
            .backend("crm", &backend.url()),
    )
    .await;
    let mut streams = Vec::new();
    for i in 0..3 {
        let mut c = fleet.replicas[i].client();
        c.initialize(VERSIONS[0]).await;
        streams.push(c.open_stream(&[]).await);
    }
    backend.set_tools(vec![
        tool("echo", "mcp:a:read"),
        tool("fresh", "mcp:a:read"),
    ]);
    let started = Instant::now();
    let reply = reqwest::Client::new()
        .post(format!(
            "{}/admin/backends/crm/refresh",
            fleet.replicas[0].url()
        ))
        .header("x-cortex-admin-secret", ADMIN)
        .json(&json!({}))
        .send()
        .await
        .expect("admin refresh");
    assert!(reply.status().is_success(), "{}", reply.status());
    for (i, s) in streams.iter_mut().enumerate() {
        assert!(
            s.wait_for_method(LIST_CHANGED, Duration::from_secs(10))
                .await
                .is_some(),
            "the session on replica {i} heard of the change long before its own refresh"
        );
    }
    eprintln!(
        "fleet: list_changed reached the sessions of all three replicas {:?} after one replica saw the change",
        started.elapsed()
    );
}

/// The last stdout line of a client script, as JSON.
fn script_output(run: &common::interop::ToolRun) -> serde_json::Value {
    assert_eq!(run.code(), 0, "{}", run.describe());
    let last = run.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.describe()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_typescript_sdk_sessions_through_nginx_land_on_every_replica() {
    use common::{interop, FixtureBackend};
    let backend = FixtureBackend::start().await;
    let fleet = Fleet::start(
        "sdks",
        TestConfig::new().catalog("page_size: 2").backend_with(
            "fixture",
            &backend.url(),
            &["naming: none"],
        ),
    )
    .await;
    let dir = fleet.replicas[0].dir().to_owned();
    let python = interop::run_tool_async(
        interop::python(),
        vec![
            interop::repo_path("tests/python/sdk_fixture.py")
                .display()
                .to_string(),
            fleet.nginx.mcp_url(),
            "legacy".into(),
        ],
        Vec::new(),
        dir.clone(),
        "python-sdk-fleet",
        std::time::Duration::from_secs(120),
    )
    .await;
    let out = script_output(&python);
    assert_eq!(out["protocolVersion"], "2025-11-25", "{out}");
    let ts = interop::run_tool_async(
        interop::node(),
        vec![
            interop::repo_path("tests/js/client.mjs")
                .display()
                .to_string(),
            fleet.nginx.mcp_url(),
        ],
        vec![(
            "CORTEX_TS_SDK_DIR".into(),
            interop::ts_sdk_dir().display().to_string(),
        )],
        dir,
        "ts-sdk-fleet",
        std::time::Duration::from_secs(120),
    )
    .await;
    let out = script_output(&ts);
    assert_eq!(out["echo"]["isError"], false, "{out}");
    let ts_session = out["sessionId"].as_str().expect("a session").to_owned();
    // Each client's session: every request answered, by every replica in turn.
    let log = fleet.nginx.access_log();
    let mut sessions = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    for (upstream, status, _, session) in &log {
        if session.is_empty() || session == "-" {
            continue;
        }
        assert!(*status < 400 || *status == 404 || *status == 405, "{log:?}");
        sessions
            .entry(session.clone())
            .or_default()
            .insert(upstream.clone());
    }
    assert_eq!(sessions.len(), 2, "one session per client: {sessions:?}");
    assert_eq!(sessions[&ts_session].len(), 3, "{sessions:?}");
    assert!(sessions.values().all(|s| s.len() == 3), "{sessions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_the_fleet() {
    let prefix = fleet_support::unique_prefix("rl");
    let fleet = Fleet::start(
        "ratelimit",
        TestConfig::new().top(&format!(
            "rate_limits:\n  per_subject: \"5/min\"\n  redis: {{redis_url: \"{}\", key_prefix: \"{{{prefix}}}\", fail_open: false}}",
            fleet_support::redis_url()
        )),
    )
    .await;
    let client = fleet.client();
    let (mut allowed, mut refused) = (BTreeSet::new(), BTreeSet::new());
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..9 {
        let r = client
            .post(&client.request_body("ping", json!({})), &[])
            .await;
        match r.status {
            200 => {
                ok += 1;
                allowed.insert(answered_by(&fleet, &r));
            }
            429 => {
                limited += 1;
                refused.insert(answered_by(&fleet, &r));
            }
            s => panic!("{s}: {}", r.text()),
        }
    }
    fleet_support::delete_prefix(&fleet_support::redis_url(), &format!("{{{prefix}}}"));
    assert_eq!(
        (ok, limited),
        (5, 4),
        "one limit of 5/min for the whole fleet"
    );
    assert_eq!(allowed.len(), 3, "{allowed:?}");
    assert_eq!(
        refused.len(),
        3,
        "every replica refuses once it is spent: {refused:?}"
    );
}

/// One request of the load: the replica that answered, the status (0 for a transport
/// error) and the ticket id its answer named.
type Outcome = (Option<usize>, u16, Option<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_no_answered_request_and_no_delivery() {
    use crate::builtins_support::WebhookReceiver;
    use std::sync::{Arc, Mutex};
    let receiver = WebhookReceiver::start_on(common::free_port()).await;
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:a:read")).await;
    let fleet = Fleet::start(
        "failover",
        TestConfig::new().backend("crm", &backend.url()).top(&format!(
            "tickets:\n  webhook_url: \"{}\"\n  webhook_secret: \"{WEBHOOK_SECRET}\"\n  webhook_max_backoff: 1s\n  webhook_timeout: 2s",
            receiver.url()
        )),
    )
    .await;
    const WORKERS: usize = 4;
    const PER_WORKER: usize = 40;
    // (answered by, status or 0 for a transport error, ticket id)
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ports: Vec<u16> = fleet.replicas.iter().map(|r| r.port()).collect();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let mut client = fleet.client();
        client.initialize(VERSIONS[0]).await;
        let (outcomes, done, ports) = (outcomes.clone(), done.clone(), ports.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_WORKER {
                let body = if i % 10 == 3 {
                    client.request_body(
                        "tools/call",
                        json!({"name": "report_missing_capability", "arguments": {
                        "whatIWanted": format!("Failover capability {w}-{i}"), "userIntent": "help",
                        "severity": "blocking", "contextApp": "erp"}}),
                    )
                } else {
                    client.request_body(
                        "tools/call",
                        json!({"name": "crm_echo", "arguments": {"n": i}}),
                    )
                };
                let sent = client
                    .http
                    .post(&client.url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-session-id", client.session.clone().unwrap_or_default())
                    .header(
                        "mcp-protocol-version",
                        client.protocol_version.clone().unwrap_or_default(),
                    )
                    .body(body.to_string())
                    .send()
                    .await;
                let outcome = match sent {
                    Ok(resp) => {
                        let by = resp
                            .headers()
                            .get("x-upstream")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|a| ports.iter().position(|p| a.ends_with(&format!(":{p}"))));
                        let status = resp.status().as_u16();
                        let text = resp.text().await.unwrap_or_default();
                        let ticket = text
                            .find("tkt_")
                            .and_then(|at| text.get(at..at + 30))
                            .map(str::to_owned);
                        (by, status, ticket)
                    }
                    Err(_) => (None, 0, None),
                };
                outcomes.lock().unwrap().push(outcome);
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    // SIGKILL the third replica a third of the way through the load.
    common::eventually(
        std::time::Duration::from_secs(60),
        "a third of the load",
        || {
            let done = done.clone();
            async move {
                (done.load(std::sync::atomic::Ordering::Relaxed) >= WORKERS * PER_WORKER / 3)
                    .then_some(())
            }
        },
    )
    .await;
    fleet.replicas[2].signal(libc::SIGKILL);
    let killed_at = outcomes.lock().unwrap().len();
    for t in tasks {
        t.await.expect("worker");
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let errors: Vec<_> = outcomes.iter().filter(|(_, s, _)| *s != 200).collect();
    let after = &outcomes[killed_at..];
    let errors_after_kill = after.iter().filter(|(_, s, _)| *s != 200).count();
    eprintln!(
        "fleet: {} requests, {} answered 200, {} errors ({} after the kill: {:?})",
        outcomes.len(),
        outcomes.len() - errors.len(),
        errors.len(),
        errors_after_kill,
        errors
    );
    // The clients' next requests succeed on the others: the last tenth all answered.
    let tail = &outcomes[outcomes.len() - outcomes.len() / 10..];
    assert!(
        tail.iter().all(|(by, s, _)| *s == 200 && *by != Some(2)),
        "{tail:?}"
    );
    assert!(
        errors.len() <= WORKERS,
        "at most the requests in flight at the kill: {errors:?}"
    );

    // Audit: a record for every answered call, none twice. The killed replica's records
    // that had not reached the store are in its spool file (written before each answer's
    // last bytes); a survivor sharing the spool directory finds the file unlocked and
    // replays it (the store skips the ids it already has).
    let answered = outcomes.iter().filter(|(_, s, _)| *s == 200).count() as i64;
    let audited = common::eventually(
        std::time::Duration::from_secs(30),
        "a record for every answered call",
        || async {
            let n = fleet
                .db
                .query_i64(
                    "SELECT count(*) FROM cortex_audit WHERE method = 'tools/call' AND http_status = 200",
                )
                .await;
            (n >= answered).then_some(n)
        },
    )
    .await;
    eprintln!(
        "fleet: {audited} tools/call audit records for {answered} answered calls ({} lost, {} answered by the gateway but not received)",
        (answered - audited).max(0),
        (audited - answered).max(0)
    );
    assert!(audited >= answered, "no answered call's record is lost");
    // At most the calls in flight at the kill were answered by the gateway without the
    // client receiving it (their record says 200; the client saw an error).
    assert!(
        audited <= answered + errors.len() as i64,
        "no record twice: {audited} records, {answered} answered, {} errors",
        errors.len()
    );
    let stray = fleet
        .db
        .query_i64("SELECT count(*) - count(DISTINCT rid) FROM cortex_audit")
        .await;
    assert_eq!(stray, 0, "record ids are unique");
    // The killed replica's spool file is gone (replayed, then deleted): what is left are
    // the files the two survivors hold.
    let files = common::eventually(
        std::time::Duration::from_secs(15),
        "the killed replica's spool replayed and deleted",
        || async {
            let n = std::fs::read_dir(fleet.spool.path())
                .map(|d| d.count())
                .unwrap_or(0);
            (n <= 2).then_some(n)
        },
    )
    .await;
    assert!(files >= 1, "the survivors spool");
    let logs: String = fleet.replicas[..2]
        .iter()
        .map(|r| common::strip_ansi(&r.logs()))
        .collect();
    assert!(
        logs.contains("replayed the spool file of a process that is gone"),
        "a survivor replayed the killed replica's spool: {logs}"
    );
    let (code, out, err) = crate::audit_support::run_verify(
        fleet.replicas[0].dir(),
        &fleet.replicas[0].path("gateway.yaml"),
    )
    .await;
    assert_eq!(code, 0, "the chain verifies after the kill: {out}\n{err}");

    // Webhook: every ticket an answer named is delivered once (a delivery the killed replica
    // had claimed is taken over when its lease expires).
    let tickets: BTreeSet<String> = outcomes.iter().filter_map(|(_, _, t)| t.clone()).collect();
    assert!(!tickets.is_empty());
    receiver
        .wait_for(tickets.len(), std::time::Duration::from_secs(30))
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let mut delivered = std::collections::BTreeMap::<String, usize>::new();
    for r in receiver.received() {
        *delivered
            .entry(r.json()["ticketId"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    for t in &tickets {
        assert_eq!(delivered.get(t), Some(&1), "ticket {t}: {delivered:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_then_back_degrades_as_documented_without_a_panic() {
    let mut redis = fleet_support::PrivateRedis::start().await;
    let fleet = Fleet::start_on("redisdown", TestConfig::new(), 3, &redis.url()).await;
    let mut client = fleet.client();
    client.initialize(VERSIONS[0]).await;
    for _ in 0..3 {
        client.result("ping", json!({})).await;
    }
    redis.kill();
    // Requests keep working on every replica.
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let r = client
            .post(&client.request_body("ping", json!({})), &[])
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        seen.insert(answered_by(&fleet, &r));
    }
    assert_eq!(seen.len(), 3);
    // A DELETE is honoured at once by the replica that answered it...
    let deleted = client.delete(&[]).await;
    assert_eq!(deleted.status, 204);
    let by = answered_by(&fleet, &deleted);
    let same = on_replica(&fleet, by, &client);
    let r = same.post(&same.request_body("ping", json!({})), &[]).await;
    assert_eq!(r.status, 404);
    // ...and by the others while Redis is still down: the store owns revocations (each
    // replica reads the ends recorded in PostgreSQL every second).
    for i in (0..3).filter(|i| *i != by) {
        let other = on_replica(&fleet, i, &client);
        common::eventually(
            std::time::Duration::from_secs(15),
            "the revocation reaches the others through the store",
            || {
                let other = other.clone();
                async move {
                    let r = other
                        .post(&other.request_body("ping", json!({})), &[])
                        .await;
                    (r.status == 404).then_some(())
                }
            },
        )
        .await;
    }
    // Redis back: every replica resubscribes and shares again; a new session works on each.
    redis.restart().await;
    common::eventually(
        std::time::Duration::from_secs(15),
        "every replica subscribed again",
        || async {
            fleet
                .replicas
                .iter()
                .all(|r| {
                    r.logs()
                        .matches("subscribed to the fleet's channel")
                        .count()
                        >= 2
                })
                .then_some(())
        },
    )
    .await;
    let mut again = fleet.client();
    again.initialize(VERSIONS[0]).await;
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let r = again
            .post(&again.request_body("ping", json!({})), &[])
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        seen.insert(answered_by(&fleet, &r));
    }
    assert_eq!(seen.len(), 3);
    for r in &fleet.replicas {
        let logs = r.logs();
        assert!(!logs.contains("panicked"), "{logs}");
    }
    assert!(
        fleet
            .replicas
            .iter()
            .any(|r| r.logs().contains("fleet: Redis")),
        "the outage is logged"
    );
}

/// One call of the native fixture's `session_id` tool through nginx: the replica that
/// answered and the upstream session (the fixture's `Mcp-Session-Id`) it used.
async fn upstream_session_via(fleet: &Fleet, client: &common::McpClient) -> (usize, String) {
    let body = client.request_body(
        "tools/call",
        json!({"name": "py_session_id", "arguments": {}}),
    );
    let reply = client.post(&body, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let response = reply.json();
    assert!(
        response.get("error").is_none() && response["result"]["isError"] != true,
        "{response}"
    );
    let id = crate::native_http::text_of(&response["result"]);
    assert!(!id.is_empty(), "the fixture saw no session id: {response}");
    (answered_by(fleet, &reply), id)
}

/// Six calls of one client session through nginx: the upstream sessions each replica used.
async fn upstream_sessions_by_replica(
    fleet: &Fleet,
    client: &common::McpClient,
) -> std::collections::BTreeMap<usize, BTreeSet<String>> {
    let mut by_replica = std::collections::BTreeMap::<usize, BTreeSet<String>>::new();
    for _ in 0..6 {
        let (by, id) = upstream_session_via(fleet, client).await;
        by_replica.entry(by).or_default().insert(id);
    }
    by_replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_mcp_backend_serves_a_session_on_every_replica_and_outlives_its_restart() {
    use crate::native_http::{deleted, start_fixture, start_fixture_on};
    use std::time::Duration;
    let fixture = start_fixture().await;
    let port = fixture.port;
    let fleet = Fleet::start(
        "native",
        TestConfig::new().catalog("refresh: 60s").mcp_backend(
            "py",
            &format!("http://127.0.0.1:{port}/mcp"),
            &["timeout: 30s"],
        ),
    )
    .await;
    for r in &fleet.replicas {
        crate::native_stdio::wait_listed(r, "py_session_id").await;
    }
    let mut client = fleet.client();
    client.initialize(VERSIONS[0]).await;

    // Round-robin: every replica answers the session's calls, each over an upstream session
    // of its own for the user, opened on its first call and kept for the next ones.
    let first = upstream_sessions_by_replica(&fleet, &client).await;
    assert_eq!(first.len(), 3, "every replica answered: {first:?}");
    assert!(
        first.values().all(|ids| ids.len() == 1),
        "one upstream session per replica, kept across calls: {first:?}"
    );
    let before: BTreeSet<String> = first.values().flatten().cloned().collect();
    assert_eq!(before.len(), 3, "the replicas do not share one: {first:?}");

    // The upstream server restarts and forgets every session: each replica's next call is
    // refused for its old session, initializes a new one and goes through, unseen by the
    // client.
    drop(fixture);
    let fixture = start_fixture_on(port).await;
    let second = upstream_sessions_by_replica(&fleet, &client).await;
    assert_eq!(second.len(), 3, "{second:?}");
    assert!(second.values().all(|ids| ids.len() == 1), "{second:?}");
    let after: BTreeSet<String> = second.values().flatten().cloned().collect();
    assert_eq!(after.len(), 3, "{second:?}");
    assert!(
        before.is_disjoint(&after),
        "new sessions: {first:?} {second:?}"
    );

    // resources/updated crosses replicas too: the session subscribes on the first replica
    // (which subscribes upstream over its own session), its notification stream is open on
    // the second, and the server's update reaches it there through the session's event log.
    let mut stream = on_replica(&fleet, 1, &client).open_stream(&[]).await;
    assert_eq!(stream.status, 200);
    let on_first = on_replica(&fleet, 0, &client);
    let subscribed = on_first
        .result(
            "resources/subscribe",
            json!({"uri": "test://watched-resource"}),
        )
        .await;
    assert_eq!(subscribed, json!({}));
    on_first.call_tool("py_notify_changes", json!({})).await;
    let (_, updated) = stream
        .wait_for_method("notifications/resources/updated", Duration::from_secs(30))
        .await
        .expect("resources/updated on the stream the session holds on another replica");
    assert_eq!(updated["params"]["uri"], "test://watched-resource");
    drop(stream);

    // The client ends its session on one replica: the end reaches the others over the bus,
    // and each ends its upstream session for the user (their only downstream session).
    let ended = client.delete(&[]).await;
    assert_eq!(ended.status, 204, "{}", ended.text());
    common::eventually(
        Duration::from_secs(30),
        "every replica's upstream session ended",
        || async {
            let gone = deleted(&fixture).await;
            if after.iter().all(|s| gone.contains(s)) {
                return Some(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        },
    )
    .await;
}

/// ping with `client`'s session on `gateway` directly: the status.
async fn ping_status(gateway: &common::Gateway, client: &common::McpClient) -> u16 {
    let mut c = gateway.client();
    c.session = client.session.clone();
    c.protocol_version = client.protocol_version.clone();
    c.post(&c.request_body("ping", json!({})), &[]).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_deleted_while_postgresql_is_down_is_refused_everywhere_once_it_is_back() {
    use common::private_pg::PrivatePg;
    use std::time::Duration;
    // Two replicas sharing a private PostgreSQL and no Redis: revocations go through the
    // store alone, which owns them.
    let pg = tokio::task::block_in_place(PrivatePg::start);
    let yaml = TestConfig::new()
        .top(&format!("storage:\n  database_url: \"{}\"", pg.url()))
        .build();
    let a = common::Gateway::start(&yaml).await;
    let b = common::Gateway::start(&yaml).await;
    a.wait_ready().await;
    b.wait_ready().await;
    let mut client = a.client();
    client.initialize(VERSIONS[0]).await;
    assert_eq!(ping_status(&b, &client).await, 200);

    tokio::task::block_in_place(|| pg.stop());
    let deleted = client.delete(&[]).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(ping_status(&a, &client).await, 404, "refused at once here");
    // The end waits on the replica that answered the DELETE, retried every second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| pg.start_again());
    common::eventually(
        Duration::from_secs(30),
        "the other replica refuses the id once the store is back",
        || async { (ping_status(&b, &client).await == 404).then_some(()) },
    )
    .await;
    // Recorded for good: a replica started later refuses it from the start.
    let c = common::Gateway::start(&yaml).await;
    c.wait_ready().await;
    common::eventually(
        Duration::from_secs(10),
        "a new replica reads the end",
        || async { (ping_status(&c, &client).await == 404).then_some(()) },
    )
    .await;
    assert!(
        a.logs().contains("could not be recorded in the store yet"),
        "{}",
        a.logs()
    );
}

/// `cortex-gateway check-config <file>` with the fleet's secrets in the environment: the exit
/// code and what it printed.
fn check_config(file: &std::path::Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cortex-gateway"))
        .arg("check-config")
        .arg(file)
        .env("SESSION_SECRET", common::SECRET_A)
        .env("AUDIT_SECRET", fleet_support::AUDIT_SECRET)
        .env("CORTEX_TECHNICAL_TOKEN", "technical-token-of-the-test")
        .env(
            "CORTEX_DATABASE_URL",
            "postgres://cortex@127.0.0.1:5432/cortex",
        )
        .env("CORTEX_FLEET_REDIS_URL", "redis://127.0.0.1:6379/0")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run check-config");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The reference deployment of conf/fleet/ (docs/fleet.md): its gateway configuration (the
/// file for Compose and the one in the Kubernetes ConfigMap) is accepted by `check-config`
/// with a fleet's settings, and the manifests parse and hold what a fleet needs.
#[test]
fn the_reference_deployment_in_conf_fleet_is_complete_and_accepted() {
    use serde_json::Value;
    let dir = common::interop::repo_path("conf/fleet");
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let (code, out) = check_config(&dir.join("gateway.yaml"));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("secret set"), "{out}");

    let kube: Vec<Value> =
        serde_saphyr::from_multiple(&read("kubernetes.yaml")).expect("kubernetes.yaml parses");
    let of_kind = |kind: &str| -> &Value {
        kube.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in kubernetes.yaml"))
    };
    let embedded = of_kind("ConfigMap")["data"]["gateway.yaml"]
        .as_str()
        .expect("the ConfigMap holds gateway.yaml");
    let tmp = tempfile::tempdir().expect("temp dir");
    let embedded_path = tmp.path().join("gateway.yaml");
    std::fs::write(&embedded_path, embedded).expect("write");
    let (code, out) = check_config(&embedded_path);
    assert_eq!(code, Some(0), "{out}");
    for key in [
        "redis_url",
        "database_url",
        "secret: ${SESSION_SECRET}",
        "secret: ${AUDIT_SECRET}",
    ] {
        assert!(embedded.contains(key), "the ConfigMap's YAML lacks {key}");
    }
    let secret = &of_kind("Secret")["stringData"];
    for key in [
        "SESSION_SECRET",
        "AUDIT_SECRET",
        "CORTEX_DATABASE_URL",
        "CORTEX_FLEET_REDIS_URL",
    ] {
        assert!(secret[key].is_string(), "the Secret lacks {key}");
    }
    let deployment = of_kind("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert!(container[probe]["httpGet"]["path"].is_string(), "{probe}");
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"],
        "cortex-gateway"
    );
    let service = of_kind("Service");
    assert!(
        service["spec"]["sessionAffinity"].is_null(),
        "no stickiness"
    );
    assert!(of_kind("PodDisruptionBudget")["spec"]["minAvailable"].is_number());
    let hpa = &of_kind("HorizontalPodAutoscaler")["spec"];
    assert_eq!(hpa["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["minReplicas"], 3);
    assert_eq!(hpa["metrics"][0]["resource"]["name"], "cpu");
    assert!(
        !kube.iter().any(|d| d["kind"] == "StatefulSet"),
        "PostgreSQL and Redis are external"
    );

    let compose: Value = serde_saphyr::from_str(&read("compose.yaml")).expect("compose parses");
    let services = &compose["services"];
    assert_eq!(services["gateway"]["deploy"]["replicas"], 3);
    for s in ["lb", "postgres", "redis"] {
        assert!(services[s]["image"].is_string(), "compose service {s}");
    }
    let nginx = read("nginx.conf");
    assert!(
        nginx.contains("proxy_buffering off"),
        "streams pass unbuffered"
    );
    for sticky in ["ip_hash", "sticky", "hash "] {
        assert!(!nginx.contains(sticky), "no stickiness: {sticky}");
    }
}

/// The calls of each Redis command so far (`INFO commandstats`), by command name.
fn redis_command_calls(url: &str) -> std::collections::BTreeMap<String, i64> {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_connection_with_timeout(std::time::Duration::from_secs(2))
        .expect("redis connection");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .expect("INFO");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// PostgreSQL statistics of one table of the fleet's schema: (rows inserted, rows updated).
async fn table_writes(fleet: &Fleet, table: &str) -> (i64, i64) {
    let sql = |col: &str| {
        format!(
            "SELECT coalesce(sum({col}), 0)::bigint FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = '{table}'"
        )
    };
    (
        fleet.db.query_i64(&sql("n_tup_ins")).await,
        fleet.db.query_i64(&sql("n_tup_upd")).await,
    )
}

/// Waits until PostgreSQL's statistics count at least `rows` inserted audit rows (other
/// backends report theirs when idle, within seconds).
async fn stats_settled(fleet: &Fleet, rows: i64) {
    common::eventually(
        std::time::Duration::from_secs(30),
        "PostgreSQL's statistics caught up with the audit rows",
        || async {
            let (ins, _) = table_writes(fleet, "cortex_audit").await;
            (ins >= rows).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_state_costs_a_bounded_number_of_redis_and_postgresql_operations_per_request() {
    use std::time::{Duration, Instant};
    const WORKERS: usize = 4;
    const PER_WORKER: usize = 50;
    let redis = fleet_support::PrivateRedis::start().await;
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:a:read")).await;
    let fleet = Fleet::start_on(
        "cost",
        TestConfig::new().backend("crm", &backend.url()).top(&format!(
            "rate_limits:\n  per_subject: \"100000/min\"\n  redis: {{redis_url: \"{}\", key_prefix: \"{{cortex-rl-cost}}\", fail_open: false}}",
            redis.url()
        )),
        3,
        &redis.url(),
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..WORKERS {
        let mut c = fleet.client();
        c.initialize(VERSIONS[0]).await;
        clients.push(c);
    }
    let audit_rows = || async {
        fleet
            .db
            .query_i64("SELECT count(*) FROM cortex_audit")
            .await
    };
    // Settle: every start-up record written and counted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows_before = audit_rows().await;
    stats_settled(&fleet, rows_before).await;
    let redis_before = redis_command_calls(&redis.url());
    let (_, chain_before) = table_writes(&fleet, "cortex_audit_chain").await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in clients {
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_WORKER {
                let r = client
                    .post(
                        &client.request_body(
                            "tools/call",
                            json!({"name": "crm_echo", "arguments": {"n": i}}),
                        ),
                        &[],
                    )
                    .await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let elapsed = started.elapsed();
    let requests = (WORKERS * PER_WORKER) as i64;
    let redis_after = redis_command_calls(&redis.url());
    common::eventually(
        Duration::from_secs(20),
        "the audit records of the load",
        || async { (audit_rows().await >= rows_before + requests).then_some(()) },
    )
    .await;
    let rows_after = audit_rows().await;
    stats_settled(&fleet, rows_after).await;
    let (_, chain_after) = table_writes(&fleet, "cortex_audit_chain").await;

    let delta: std::collections::BTreeMap<String, i64> = redis_after
        .iter()
        .map(|(k, v)| (k.clone(), v - redis_before.get(k).copied().unwrap_or(0)))
        .filter(|(k, v)| *v > 0 && k != "info")
        .collect();
    // `INFO commandstats` also counts the commands a script runs; a script is one round trip.
    let in_script = ["time", "hmget", "hset", "pexpire"];
    let scripts = delta.get("evalsha").copied().unwrap_or(0);
    let round_trips: i64 = delta
        .iter()
        .filter(|(k, _)| !in_script.contains(&k.as_str()))
        .map(|(_, v)| v)
        .sum();
    let bus = round_trips - scripts;
    let appends = chain_after - chain_before;
    eprintln!(
        "fleet: {requests} tools/call in {elapsed:?} through 3 replicas: Redis {round_trips} round trips ({:.2} per request: {scripts} rate-limit scripts, {bus} bus commands; inside the scripts and all: {delta:?}), PostgreSQL {} audit rows in {appends} append transactions ({:.2} per request)",
        round_trips as f64 / requests as f64,
        rows_after - rows_before,
        appends as f64 / requests as f64
    );
    // Redis: one rate-limit script per request; what the bus does is per replica and
    // second (a batch of the sessions served: ZADD + PUBLISH), not per request.
    assert_eq!(
        scripts, requests,
        "one rate-limit decision per request: {delta:?}"
    );
    let per_second_budget = 3 * 2 * (elapsed.as_secs() as i64 + 2);
    assert!(
        bus <= per_second_budget,
        "bus commands {bus} over {per_second_budget}: {delta:?}"
    );
    // PostgreSQL: the audit chain is appended in batches, never more than once per record.
    assert!(
        appends >= 1 && appends <= rows_after - rows_before,
        "{appends}"
    );
}
