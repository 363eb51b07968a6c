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
        sql: include_str!("migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "vault",
        sql: include_str!("migrations/postgres/0002_vault.sql"),
    },
    Migration {
        version: 3,
        name: "tool_pins",
        sql: include_str!("migrations/postgres/0003_tool_pins.sql"),
    },
    Migration {
        version: 4,
        name: "session_revocations",
        sql: include_str!("migrations/postgres/0004_session_revocations.sql"),
    },
    Migration {
        version: 5,
        name: "fleet_keys",
        sql: include_str!("migrations/postgres/0005_fleet_keys.sql"),
    },
    Migration {
        version: 6,
        name: "audit_rid",
        sql: include_str!("migrations/postgres/0006_audit_rid.sql"),
    },
];

/// Longest a whole store call may take (connect included) before it counts as an outage.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect timeout when the URL does not set one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per gateway process.
const POOL_SIZE: usize = 8;
/// Rows per multi-row audit INSERT (`AUDIT_WIDTH` parameters each; PostgreSQL allows 65535).
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
                &[&m.version, &m.name, &crate::clock::now_ms()],
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

impl RowRead for Row {
    fn col<T: Column>(&self, i: usize) -> Result<T, String> {
        self.try_get(i).map_err(|e| e.to_string())
    }
}

/// The row of a `query_opt`, read.
async fn one<T: FromRow>(
    query: impl Future<Output = Result<Option<Row>, tokio_postgres::Error>>,
) -> Result<Option<T>, StoreError> {
    query
        .await
        .map_err(classify)?
        .as_ref()
        .map(T::from_row)
        .transpose()
}

/// The rows of a `query`, read.
async fn all<T: FromRow>(
    query: impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>>,
) -> Result<Vec<T>, StoreError> {
    query
        .await
        .map_err(classify)?
        .iter()
        .map(T::from_row)
        .collect()
}

/// The chain row, locked for the rest of the transaction (appends and purges of every
/// replica serialize on it).
async fn locked_chain(tx: &tokio_postgres::Transaction<'_>) -> Result<ChainState, StoreError> {
    let sql = format!("SELECT {CHAIN_COLUMNS} FROM cortex_audit_chain WHERE id = 1 FOR UPDATE");
    one(tx.query_opt(&sql, &[]))
        .await?
        .ok_or_else(missing_chain)
}

async fn append(
    mut client: Object,
    records: &[AuditRecord],
    key: &dyn ChainLinker,
) -> Result<ChainHead, StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let state = locked_chain(&tx).await?;
    // Under the chain lock, so two replicas replaying the same spool cannot both insert.
    let rids: Vec<&str> = records.iter().filter_map(|r| r.rid.as_deref()).collect();
    let known: Vec<String> = if rids.is_empty() {
        Vec::new()
    } else {
        tx.query("SELECT rid FROM cortex_audit WHERE rid = ANY($1)", &[&rids])
            .await
            .map_err(classify)?
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect()
    };
    let fresh = new_records(records, &known);
    let records: &[AuditRecord] = fresh.as_deref().unwrap_or(records);
    let linked = link_all(&state, records, key);
    for chunk in linked.rows.chunks(INSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO cortex_audit ({AUDIT_COLUMNS}) VALUES {}",
            placeholders('$', chunk.len(), AUDIT_WIDTH)
        );
        let params: Vec<&(dyn ToSql + Sync)> = chunk
            .iter()
            .flat_map(|row| linked.values(row))
            .map(|v| v as &(dyn ToSql + Sync))
            .collect();
        // Prepared once per connection and chunk size: a steady load reuses the plan.
        let stmt = tx.prepare_cached(&sql).await.map_err(classify)?;
        tx.execute(&stmt, &params).await.map_err(classify)?;
    }
    let head = &linked.head;
    tx.execute(
        "UPDATE cortex_audit_chain SET last_seq = $1, last_hash = $2, head_mac = $3 WHERE id = 1",
        &[&head.last_seq, &head.last_hash, &linked.head_mac],
    )
    .await
    .map_err(classify)?;
    tx.commit().await.map_err(classify)?;
    Ok(linked.head)
}

