//! The embedded SQLite store (rusqlite, SQLite compiled in: no system library needed).
//!
//! One dedicated thread owns the connection and runs jobs in order. SQLite has one writer
//! at a time anyway; a thread of its own keeps its blocking calls (fsync included) off the
//! async runtimes, and a job already handed to it completes even if the caller's future is
//! dropped (the gateway shutting down). The file is opened, configured (WAL, a busy
//! timeout for a second process such as `audit verify`) and migrated on the first job,
//! and again after a failure to open, so a missing or unwritable data directory is an
//! error of each call rather than of the gateway's start.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{
    params, params_from_iter, Connection, OptionalExtension, Row, Transaction, TransactionBehavior,
};
use tracing::{info, warn};

use super::rows::{key_counts, new_records, Tally, CLIENT_COLUMNS, GRANT_COLUMNS};
use super::rows::{
    link_all, missing_chain, notes_json, nothing_purged, placeholders, plan_purge, Aged, Column,
    FromRow, RowRead, AUDIT_COLUMNS, AUDIT_WIDTH, CHAIN_COLUMNS, DELIVERY_COLUMNS, PINS_COLUMNS,
    PURGE_COLUMNS, TICKET_COLUMNS,
};
use super::*;

/// Embedded migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "vault",
        sql: include_str!("migrations/sqlite/0002_vault.sql"),
    },
    Migration {
        version: 3,
        name: "tool_pins",
        sql: include_str!("migrations/sqlite/0003_tool_pins.sql"),
    },
    Migration {
        version: 4,
        name: "session_revocations",
        sql: include_str!("migrations/sqlite/0004_session_revocations.sql"),
    },
    Migration {
        version: 5,
        name: "fleet_keys",
        sql: include_str!("migrations/sqlite/0005_fleet_keys.sql"),
    },
    Migration {
        version: 6,
        name: "audit_rid",
        sql: include_str!("migrations/sqlite/0006_audit_rid.sql"),
    },
];

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// The SQLite store. Cheap to share behind an `Arc`; dropping the last handle ends the
/// worker thread after the jobs already queued.
pub struct SqliteStore {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
}

struct Worker {
    path: PathBuf,
    conn: Option<Connection>,
}

impl SqliteStore {
    /// A store on the file at `path` (created with its directory on first use; `:memory:`
    /// for a private in-memory database). Starts the worker thread.
    pub fn open(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let (jobs, rx) = mpsc::channel::<Job>();
        let mut worker = Worker {
            path: path.clone(),
            conn: None,
        };
        let spawned = std::thread::Builder::new()
            .name("cortex-sqlite".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut worker);
                }
            });
        if let Err(e) = spawned {
            // Every call will then fail with "worker stopped"; say why once.
            warn!("cannot start the SQLite worker thread: {e}");
        }
        SqliteStore { path, jobs }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the worker thread with an open, migrated connection.
    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |w: &mut Worker| {
            let result = w.connection().and_then(f);
            if matches!(result, Err(StoreError::Unavailable(_))) {
                // Reopen next time (the file may have been replaced or fixed).
                w.conn = None;
            }
            let _ = tx.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Unavailable("the SQLite worker thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the SQLite worker thread has stopped".into()))?
    }
}

impl Worker {
    fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self.conn.is_none() {
            let conn = open_file(&self.path)?;
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }
}

fn open_file(path: &Path) -> Result<Connection, StoreError> {
    let in_memory = path.as_os_str() == ":memory:";
    if !in_memory {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create the data directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
    }
    let mut conn = Connection::open(path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
    if !in_memory {
        // WAL: readers (audit verify) never block the writer. On a read-only file this
        // fails; the store then works for reading and reports writes as unavailable.
        if let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
            warn!("SQLite {}: cannot switch to WAL ({e})", path.display());
        }
        let _ = conn.pragma_update(None, "synchronous", "NORMAL");
    }
    migrate(&mut conn)?;
    Ok(conn)
}

