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
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use tracing::{info, warn};

use super::*;
use crate::audit::chain::Seal;

/// Embedded migrations, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "init",
    sql: include_str!("migrations/sqlite/0001_init.sql"),
}];

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
                params![m.version, m.name, crate::audit::record::now_ms()],
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

const AUDIT_COLUMNS: &str =
    "seq, prev_hash, hash, key_id, ts_ms, decision, stage, reason, http_method, \
     http_status, caller_sub, caller_email_hash, caller_role, caller_pool, client_id, dev_bypass, \
     method, tool, target_app, scope_used, params_hash, response_size, latency_ms, success, \
     error_code, protocol_version, origin, session_id, tools_listed, tokens_estimate, \
     backends_filter, tool_mode";

fn audit_row(r: &Row<'_>) -> rusqlite::Result<StoredAudit> {
    Ok(StoredAudit {
        seq: r.get(0)?,
        prev_hash: r.get(1)?,
        hash: r.get(2)?,
        key_id: r.get(3)?,
        record: AuditRecord {
            ts_ms: r.get(4)?,
            decision: r.get(5)?,
            stage: r.get(6)?,
            reason: r.get(7)?,
            http_method: r.get(8)?,
            http_status: r.get(9)?,
            caller_sub: r.get(10)?,
            caller_email_hash: r.get(11)?,
            caller_role: r.get(12)?,
            caller_pool: r.get(13)?,
            client_id: r.get(14)?,
            dev_bypass: r.get(15)?,
            method: r.get(16)?,
            tool: r.get(17)?,
            target_app: r.get(18)?,
            scope_used: r.get(19)?,
            params_hash: r.get(20)?,
            response_size: r.get(21)?,
            latency_ms: r.get(22)?,
            success: r.get(23)?,
            error_code: r.get(24)?,
            protocol_version: r.get(25)?,
            origin: r.get(26)?,
            session_id: r.get(27)?,
            tools_listed: r.get(28)?,
            tokens_estimate: r.get(29)?,
            backends_filter: r.get(30)?,
            tool_mode: r.get(31)?,
        },
    })
}

fn chain_state(tx: &Connection) -> Result<ChainState, StoreError> {
    tx.query_row(
        "SELECT last_seq, last_hash, head_mac, anchor_seq, anchor_hash, anchor_mac \
         FROM cortex_audit_chain WHERE id = 1",
        [],
        |r| {
            Ok(ChainState {
                last_seq: r.get(0)?,
                last_hash: r.get(1)?,
                head_mac: r.get(2)?,
                anchor_seq: r.get(3)?,
                anchor_hash: r.get(4)?,
                anchor_mac: r.get(5)?,
            })
        },
    )
    .optional()
    .map_err(classify)?
    .ok_or_else(|| {
        StoreError::Invalid("the audit chain row (cortex_audit_chain, id 1) is missing".into())
    })
}

fn append(
    conn: &mut Connection,
    records: &[AuditRecord],
    key: &ChainKey,
) -> Result<ChainHead, StoreError> {
    let tx = begin(conn)?;
    let state = chain_state(&tx)?;
    let mut seq = state.last_seq;
    let mut prev = state.last_hash;
    {
        let sql = format!(
            "INSERT INTO cortex_audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
             ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, \
             ?27, ?28, ?29, ?30, ?31, ?32)"
        );
        let mut stmt = tx.prepare_cached(&sql).map_err(classify)?;
        for r in records {
            seq += 1;
            let hash = key.link(seq, &prev, key.id(), r);
            stmt.execute(params![
                seq,
                prev,
                hash,
                key.id(),
                r.ts_ms,
                r.decision,
                r.stage,
                r.reason,
                r.http_method,
                r.http_status,
                r.caller_sub,
                r.caller_email_hash,
                r.caller_role,
                r.caller_pool,
                r.client_id,
                r.dev_bypass,
                r.method,
                r.tool,
                r.target_app,
                r.scope_used,
                r.params_hash,
                r.response_size,
                r.latency_ms,
                r.success,
                r.error_code,
                r.protocol_version,
                r.origin,
                r.session_id,
                r.tools_listed,
                r.tokens_estimate,
                r.backends_filter,
                r.tool_mode,
            ])
            .map_err(classify)?;
            prev = hash;
        }
    }
    let head_mac = key.seal(Seal::Head, seq, &prev);
    tx.execute(
        "UPDATE cortex_audit_chain SET last_seq = ?1, last_hash = ?2, head_mac = ?3 WHERE id = 1",
        params![seq, prev, head_mac],
    )
    .map_err(classify)?;
    tx.commit().map_err(classify)?;
    Ok(ChainHead {
        last_seq: seq,
        last_hash: prev,
    })
}

