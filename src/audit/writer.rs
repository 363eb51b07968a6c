//! The audit thread: turns events into records, writes stdout lines, and appends batches
//! to the store's hash chain.
//!
//! It runs on a thread and single-thread runtime of its own, so its fate is independent of
//! Pingora's runtimes: at shutdown it drains what is queued and flushes it within a
//! deadline ([`AuditSink::close`](super::AuditSink::close)).
//!
//! Flow control, in order of preference:
//! 1. Batching is natural: while one append is in flight, new records accumulate and go in
//!    the next one (up to [`BATCH`]); no timer delays a record.
//! 2. While the store is down, records wait in a backlog bounded by `audit.queue`, and the
//!    append is retried with exponential backoff (100 ms to 30 s). Stdout lines are written
//!    as records arrive, so that sink is not held back by the store.
//! 3. Only when the backlog is full are new records dropped: counted, and logged at most
//!    every 10 s. The request path never waits for any of this.
//! 4. A batch that keeps failing while the store answers `ping` is not an outage but a
//!    record the store refuses: it is retried one record at a time and the refused record
//!    is dropped (counted, logged), so one bad record cannot stall the trail.

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::keys::AuditKeys;
use super::pseudonyms::Pseudonyms;
use super::record::{clean, clean_opt, decision, AuditRecord, MAX_IDENT, MAX_TEXT};
use super::spool::{RawRecord, Spool};
use crate::record::{ClosedRecord, ParamsHash, Rid, SpoolSegment};
use crate::store::{AuditStore, ChainHead, StoreError};

/// Most records per append.
pub const BATCH: usize = 500;
/// First retry delay after a failed append.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Failed attempts of one batch before asking whether the store is up at all.
const POISON_ATTEMPTS: u32 = 3;
/// How often the audit thread drains the hand-off queue while records keep coming.
const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// At shutdown, how long the queue must stay empty before it is closed.
const QUIET: Duration = Duration::from_millis(100);
/// Least time between two "dropped" warnings.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counters of the audit pipeline (for logs, tests and metrics).
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Records handed to the audit thread.
    pub submitted: AtomicU64,
    /// Dropped because the hand-off queue was full (the audit thread fell behind).
    pub dropped_queue_full: AtomicU64,
    /// Dropped because the store stayed down longer than the backlog could hold.
    pub dropped_store_down: AtomicU64,
    /// Dropped because the store refused the record itself while being up.
    pub refused_by_store: AtomicU64,
    /// Records appended to the store.
    pub stored: AtomicU64,
    /// Failed append attempts.
    pub store_failures: AtomicU64,
    /// Records waiting for the store right now.
    pub backlog: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// See [`AuditStats::submitted`].
    pub submitted: u64,
    /// See [`AuditStats::dropped_queue_full`].
    pub dropped_queue_full: u64,
    /// See [`AuditStats::dropped_store_down`].
    pub dropped_store_down: u64,
    /// See [`AuditStats::refused_by_store`].
    pub refused_by_store: u64,
    /// See [`AuditStats::stored`].
    pub stored: u64,
    /// See [`AuditStats::store_failures`].
    pub store_failures: u64,
    /// See [`AuditStats::backlog`].
    pub backlog: u64,
    /// Records appended to the spool.
    pub spooled: u64,
    /// Records not spooled: the spool was full.
    pub spool_full: u64,
    /// Records not spooled: the write failed.
    pub spool_failed: u64,
    /// Records read back from spool files and handed to the store.
    pub replayed: u64,
    /// Spool entries that could not be read back.
    pub spool_unreadable: u64,
}

impl AuditStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            submitted: g(&self.submitted),
            dropped_queue_full: g(&self.dropped_queue_full),
            dropped_store_down: g(&self.dropped_store_down),
            refused_by_store: g(&self.refused_by_store),
            stored: g(&self.stored),
            store_failures: g(&self.store_failures),
            backlog: g(&self.backlog),
            ..StatsSnapshot::default()
        }
    }

    /// Records dropped for any reason.
    pub fn dropped(&self) -> u64 {
        let s = self.snapshot();
        s.dropped_queue_full + s.dropped_store_down + s.refused_by_store
    }
}

