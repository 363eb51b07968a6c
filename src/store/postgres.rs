//! The PostgreSQL store (tokio-postgres + a deadpool pool), for fleets of replicas.
//!
//! The pool and every connection's driver task live on a dedicated single-thread runtime
//! owned by the store: each call hops there and back. This keeps connections independent
//! of whichever runtime called first (Pingora runs several and shuts them down in turn;
//! the audit trail's final flush runs after they are gone) at the cost of one thread hop
//! per database call, which is noise next to a network round trip.
//!
//! Cross-replica correctness: the audit append locks the chain row (`FOR UPDATE`), ticket
//! deduplication takes a transaction-scoped advisory lock on (owner, fingerprint),
//! delivery claims use `FOR UPDATE SKIP LOCKED`, and migrations run under an advisory
//! lock so replicas starting together apply each one once.
//!
//! TLS: `sslmode=require` in the URL connects with rustls, verifying the server
//! certificate against the system's roots (stricter than libpq's `require`); any other
//! mode connects in plain text.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use tracing::{info, warn};

use super::*;
use crate::audit::chain::Seal;

/// Embedded migrations, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "init",
    sql: include_str!("migrations/postgres/0001_init.sql"),
}];

/// Longest a whole store call may take (connect included) before it counts as an outage.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect timeout when the URL does not set one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per gateway process.
const POOL_SIZE: usize = 8;
/// Rows per multi-row audit INSERT (32 parameters each; PostgreSQL allows 65535).
const INSERT_CHUNK: usize = 200;
/// Advisory lock key of the migrations ("cortex-gw" in ASCII).
const MIGRATION_LOCK: i64 = 0x636f_7274_6578_2d67;

/// The PostgreSQL store.
pub struct PostgresStore {
    description: String,
    handle: tokio::runtime::Handle,
    pool: Pool,
    migrated: Arc<tokio::sync::OnceCell<()>>,
    /// Dropping it ends the runtime thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl PostgresStore {
    /// A store for `url` (`postgres://user:pass@host:port/db?sslmode=…&options=…`; a
    /// `search_path` in `options` selects the schema). Does not connect yet.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Config(format!("invalid database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("cortex-gateway");
        }
        let description = describe(&config);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if config.get_ssl_mode() == SslMode::Require {
            Manager::from_config(config, tls_connector()?, manager_config)
        } else {
            config.ssl_mode(SslMode::Disable);
            Manager::from_config(config, NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Config(format!("database pool: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Config(format!("cannot build the database runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("cortex-postgres".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| StoreError::Config(format!("cannot start the database thread: {e}")))?;
        Ok(PostgresStore {
            description,
            handle,
            pool,
            migrated: Arc::new(tokio::sync::OnceCell::new()),
            _stop: stop,
        })
    }

    /// Runs `f` with a pooled, migrated connection on the store's runtime.
    async fn run<R, F, Fut>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, StoreError>> + Send,
    {
        let pool = self.pool.clone();
        let migrated = self.migrated.clone();
        let task = self.handle.spawn(async move {
            let work = async move {
                let mut client = pool.get().await.map_err(|e| {
                    StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}"))
                })?;
                migrated
                    .get_or_try_init(|| async { migrate(&mut client).await })
                    .await?;
                f(client).await
            };
            match tokio::time::timeout(OP_TIMEOUT, work).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Unavailable(format!(
                    "PostgreSQL did not answer within {OP_TIMEOUT:?}"
                ))),
            }
        });
        task.await
            .map_err(|e| StoreError::Unavailable(format!("database task failed: {e}")))?
    }
}

/// `host:port/db as user` for logs: never the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "//{host}:{port}/{} as {}",
        config.get_dbname().unwrap_or(""),
        config.get_user().unwrap_or("")
    )
}

