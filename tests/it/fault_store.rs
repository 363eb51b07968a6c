//! The store down, then back (docs/reliability.md, "The store down, then back"): a private
//! PostgreSQL stopped under traffic and started again, and a SQLite file made read-only with
//! `chattr +i` (the tests run as root, for whom `chmod` changes nothing). Every request is
//! answered throughout; every answered request's audit record reaches the store once it is
//! back (fewer requests than `audit.queue`), the chain verifies, tickets and the webhook
//! outbox survive.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::audit_support::{audit_lines, run_verify};
use crate::builtins_support::{call_ok, WebhookReceiver};
use crate::common;
use crate::store_support::{Kind, TestDb};
use common::private_pg::PrivatePg;
use common::{eventually, strip_ansi, unused_port, Gateway, McpClient, TestConfig};

const AUDIT_SECRET: &str = "fault-audit-secret-0123456789abcdef0123";
const WEBHOOK_SECRET: &str = "webhook-secret-for-tests-0123456789";
const WAIT: Duration = Duration::from_secs(40);

fn yaml(storage: &str, webhook_port: u16) -> String {
    TestConfig::new()
        .top(&format!("storage:\n  {storage}"))
        .top(&format!("audit:\n  secret: \"{AUDIT_SECRET}\""))
        .top(&format!(
            "tickets:\n  webhook_url: \"http://127.0.0.1:{webhook_port}/hook\"\n  webhook_secret: \"{WEBHOOK_SECRET}\"\n  webhook_max_backoff: 1s\n  webhook_timeout: 2s"
        ))
        .build()
}

async fn report(client: &McpClient, what: &str, severity: &str) -> Value {
    call_ok(
        client,
        "report_missing_capability",
        json!({"whatIWanted": what, "userIntent": "help the user", "severity": severity, "contextApp": "erp"}),
    )
    .await
}

/// `n` pings, each answered.
async fn pings(client: &McpClient, n: usize) {
    for _ in 0..n {
        assert_eq!(client.result("ping", json!({})).await, json!({}));
    }
}

/// The ticket ids `list_cortex_tickets` shows the caller.
async fn ticket_ids(client: &McpClient) -> BTreeSet<String> {
    let listed = call_ok(client, "list_cortex_tickets", json!({})).await;
    listed["tickets"]
        .as_array()
        .unwrap_or_else(|| panic!("a ticket list: {listed}"))
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect()
}

