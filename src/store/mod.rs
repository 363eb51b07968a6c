//! Persistence: one small trait per concern, two implementations, each table mapped once.
//!
//! - [`SqliteStore`]: an embedded SQLite file under `storage.data_dir` (default `./data`),
//!   the zero-setup default. One dedicated thread owns the connection, so SQLite's single
//!   writer never blocks a Tokio worker.
//! - [`PostgresStore`]: PostgreSQL when `storage.database_url` / `CORTEX_DATABASE_URL` is
//!   set, for fleets of replicas sharing tickets, outbox and one audit chain. Its connection
//!   pool lives on a dedicated runtime thread, so it works from any caller (Pingora's
//!   runtimes, the audit thread, a CLI) and outlives none of them by accident.
//!
//! Both connect lazily and apply the embedded, versioned migrations (`migrations/`) on
//! first use, so a database that is down at start does not stop the gateway: calls fail
//! with [`StoreError::Unavailable`] until it is back. The same test suite
//! (`tests/it/store_suite.rs`) runs against both.
//!
//! All times are Unix milliseconds passed in by the caller (`now_ms`), so behaviour is
//! deterministic in tests and one clock decides per call.
//!
//! # How the parts fit
//!
//! - `model/`: the plain data of each table (no I/O, no driver): what the rest of the
//!   gateway speaks. The store imports nothing from the features it serves; the audit
//!   trail hands its chain key in as a [`ChainLinker`].
//! - Traits, one per concern: [`AuditStore`], [`TicketStore`], [`OutboxStore`], each on top
//!   of [`StoreBase`] (kind, ping, schema version). [`Store`] is all of them; the gateway
//!   holds one `Arc<dyn Store>` and a feature can take only the trait it uses (an upcast:
//!   the audit trail takes an `Arc<dyn AuditStore>`), so a test double implements only
//!   that concern. Methods of every concern are callable on a `dyn Store` without
//!   importing their trait.
//! - `rows.rs`: each table mapped once for both drivers: its column list, how a row is
//!   read back (`FromRow`, over either driver's row), the values an INSERT binds
//!   (`SqlValue`), and the pure parts of the audit chain (linking a batch, planning a
//!   purge).
//! - `sqlite.rs`, `postgres.rs`: only what differs per dialect: SQL text, transactions,
//!   locks, error classification.
//!
//! # Adding a table (the vault and tool pins are next)
//!
//! 1. **Migration**: `migrations/{sqlite,postgres}/NNNN_name.sql`, and its entry in
//!    `MIGRATIONS` of both drivers. Use the same column names and order in both.
//! 2. **Model**: `model/<table>.rs` with the plain structs (what a caller passes in, what
//!    a row reads back), re-exported from `model/mod.rs`.
//! 3. **Trait**: `pub trait VaultStore: StoreBase` here, with the contract in its doc
//!    comments (atomicity, what serializes across replicas), and add it to the bounds of
//!    [`Store`] and of its blanket impl.
//! 4. **Mapping, once**: in `rows.rs`, the `<TABLE>_COLUMNS` list, `impl FromRow` for the
//!    row struct (reading columns in list order), and, for a wide INSERT, a
//!    `values() -> [&dyn SqlValue; N]` like the audit row's. Any logic that does not
//!    need the database (a plan, a computed value) is a pure function there too, with a
//!    unit test.
//! 5. **Drivers**: `impl VaultStore for SqliteStore` and `for PostgresStore`: the SQL text
//!    (`?N` and `$N` placeholders), the transaction, and the lock each dialect needs
//!    (`BEGIN IMMEDIATE` on SQLite; `FOR UPDATE`, `SKIP LOCKED` or an advisory lock on
//!    PostgreSQL). Read rows with `select`/`select_one` (SQLite) and `one`/`all`
//!    (PostgreSQL); nothing maps a column by hand.
//! 6. **Tests**: a case in `tests/it/store_suite.rs`, listed in `both!`, so it runs against
//!    both databases.

mod model;
pub mod postgres;
mod rows;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::Config;