/// Applies the migrations not applied yet, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS cortex_schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
    )
    .map_err(unavailable)?;
    let current = current_version(conn)?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let fail = |e: rusqlite::Error| StoreError::Migration {
            version: m.version,
            name: m.name,
            message: e.to_string(),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        // Another process may have applied it while we waited for the lock.
        let applied: Option<i64> = tx
            .query_row(
                "SELECT version FROM cortex_schema_migrations WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )
            .optional()
            .map_err(fail)?;
        if applied.is_none() {
            tx.execute_batch(m.sql).map_err(fail)?;
            tx.execute(
                "INSERT INTO cortex_schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
                params![m.version, m.name, crate::clock::now_ms()],
            )
            .map_err(fail)?;
            info!(version = m.version, name = m.name, "SQLite store migrated");
        }
        tx.commit().map_err(fail)?;
    }
    Ok(())
}

fn current_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM cortex_schema_migrations",
        [],
        |r| r.get(0),
    )
    .map_err(unavailable)
}

/// Errors that mean "the file cannot be used right now" versus a failed statement.
fn classify(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(
            C::CannotOpen
            | C::ReadOnly
            | C::DiskFull
            | C::SystemIoFailure
            | C::DatabaseBusy
            | C::DatabaseLocked
            | C::PermissionDenied
            | C::DatabaseCorrupt
            | C::NotADatabase,
        ) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Query(e.to_string()),
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn begin(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)
}

impl RowRead for Row<'_> {
    fn col<T: Column>(&self, i: usize) -> Result<T, String> {
        self.get(i).map_err(|e| e.to_string())
    }
}

/// Every row of a SELECT.
fn select<T: FromRow>(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(classify)?;
    let mut rows = stmt.query(p).map_err(classify)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(classify)? {
        out.push(T::from_row(row)?);
    }
    Ok(out)
}

/// The first row of a SELECT, if any.
fn select_one<T: FromRow>(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Option<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(classify)?;
    let mut rows = stmt.query(p).map_err(classify)?;
    rows.next().map_err(classify)?.map(T::from_row).transpose()
}

fn chain_state(conn: &Connection) -> Result<ChainState, StoreError> {
    let sql = format!("SELECT {CHAIN_COLUMNS} FROM cortex_audit_chain WHERE id = 1");
    select_one(conn, &sql, [])?.ok_or_else(missing_chain)
}

fn append(
    conn: &mut Connection,
    records: &[AuditRecord],
    key: &dyn ChainLinker,
) -> Result<ChainHead, StoreError> {
    let tx = begin(conn)?;
    let state = chain_state(&tx)?;
    let mut known = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached("SELECT 1 FROM cortex_audit WHERE rid = ?1")
            .map_err(classify)?;
        for rid in records.iter().filter_map(|r| r.rid.as_deref()) {
            if stmt.exists(params![rid]).map_err(classify)? {
                known.push(rid.to_string());
            }
        }
    }
    let fresh = new_records(records, &known);
    let records: &[AuditRecord] = fresh.as_deref().unwrap_or(records);
    let linked = link_all(&state, records, key);
    {
        let sql = format!(
            "INSERT INTO cortex_audit ({AUDIT_COLUMNS}) VALUES {}",
            placeholders('?', 1, AUDIT_WIDTH)
        );
        let mut stmt = tx.prepare_cached(&sql).map_err(classify)?;
        for row in &linked.rows {
            stmt.execute(params_from_iter(linked.values(row)))
                .map_err(classify)?;
        }
    }
    let head = &linked.head;
    tx.execute(
        "UPDATE cortex_audit_chain SET last_seq = ?1, last_hash = ?2, head_mac = ?3 WHERE id = 1",
        params![head.last_seq, head.last_hash, linked.head_mac],
    )
    .map_err(classify)?;
    tx.commit().map_err(classify)?;
    Ok(linked.head)
}