/// What the record builder needs besides the request's record.
pub(crate) struct Builder {
    pub pseudonyms: Pseudonyms,
    pub subject_in_clear: bool,
}

impl Builder {
    /// A builder under `keys`.
    pub fn new(keys: Arc<AuditKeys>, subject_in_clear: bool) -> Self {
        Builder {
            pseudonyms: Pseudonyms::new(keys),
            subject_in_clear,
        }
    }

    /// The audit keys.
    pub fn keys(&self) -> &Arc<AuditKeys> {
        self.pseudonyms.keys()
    }

    /// The audit record of a closed request (with its spool id when it was spooled).
    pub fn build(&self, ev: &ClosedRecord) -> AuditRecord {
        let rid = ev.spooled.as_ref().map(|s| s.rid);
        let raw = RawRecord::of(ev, rid.unwrap_or(Rid { tag: 0, n: 0 }));
        let mut r = self.build_raw(&raw);
        if rid.is_none() {
            r.rid = None;
        }
        r
    }

    /// The audit record of a raw record (live, or read back from a spool file, so every
    /// text is bounded and cleaned again): pseudonyms, the params hash, the route of a tool
    /// call, the refusal, tools/list figures.
    pub fn build_raw(&self, ev: &RawRecord<'_>) -> AuditRecord {
        let text = |s: &Option<std::borrow::Cow<'_, str>>| clean_opt(s.as_deref(), MAX_IDENT);
        let mut r = AuditRecord::new(ev.ts_ms, &clean(&ev.http_method, MAX_IDENT));
        r.rid = Some(ev.rid.to_string());
        r.http_status = i32::from(ev.http_status);
        r.response_size = i64::try_from(ev.response_size).unwrap_or(i64::MAX);
        r.latency_ms = (ev.latency_us as f64) / 1000.0;
        r.origin = text(&ev.origin);
        r.backends_filter = text(&ev.backends_filter);
        r.tool_mode = text(&ev.tool_mode);
        r.method = text(&ev.method);
        r.params_hash = match (&ev.params_mac, &ev.params_body) {
            (Some(mac), _) => Some(clean(mac, MAX_IDENT)),
            (None, Some(body)) => ParamsHash::Deferred(body.clone())
                .mac(self.keys().as_ref())
                .map(|mac| super::keys::hex_id(&mac)),
            (None, None) => None,
        };
        r.protocol_version = text(&ev.version);
        r.session_id = ev.session_id.as_deref().map(|s| self.pseudonyms.session(s));
        if let Some(sub) = &ev.sub {
            r.caller_sub = Some(if self.subject_in_clear {
                clean(sub, MAX_IDENT)
            } else {
                self.pseudonyms.subject(sub)
            });
            r.caller_email_hash = ev.email.as_deref().map(|e| self.pseudonyms.email(e));
            r.caller_role = text(&ev.role);
            r.caller_pool = text(&ev.pool);
            r.client_id = text(&ev.client_id);
            r.dev_bypass = ev.dev_bypass;
        }
        if let Some(tool) = &ev.tool {
            r.target_app = text(&ev.target_app);
            r.scope_used = text(&ev.scope_used);
            r.tool = Some(clean(tool, MAX_IDENT));
        }
        if let Some((tools, bytes)) = ev.listed {
            r.tools_listed = Some(i64::from(tools));
            r.tokens_estimate = Some(i64::try_from(bytes / 4).unwrap_or(i64::MAX));
        }
        r.error_code = ev.rpc_error;
        let http_ok = (200..400).contains(&ev.http_status);
        let refused = ev.stage.is_some();
        r.success = !refused && ev.error.is_none() && http_ok && r.error_code.is_none();
        if refused {
            r.decision = decision::REJECTED.into();
            r.stage = text(&ev.stage);
            r.reason = clean_opt(ev.reason.as_deref(), MAX_TEXT);
        } else {
            r.reason = clean_opt(ev.error.as_deref(), MAX_TEXT);
        }
        r
    }
}