/// rustls with the system roots (`sslmode=require`).
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use pingora::tls::{ClientConfig, RootCertStore};
    pingora::tls::install_default_crypto_provider();
    let mut roots = RootCertStore::empty();
    match pingora::tls::load_native_certs() {
        Ok(certs) => {
            let (_added, ignored) = roots.add_parsable_certificates(certs);
            if ignored > 0 {
                warn!("{ignored} system root certificates could not be parsed");
            }
        }
        Err(e) => warn!("cannot load the system root certificates: {e}"),
    }
    if roots.is_empty() {
        return Err(StoreError::Config(
            "sslmode=require but no system root certificate could be loaded".into(),
        ));
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Connection-level failures versus failed statements.
fn classify(e: tokio_postgres::Error) -> StoreError {
    let outage = match e.code() {
        None => true,
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")
        }
    };
    if outage || e.is_closed() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Query(match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })
    }
}

async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    for m in MIGRATIONS {
        let fail = |e: tokio_postgres::Error| match classify(e) {
            StoreError::Unavailable(msg) => StoreError::Unavailable(msg),
            other => StoreError::Migration {
                version: m.version,
                name: m.name,
                message: other.to_string(),
            },
        };
        let tx = client.transaction().await.map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(fail)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS cortex_schema_migrations (
                version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)",
        )
        .await
        .map_err(fail)?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM cortex_schema_migrations",
                &[],
            )
            .await
            .map_err(fail)?
            .get(0);
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        if current < m.version {
            tx.batch_execute(m.sql).await.map_err(fail)?;
            tx.execute(
                "INSERT INTO cortex_schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &crate::audit::record::now_ms()],
            )
            .await
            .map_err(fail)?;
            info!(
                version = m.version,
                name = m.name,
                "PostgreSQL store migrated"
            );
        }
        tx.commit().await.map_err(fail)?;
    }
    Ok(())
}

const AUDIT_COLUMNS: &str =
    "seq, prev_hash, hash, key_id, ts_ms, decision, stage, reason, http_method, \
     http_status, caller_sub, caller_email_hash, caller_role, caller_pool, client_id, dev_bypass, \
     method, tool, target_app, scope_used, params_hash, response_size, latency_ms, success, \
     error_code, protocol_version, origin, session_id, tools_listed, tokens_estimate, \
     backends_filter, tool_mode";
const AUDIT_WIDTH: usize = 32;

fn audit_row(r: &Row) -> Result<StoredAudit, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Invalid(format!("audit row: {e}"));
    Ok(StoredAudit {
        seq: r.try_get(0).map_err(get)?,
        prev_hash: r.try_get(1).map_err(get)?,
        hash: r.try_get(2).map_err(get)?,
        key_id: r.try_get(3).map_err(get)?,
        record: AuditRecord {
            ts_ms: r.try_get(4).map_err(get)?,
            decision: r.try_get(5).map_err(get)?,
            stage: r.try_get(6).map_err(get)?,
            reason: r.try_get(7).map_err(get)?,
            http_method: r.try_get(8).map_err(get)?,
            http_status: r.try_get(9).map_err(get)?,
            caller_sub: r.try_get(10).map_err(get)?,
            caller_email_hash: r.try_get(11).map_err(get)?,
            caller_role: r.try_get(12).map_err(get)?,
            caller_pool: r.try_get(13).map_err(get)?,
            client_id: r.try_get(14).map_err(get)?,
            dev_bypass: r.try_get(15).map_err(get)?,
            method: r.try_get(16).map_err(get)?,
            tool: r.try_get(17).map_err(get)?,
            target_app: r.try_get(18).map_err(get)?,
            scope_used: r.try_get(19).map_err(get)?,
            params_hash: r.try_get(20).map_err(get)?,
            response_size: r.try_get(21).map_err(get)?,
            latency_ms: r.try_get(22).map_err(get)?,
            success: r.try_get(23).map_err(get)?,
            error_code: r.try_get(24).map_err(get)?,
            protocol_version: r.try_get(25).map_err(get)?,
            origin: r.try_get(26).map_err(get)?,
            session_id: r.try_get(27).map_err(get)?,
            tools_listed: r.try_get(28).map_err(get)?,
            tokens_estimate: r.try_get(29).map_err(get)?,
            backends_filter: r.try_get(30).map_err(get)?,
            tool_mode: r.try_get(31).map_err(get)?,
        },
    })
}