fn purge(
    conn: &mut Connection,
    before_ms: i64,
    max_rows: u32,
    key: &dyn ChainLinker,
) -> Result<PurgeOutcome, StoreError> {
    let tx = begin(conn)?;
    let state = chain_state(&tx)?;
    let rows: Vec<Aged> = select(
        &tx,
        &format!("SELECT {PURGE_COLUMNS} FROM cortex_audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
        params![state.anchor_seq, i64::from(max_rows)],
    )?;
    let Some(cut) = plan_purge(&rows, before_ms, key) else {
        return Ok(nothing_purged(&state));
    };
    tx.execute(
        "DELETE FROM cortex_audit WHERE seq <= ?1",
        [cut.through_seq],
    )
    .map_err(classify)?;
    tx.execute(
        "UPDATE cortex_audit_chain SET anchor_seq = ?1, anchor_hash = ?2, anchor_mac = ?3 WHERE id = 1",
        params![cut.through_seq, cut.anchor_hash, cut.anchor_mac],
    )
    .map_err(classify)?;
    tx.commit().map_err(classify)?;
    Ok(cut.outcome())
}

fn ticket_by_id(conn: &Connection, id: &str) -> Result<Option<Ticket>, StoreError> {
    let sql = format!("SELECT {TICKET_COLUMNS} FROM cortex_tickets WHERE id = ?1");
    select_one(conn, &sql, [id])
}

fn create_ticket(
    conn: &mut Connection,
    new: NewTicket,
    window_ms: i64,
    on_create: Option<NewDelivery>,
) -> Result<CreatedTicket, StoreError> {
    let tx = begin(conn)?;
    let existing: Option<String> = tx
        .query_row(
            "SELECT id FROM cortex_tickets WHERE owner = ?1 AND fingerprint = ?2 AND created_at_ms >= ?3 \
             ORDER BY created_at_ms DESC, id DESC LIMIT 1",
            params![new.owner, new.fingerprint, new.now_ms.saturating_sub(window_ms)],
            |r| r.get(0),
        )
        .optional()
        .map_err(classify)?;
    let (id, deduplicated) = match existing {
        Some(id) => {
            tx.execute(
                "UPDATE cortex_tickets SET updated_at_ms = MAX(updated_at_ms, ?2), repeat_count = repeat_count + 1 \
                 WHERE id = ?1",
                params![id, new.now_ms],
            )
            .map_err(classify)?;
            (id, true)
        }
        None => {
            tx.execute(
                &format!(
                    "INSERT INTO cortex_tickets ({TICKET_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', \
                     ?8, ?9, ?10, ?11, 0, '[]', ?12, ?12)"
                ),
                params![
                    new.id,
                    new.owner,
                    new.agent_sub,
                    new.agent_email,
                    new.what_i_wanted,
                    new.user_intent,
                    new.severity.as_str(),
                    new.context_tool,
                    new.context_app,
                    new.suggested_shape,
                    new.fingerprint,
                    new.now_ms,
                ],
            )
            .map_err(classify)?;
            (new.id.clone(), false)
        }
    };
    let mut delivery_enqueued = false;
    if let (false, Some(d)) = (deduplicated, on_create) {
        delivery_enqueued = insert_delivery(&tx, &d)?;
    }
    let ticket = ticket_by_id(&tx, &id)?.ok_or_else(|| {
        StoreError::Invalid(format!("ticket {id} vanished inside its transaction"))
    })?;
    tx.commit().map_err(classify)?;
    Ok(CreatedTicket {
        ticket,
        deduplicated,
        delivery_enqueued,
    })
}

fn list_tickets(conn: &Connection, f: &TicketFilter) -> Result<Vec<Ticket>, StoreError> {
    let sql = format!(
        "SELECT {TICKET_COLUMNS} FROM cortex_tickets WHERE (?1 IS NULL OR owner = ?1) \
         AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR severity = ?3) \
         AND (?4 IS NULL OR context_app = ?4) ORDER BY created_at_ms DESC, id DESC LIMIT ?5"
    );
    select(
        conn,
        &sql,
        params![
            f.owner,
            f.status.map(TicketStatus::as_str),
            f.severity.map(TicketSeverity::as_str),
            f.context_app,
            sql_limit(f.limit),
        ],
    )
}

fn update_ticket(
    conn: &mut Connection,
    id: &str,
    u: &TicketUpdate,
) -> Result<Option<Ticket>, StoreError> {
    let tx = begin(conn)?;
    let Some(mut t) = ticket_by_id(&tx, id)? else {
        return Ok(None);
    };
    u.apply_to(&mut t);
    tx.execute(
        "UPDATE cortex_tickets SET status = ?2, severity = ?3, notes = ?4, updated_at_ms = ?5 WHERE id = ?1",
        params![id, t.status.as_str(), t.severity.as_str(), notes_json(&t.notes), t.updated_at_ms],
    )
    .map_err(classify)?;
    tx.commit().map_err(classify)?;
    Ok(Some(t))
}

/// Inserts a delivery unless its id exists; whether it was inserted.
fn insert_delivery(conn: &Connection, d: &NewDelivery) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "INSERT INTO cortex_outbox (id, kind, target, payload, state, attempts, next_attempt_at_ms, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5) ON CONFLICT (id) DO NOTHING",
            params![d.id, d.kind, d.target, d.payload, d.now_ms],
        )
        .map_err(classify)?;
    Ok(n == 1)
}