/// Retry bookkeeping of the append loop.
#[derive(Debug)]
struct RetryState {
    /// Consecutive failed appends.
    failures: u32,
    /// Delay before the next retry.
    backoff: Duration,
    /// Records still to write one at a time, after a batch the live store refused.
    single: usize,
    /// Since when appends fail (for the "accepts again" log line).
    failing_since: Option<Instant>,
}

impl Default for RetryState {
    fn default() -> Self {
        RetryState {
            failures: 0,
            backoff: BACKOFF_START,
            single: 0,
            failing_since: None,
        }
    }
}

/// A message to the audit thread besides events.
pub(crate) enum Control {
    /// Drain, flush until the deadline, then stop; reply when done.
    Close {
        deadline: Instant,
        done: std::sync::mpsc::Sender<()>,
    },
}

/// What a drain of the hand-off queue found.
enum Drained {
    Some,
    Nothing,
    Closed,
}

/// How one append ended at shutdown.
enum Flushed {
    Stored,
    Failed(StoreError),
    TimedOut,
}

type Inflight =
    Pin<Box<dyn Future<Output = (Arc<Vec<AuditRecord>>, Result<ChainHead, StoreError>)> + Send>>;

/// The spool segment holding a record, told once the record is stored.
type Mark = Option<Arc<dyn SpoolSegment>>;

/// Tells each segment that one of its records is no longer needed from the spool.
fn finish(marks: Vec<Mark>) {
    for m in marks.into_iter().flatten() {
        m.finished();
    }
}

/// The audit thread's state.
pub(crate) struct Writer {
    pub builder: Builder,
    pub store: Option<Arc<dyn AuditStore>>,
    pub stdout: bool,
    pub backlog_cap: usize,
    pub stats: Arc<AuditStats>,
    spool: Option<Arc<Spool>>,
    backlog: VecDeque<(AuditRecord, Mark)>,
    /// Records in the append in flight (lost if shutdown cannot wait for it).
    inflight_len: usize,
    /// Their spool segments.
    inflight_marks: Vec<Mark>,
    last_drop_warning: Option<Instant>,
    dropped_since_warning: u64,
}

impl Writer {
    pub fn new(
        builder: Builder,
        store: Option<Arc<dyn AuditStore>>,
        stdout: bool,
        backlog_cap: usize,
        stats: Arc<AuditStats>,
        spool: Option<Arc<Spool>>,
    ) -> Self {
        Writer {
            builder,
            store,
            stdout,
            backlog_cap: backlog_cap.max(1),
            stats,
            spool,
            backlog: VecDeque::new(),
            inflight_len: 0,
            inflight_marks: Vec::new(),
            last_drop_warning: None,
            dropped_since_warning: 0,
        }
    }

    /// Runs until closed (or every sender is gone).
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<ClosedRecord>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let mut inflight: Option<Inflight> = None;
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut retry = RetryState::default();
        let mut out = std::io::stdout();
        // Under load the thread drains the queue on a short tick instead of being woken
        // by every record (a cross-thread wake-up per request costs more than the record);
        // after a tick that found nothing it waits for the next record again.
        let mut tick = tokio::time::interval(DRAIN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle = true;
        let close = loop {
            if inflight.is_none() && retry_at.is_none() {
                inflight = self.start_append(retry.single > 0);
            }
            tokio::select! {
                ev = events.recv(), if idle => match ev {
                    Some(ev) => {
                        let mut lines = Vec::new();
                        self.accept(ev, &mut lines);
                        self.drain(&mut events, &mut lines);
                        self.write_stdout(&mut out, &lines);
                        idle = false;
                        tick.reset();
                    }
                    None => break None,
                },
                _ = tick.tick(), if !idle => {
                    let mut lines = Vec::new();
                    match self.drain(&mut events, &mut lines) {
                        Drained::Some => self.write_stdout(&mut out, &lines),
                        Drained::Nothing => idle = true,
                        Drained::Closed => {
                            self.write_stdout(&mut out, &lines);
                            break None;
                        }
                    }
                },
                Some((batch, result)) = async { match inflight.as_mut() { Some(f) => Some(f.await), None => None } }, if inflight.is_some() => {
                    inflight = None;
                    self.inflight_len = 0;
                    retry_at = self.after_append(batch, result, &mut retry).await;
                    self.stats.backlog.store(self.backlog.len() as u64, Ordering::Relaxed);
                },
                _ = async { if let Some(t) = retry_at { tokio::time::sleep_until(t).await } }, if retry_at.is_some() => {
                    retry_at = None;
                },
                c = control.recv() => break c,
            }
        };
        self.shutdown(events, inflight, close).await;
    }