pub use model::*;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or opened (retry later).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A statement failed.
    #[error("store query failed: {0}")]
    Query(String),
    /// A stored value cannot be read back (edited by hand, or a bug).
    #[error("stored data is invalid: {0}")]
    Invalid(String),
    /// A migration failed.
    #[error("database migration {version} ({name}) failed: {message}")]
    Migration {
        /// Its version.
        version: i64,
        /// Its name.
        name: &'static str,
        /// The database's message.
        message: String,
    },
    /// The database was migrated by a newer gateway.
    #[error("the database schema is at version {found}, newer than this binary knows ({known}); upgrade the gateway")]
    SchemaTooNew {
        /// Version found.
        found: i64,
        /// Newest version this binary has.
        known: i64,
    },
    /// The configuration cannot describe a store (bad URL, unusable data directory).
    #[error("storage configuration: {0}")]
    Config(String),
}

/// Which implementation a store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// SQLite at this path.
    Sqlite(PathBuf),
    /// PostgreSQL (a description without the password).
    Postgres(String),
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreKind::Postgres(d) => write!(f, "postgresql:{d}"),
        }
    }
}

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, from 1, in order.
    pub version: i64,
    /// Short name.
    pub name: &'static str,
    /// SQL (several statements).
    pub sql: &'static str,
}

/// What every store answers whatever tables a feature uses: which store it is, whether it
/// is reachable, and its schema version.
#[async_trait]
pub trait StoreBase: Send + Sync + 'static {
    /// Which store this is (for logs).
    fn kind(&self) -> StoreKind;

    /// Connects (applying migrations if not done yet) and runs a trivial query. Tells an
    /// outage ([`StoreError::Unavailable`]) from a bad statement.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The applied schema version.
    async fn schema_version(&self) -> Result<i64, StoreError>;

    /// The fleet's key fingerprints: records each of `offered` that has no row yet (as set
    /// by `replica` at `now_ms`), in one transaction, and returns the stored row of every
    /// offered name. `None`: this store is not shared between replicas (SQLite), so there
    /// is no fleet to compare with.
    async fn fleet_keys(
        &self,
        offered: Vec<KeyFingerprint>,
        replica: String,
        now_ms: i64,
    ) -> Result<Option<Vec<KeyFingerprint>>, StoreError> {
        let _ = (offered, replica, now_ms);
        Ok(None)
    }
}

/// The fingerprint of one key that every replica must share (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFingerprint {
    /// The key's name (`sessions.secret`, `audit.secret`, `auth.mint.key_file`,
    /// `vault.keys.<id>`).
    pub name: String,
    /// The fingerprint.
    pub fingerprint: String,
    /// The replica that recorded it first.
    pub set_by: String,
    /// When (Unix ms).
    pub set_at_ms: i64,
}

/// The audit trail's tables: the records and the hash chain's bookkeeping row.
#[async_trait]
pub trait AuditStore: StoreBase {
    /// Appends `records` at the end of the hash chain, in order, in one transaction: each
    /// gets the next `seq`, the previous record's hash as `prev_hash`, the key's id and its
    /// own hash ([`ChainLinker::link`]); the chain head is updated and sealed. Concurrent
    /// appenders (other replicas) are serialized on the head row. All or nothing.
    async fn append_audit(
        &self,
        records: Arc<Vec<AuditRecord>>,
        key: Arc<dyn ChainLinker>,
    ) -> Result<ChainHead, StoreError>;

    /// The chain's bookkeeping row ([`ChainState::genesis`] for an empty chain).
    async fn audit_chain(&self) -> Result<ChainState, StoreError>;

    /// Up to `limit` stored records with `seq > after_seq`, in seq order, as stored (no
    /// checking: that is `audit verify`'s job).
    async fn read_audit(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredAudit>, StoreError>;

    /// Deletes the oldest records whose `ts_ms` is before `before_ms`, at most `max_rows`,
    /// stopping at the first record that is not old enough (so what remains is one
    /// contiguous chain). The last deleted record becomes the anchor (seq and hash,
    /// sealed with `key`), from which verification starts. Call again while it returns
    /// `purged == max_rows`.
    async fn purge_audit(
        &self,
        before_ms: i64,
        max_rows: u32,
        key: Arc<dyn ChainLinker>,
    ) -> Result<PurgeOutcome, StoreError>;
}

/// Missing-capability tickets.
#[async_trait]
pub trait TicketStore: StoreBase {
    /// Creates a ticket, or folds the report into the owner's ticket with the same
    /// fingerprint created within `dedup_window_ms` before `new.now_ms` (then its
    /// `updated_at_ms` is bumped, `repeat_count` incremented, and nothing else changes).
    /// When a new ticket is created and `on_create` is given, that delivery is enqueued in
    /// the same transaction: a ticket and its webhook are never one without the other.
    /// Deduplication is serialized per (owner, fingerprint) across replicas.
    async fn create_ticket(
        &self,
        new: NewTicket,
        dedup_window_ms: i64,
        on_create: Option<NewDelivery>,
    ) -> Result<CreatedTicket, StoreError>;