fn claim(
    conn: &mut Connection,
    now_ms: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<Delivery>, StoreError> {
    let tx = begin(conn)?;
    let due: Vec<Delivery> = select(
        &tx,
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM cortex_outbox WHERE state = 'pending' AND next_attempt_at_ms <= ?1 \
             AND (lease_until_ms IS NULL OR lease_until_ms <= ?1) ORDER BY next_attempt_at_ms, created_at_ms, id LIMIT ?2"
        ),
        params![now_ms, sql_limit(limit)],
    )?;
    let until = now_ms.saturating_add(lease_ms);
    let mut out = Vec::with_capacity(due.len());
    for mut d in due {
        let token = random_id("lease_");
        tx.execute(
            "UPDATE cortex_outbox SET lease_token = ?2, lease_until_ms = ?3, attempts = attempts + 1 WHERE id = ?1",
            params![d.id, token, until],
        )
        .map_err(classify)?;
        d.lease_token = Some(token);
        d.lease_until_ms = Some(until);
        d.attempts += 1;
        out.push(d);
    }
    tx.commit().map_err(classify)?;
    Ok(out)
}

fn finish(
    conn: &mut Connection,
    id: &str,
    token: &str,
    outcome: &DeliveryOutcome,
) -> Result<bool, StoreError> {
    let n = match outcome {
        DeliveryOutcome::Delivered { at_ms } => conn.execute(
            "UPDATE cortex_outbox SET state = 'delivered', delivered_at_ms = ?3, lease_token = NULL, \
             lease_until_ms = NULL WHERE id = ?1 AND lease_token = ?2 AND state = 'pending'",
            params![id, token, at_ms],
        ),
        DeliveryOutcome::Retry { at_ms, error } => conn.execute(
            "UPDATE cortex_outbox SET next_attempt_at_ms = ?3, last_error = ?4, lease_token = NULL, \
             lease_until_ms = NULL WHERE id = ?1 AND lease_token = ?2 AND state = 'pending'",
            params![id, token, at_ms, error],
        ),
        DeliveryOutcome::Dead { error } => conn.execute(
            "UPDATE cortex_outbox SET state = 'dead', last_error = ?3, lease_token = NULL, \
             lease_until_ms = NULL WHERE id = ?1 AND lease_token = ?2 AND state = 'pending'",
            params![id, token, error],
        ),
    }
    .map_err(classify)?;
    Ok(n == 1)
}

