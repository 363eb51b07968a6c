//! The audit trail: one record per request that reaches the MCP endpoint, rejected ones
//! included, with the decision and its reason and the Cortex fields (reference §7).
//!
//! - the request's record ([`crate::record`]) arrives whole at the end of the request
//!   ([`AuditSink::submit`]), with every decision already in it.
//! - [`keys`]: the audit secret, HMAC pseudonyms for subject, email, session id and params
//!   ([`pseudonyms`]: the audit thread's memo of the last ones).
//! - [`record`]: the record, its stdout line and canonical form.
//! - [`writer`]: the audit thread (bounded queue, batches, stdout, store, drops counted).
//! - [`spool`], [`answer`] and [`replay`]: every record is appended to a local spool file
//!   before its answer's last bytes are written, and the spool files of a process that
//!   died are replayed into the store, so no answered request's record is lost with it.
//! - [`chain`] and [`verify`]: the hash chain and `cortex-gateway audit verify`.
//! - [`retention`]: the purge of old records that keeps the chain verifiable.
//!
//! Writing the audit never blocks or fails a request: the request path does a `try_send`
//! of data it already has; the rest happens on the audit thread.

pub mod answer;
pub mod chain;
pub mod keys;
mod pseudonyms;
pub mod record;
pub mod replay;
pub mod retention;
pub mod spool;
pub mod verify;
pub mod writer;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;
use tracing::{info, warn};

use cortex_filters::jsonrpc::Incoming;
use serde_json::Value;

use crate::config::{AuditConfig, Config};
use crate::record::{message_params, ClosedRecord, ParamsHasher, Spooled};
use crate::store::{AuditStore, StoreError};

pub use keys::AuditKeys;
pub use writer::{AuditStats, StatsSnapshot};

use writer::{Builder, Control, Writer};

/// The params hash of the audit trail: the HMAC of the params of a message (`params`
/// itself, canonical) or of a batch (the list of every message's params).
impl ParamsHasher for AuditKeys {
    fn params_mac(&self, incoming: &Incoming) -> [u8; 16] {
        match incoming {
            Incoming::Batch(messages) => {
                let params: Vec<Option<&Value>> = messages.iter().map(message_params).collect();
                AuditKeys::params_mac(self, &params)
            }
            Incoming::Single(m) => AuditKeys::params_mac(self, &message_params(m)),
        }
    }
}

/// Why the audit trail cannot start or be verified.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A setting is unusable.
    #[error("audit: {0}")]
    Config(String),
    /// The store cannot be set up.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit thread cannot start.
    #[error("audit: cannot start the audit thread: {0}")]
    Thread(std::io::Error),
}

/// Smallest hand-off queue between the request path and the audit thread.
const MIN_HANDOFF: usize = 256;

/// How long shutdown waits for the last records to reach the store.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(4);

/// The request path's handle on the audit trail. Cheap to clone; a disabled sink (the
/// default of a bare [`AppState`]) records nothing and costs nothing.
#[derive(Clone, Default)]
pub struct AuditSink {
    inner: Option<Arc<Shared>>,
}