fn chain_row(r: &Row) -> Result<ChainState, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Invalid(format!("audit chain row: {e}"));
    Ok(ChainState {
        last_seq: r.try_get(0).map_err(get)?,
        last_hash: r.try_get(1).map_err(get)?,
        head_mac: r.try_get(2).map_err(get)?,
        anchor_seq: r.try_get(3).map_err(get)?,
        anchor_hash: r.try_get(4).map_err(get)?,
        anchor_mac: r.try_get(5).map_err(get)?,
    })
}

const CHAIN_SELECT: &str =
    "SELECT last_seq, last_hash, head_mac, anchor_seq, anchor_hash, anchor_mac FROM cortex_audit_chain WHERE id = 1";

fn missing_chain() -> StoreError {
    StoreError::Invalid("the audit chain row (cortex_audit_chain, id 1) is missing".into())
}

/// One record's place in the chain, computed before the INSERT.
struct Linked {
    seq: i64,
    prev: String,
    hash: String,
}

async fn append(
    mut client: Object,
    records: &[AuditRecord],
    key: &ChainKey,
) -> Result<ChainHead, StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let state = tx
        .query_opt(&format!("{CHAIN_SELECT} FOR UPDATE"), &[])
        .await
        .map_err(classify)?
        .ok_or_else(missing_chain)
        .and_then(|r| chain_row(&r))?;
    let mut links = Vec::with_capacity(records.len());
    let (mut seq, mut prev) = (state.last_seq, state.last_hash);
    for r in records {
        seq += 1;
        let hash = key.link(seq, &prev, key.id(), r);
        links.push(Linked {
            seq,
            prev: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    let key_id = key.id().to_string();
    for (chunk_records, chunk_links) in records.chunks(INSERT_CHUNK).zip(links.chunks(INSERT_CHUNK))
    {
        let mut sql = format!("INSERT INTO cortex_audit ({AUDIT_COLUMNS}) VALUES ");
        let mut params: Vec<&(dyn ToSql + Sync)> =
            Vec::with_capacity(chunk_records.len() * AUDIT_WIDTH);
        for (i, (r, l)) in chunk_records.iter().zip(chunk_links).enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..AUDIT_WIDTH {
                if c > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("${}", i * AUDIT_WIDTH + c + 1));
            }
            sql.push(')');
            params.extend_from_slice(&[
                &l.seq,
                &l.prev,
                &l.hash,
                &key_id,
                &r.ts_ms,
                &r.decision,
                &r.stage,
                &r.reason,
                &r.http_method,
                &r.http_status,
                &r.caller_sub,
                &r.caller_email_hash,
                &r.caller_role,
                &r.caller_pool,
                &r.client_id,
                &r.dev_bypass,
                &r.method,
                &r.tool,
                &r.target_app,
                &r.scope_used,
                &r.params_hash,
                &r.response_size,
                &r.latency_ms,
                &r.success,
                &r.error_code,
                &r.protocol_version,
                &r.origin,
                &r.session_id,
                &r.tools_listed,
                &r.tokens_estimate,
                &r.backends_filter,
                &r.tool_mode,
            ]);
        }
        tx.execute(sql.as_str(), &params).await.map_err(classify)?;
    }
    let head_mac = key.seal(Seal::Head, seq, &prev);
    tx.execute(
        "UPDATE cortex_audit_chain SET last_seq = $1, last_hash = $2, head_mac = $3 WHERE id = 1",
        &[&seq, &prev, &head_mac],
    )
    .await
    .map_err(classify)?;
    tx.commit().await.map_err(classify)?;
    Ok(ChainHead {
        last_seq: seq,
        last_hash: prev,
    })
}