#[async_trait]
impl StoreBase for SqliteStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Sqlite(self.path.clone())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(classify))
            .await
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        self.call(|c| current_version(c)).await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(
        &self,
        records: Arc<Vec<AuditRecord>>,
        key: Arc<dyn ChainLinker>,
    ) -> Result<ChainHead, StoreError> {
        self.call(move |c| append(c, &records, key.as_ref())).await
    }

    async fn audit_chain(&self) -> Result<ChainState, StoreError> {
        self.call(|c| chain_state(c)).await
    }

    async fn read_audit(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredAudit>, StoreError> {
        self.call(move |c| {
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM cortex_audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            );
            select(c, &sql, params![after_seq, i64::from(limit)])
        })
        .await
    }

    async fn purge_audit(
        &self,
        before_ms: i64,
        max_rows: u32,
        key: Arc<dyn ChainLinker>,
    ) -> Result<PurgeOutcome, StoreError> {
        self.call(move |c| purge(c, before_ms, max_rows, key.as_ref()))
            .await
    }
}

#[async_trait]
impl TicketStore for SqliteStore {
    async fn create_ticket(
        &self,
        new: NewTicket,
        dedup_window_ms: i64,
        on_create: Option<NewDelivery>,
    ) -> Result<CreatedTicket, StoreError> {
        self.call(move |c| create_ticket(c, new, dedup_window_ms, on_create))
            .await
    }

    async fn get_ticket(&self, id: &str) -> Result<Option<Ticket>, StoreError> {
        let id = id.to_string();
        self.call(move |c| ticket_by_id(c, &id)).await
    }

    async fn list_tickets(&self, filter: TicketFilter) -> Result<Vec<Ticket>, StoreError> {
        self.call(move |c| list_tickets(c, &filter)).await
    }

    async fn update_ticket(
        &self,
        id: &str,
        update: TicketUpdate,
    ) -> Result<Option<Ticket>, StoreError> {
        let id = id.to_string();
        self.call(move |c| update_ticket(c, &id, &update)).await
    }
}

#[async_trait]
impl PinStore for SqliteStore {
    async fn load_pins(&self) -> Result<Vec<StoredPins>, StoreError> {
        self.call(move |c| {
            let sql = format!("SELECT {PINS_COLUMNS} FROM cortex_tool_pins ORDER BY backend");
            select(c, &sql, [])
        })
        .await
    }

    async fn save_pins(&self, rows: Vec<StoredPins>) -> Result<(), StoreError> {
        self.call(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(classify)?;
            for r in &rows {
                tx.execute(
                    "INSERT INTO cortex_tool_pins (backend, pins, saved_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (backend) DO UPDATE SET pins = excluded.pins, saved_at = excluded.saved_at",
                    params![r.backend, r.pins, r.saved_at],
                )
                .map_err(classify)?;
            }
            tx.commit().map_err(classify)
        })
        .await
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn enqueue_delivery(&self, delivery: NewDelivery) -> Result<(), StoreError> {
        self.call(move |c| insert_delivery(c, &delivery).map(|_| ()))
            .await
    }

    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.call(move |c| claim(c, now_ms, lease_ms, limit)).await
    }

    async fn finish_delivery(
        &self,
        id: &str,
        lease_token: &str,
        outcome: DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        let (id, token) = (id.to_string(), lease_token.to_string());
        self.call(move |c| finish(c, &id, &token, &outcome)).await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            let sql = format!("SELECT {DELIVERY_COLUMNS} FROM cortex_outbox WHERE id = ?1");
            select_one(c, &sql, [id])
        })
        .await
    }

    async fn list_deliveries(
        &self,
        state: DeliveryState,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.call(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM cortex_outbox WHERE state = ?1 ORDER BY created_at_ms, id LIMIT ?2"
            );
            select(c, &sql, params![state.as_str(), sql_limit(limit)])
        })
        .await
    }

    async fn count_pending_deliveries(&self) -> Result<u64, StoreError> {
        self.call(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM cortex_outbox WHERE state = 'pending'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(classify)
        })
        .await
    }
}