async fn pg_count(pg: &PrivatePg, sql: &str) -> Option<i64> {
    let (client, conn) = tokio_postgres::connect(&pg.conninfo(), tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    client.query_one(sql, &[]).await.ok().map(|r| r.get(0))
}

/// Waits until the store holds as many audit records as the gateway wrote on stdout, twice
/// in a row (stdout has every record whatever the store does); that count.
async fn all_stored<F, Fut>(g: &Gateway, mut stored: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<i64>>,
{
    let deadline = std::time::Instant::now() + WAIT;
    let mut previous = None;
    loop {
        let lines = audit_lines(g).len();
        let in_store = stored().await.unwrap_or(-1);
        if in_store == lines as i64 && previous == Some(lines) {
            return lines;
        }
        previous = (in_store == lines as i64).then_some(lines);
        if std::time::Instant::now() >= deadline {
            panic!(
                "{in_store} records in the store, {lines} on stdout after {WAIT:?}\n{}",
                g.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The gateway's logs without colours.
fn logs(g: &Gateway) -> String {
    strip_ansi(&g.logs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_traffic_and_started_again_loses_nothing() {
    let pg = tokio::task::block_in_place(PrivatePg::start);
    let webhook_port = unused_port();
    let mut g = Gateway::start(&yaml(
        &format!("database_url: \"{}\"", pg.url()),
        webhook_port,
    ))
    .await;
    let client = g.client();

    // Before: a blocking ticket whose webhook receiver is down (pending in the outbox),
    // another ticket, some traffic.
    let blocking = report(&client, "Export invoices", "blocking").await;
    assert_eq!(blocking["adminNotified"], true, "{blocking}");
    let other = report(&client, "Dark mode", "nice_to_have").await;
    let before: BTreeSet<String> = [&blocking, &other]
        .iter()
        .map(|t| t["ticketId"].as_str().expect("ticket id").to_string())
        .collect();
    pings(&client, 10).await;
    eventually(WAIT, "the first records stored", || async {
        (pg_count(&pg, "SELECT COUNT(*) FROM cortex_audit").await? >= 10).then_some(())
    })
    .await;

    // The database stops while requests keep coming.
    let traffic = {
        let client = client.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                assert_eq!(client.result("ping", json!({})).await, json!({}));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| pg.stop());
    traffic
        .await
        .expect("every request answered during the outage");

    // During the outage: the gateway serves, a new ticket fails readably.
    pings(&client, 5).await;
    let refused = client
        .call_tool(
            "report_missing_capability",
            json!({"whatIWanted": "Refund", "userIntent": "help", "severity": "blocking", "contextApp": "erp"}),
        )
        .await;
    assert_eq!(refused["isError"], true, "a readable tool error: {refused}");

    // Back: the backlog is written, the tickets are there, the webhook goes out.
    tokio::task::block_in_place(|| pg.start_again());
    let receiver = WebhookReceiver::start_on(webhook_port).await;
    let stored = all_stored(&g, || pg_count(&pg, "SELECT COUNT(*) FROM cortex_audit")).await;
    assert!(stored >= 2 + 10 + 60 + 5, "{stored} records");
    assert!(ticket_ids(&client).await.is_superset(&before));
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].json()["ticketId"],
        blocking["ticketId"],
        "the delivery enqueued before the outage went out after it"
    );

    g.stop();
    let logs = logs(&g);
    assert!(!logs.contains("records are being dropped"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    let (code, out, err) = run_verify(g.dir(), &g.path("gateway.yaml")).await;
    assert_eq!(code, 0, "audit verify: {out}{err}");
}

fn chattr(flag: &str, files: &[&Path]) {
    let out = Command::new("chattr")
        .arg(flag)
        .args(files)
        .output()
        .expect("run chattr");
    assert!(
        out.status.success(),
        "chattr {flag} {files:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the immutable flag even when the test fails (else the temp dir cannot be deleted).
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(files: &[&Path]) -> Immutable {
        chattr("+i", files);
        Immutable(files.iter().map(|f| f.to_path_buf()).collect())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_made_read_only_then_writable_loses_nothing() {
    let db = TestDb::new(Kind::Sqlite).await;
    let mut g = Gateway::start(&yaml(
        &format!("data_dir: \"{}\"", db.data_dir().display()),
        unused_port(),
    ))
    .await;
    let client = g.client();
    let ticket = report(&client, "Export invoices", "nice_to_have").await;
    pings(&client, 10).await;
    let count = || db.try_query_i64("SELECT COUNT(*) FROM cortex_audit");
    all_stored(&g, count).await;

    let file = db.sqlite_file();
    let wal = file.with_extension("db-wal");
    assert!(wal.exists(), "WAL mode: {}", wal.display());
    let frozen = Immutable::set(&[&file, &wal]);
    let before = audit_lines(&g).len();
    pings(&client, 30).await;
    let refused = client
        .call_tool(
            "report_missing_capability",
            json!({"whatIWanted": "Refund", "userIntent": "help", "severity": "blocking", "contextApp": "erp"}),
        )
        .await;
    assert_eq!(refused["isError"], true, "a readable tool error: {refused}");
    eventually(WAIT, "the write failure logged", || async {
        logs(&g).contains("cannot write to the store").then_some(())
    })
    .await;
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM cortex_audit").await as usize,
        before,
        "nothing written while the file is read-only"
    );

    drop(frozen);
    let stored = all_stored(&g, count).await;
    assert!(stored >= before + 31, "{stored} records");
    assert!(ticket_ids(&client)
        .await
        .contains(ticket["ticketId"].as_str().expect("id")));
    g.stop();
    let logs = logs(&g);
    assert!(!logs.contains("records are being dropped"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    let (code, out, err) = run_verify(g.dir(), &g.path("gateway.yaml")).await;
    assert_eq!(code, 0, "audit verify: {out}{err}");
}

/// A replica killed (SIGKILL) while the store is down: the records of the requests it
/// answered during the outage were only in its memory backlog and its spool file. The
/// replica started again on the same spool directory (a restart of the same pod) finds the
/// file of its previous life unlocked and replays it once the store is back: every answered
/// request's record is stored once, and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_an_outage_replays_its_spool_when_started_again() {
    let pg = tokio::task::block_in_place(PrivatePg::start);
    let spool = tempfile::tempdir().expect("a spool directory");
    let config = yaml(&format!("database_url: \"{}\"", pg.url()), unused_port()).replacen(
        &format!("audit:\n  secret: \"{AUDIT_SECRET}\""),
        &format!(
            "audit:\n  secret: \"{AUDIT_SECRET}\"\n  spool_dir: \"{}\"",
            spool.path().display()
        ),
        1,
    );
    assert!(config.contains("spool_dir"), "{config}");
    let mut first = Gateway::start(&config).await;
    let client = first.client();
    pings(&client, 5).await;
    eventually(WAIT, "the first records stored", || async {
        (pg_count(
            &pg,
            "SELECT COUNT(*) FROM cortex_audit WHERE method = 'ping'",
        )
        .await?
            >= 5)
            .then_some(())
    })
    .await;

    // The store stops; 20 pings are answered (their records wait in memory and in the
    // spool); then the process is killed.
    tokio::task::block_in_place(|| pg.stop());
    pings(&client, 20).await;
    first.signal(libc::SIGKILL);
    assert!(first.wait_exit(Duration::from_secs(10)).await.is_some());
    let left: Vec<_> = std::fs::read_dir(spool.path())
        .expect("the spool directory")
        .flatten()
        .collect();
    assert_eq!(left.len(), 1, "the killed process's spool file is left");

    // The store is back and the replica starts again: the file is replayed, then deleted.
    tokio::task::block_in_place(|| pg.start_again());
    let mut second = Gateway::start(&config).await;
    let pings_stored = eventually(WAIT, "the killed replica's records replayed", || async {
        let n = pg_count(
            &pg,
            "SELECT COUNT(*) FROM cortex_audit WHERE method = 'ping'",
        )
        .await?;
        (n >= 25).then_some(n)
    })
    .await;
    assert_eq!(pings_stored, 25, "every answered ping once");
    second
        .wait_for_log("replayed the spool file of a process that is gone", WAIT)
        .await;
    let files = std::fs::read_dir(spool.path()).expect("spool").count();
    assert_eq!(files, 1, "only the new process's own file is left");
    second.stop();
    let logs = logs(&second);
    assert!(!logs.contains("panicked"), "{logs}");
    let (code, out, err) = run_verify(second.dir(), &second.path("gateway.yaml")).await;
    assert_eq!(code, 0, "audit verify: {out}{err}");
}