async fn purge(
    mut client: Object,
    before_ms: i64,
    max_rows: u32,
    key: &ChainKey,
) -> Result<PurgeOutcome, StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let state = tx
        .query_opt(&format!("{CHAIN_SELECT} FOR UPDATE"), &[])
        .await
        .map_err(classify)?
        .ok_or_else(missing_chain)
        .and_then(|r| chain_row(&r))?;
    let rows = tx
        .query(
            "SELECT seq, ts_ms, hash FROM cortex_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&state.anchor_seq, &i64::from(max_rows)],
        )
        .await
        .map_err(classify)?;
    let mut triples = Vec::with_capacity(rows.len());
    for r in &rows {
        let get = |e: tokio_postgres::Error| StoreError::Invalid(format!("audit row: {e}"));
        triples.push((
            r.try_get::<_, i64>(0).map_err(get)?,
            r.try_get::<_, i64>(1).map_err(get)?,
            r.try_get::<_, String>(2).map_err(get)?,
        ));
    }
    let Some((n, anchor_seq, anchor_hash)) = purge_prefix(&triples, before_ms) else {
        return Ok(PurgeOutcome {
            purged: 0,
            anchor_seq: state.anchor_seq,
        });
    };
    tx.execute("DELETE FROM cortex_audit WHERE seq <= $1", &[&anchor_seq])
        .await
        .map_err(classify)?;
    let mac = key.seal(Seal::Anchor, anchor_seq, &anchor_hash);
    tx.execute(
        "UPDATE cortex_audit_chain SET anchor_seq = $1, anchor_hash = $2, anchor_mac = $3 WHERE id = 1",
        &[&anchor_seq, &anchor_hash, &mac],
    )
    .await
    .map_err(classify)?;
    tx.commit().await.map_err(classify)?;
    Ok(PurgeOutcome {
        purged: n as u64,
        anchor_seq,
    })
}

const TICKET_COLUMNS: &str = "id, owner, agent_sub, agent_email, what_i_wanted, user_intent, severity, status, \
     context_tool, context_app, suggested_shape, fingerprint, repeat_count, notes, created_at_ms, updated_at_ms";

fn ticket_row(r: &Row) -> Result<Ticket, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Invalid(format!("ticket row: {e}"));
    Ok(Ticket {
        id: r.try_get(0).map_err(get)?,
        owner: r.try_get(1).map_err(get)?,
        agent_sub: r.try_get(2).map_err(get)?,
        agent_email: r.try_get(3).map_err(get)?,
        what_i_wanted: r.try_get(4).map_err(get)?,
        user_intent: r.try_get(5).map_err(get)?,
        severity: parse_severity(r.try_get(6).map_err(get)?)?,
        status: parse_status(r.try_get(7).map_err(get)?)?,
        context_tool: r.try_get(8).map_err(get)?,
        context_app: r.try_get(9).map_err(get)?,
        suggested_shape: r.try_get(10).map_err(get)?,
        fingerprint: r.try_get(11).map_err(get)?,
        repeat_count: r.try_get(12).map_err(get)?,
        notes: parse_notes(r.try_get(13).map_err(get)?)?,
        created_at_ms: r.try_get(14).map_err(get)?,
        updated_at_ms: r.try_get(15).map_err(get)?,
    })
}

async fn ticket_by_id(
    c: &tokio_postgres::Transaction<'_>,
    id: &str,
) -> Result<Option<Ticket>, StoreError> {
    c.query_opt(
        &format!("SELECT {TICKET_COLUMNS} FROM cortex_tickets WHERE id = $1"),
        &[&id],
    )
    .await
    .map_err(classify)?
    .map(|r| ticket_row(&r))
    .transpose()
}