fn grant(c: &Connection, subject: &str, provider: &str) -> Result<Option<StoredGrant>, StoreError> {
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM cortex_vault_grants WHERE subject = ?1 AND provider = ?2"
    );
    select_one(c, &sql, params![subject, provider])
}

fn put_grant(c: &mut Connection, g: &NewGrant) -> Result<StoredGrant, StoreError> {
    let tx = begin(c)?;
    tx.execute(
        "INSERT INTO cortex_vault_grants (subject, provider, key_id, sealed, version, created_at_ms, updated_at_ms) \
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5) \
         ON CONFLICT (subject, provider) DO UPDATE SET key_id = excluded.key_id, sealed = excluded.sealed, \
         version = cortex_vault_grants.version + 1, created_at_ms = excluded.created_at_ms, \
         updated_at_ms = excluded.updated_at_ms",
        params![g.subject, g.provider, g.key_id, g.sealed, g.now_ms],
    )
    .map_err(classify)?;
    let stored = grant(&tx, &g.subject, &g.provider)?
        .ok_or_else(|| StoreError::Query("the grant vanished inside its transaction".into()))?;
    tx.commit().map_err(classify)?;
    Ok(stored)
}

fn replace_grant(
    c: &mut Connection,
    g: &NewGrant,
    expected: i64,
) -> Result<Option<StoredGrant>, StoreError> {
    let tx = begin(c)?;
    let n = tx
        .execute(
            "UPDATE cortex_vault_grants SET key_id = ?3, sealed = ?4, version = version + 1, updated_at_ms = ?5 \
             WHERE subject = ?1 AND provider = ?2 AND version = ?6",
            params![g.subject, g.provider, g.key_id, g.sealed, g.now_ms, expected],
        )
        .map_err(classify)?;
    let out = if n == 1 {
        grant(&tx, &g.subject, &g.provider)?
    } else {
        None
    };
    tx.commit().map_err(classify)?;
    Ok(out)
}

fn consume_state(c: &mut Connection, id: &str, exp: i64, now: i64) -> Result<bool, StoreError> {
    let tx = begin(c)?;
    tx.execute(
        "DELETE FROM cortex_vault_states WHERE expires_at_ms < ?1",
        [now],
    )
    .map_err(classify)?;
    let n = tx
        .execute(
            "INSERT INTO cortex_vault_states (id, expires_at_ms) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
            params![id, exp],
        )
        .map_err(classify)?;
    tx.commit().map_err(classify)?;
    Ok(n == 1)
}

#[async_trait]
impl VaultStore for SqliteStore {
    async fn get_grant(
        &self,
        subject: &str,
        provider: &str,
    ) -> Result<Option<StoredGrant>, StoreError> {
        let (s, p) = (subject.to_string(), provider.to_string());
        self.call(move |c| grant(c, &s, &p)).await
    }

    async fn list_grants(&self, subject: &str) -> Result<Vec<StoredGrant>, StoreError> {
        let s = subject.to_string();
        self.call(move |c| {
            let sql = format!(
                "SELECT {GRANT_COLUMNS} FROM cortex_vault_grants WHERE subject = ?1 ORDER BY provider"
            );
            select(c, &sql, [s])
        })
        .await
    }

    async fn put_grant(&self, g: NewGrant) -> Result<StoredGrant, StoreError> {
        self.call(move |c| put_grant(c, &g)).await
    }

    async fn replace_grant(
        &self,
        g: NewGrant,
        expected_version: i64,
    ) -> Result<Option<StoredGrant>, StoreError> {
        self.call(move |c| replace_grant(c, &g, expected_version))
            .await
    }