async fn purge(
    mut client: Object,
    before_ms: i64,
    max_rows: u32,
    key: &dyn ChainLinker,
) -> Result<PurgeOutcome, StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let state = locked_chain(&tx).await?;
    let sql =
        format!("SELECT {PURGE_COLUMNS} FROM cortex_audit WHERE seq > $1 ORDER BY seq LIMIT $2");
    let rows: Vec<Aged> = all(tx.query(&sql, &[&state.anchor_seq, &i64::from(max_rows)])).await?;
    let Some(cut) = plan_purge(&rows, before_ms, key) else {
        return Ok(nothing_purged(&state));
    };
    tx.execute(
        "DELETE FROM cortex_audit WHERE seq <= $1",
        &[&cut.through_seq],
    )
    .await
    .map_err(classify)?;
    tx.execute(
        "UPDATE cortex_audit_chain SET anchor_seq = $1, anchor_hash = $2, anchor_mac = $3 WHERE id = 1",
        &[&cut.through_seq, &cut.anchor_hash, &cut.anchor_mac],
    )
    .await
    .map_err(classify)?;
    tx.commit().await.map_err(classify)?;
    Ok(cut.outcome())
}

async fn ticket_by_id(
    c: &tokio_postgres::Transaction<'_>,
    id: &str,
) -> Result<Option<Ticket>, StoreError> {
    let sql = format!("SELECT {TICKET_COLUMNS} FROM cortex_tickets WHERE id = $1");
    one(c.query_opt(&sql, &[&id])).await
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
    let sql = format!("SELECT {TICKET_COLUMNS} FROM cortex_tickets WHERE id = $1 FOR UPDATE");
    let Some(mut t) = one::<Ticket>(tx.query_opt(&sql, &[&id])).await? else {
        return Ok(None);
    };
    u.apply_to(&mut t);
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

#[async_trait]
impl StoreBase for PostgresStore {
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

    async fn fleet_keys(
        &self,
        offered: Vec<KeyFingerprint>,
        replica: String,
        now_ms: i64,
    ) -> Result<Option<Vec<KeyFingerprint>>, StoreError> {
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(classify)?;
            let mut stored = Vec::with_capacity(offered.len());
            for k in &offered {
                tx.execute(
                    "INSERT INTO cortex_fleet_keys (name, fingerprint, set_by, set_at_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                    &[&k.name, &k.fingerprint, &replica, &now_ms],
                )
                .await
                .map_err(classify)?;
                let row = tx
                    .query_one(
                        "SELECT name, fingerprint, set_by, set_at_ms FROM cortex_fleet_keys WHERE name = $1",
                        &[&k.name],
                    )
                    .await
                    .map_err(classify)?;
                stored.push(KeyFingerprint {
                    name: row.get(0),
                    fingerprint: row.get(1),
                    set_by: row.get(2),
                    set_at_ms: row.get(3),
                });
            }
            tx.commit().await.map_err(classify)?;
            Ok(Some(stored))
        })
        .await
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(
        &self,
        records: Arc<Vec<AuditRecord>>,
        key: Arc<dyn ChainLinker>,
    ) -> Result<ChainHead, StoreError> {
        self.run(move |c| async move { append(c, &records, key.as_ref()).await })
            .await
    }

    async fn audit_chain(&self) -> Result<ChainState, StoreError> {
        self.run(|c| async move {
            let sql = format!("SELECT {CHAIN_COLUMNS} FROM cortex_audit_chain WHERE id = 1");
            one(c.query_opt(&sql, &[])).await?.ok_or_else(missing_chain)
        })
        .await
    }

    async fn read_audit(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredAudit>, StoreError> {
        self.run(move |c| async move {
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM cortex_audit WHERE seq > $1 ORDER BY seq LIMIT $2"
            );
            all(c.query(&sql, &[&after_seq, &i64::from(limit)])).await
        })
        .await
    }

    async fn purge_audit(
        &self,
        before_ms: i64,
        max_rows: u32,
        key: Arc<dyn ChainLinker>,
    ) -> Result<PurgeOutcome, StoreError> {
        self.run(move |c| async move { purge(c, before_ms, max_rows, key.as_ref()).await })
            .await
    }
}

#[async_trait]
impl TicketStore for PostgresStore {
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
            let sql = format!("SELECT {TICKET_COLUMNS} FROM cortex_tickets WHERE id = $1");
            one(c.query_opt(&sql, &[&id])).await
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
            all(c.query(
                &sql,
                &[
                    &f.owner,
                    &f.status.map(TicketStatus::as_str),
                    &f.severity.map(TicketSeverity::as_str),
                    &f.context_app,
                    &sql_limit(f.limit),
                ],
            ))
            .await
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
}