async fn create_ticket(
    mut client: Object,
    new: NewTicket,
    window_ms: i64,
    on_create: Option<NewDelivery>,
) -> Result<CreatedTicket, StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let lock_key = format!("{}\u{1}{}", new.owner, new.fingerprint);
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
        &[&lock_key],
    )
    .await
    .map_err(classify)?;
    let since = new.now_ms.saturating_sub(window_ms);
    let existing: Option<String> = tx
        .query_opt(
            "SELECT id FROM cortex_tickets WHERE owner = $1 AND fingerprint = $2 AND created_at_ms >= $3 \
             ORDER BY created_at_ms DESC, id DESC LIMIT 1",
            &[&new.owner, &new.fingerprint, &since],
        )
        .await
        .map_err(classify)?
        .map(|r| r.get(0));
    let (id, deduplicated) = match existing {
        Some(id) => {
            tx.execute(
                "UPDATE cortex_tickets SET updated_at_ms = GREATEST(updated_at_ms, $2), \
                 repeat_count = repeat_count + 1 WHERE id = $1",
                &[&id, &new.now_ms],
            )
            .await
            .map_err(classify)?;
            (id, true)
        }
        None => {
            tx.execute(
                &format!(
                    "INSERT INTO cortex_tickets ({TICKET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', \
                     $8, $9, $10, $11, 0, '[]', $12, $12)"
                ),
                &[
                    &new.id,
                    &new.owner,
                    &new.agent_sub,
                    &new.agent_email,
                    &new.what_i_wanted,
                    &new.user_intent,
                    &new.severity.as_str(),
                    &new.context_tool,
                    &new.context_app,
                    &new.suggested_shape,
                    &new.fingerprint,
                    &new.now_ms,
                ],
            )
            .await
            .map_err(classify)?;
            (new.id.clone(), false)
        }
    };
    let mut delivery_enqueued = false;
    if let (false, Some(d)) = (deduplicated, on_create) {
        delivery_enqueued = insert_delivery(&tx, &d).await?;
    }
    let ticket = ticket_by_id(&tx, &id).await?.ok_or_else(|| {
        StoreError::Invalid(format!("ticket {id} vanished inside its transaction"))
    })?;
    tx.commit().await.map_err(classify)?;
    Ok(CreatedTicket {
        ticket,
        deduplicated,
        delivery_enqueued,
    })
}

async fn update_ticket(
    mut client: Object,
    id: String,
    u: TicketUpdate,
) -> Result<Option<Ticket>, StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let row = tx
        .query_opt(
            &format!("SELECT {TICKET_COLUMNS} FROM cortex_tickets WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .map_err(classify)?;
    let Some(mut t) = row.map(|r| ticket_row(&r)).transpose()? else {
        return Ok(None);
    };
    if let Some(s) = u.status {
        t.status = s;
    }
    if let Some(s) = u.severity {
        t.severity = s;
    }
    if let Some(n) = u.note {
        t.notes.push(n);
    }
    t.updated_at_ms = t.updated_at_ms.max(u.now_ms);
    tx.execute(
        "UPDATE cortex_tickets SET status = $2, severity = $3, notes = $4, updated_at_ms = $5 WHERE id = $1",
        &[&id, &t.status.as_str(), &t.severity.as_str(), &notes_json(&t.notes), &t.updated_at_ms],
    )
    .await
    .map_err(classify)?;
    tx.commit().await.map_err(classify)?;
    Ok(Some(t))
}

async fn insert_delivery(
    c: &tokio_postgres::Transaction<'_>,
    d: &NewDelivery,
) -> Result<bool, StoreError> {
    let n = c
        .execute(
            "INSERT INTO cortex_outbox (id, kind, target, payload, state, attempts, next_attempt_at_ms, created_at_ms) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5) ON CONFLICT (id) DO NOTHING",
            &[&d.id, &d.kind, &d.target, &d.payload, &d.now_ms],
        )
        .await
        .map_err(classify)?;
    Ok(n == 1)
}

const DELIVERY_COLUMNS: &str =
    "id, kind, target, payload, state, attempts, next_attempt_at_ms, lease_token, \
     lease_until_ms, last_error, created_at_ms, delivered_at_ms";

fn delivery_row(r: &Row) -> Result<Delivery, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Invalid(format!("outbox row: {e}"));
    Ok(Delivery {
        id: r.try_get(0).map_err(get)?,
        kind: r.try_get(1).map_err(get)?,
        target: r.try_get(2).map_err(get)?,
        payload: r.try_get(3).map_err(get)?,
        state: parse_delivery_state(r.try_get(4).map_err(get)?)?,
        attempts: r.try_get(5).map_err(get)?,
        next_attempt_at_ms: r.try_get(6).map_err(get)?,
        lease_token: r.try_get(7).map_err(get)?,
        lease_until_ms: r.try_get(8).map_err(get)?,
        last_error: r.try_get(9).map_err(get)?,
        created_at_ms: r.try_get(10).map_err(get)?,
        delivered_at_ms: r.try_get(11).map_err(get)?,
    })
}