    async fn delete_grant(
        &self,
        subject: &str,
        provider: &str,
        expected_version: Option<i64>,
    ) -> Result<bool, StoreError> {
        let (s, p) = (subject.to_string(), provider.to_string());
        self.call(move |c| {
            let n = c
                .execute(
                    "DELETE FROM cortex_vault_grants WHERE subject = ?1 AND provider = ?2 \
                     AND (?3 IS NULL OR version = ?3)",
                    params![s, p, expected_version],
                )
                .map_err(classify)?;
            Ok(n == 1)
        })
        .await
    }

    async fn grants_not_under(
        &self,
        key_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        let k = key_id.to_string();
        self.call(move |c| {
            let sql = format!(
                "SELECT {GRANT_COLUMNS} FROM cortex_vault_grants WHERE key_id <> ?1 \
                 ORDER BY subject, provider LIMIT ?2"
            );
            select(c, &sql, params![k, sql_limit(limit)])
        })
        .await
    }

    async fn get_client(&self, provider: &str) -> Result<Option<StoredClient>, StoreError> {
        let p = provider.to_string();
        self.call(move |c| {
            let sql =
                format!("SELECT {CLIENT_COLUMNS} FROM cortex_vault_clients WHERE provider = ?1");
            select_one(c, &sql, [p])
        })
        .await
    }

    async fn put_client(&self, cl: StoredClient) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO cortex_vault_clients (provider, issuer, client_id, key_id, sealed_secret, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (provider) DO UPDATE SET issuer = excluded.issuer, \
                 client_id = excluded.client_id, key_id = excluded.key_id, sealed_secret = excluded.sealed_secret, \
                 created_at_ms = excluded.created_at_ms",
                params![cl.provider, cl.issuer, cl.client_id, cl.key_id, cl.sealed_secret, cl.created_at_ms],
            )
            .map_err(classify)?;
            Ok(())
        })
        .await
    }

    async fn clients_not_under(&self, key_id: &str) -> Result<Vec<StoredClient>, StoreError> {
        let k = key_id.to_string();
        self.call(move |c| {
            let sql = format!(
                "SELECT {CLIENT_COLUMNS} FROM cortex_vault_clients WHERE key_id <> ?1 ORDER BY provider"
            );
            select(c, &sql, [k])
        })
        .await
    }

    async fn vault_key_counts(&self) -> Result<Vec<KeyCount>, StoreError> {
        self.call(move |c| {
            let grants: Vec<Tally> = select(
                c,
                "SELECT key_id, COUNT(*) AS n FROM cortex_vault_grants GROUP BY key_id",
                [],
            )?;
            let clients: Vec<Tally> = select(
                c,
                "SELECT key_id, COUNT(*) AS n FROM cortex_vault_clients GROUP BY key_id",
                [],
            )?;
            Ok(key_counts(grants, clients))
        })
        .await
    }

    async fn consume_state(
        &self,
        id: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.call(move |c| consume_state(c, &id, expires_at_ms, now_ms))
            .await
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn revoke_session(
        &self,
        nonce: &str,
        revoked_at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let nonce = nonce.to_string();
        self.call(move |c| {
            c.execute(
                "INSERT INTO cortex_session_revocations (nonce, revoked_at_ms, expires_at_ms) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (nonce) DO NOTHING",
                params![nonce, revoked_at_ms, expires_at_ms],
            )
            .map_err(classify)?;
            c.execute(
                "DELETE FROM cortex_session_revocations WHERE expires_at_ms < ?1",
                params![revoked_at_ms],
            )
            .map_err(classify)?;
            Ok(())
        })
        .await
    }

    async fn session_revocations_since(
        &self,
        after_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.call(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT nonce, revoked_at_ms FROM cortex_session_revocations \
                     WHERE revoked_at_ms > ?1 AND expires_at_ms > ?2 ORDER BY revoked_at_ms LIMIT 10000",
                )
                .map_err(classify)?;
            let rows = stmt
                .query_map(params![after_ms, now_ms], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(classify)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(classify)
        })
        .await
    }
}