struct Shared {
    events: mpsc::Sender<ClosedRecord>,
    spool: Option<Arc<spool::Spool>>,
    control: mpsc::UnboundedSender<Control>,
    keys: Arc<AuditKeys>,
    stats: Arc<AuditStats>,
    closed: AtomicBool,
    last_full_warning_ms: AtomicI64,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl AuditSink {
    /// A sink that records nothing.
    pub fn disabled() -> Self {
        AuditSink::default()
    }

    /// Starts the audit thread: records go to stdout (if `config.stdout`) and to `store`
    /// (if any), and old records are purged after `config.retention_days`.
    pub fn start(
        config: &AuditConfig,
        keys: Arc<AuditKeys>,
        store: Option<Arc<dyn AuditStore>>,
        spool_dir: Option<&std::path::Path>,
    ) -> Result<AuditSink, AuditError> {
        let spool = match (spool_dir, &store) {
            (Some(dir), Some(_)) => Some(Arc::new(
                spool::Spool::open(dir, config.spool_fsync, config.spool_max_bytes).map_err(
                    |e| {
                        AuditError::Config(format!(
                            "cannot open the spool in {}: {e}",
                            dir.display()
                        ))
                    },
                )?,
            )),
            _ => None,
        };
        // The hand-off queue absorbs bursts while the audit thread is busy; the backlog
        // (`audit.queue`) holds records while the store is down.
        let capacity = config.queue.max(1);
        let (events, events_rx) = mpsc::channel(config.queue.max(MIN_HANDOFF));
        let (control, control_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(AuditStats::default());
        let writer = Writer::new(
            Builder::new(keys.clone(), config.subject_in_clear),
            store.clone(),
            config.stdout,
            capacity,
            stats.clone(),
            spool.clone(),
        );
        let replayer = match (&store, &spool) {
            (Some(store), Some(spool)) => Some(replay::Replayer {
                store: store.clone(),
                spool: spool.clone(),
                builder: Builder::new(keys.clone(), config.subject_in_clear),
                stats: stats.clone(),
            }),
            _ => None,
        };
        let retention_days = config.retention_days;
        let chain_key = keys.chain().clone();
        std::thread::Builder::new()
            .name("cortex-audit".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(
                            "audit: cannot build the audit runtime: {e}; records go nowhere"
                        );
                        return;
                    }
                };
                runtime.block_on(async move {
                    if let Some(store) = store {
                        tokio::spawn(retention::run(store, chain_key, retention_days));
                    }
                    if let Some(replayer) = replayer {
                        tokio::spawn(replayer.run());
                    }
                    writer.run(events_rx, control_rx).await;
                });
            })
            .map_err(AuditError::Thread)?;
        Ok(AuditSink {
            inner: Some(Arc::new(Shared {
                events,
                spool,
                control,
                keys,
                stats,
                closed: AtomicBool::new(false),
                last_full_warning_ms: AtomicI64::new(0),
            })),
        })
    }

    /// Whether records are being kept.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The pseudonym keys (for the one HMAC the request path computes).
    pub fn keys(&self) -> Option<&AuditKeys> {
        self.inner.as_deref().map(|s| s.keys.as_ref())
    }

    /// The pipeline's counters.
    pub fn stats(&self) -> StatsSnapshot {
        let Some(s) = self.inner.as_deref() else {
            return StatsSnapshot::default();
        };
        let mut snap = s.stats.snapshot();
        if let Some(spool) = &s.spool {
            let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            snap.spooled = g(&spool.stats.spooled);
            snap.spool_full = g(&spool.stats.full);
            snap.spool_failed = g(&spool.stats.failed);
            snap.replayed = g(&spool.stats.replayed);
            snap.spool_unreadable = g(&spool.stats.unreadable);
        }
        snap
    }

    /// The params hasher for [`RequestRecord::message`](crate::record::RequestRecord::message)
    /// (`None` when the trail is off: params are then not kept).
    pub fn hasher(&self) -> Option<&dyn ParamsHasher> {
        self.keys().map(|k| k as &dyn ParamsHasher)
    }

    /// Whether records are spooled (the answer hook has work to do).
    pub fn spools(&self) -> bool {
        self.inner.as_deref().is_some_and(|s| s.spool.is_some())
    }

    /// The spool, if records are spooled.
    pub fn spool_dir(&self) -> Option<&std::path::Path> {
        self.inner.as_deref()?.spool.as_deref().map(|s| s.dir())
    }

    /// Appends `record` to the spool (one `write()`); `None` when there is no spool or it
    /// cannot take the record (counted).
    pub fn spool(&self, record: &ClosedRecord) -> Option<Spooled> {
        self.inner.as_deref()?.spool.as_deref()?.write(record)
    }

    /// Hands a finished request's record to the audit thread without waiting (spooling it
    /// first if the answer hook has not); a full queue drops it from memory (counted,
    /// logged at most every 10 s), and the spool keeps it for a replay.
    pub fn submit(&self, mut event: ClosedRecord) {
        let Some(s) = self.inner.as_deref() else {
            return;
        };
        if event.spooled.is_none() {
            if let Some(spool) = &s.spool {
                event.spooled = spool.write(&event);
            }
        }
        match s.events.try_send(event) {
            Ok(()) => {
                s.stats.submitted.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                s.stats.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    "audit: a record arrived after the audit trail was closed (shutdown); dropped"
                );
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let total = s.stats.dropped_queue_full.fetch_add(1, Ordering::Relaxed) + 1;
                let now = crate::clock::now_ms();
                let last = s.last_full_warning_ms.load(Ordering::Relaxed);
                if now - last >= 10_000
                    && s.last_full_warning_ms
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    warn!(
                        dropped_total = total,
                        "audit: the audit queue is full (audit.queue); records are being dropped"
                    );
                }
            }
        }
    }

    /// Stops the audit thread after it has drained the queue and flushed to the store, for
    /// at most `timeout`. Blocking; idempotent. Returns whether it finished in time.
    pub fn close(&self, timeout: Duration) -> bool {
        let Some(s) = self.inner.as_deref() else {
            return true;
        };
        if s.closed.swap(true, Ordering::SeqCst) {
            return true;
        }
        let (done, finished) = std::sync::mpsc::channel();
        let deadline = Instant::now() + timeout;
        if s.control.send(Control::Close { deadline, done }).is_err() {
            return true;
        }
        finished
            .recv_timeout(timeout + Duration::from_millis(500))
            .is_ok()
    }
}