fn purge(
    conn: &mut Connection,
    before_ms: i64,
    max_rows: u32,
    key: &ChainKey,
) -> Result<PurgeOutcome, StoreError> {
    let tx = begin(conn)?;
    let state = chain_state(&tx)?;
    let rows: Vec<(i64, i64, String)> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT seq, ts_ms, hash FROM cortex_audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(classify)?;
        let mapped = stmt
            .query_map(params![state.anchor_seq, i64::from(max_rows)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(classify)?;
        mapped.collect::<Result<_, _>>().map_err(classify)?
    };
    let Some((n, anchor_seq, anchor_hash)) = purge_prefix(&rows, before_ms) else {
        return Ok(PurgeOutcome {
            purged: 0,
            anchor_seq: state.anchor_seq,
        });
    };
    tx.execute("DELETE FROM cortex_audit WHERE seq <= ?1", [anchor_seq])
        .map_err(classify)?;
    let mac = key.seal(Seal::Anchor, anchor_seq, &anchor_hash);
    tx.execute(
        "UPDATE cortex_audit_chain SET anchor_seq = ?1, anchor_hash = ?2, anchor_mac = ?3 WHERE id = 1",
        params![anchor_seq, anchor_hash, mac],
    )
    .map_err(classify)?;
    tx.commit().map_err(classify)?;
    Ok(PurgeOutcome {
        purged: n as u64,
        anchor_seq,
    })
}

const TICKET_COLUMNS: &str = "id, owner, agent_sub, agent_email, what_i_wanted, user_intent, severity, status, \
     context_tool, context_app, suggested_shape, fingerprint, repeat_count, notes, created_at_ms, updated_at_ms";

/// A ticket row with its text fields still unparsed (parsing may fail; rusqlite's row
/// closures can only fail with rusqlite errors).
struct RawTicket {
    t: Ticket,
    severity: String,
    status: String,
    notes: String,
}

fn raw_ticket(r: &Row<'_>) -> rusqlite::Result<RawTicket> {
    Ok(RawTicket {
        t: Ticket {
            id: r.get(0)?,
            owner: r.get(1)?,
            agent_sub: r.get(2)?,
            agent_email: r.get(3)?,
            what_i_wanted: r.get(4)?,
            user_intent: r.get(5)?,
            severity: TicketSeverity::Blocking,
            status: TicketStatus::Open,
            context_tool: r.get(8)?,
            context_app: r.get(9)?,
            suggested_shape: r.get(10)?,
            fingerprint: r.get(11)?,
            repeat_count: r.get(12)?,
            notes: Vec::new(),
            created_at_ms: r.get(14)?,
            updated_at_ms: r.get(15)?,
        },
        severity: r.get(6)?,
        status: r.get(7)?,
        notes: r.get(13)?,
    })
}

impl RawTicket {
    fn parse(self) -> Result<Ticket, StoreError> {
        let mut t = self.t;
        t.severity = parse_severity(&self.severity)?;
        t.status = parse_status(&self.status)?;
        t.notes = parse_notes(&self.notes)?;
        Ok(t)
    }
}

fn ticket_by_id(conn: &Connection, id: &str) -> Result<Option<Ticket>, StoreError> {
    let sql = format!("SELECT {TICKET_COLUMNS} FROM cortex_tickets WHERE id = ?1");
    conn.query_row(&sql, [id], raw_ticket)
        .optional()
        .map_err(classify)?
        .map(RawTicket::parse)
        .transpose()
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
    let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
    let rows = stmt
        .query_map(
            params![
                f.owner,
                f.status.map(TicketStatus::as_str),
                f.severity.map(TicketSeverity::as_str),
                f.context_app,
                sql_limit(f.limit),
            ],
            raw_ticket,
        )
        .map_err(classify)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(classify)?.parse()?);
    }
    Ok(out)
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
    if let Some(s) = u.status {
        t.status = s;
    }
    if let Some(s) = u.severity {
        t.severity = s;
    }
    if let Some(n) = &u.note {
        t.notes.push(n.clone());
    }
    t.updated_at_ms = t.updated_at_ms.max(u.now_ms);
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

const DELIVERY_COLUMNS: &str =
    "id, kind, target, payload, state, attempts, next_attempt_at_ms, lease_token, \
     lease_until_ms, last_error, created_at_ms, delivered_at_ms";

fn raw_delivery(r: &Row<'_>) -> rusqlite::Result<(Delivery, String)> {
    Ok((
        Delivery {
            id: r.get(0)?,
            kind: r.get(1)?,
            target: r.get(2)?,
            payload: r.get(3)?,
            state: DeliveryState::Pending,
            attempts: r.get(5)?,
            next_attempt_at_ms: r.get(6)?,
            lease_token: r.get(7)?,
            lease_until_ms: r.get(8)?,
            last_error: r.get(9)?,
            created_at_ms: r.get(10)?,
            delivered_at_ms: r.get(11)?,
        },
        r.get(4)?,
    ))
}

fn parse_delivery((mut d, state): (Delivery, String)) -> Result<Delivery, StoreError> {
    d.state = parse_delivery_state(&state)?;
    Ok(d)
}

fn deliveries(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<Delivery>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(classify)?;
    let rows = stmt.query_map(p, raw_delivery).map_err(classify)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(parse_delivery(row.map_err(classify)?)?);
    }
    Ok(out)
}

fn claim(
    conn: &mut Connection,
    now_ms: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<Delivery>, StoreError> {
    let tx = begin(conn)?;
    let due = deliveries(
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
impl Store for SqliteStore {
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

    async fn append_audit(
        &self,
        records: Arc<Vec<AuditRecord>>,
        key: Arc<ChainKey>,
    ) -> Result<ChainHead, StoreError> {
        self.call(move |c| append(c, &records, &key)).await
    }

    async fn audit_chain(&self) -> Result<ChainState, StoreError> {
        self.call(|c| chain_state(c)).await
    }

    async fn read_audit(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredAudit>, StoreError> {
        self.call(move |c| {
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM cortex_audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(classify)?;
            let rows = stmt
                .query_map(params![after_seq, i64::from(limit)], audit_row)
                .map_err(classify)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(classify)
        })
        .await
    }

    async fn purge_audit(
        &self,
        before_ms: i64,
        max_rows: u32,
        key: Arc<ChainKey>,
    ) -> Result<PurgeOutcome, StoreError> {
        self.call(move |c| purge(c, before_ms, max_rows, &key))
            .await
    }

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
            Ok(deliveries(c, &sql, [id])?.into_iter().next())
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
            deliveries(c, &sql, params![state.as_str(), sql_limit(limit)])
        })
        .await
    }
}