    /// One ticket by id.
    async fn get_ticket(&self, id: &str) -> Result<Option<Ticket>, StoreError>;

    /// Tickets matching `filter`, newest first (by creation, then id), at most
    /// [`effective_limit`]`(filter.limit)`.
    async fn list_tickets(&self, filter: TicketFilter) -> Result<Vec<Ticket>, StoreError>;

    /// Changes status and/or severity and/or appends a note; bumps `updated_at_ms`.
    /// `None` when there is no such ticket.
    async fn update_ticket(
        &self,
        id: &str,
        update: TicketUpdate,
    ) -> Result<Option<Ticket>, StoreError>;
}

/// Approved tool definitions (tool-definition pinning), one row per backend.
#[async_trait]
pub trait PinStore: StoreBase {
    /// Every backend's pins.
    async fn load_pins(&self) -> Result<Vec<StoredPins>, StoreError>;

    /// Writes these backends' pins (each replaces the backend's row), in one transaction.
    async fn save_pins(&self, rows: Vec<StoredPins>) -> Result<(), StoreError>;
}

/// The durable webhook outbox.
#[async_trait]
pub trait OutboxStore: StoreBase {
    /// Enqueues a delivery, due at `now_ms`. An id that already exists is left as it is
    /// (enqueueing is idempotent).
    async fn enqueue_delivery(&self, delivery: NewDelivery) -> Result<(), StoreError>;

    /// Claims up to `limit` pending deliveries due at `now_ms` whose previous claim (if
    /// any) has expired, oldest due first. Each claim gets a fresh `lease_token`, holds
    /// until `now_ms + lease_ms` and counts as an attempt. A delivery is claimed by one
    /// caller at a time across replicas; one whose claimant died is claimable again when
    /// its lease expires (so a delivery can be attempted twice, never concurrently:
    /// receivers deduplicate on the delivery id).
    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Ends the attempt of the claim `lease_token`: delivered, rescheduled or dead. Returns
    /// false (and changes nothing) when that claim is no longer current (it expired and
    /// someone else claimed the delivery, or it was already finished).
    async fn finish_delivery(
        &self,
        id: &str,
        lease_token: &str,
        outcome: DeliveryOutcome,
    ) -> Result<bool, StoreError>;

    /// One delivery by id.
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError>;

    /// Deliveries in `state`, oldest first, at most [`effective_limit`]`(limit)`.
    async fn list_deliveries(
        &self,
        state: DeliveryState,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// How many deliveries are pending (due or waiting for a retry): the outbox depth.
    async fn count_pending_deliveries(&self) -> Result<u64, StoreError>;
}

/// The per-user token vault: sealed grants, client registrations at providers, and the
/// single-use marks of linking states. The store sees only sealed values (the vault
/// module seals them); it never decrypts.
#[async_trait]
pub trait VaultStore: StoreBase {
    /// The grant of `subject` at `provider`.
    async fn get_grant(
        &self,
        subject: &str,
        provider: &str,
    ) -> Result<Option<StoredGrant>, StoreError>;

    /// Every grant of `subject`, by provider.
    async fn list_grants(&self, subject: &str) -> Result<Vec<StoredGrant>, StoreError>;

    /// Stores the grant of (subject, provider), replacing any (a new link): version 1 for a
    /// new row, the old version + 1 otherwise; `created_at_ms` is the link time.
    async fn put_grant(&self, grant: NewGrant) -> Result<StoredGrant, StoreError>;

    /// Replaces the sealed record of (subject, provider) only if its version is still
    /// `expected_version` (a refresh or a rotation that read it). `None` when the row changed
    /// or is gone meanwhile (another replica refreshed, the user unlinked): re-read.
    async fn replace_grant(
        &self,
        grant: NewGrant,
        expected_version: i64,
    ) -> Result<Option<StoredGrant>, StoreError>;