fn rows_to<T>(
    rows: Vec<Row>,
    f: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Postgres(self.description.clone())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| async move {
            c.simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(classify)
        })
        .await
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        self.run(|c| async move {
            c.query_one(
                "SELECT COALESCE(MAX(version), 0) FROM cortex_schema_migrations",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .map_err(classify)
        })
        .await
    }

    async fn append_audit(
        &self,
        records: Arc<Vec<AuditRecord>>,
        key: Arc<ChainKey>,
    ) -> Result<ChainHead, StoreError> {
        self.run(move |c| async move { append(c, &records, &key).await })
            .await
    }

    async fn audit_chain(&self) -> Result<ChainState, StoreError> {
        self.run(|c| async move {
            c.query_opt(CHAIN_SELECT, &[])
                .await
                .map_err(classify)?
                .ok_or_else(missing_chain)
                .and_then(|r| chain_row(&r))
        })
        .await
    }

    async fn read_audit(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredAudit>, StoreError> {
        self.run(move |c| async move {
            let rows = c
                .query(
                    &format!("SELECT {AUDIT_COLUMNS} FROM cortex_audit WHERE seq > $1 ORDER BY seq LIMIT $2"),
                    &[&after_seq, &i64::from(limit)],
                )
                .await
                .map_err(classify)?;
            rows_to(rows, audit_row)
        })
        .await
    }

    async fn purge_audit(
        &self,
        before_ms: i64,
        max_rows: u32,
        key: Arc<ChainKey>,
    ) -> Result<PurgeOutcome, StoreError> {
        self.run(move |c| async move { purge(c, before_ms, max_rows, &key).await })
            .await
    }

    async fn create_ticket(
        &self,
        new: NewTicket,
        dedup_window_ms: i64,
        on_create: Option<NewDelivery>,
    ) -> Result<CreatedTicket, StoreError> {
        self.run(move |c| create_ticket(c, new, dedup_window_ms, on_create))
            .await
    }

    async fn get_ticket(&self, id: &str) -> Result<Option<Ticket>, StoreError> {
        let id = id.to_string();
        self.run(move |c| async move {
            c.query_opt(
                &format!("SELECT {TICKET_COLUMNS} FROM cortex_tickets WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(classify)?
            .map(|r| ticket_row(&r))
            .transpose()
        })
        .await
    }

    async fn list_tickets(&self, f: TicketFilter) -> Result<Vec<Ticket>, StoreError> {
        self.run(move |c| async move {
            let sql = format!(
                "SELECT {TICKET_COLUMNS} FROM cortex_tickets WHERE ($1::text IS NULL OR owner = $1) \
                 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR severity = $3) \
                 AND ($4::text IS NULL OR context_app = $4) ORDER BY created_at_ms DESC, id DESC LIMIT $5"
            );
            let rows = c
                .query(
                    &sql,
                    &[
                        &f.owner,
                        &f.status.map(TicketStatus::as_str),
                        &f.severity.map(TicketSeverity::as_str),
                        &f.context_app,
                        &sql_limit(f.limit),
                    ],
                )
                .await
                .map_err(classify)?;
            rows_to(rows, ticket_row)
        })
        .await
    }

    async fn update_ticket(
        &self,
        id: &str,
        update: TicketUpdate,
    ) -> Result<Option<Ticket>, StoreError> {
        let id = id.to_string();
        self.run(move |c| update_ticket(c, id, update)).await
    }

    async fn enqueue_delivery(&self, delivery: NewDelivery) -> Result<(), StoreError> {
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(classify)?;
            insert_delivery(&tx, &delivery).await?;
            tx.commit().await.map_err(classify)
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.run(move |c| async move {
            let token = random_id("lease_");
            let until = now_ms.saturating_add(lease_ms);
            let sql = format!(
                "UPDATE cortex_outbox SET lease_token = $1, lease_until_ms = $2, attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM cortex_outbox WHERE state = 'pending' AND next_attempt_at_ms <= $3 \
                 AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
                 ORDER BY next_attempt_at_ms, created_at_ms, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 RETURNING {DELIVERY_COLUMNS}"
            );
            let rows = c
                .query(&sql, &[&token, &until, &now_ms, &sql_limit(limit)])
                .await
                .map_err(classify)?;
            let mut out = rows_to(rows, delivery_row)?;
            out.sort_by(|a, b| {
                (a.next_attempt_at_ms, a.created_at_ms, &a.id).cmp(&(b.next_attempt_at_ms, b.created_at_ms, &b.id))
            });
            Ok(out)
        })
        .await
    }

    async fn finish_delivery(
        &self,
        id: &str,
        lease_token: &str,
        outcome: DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        let (id, token) = (id.to_string(), lease_token.to_string());
        self.run(move |c| async move {
            let n = match &outcome {
                DeliveryOutcome::Delivered { at_ms } => {
                    c.execute(
                        "UPDATE cortex_outbox SET state = 'delivered', delivered_at_ms = $3, lease_token = NULL, \
                         lease_until_ms = NULL WHERE id = $1 AND lease_token = $2 AND state = 'pending'",
                        &[&id, &token, at_ms],
                    )
                    .await
                }
                DeliveryOutcome::Retry { at_ms, error } => {
                    c.execute(
                        "UPDATE cortex_outbox SET next_attempt_at_ms = $3, last_error = $4, lease_token = NULL, \
                         lease_until_ms = NULL WHERE id = $1 AND lease_token = $2 AND state = 'pending'",
                        &[&id, &token, at_ms, error],
                    )
                    .await
                }
                DeliveryOutcome::Dead { error } => {
                    c.execute(
                        "UPDATE cortex_outbox SET state = 'dead', last_error = $3, lease_token = NULL, \
                         lease_until_ms = NULL WHERE id = $1 AND lease_token = $2 AND state = 'pending'",
                        &[&id, &token, error],
                    )
                    .await
                }
            }
            .map_err(classify)?;
            Ok(n == 1)
        })
        .await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let id = id.to_string();
        self.run(move |c| async move {
            c.query_opt(
                &format!("SELECT {DELIVERY_COLUMNS} FROM cortex_outbox WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(classify)?
            .map(|r| delivery_row(&r))
            .transpose()
        })
        .await
    }

    async fn list_deliveries(
        &self,
        state: DeliveryState,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.run(move |c| async move {
            let rows = c
                .query(
                    &format!(
                        "SELECT {DELIVERY_COLUMNS} FROM cortex_outbox WHERE state = $1 ORDER BY created_at_ms, id LIMIT $2"
                    ),
                    &[&state.as_str(), &sql_limit(limit)],
                )
                .await
                .map_err(classify)?;
            rows_to(rows, delivery_row)
        })
        .await
    }
}