    /// Takes what is queued now (bounded: at most 64 KiB of stdout lines per call), for one
    /// stdout write and one batch.
    fn drain(&mut self, events: &mut mpsc::Receiver<ClosedRecord>, lines: &mut Vec<u8>) -> Drained {
        let mut took = false;
        loop {
            match events.try_recv() {
                Ok(ev) => {
                    took = true;
                    self.accept(ev, lines);
                    if lines.len() > 64 * 1024 {
                        return Drained::Some;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    return if took {
                        Drained::Some
                    } else {
                        Drained::Nothing
                    };
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return Drained::Closed,
            }
        }
    }

    /// Books the result of an append; returns when to retry, if it failed.
    async fn after_append(
        &mut self,
        batch: Arc<Vec<AuditRecord>>,
        result: Result<ChainHead, StoreError>,
        retry: &mut RetryState,
    ) -> Option<tokio::time::Instant> {
        let e = match result {
            Ok(head) => {
                self.stats
                    .stored
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                finish(std::mem::take(&mut self.inflight_marks));
                if let Some(spool) = &self.spool {
                    spool.tidy(false);
                }
                debug!(
                    records = batch.len(),
                    seq = head.last_seq,
                    "audit: appended"
                );
                if let Some(since) = retry.failing_since.take() {
                    info!(after = ?since.elapsed(), "audit: the store accepts records again");
                }
                retry.failures = 0;
                retry.backoff = BACKOFF_START;
                retry.single = retry.single.saturating_sub(1);
                return None;
            }
            Err(e) => e,
        };
        retry.failures += 1;
        retry.failing_since.get_or_insert_with(Instant::now);
        self.stats.store_failures.fetch_add(1, Ordering::Relaxed);
        // An outage is retried as it is; a statement the store refuses while it answers
        // pings is a bad record, to be isolated and dropped.
        let refused = !matches!(e, StoreError::Unavailable(_))
            && retry.failures >= POISON_ATTEMPTS
            && self.store_is_up().await;
        if refused && batch.len() == 1 {
            self.stats.refused_by_store.fetch_add(1, Ordering::Relaxed);
            error!(error = %e, "audit: the store refuses a record while up; it is dropped (stdout has it)");
            finish(std::mem::take(&mut self.inflight_marks));
            retry.failures = 0;
            retry.single = retry.single.saturating_sub(1);
            return None;
        }
        if refused {
            retry.single = batch.len();
            retry.failures = 0;
        }
        if retry.failures == 1 || retry.failures.is_multiple_of(10) {
            warn!(error = %e, attempts = retry.failures, backlog = self.backlog.len() + batch.len(), "audit: cannot write to the store; retrying");
        }
        self.requeue(batch);
        let at = tokio::time::Instant::now() + retry.backoff;
        retry.backoff = (retry.backoff * 2).min(BACKOFF_MAX);
        Some(at)
    }

    /// Builds the record of `ev`, appends its stdout line to `lines`, and queues it for the
    /// store (or drops it, counted, when the backlog is full).
    fn accept(&mut self, ev: ClosedRecord, lines: &mut Vec<u8>) {
        let record = self.builder.build(&ev);
        let mark = ev.spooled.map(|s| s.segment);
        if self.stdout {
            record.write_stdout_line(lines);
        }
        if self.store.is_none() {
            return;
        }
        if self.backlog.len() >= self.backlog_cap {
            self.stats
                .dropped_store_down
                .fetch_add(1, Ordering::Relaxed);
            self.dropped_since_warning += 1;
            let due = self
                .last_drop_warning
                .is_none_or(|t| t.elapsed() >= WARN_EVERY);
            if due {
                warn!(
                    dropped = self.dropped_since_warning,
                    dropped_total = self.stats.dropped(),
                    backlog = self.backlog.len(),
                    "audit: the store has been unavailable longer than the backlog holds (audit.queue); records are being dropped from the store (stdout still has them)"
                );
                self.last_drop_warning = Some(Instant::now());
                self.dropped_since_warning = 0;
            }
            return;
        }
        self.backlog.push_back((record, mark));
        self.stats
            .backlog
            .store(self.backlog.len() as u64, Ordering::Relaxed);
    }

    fn write_stdout(&self, out: &mut std::io::Stdout, lines: &[u8]) {
        if lines.is_empty() {
            return;
        }
        let mut lock = out.lock();
        if lock.write_all(lines).and_then(|_| lock.flush()).is_err() {
            // A closed stdout must not stop the trail; the store still gets the records.
        }
    }

    /// Starts an append of the oldest backlog records (one at a time in `single` mode).
    fn start_append(&mut self, single: bool) -> Option<Inflight> {
        let store = self.store.clone()?;
        if self.backlog.is_empty() {
            return None;
        }
        let n = if single {
            1
        } else {
            self.backlog.len().min(BATCH)
        };
        let (records, marks): (Vec<AuditRecord>, Vec<Mark>) = self.backlog.drain(..n).unzip();
        let batch = Arc::new(records);
        self.inflight_len = n;
        self.inflight_marks = marks;
        let key = self.builder.keys().chain().clone();
        Some(Box::pin(async move {
            let result = store.append_audit(batch.clone(), key).await;
            (batch, result)
        }))
    }

    /// Puts a failed batch back in front of the backlog (dropping, counted, what no longer
    /// fits).
    fn requeue(&mut self, batch: Arc<Vec<AuditRecord>>) {
        let records = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
        let mut marks = std::mem::take(&mut self.inflight_marks);
        marks.resize_with(records.len(), || None);
        for r in records.into_iter().zip(marks).rev() {
            if self.backlog.len() >= self.backlog_cap {
                self.backlog.pop_back();
                self.stats
                    .dropped_store_down
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.backlog.push_front(r);
        }
    }

    async fn store_is_up(&self) -> bool {
        match &self.store {
            Some(s) => s.ping().await.is_ok(),
            None => false,
        }
    }

    /// Waits for one append until `deadline` and books it: stored, or failed and put back
    /// in front of the backlog. When the deadline comes first its records stay counted as
    /// in flight.
    async fn flush_one(&mut self, append: Inflight, deadline: Instant) -> Flushed {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok((batch, result)) = tokio::time::timeout(remaining, append).await else {
            return Flushed::TimedOut;
        };
        self.inflight_len = 0;
        match result {
            Ok(_) => {
                self.stats
                    .stored
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                finish(std::mem::take(&mut self.inflight_marks));
                Flushed::Stored
            }
            Err(e) => {
                self.requeue(batch);
                Flushed::Failed(e)
            }
        }
    }

    /// Drains the queue and flushes the backlog until the deadline.
    async fn shutdown(
        mut self,
        mut events: mpsc::Receiver<ClosedRecord>,
        inflight: Option<Inflight>,
        close: Option<Control>,
    ) {
        let (deadline, done) = match close {
            Some(Control::Close { deadline, done }) => (deadline, Some(done)),
            None => (Instant::now() + Duration::from_secs(5), None),
        };
        // Requests finishing while the server stops still log: take events until the
        // queue has been quiet for a moment (bounded by the deadline), then close it.
        let mut lines = Vec::new();
        loop {
            let wait = QUIET.min(deadline.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, events.recv()).await {
                Ok(Some(ev)) => self.accept(ev, &mut lines),
                Ok(None) | Err(_) => break,
            }
        }
        events.close();
        while let Ok(ev) = events.try_recv() {
            self.accept(ev, &mut lines);
        }
        let mut out = std::io::stdout();
        self.write_stdout(&mut out, &lines);
        // The append in flight first (a failure puts its records back for the loop), then
        // the backlog batch by batch until it is empty, the store fails, or time is up.
        let mut timed_out = false;
        if let Some(f) = inflight {
            timed_out = matches!(self.flush_one(f, deadline).await, Flushed::TimedOut);
        }
        while let Some(f) = (!timed_out).then(|| self.start_append(false)).flatten() {
            match self.flush_one(f, deadline).await {
                Flushed::Stored => {}
                Flushed::Failed(e) => {
                    warn!(error = %e, lost = self.backlog.len(), "audit: the store is unavailable at shutdown; records not stored (stdout has them)");
                    break;
                }
                Flushed::TimedOut => timed_out = true,
            }
        }
        if timed_out {
            warn!(
                lost = self.backlog.len() + self.inflight_len,
                "audit: shutdown deadline reached; records not stored (stdout has them)"
            );
        }
        let lost = (self.backlog.len() + self.inflight_len) as u64;
        if let Some(spool) = &self.spool {
            // Every segment whose records are all stored goes; what was lost here stays in
            // the spool for the next start (or another replica) to replay.
            spool.tidy(true);
        }
        self.stats
            .dropped_store_down
            .fetch_add(lost, Ordering::Relaxed);
        self.stats.backlog.store(0, Ordering::Relaxed);
        let s = self.stats.snapshot();
        info!(
            stored = s.stored,
            dropped = s.dropped_queue_full + s.dropped_store_down + s.refused_by_store,
            store_failures = s.store_failures,
            "audit: closed"
        );
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod flow_tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::audit::keys::SecretSource;
    use crate::store::*;

    /// A store whose appends fail while `down` is set (or for one poisoned tool).
    #[derive(Default)]
    struct FlakyStore {
        down: AtomicBool,
        poison: Option<String>,
        stored: Mutex<Vec<AuditRecord>>,
        attempts: AtomicUsize,
    }

    use std::sync::atomic::AtomicBool;

    fn nope<T>() -> Result<T, StoreError> {
        Err(StoreError::Query("not in this fake".into()))
    }

    #[async_trait]
    impl StoreBase for FlakyStore {
        fn kind(&self) -> StoreKind {
            StoreKind::Postgres("fake".into())
        }
        async fn ping(&self) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down".into()));
            }
            Ok(())
        }
        async fn schema_version(&self) -> Result<i64, StoreError> {
            Ok(1)
        }
    }

    #[async_trait]
    impl AuditStore for FlakyStore {
        async fn append_audit(
            &self,
            records: Arc<Vec<AuditRecord>>,
            _key: Arc<dyn ChainLinker>,
        ) -> Result<ChainHead, StoreError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down".into()));
            }
            if records
                .iter()
                .any(|r| r.tool.is_some() && r.tool == self.poison)
            {
                return Err(StoreError::Query("invalid byte sequence".into()));
            }
            let mut stored = self.stored.lock().unwrap();
            stored.extend(records.iter().cloned());
            Ok(ChainHead {
                last_seq: stored.len() as i64,
                last_hash: String::new(),
            })
        }
        async fn audit_chain(&self) -> Result<ChainState, StoreError> {
            Ok(ChainState::genesis())
        }
        async fn read_audit(&self, _: i64, _: u32) -> Result<Vec<StoredAudit>, StoreError> {
            nope()
        }
        async fn purge_audit(
            &self,
            _: i64,
            _: u32,
            _: Arc<dyn ChainLinker>,
        ) -> Result<PurgeOutcome, StoreError> {
            nope()
        }
    }