#[async_trait]
impl PinStore for PostgresStore {
    async fn load_pins(&self) -> Result<Vec<StoredPins>, StoreError> {
        self.run(move |c| async move {
            let sql = format!("SELECT {PINS_COLUMNS} FROM cortex_tool_pins ORDER BY backend");
            all(c.query(&sql, &[])).await
        })
        .await
    }

    async fn save_pins(&self, rows: Vec<StoredPins>) -> Result<(), StoreError> {
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(classify)?;
            for r in &rows {
                tx.execute(
                    "INSERT INTO cortex_tool_pins (backend, pins, saved_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (backend) DO UPDATE SET pins = excluded.pins, saved_at = excluded.saved_at",
                    &[&r.backend, &r.pins, &r.saved_at],
                )
                .await
                .map_err(classify)?;
            }
            tx.commit().await.map_err(classify)
        })
        .await
    }
}

#[async_trait]
impl OutboxStore for PostgresStore {
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
            let mut out: Vec<Delivery> =
                all(c.query(&sql, &[&token, &until, &now_ms, &sql_limit(limit)])).await?;
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
            let sql = format!("SELECT {DELIVERY_COLUMNS} FROM cortex_outbox WHERE id = $1");
            one(c.query_opt(&sql, &[&id])).await
        })
        .await
    }

    async fn list_deliveries(
        &self,
        state: DeliveryState,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.run(move |c| async move {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM cortex_outbox WHERE state = $1 ORDER BY created_at_ms, id LIMIT $2"
            );
            all(c.query(&sql, &[&state.as_str(), &sql_limit(limit)])).await
        })
        .await
    }

    async fn count_pending_deliveries(&self) -> Result<u64, StoreError> {
        self.run(|c| async move {
            c.query_one(
                "SELECT COUNT(*) FROM cortex_outbox WHERE state = 'pending'",
                &[],
            )
            .await
            .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
            .map_err(classify)
        })
        .await
    }
}

#[async_trait]
impl VaultStore for PostgresStore {
    async fn get_grant(
        &self,
        subject: &str,
        provider: &str,
    ) -> Result<Option<StoredGrant>, StoreError> {
        let (s, p) = (subject.to_string(), provider.to_string());
        self.run(move |c| async move {
            let sql = format!(
                "SELECT {GRANT_COLUMNS} FROM cortex_vault_grants WHERE subject = $1 AND provider = $2"
            );
            one(c.query_opt(&sql, &[&s, &p])).await
        })
        .await
    }

    async fn list_grants(&self, subject: &str) -> Result<Vec<StoredGrant>, StoreError> {
        let s = subject.to_string();
        self.run(move |c| async move {
            let sql = format!(
                "SELECT {GRANT_COLUMNS} FROM cortex_vault_grants WHERE subject = $1 ORDER BY provider"
            );
            all(c.query(&sql, &[&s])).await
        })
        .await
    }

    async fn put_grant(&self, g: NewGrant) -> Result<StoredGrant, StoreError> {
        self.run(move |c| async move {
            let sql = format!(
                "INSERT INTO cortex_vault_grants (subject, provider, key_id, sealed, version, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, 1, $5, $5) \
                 ON CONFLICT (subject, provider) DO UPDATE SET key_id = EXCLUDED.key_id, sealed = EXCLUDED.sealed, \
                 version = cortex_vault_grants.version + 1, created_at_ms = EXCLUDED.created_at_ms, \
                 updated_at_ms = EXCLUDED.updated_at_ms RETURNING {GRANT_COLUMNS}"
            );
            one(c.query_opt(&sql, &[&g.subject, &g.provider, &g.key_id, &g.sealed, &g.now_ms]))
                .await?
                .ok_or_else(|| StoreError::Query("the grant upsert returned no row".into()))
        })
        .await
    }

    async fn replace_grant(
        &self,
        g: NewGrant,
        expected_version: i64,
    ) -> Result<Option<StoredGrant>, StoreError> {
        self.run(move |c| async move {
            let sql = format!(
                "UPDATE cortex_vault_grants SET key_id = $3, sealed = $4, version = version + 1, updated_at_ms = $5 \
                 WHERE subject = $1 AND provider = $2 AND version = $6 RETURNING {GRANT_COLUMNS}"
            );
            one(c.query_opt(
                &sql,
                &[&g.subject, &g.provider, &g.key_id, &g.sealed, &g.now_ms, &expected_version],
            ))
            .await
        })
        .await
    }