/// Loads the audit keys and starts the audit thread over `store` (the store is opened by
/// the caller, which shares it with the other features). Warnings (generated secret,
/// PostgreSQL without a shared secret) are logged.
pub fn start(config: &Config, store: Arc<dyn AuditStore>) -> Result<AuditSink, AuditError> {
    if !config.audit.enabled {
        warn!("audit trail off (audit.enabled: false): no request is recorded");
        return Ok(AuditSink::disabled());
    }
    let (keys, warning) = AuditKeys::load(config, true)?;
    if let Some(w) = warning {
        warn!("{w}");
    }
    if matches!(store.kind(), crate::store::StoreKind::Postgres(_)) && config.audit.secret.is_none()
    {
        warn!("storage is PostgreSQL but audit.secret is not set: every replica sharing this database needs the same audit.secret, or pseudonyms differ between replicas and `audit verify` cannot check the records of the others");
    }
    let spool_dir = config.audit.spool.then(|| {
        config
            .audit
            .spool_dir
            .clone()
            .unwrap_or_else(|| config.storage_dir().join("audit-spool"))
    });
    let sink = AuditSink::start(
        &config.audit,
        Arc::new(keys),
        Some(store.clone()),
        spool_dir.as_deref(),
    )?;
    info!(
        store = %store.kind(),
        spool = ?sink.spool_dir(),
        stdout = config.audit.stdout,
        retention_days = config.audit.retention_days,
        "audit trail on"
    );
    Ok(sink)
}

/// The keys and store of `config` for offline tools (`audit verify`): never creates a
/// secret.
pub fn open_for_verify(config: &Config) -> Result<(AuditKeys, Arc<dyn AuditStore>), AuditError> {
    let (keys, _) = AuditKeys::load(config, false)?;
    let store: Arc<dyn AuditStore> = crate::store::open(config)?;
    Ok((keys, store))
}

/// A Pingora background service whose only job is to flush the audit trail when the
/// server shuts its runtimes down (after the grace period, so requests still in flight
/// during it are audited): its future is dropped then, and the drop closes the sink.
pub struct FlushOnShutdown {
    sink: AuditSink,
}

impl FlushOnShutdown {
    /// For `sink`.
    pub fn new(sink: AuditSink) -> Self {
        FlushOnShutdown { sink }
    }
}

struct CloseOnDrop(AuditSink);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if !self.0.close(CLOSE_TIMEOUT) {
            warn!("audit: not every record reached the store before shutdown");
        }
    }
}

#[async_trait]
impl BackgroundService for FlushOnShutdown {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let _guard = CloseOnDrop(self.sink.clone());
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cortex_filters::jsonrpc;

    use super::keys::SecretSource;
    use super::*;
    use crate::record::ParamsHash;

    #[test]
    fn deferred_and_immediate_params_hashes_agree() {
        let keys =
            AuditKeys::from_secret(b"0123456789abcdef0123456789abcdef", SecretSource::Ephemeral);
        let hasher: &dyn ParamsHasher = &keys;
        let single = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"b":1,"a":2}}}"#);
        let reordered = Bytes::from_static(br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"arguments":{"a":2,"b":1},"name":"t"}}"#);
        let batch = Bytes::from_static(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t"}}]"#);
        for body in [&single, &batch] {
            let incoming = jsonrpc::parse_body(body).unwrap();
            let now = ParamsHash::Done(hasher.params_mac(&incoming)).mac(hasher);
            let later = ParamsHash::Deferred(body.clone()).mac(hasher);
            assert!(now.is_some());
            assert_eq!(now, later);
        }
        // Same params, another id and key order: the same hash.
        assert_eq!(
            ParamsHash::Deferred(single.clone()).mac(hasher),
            ParamsHash::Deferred(reordered).mac(hasher)
        );
        assert_ne!(
            ParamsHash::Deferred(single).mac(hasher),
            ParamsHash::Deferred(batch).mac(hasher)
        );
    }
}