    fn event(tool: &str) -> ClosedRecord {
        let mut r = crate::record::RequestRecord::default();
        r.begin(None);
        let body = bytes::Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
        ));
        let incoming = cortex_filters::jsonrpc::parse_body(&body).expect("a tools/call");
        r.message(&incoming, &body, None);
        r.answered(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        r.close(crate::record::Facts {
            ts_ms: 1,
            latency: Duration::from_micros(1500),
            http_method: http::Method::POST,
            http_status: 200,
            response_size: 10,
            origin: None,
            backends_filter: None,
            tool_mode: None,
            error: None,
        })
        .expect("an active record")
    }

    fn start(
        store: Arc<FlakyStore>,
        cap: usize,
    ) -> (
        mpsc::Sender<ClosedRecord>,
        mpsc::UnboundedSender<Control>,
        Arc<AuditStats>,
        std::thread::JoinHandle<()>,
    ) {
        let keys = Arc::new(AuditKeys::from_secret(
            b"0123456789abcdef0123456789abcdef",
            SecretSource::Ephemeral,
        ));
        let stats = Arc::new(AuditStats::default());
        let writer = Writer::new(
            Builder::new(keys, false),
            Some(store as Arc<dyn AuditStore>),
            false,
            cap,
            stats.clone(),
            None,
        );
        let (tx, rx) = mpsc::channel(1024);
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(writer.run(rx, ctl_rx));
        });
        (tx, ctl, stats, handle)
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn close(ctl: &mpsc::UnboundedSender<Control>, handle: std::thread::JoinHandle<()>) {
        let (done, finished) = std::sync::mpsc::channel();
        ctl.send(Control::Close {
            deadline: Instant::now() + Duration::from_secs(2),
            done,
        })
        .unwrap();
        finished.recv_timeout(Duration::from_secs(5)).unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn records_written_during_an_outage_arrive_in_order_after_it() {
        let store = Arc::new(FlakyStore::default());
        let (tx, ctl, stats, handle) = start(store.clone(), 100);
        tx.try_send(event("t0")).unwrap();
        wait_until("first stored", || stats.snapshot().stored == 1);
        store.down.store(true, Ordering::SeqCst);
        for i in 1..=5 {
            tx.try_send(event(&format!("t{i}"))).unwrap();
        }
        wait_until("failures", || stats.snapshot().store_failures >= 2);
        store.down.store(false, Ordering::SeqCst);
        wait_until("all stored", || stats.snapshot().stored == 6);
        let tools: Vec<_> = store
            .stored
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.tool.clone().unwrap())
            .collect();
        assert_eq!(tools, ["t0", "t1", "t2", "t3", "t4", "t5"]);
        assert_eq!(stats.dropped(), 0);
        close(&ctl, handle);
    }

    #[test]
    fn a_long_outage_drops_past_the_backlog_and_counts() {
        let store = Arc::new(FlakyStore::default());
        store.down.store(true, Ordering::SeqCst);
        let (tx, ctl, stats, handle) = start(store.clone(), 4);
        for i in 0..10 {
            tx.try_send(event(&format!("t{i}"))).unwrap();
        }
        wait_until("drops", || stats.snapshot().dropped_store_down >= 6);
        store.down.store(false, Ordering::SeqCst);
        wait_until("backlog stored", || stats.snapshot().stored == 4);
        assert_eq!(stats.snapshot().dropped_store_down, 6);
        close(&ctl, handle);
    }

    #[test]
    fn a_record_the_live_store_refuses_is_dropped_alone() {
        let store = Arc::new(FlakyStore {
            poison: Some("bad".into()),
            ..FlakyStore::default()
        });
        let (tx, ctl, stats, handle) = start(store.clone(), 100);
        for t in ["a", "b", "bad", "c"] {
            tx.try_send(event(t)).unwrap();
        }
        wait_until("good ones stored", || stats.snapshot().stored == 3);
        assert_eq!(stats.snapshot().refused_by_store, 1);
        let tools: Vec<_> = store
            .stored
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.tool.clone().unwrap())
            .collect();
        assert_eq!(tools, ["a", "b", "c"]);
        close(&ctl, handle);
    }

    #[test]
    fn close_flushes_what_is_queued() {
        let store = Arc::new(FlakyStore::default());
        let (tx, ctl, stats, handle) = start(store.clone(), 100);
        for i in 0..50 {
            tx.try_send(event(&format!("t{i}"))).unwrap();
        }
        close(&ctl, handle);
        assert_eq!(stats.snapshot().stored, 50);
        assert_eq!(store.stored.lock().unwrap().len(), 50);
    }
}