    async fn delete_grant(
        &self,
        subject: &str,
        provider: &str,
        expected_version: Option<i64>,
    ) -> Result<bool, StoreError> {
        let (s, p) = (subject.to_string(), provider.to_string());
        self.run(move |c| async move {
            let n = c
                .execute(
                    "DELETE FROM cortex_vault_grants WHERE subject = $1 AND provider = $2 \
                     AND ($3::bigint IS NULL OR version = $3)",
                    &[&s, &p, &expected_version],
                )
                .await
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
        self.run(move |c| async move {
            let sql = format!(
                "SELECT {GRANT_COLUMNS} FROM cortex_vault_grants WHERE key_id <> $1 \
                 ORDER BY subject, provider LIMIT $2"
            );
            all(c.query(&sql, &[&k, &sql_limit(limit)])).await
        })
        .await
    }

    async fn get_client(&self, provider: &str) -> Result<Option<StoredClient>, StoreError> {
        let p = provider.to_string();
        self.run(move |c| async move {
            let sql =
                format!("SELECT {CLIENT_COLUMNS} FROM cortex_vault_clients WHERE provider = $1");
            one(c.query_opt(&sql, &[&p])).await
        })
        .await
    }

    async fn put_client(&self, cl: StoredClient) -> Result<(), StoreError> {
        self.run(move |c| async move {
            c.execute(
                "INSERT INTO cortex_vault_clients (provider, issuer, client_id, key_id, sealed_secret, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (provider) DO UPDATE SET issuer = EXCLUDED.issuer, \
                 client_id = EXCLUDED.client_id, key_id = EXCLUDED.key_id, sealed_secret = EXCLUDED.sealed_secret, \
                 created_at_ms = EXCLUDED.created_at_ms",
                &[&cl.provider, &cl.issuer, &cl.client_id, &cl.key_id, &cl.sealed_secret, &cl.created_at_ms],
            )
            .await
            .map_err(classify)?;
            Ok(())
        })
        .await
    }

    async fn clients_not_under(&self, key_id: &str) -> Result<Vec<StoredClient>, StoreError> {
        let k = key_id.to_string();
        self.run(move |c| async move {
            let sql = format!(
                "SELECT {CLIENT_COLUMNS} FROM cortex_vault_clients WHERE key_id <> $1 ORDER BY provider"
            );
            all(c.query(&sql, &[&k])).await
        })
        .await
    }

    async fn vault_key_counts(&self) -> Result<Vec<KeyCount>, StoreError> {
        self.run(move |c| async move {
            let grants: Vec<Tally> = all(c.query(
                "SELECT key_id, COUNT(*) AS n FROM cortex_vault_grants GROUP BY key_id",
                &[],
            ))
            .await?;
            let clients: Vec<Tally> = all(c.query(
                "SELECT key_id, COUNT(*) AS n FROM cortex_vault_clients GROUP BY key_id",
                &[],
            ))
            .await?;
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
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(classify)?;
            tx.execute(
                "DELETE FROM cortex_vault_states WHERE expires_at_ms < $1",
                &[&now_ms],
            )
            .await
            .map_err(classify)?;
            let n = tx
                .execute(
                    "INSERT INTO cortex_vault_states (id, expires_at_ms) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                    &[&id, &expires_at_ms],
                )
                .await
                .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            Ok(n == 1)
        })
        .await
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn revoke_session(
        &self,
        nonce: &str,
        revoked_at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let nonce = nonce.to_string();
        self.run(move |c| async move {
            c.execute(
                "INSERT INTO cortex_session_revocations (nonce, revoked_at_ms, expires_at_ms) \
                 VALUES ($1, $2, $3) ON CONFLICT (nonce) DO NOTHING",
                &[&nonce, &revoked_at_ms, &expires_at_ms],
            )
            .await
            .map_err(classify)?;
            c.execute(
                "DELETE FROM cortex_session_revocations WHERE expires_at_ms < $1",
                &[&revoked_at_ms],
            )
            .await
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
        self.run(move |c| async move {
            let rows = c
                .query(
                    "SELECT nonce, revoked_at_ms FROM cortex_session_revocations \
                     WHERE revoked_at_ms > $1 AND expires_at_ms > $2 ORDER BY revoked_at_ms LIMIT 10000",
                    &[&after_ms, &now_ms],
                )
                .await
                .map_err(classify)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .await
    }
}