    /// Deletes the grant of (subject, provider); false when there was none. With
    /// `expected_version`, only that version (a refresh that found the grant refused must not
    /// delete a newer link).
    async fn delete_grant(
        &self,
        subject: &str,
        provider: &str,
        expected_version: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` grants not sealed under `key_id` (a rotation's next batch).
    async fn grants_not_under(
        &self,
        key_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredGrant>, StoreError>;

    /// The client registration made for `provider`.
    async fn get_client(&self, provider: &str) -> Result<Option<StoredClient>, StoreError>;

    /// Stores the registration for `provider`, replacing any (a new issuer).
    async fn put_client(&self, client: StoredClient) -> Result<(), StoreError>;

    /// Registrations whose secret is sealed under a key other than `key_id`.
    async fn clients_not_under(&self, key_id: &str) -> Result<Vec<StoredClient>, StoreError>;

    /// Records and secrets per key id, by key id.
    async fn vault_key_counts(&self) -> Result<Vec<KeyCount>, StoreError>;

    /// Marks the linking state `id` used; true the first time, false if it was already used
    /// (a replay), on any replica. Marks past their `expires_at_ms` (their state is refused
    /// anyway) are deleted on the way, at `now_ms`.
    async fn consume_state(
        &self,
        id: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
}

/// Sessions ended with DELETE, shared by the replicas of a fleet (a sealed session id opens
/// on every replica holding the key, so an end must reach them all).
#[async_trait]
pub trait SessionStore: StoreBase {
    /// Records that the session `nonce` (hex) ended at `revoked_at_ms`; the record is kept
    /// until `expires_at_ms`, when the id would be refused anyway. Recording twice is a no-op.
    /// Also purges the records past their expiry.
    async fn revoke_session(
        &self,
        nonce: &str,
        revoked_at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError>;

    /// The sessions ended after `after_ms` and not yet expired at `now_ms`, as (nonce,
    /// revoked_at_ms), oldest first, at most 10,000.
    async fn session_revocations_since(
        &self,
        after_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError>;
}

/// Everything the gateway persists: every concern at once. Object-safe; the gateway holds
/// one `Arc<dyn Store>` and can hand a feature the narrow trait it uses (an upcast:
/// `store as Arc<dyn OutboxStore>`). Implemented by every type that implements each
/// concern.
///
/// Contract shared by both implementations (and enforced by `tests/it/store_suite.rs`):
/// every method is atomic (one transaction); methods that several replicas may race on
/// (audit append, ticket deduplication, delivery claims) serialize correctly across
/// processes sharing one database.
pub trait Store:
    AuditStore + TicketStore + OutboxStore + VaultStore + PinStore + SessionStore
{
}

impl<T: AuditStore + TicketStore + OutboxStore + VaultStore + PinStore + SessionStore> Store for T {}

/// The store the configuration asks for: PostgreSQL when `storage.database_url` is set,
/// else SQLite at `<storage dir>/cortex-gateway.db` ([`Config::storage_dir`]). Nothing is
/// opened yet (see the module doc).
pub fn open(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let url = config
        .storage
        .database_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    match url {
        Some(url) => Ok(Arc::new(PostgresStore::new(url)?)),
        None => Ok(Arc::new(SqliteStore::open(sqlite_path(
            &config.storage_dir(),
        )))),
    }
}

/// The SQLite file inside a data directory.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SQLITE_FILE)
}

/// The SQLite file name.
pub const SQLITE_FILE: &str = "cortex-gateway.db";

/// A random URL-safe id: `prefix` + 26 base32 characters (128 bits).
pub fn random_id(prefix: &str) -> String {
    use rand::RngCore;
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut acc: u128 = u128::from_be_bytes(bytes);
    let mut out = String::with_capacity(prefix.len() + 26);
    out.push_str(prefix);
    for _ in 0..26 {
        out.push(char::from(ALPHABET[(acc & 31) as usize]));
        acc >>= 5;
    }
    out
}

/// Clamps a list limit to something both databases accept.
pub(crate) fn sql_limit(limit: u32) -> i64 {
    i64::from(effective_limit(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_distinct_and_prefixed() {
        let a = random_id("tkt_");
        let b = random_id("tkt_");
        assert!(a.starts_with("tkt_"));
        assert_eq!(a.len(), 30);
        assert_ne!(a, b);
    }

    #[test]
    fn limits_are_capped() {
        assert_eq!(effective_limit(0), MAX_LIST);
        assert_eq!(effective_limit(5), 5);
        assert_eq!(effective_limit(100_000), MAX_LIST);
    }
}
