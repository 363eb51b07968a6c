//! What the replicas of a fleet share beyond PostgreSQL (docs/fleet.md): a bus over Redis
//! ([`FleetBus`], the [`SessionBus`] of the session manager) and the start-up key check
//! ([`keys`]).
//!
//! The bus carries, on one pub/sub channel (`<prefix>:bus`, messages in
//! `cortex_filters::fleet`):
//! - revocations: a DELETE on one replica is refused by the others as soon as they read
//!   the message; also kept in a sorted set (`<prefix>:revoked`, by expiry) that a replica
//!   reads whenever it (re)subscribes. The store (`cortex_session_revocations`, read every
//!   second by each replica) owns revocations and is their durable record; the bus only
//!   makes them arrive in milliseconds, and carries them while PostgreSQL is down. A
//!   revocation Redis cannot take is therefore not retried here: the store delivers it;
//! - sessions served recently (shared idle tracking): sent in batches every second and kept
//!   in `<prefix>:seen` (by time), so a replica that never saw a session, or evicted it,
//!   accepts it while another replica served it within the idle timeout;
//! - notification events: each is appended to the session's log (`<prefix>:ev:<nonce>`, a
//!   Redis stream capped at `sessions.replay_buffer`, expiring with the session) and
//!   published in one script, so every replica delivers it in log order to the stream it
//!   holds, and a client reconnecting anywhere with `Last-Event-ID` gets what it missed;
//!   a catalog change seen by every replica is logged once per session (a dedup key per
//!   catalog state);
//! - catalog nudges: a replica whose catalog changed tells the others to rediscover now.
//!
//! Redis down: nothing panics or blocks a request. Revocations reach the other replicas
//! through the store within a second or so; touches are dropped (a replica
//! that never saw a session then accepts it only within the idle timeout of its issue);
//! events are delivered by the replica that made them, from its own buffer; rate limits
//! follow `rate_limits.redis.fail_open`.

pub mod keys;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cortex_filters::fleet::{decode, encode, event_id, hex, range_after, unhex, BusMessage};
use futures::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::FleetConfig;
use crate::sessions::{SessionBus, SessionManager};

/// How long an event's dedup mark lives (longer than any replica's lag behind a change).
const DEDUP_TTL_MS: u64 = 600_000;
/// Seen sessions per published batch.
const SEEN_BATCH: usize = 500;
/// Most operations waiting for Redis. Past it (Redis slow, the replica flooded) an
/// operation is not queued: a revocation still reaches the others through the store, a
/// touch is skipped (sent again at its next request 5 s later), an event is delivered by
/// this replica, a catalog nudge is left to each replica's own refresh.
const OPS_QUEUE: usize = 16_384;
/// Period of the housekeeping tick (touch batches, pruning).
const TICK: Duration = Duration::from_secs(1);

/// Appends an event to a session's log, publishes it, once per dedup mark.
/// KEYS: log, dedup mark, channel. ARGV: max length, message, log ttl ms, message prefix,
/// dedup (`1`/`0`), dedup ttl ms.
const EVENT_SCRIPT: &str = r"
if ARGV[5] == '1' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[6]) then return '' end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'm', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', KEYS[3], ARGV[4] .. id .. ' ' .. ARGV[2])
return id
";

enum Op {
    Revoke {
        nonce: [u8; 16],
        expires_at: u64,
    },
    Touch([u8; 16]),
    Event {
        nonce: [u8; 16],
        expires_at: u64,
        message: Bytes,
        dedup: Option<u64>,
    },
    Catalog,
}

/// Counters of the bus (for logs and tests).
#[derive(Debug, Default)]
pub struct FleetStats {
    /// Messages read from the channel.
    pub received: AtomicU64,
    /// Redis commands that failed or timed out.
    pub failures: AtomicU64,
    /// Events delivered locally because Redis could not log them.
    pub local_events: AtomicU64,
}

/// The fleet's bus over Redis.
pub struct FleetBus {
    replica: String,
    prefix: String,
    timeout: Duration,
    idle: Duration,
    replay: usize,
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    ops: mpsc::Sender<Op>,
    ops_rx: Mutex<Option<mpsc::Receiver<Op>>>,
    sessions: Arc<SessionManager>,
    refresh_now: Arc<dyn Fn() + Send + Sync>,
    commands_ok: AtomicBool,
    subscribed: AtomicBool,
    script: redis::Script,
    last_warning_ms: AtomicU64,
    /// What the bus did.
    pub stats: FleetStats,
}

/// Why the bus cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("fleet.redis_url: {0}")]
pub struct FleetError(String);

impl FleetBus {
    /// The bus of `cfg` for `sessions` (`None` without `fleet.redis_url`); `refresh_now`
    /// makes every backend due for discovery (a catalog nudge from another replica).
    pub fn from_config(
        cfg: &FleetConfig,
        sessions: Arc<SessionManager>,
        idle: Duration,
        replay: usize,
        refresh_now: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Option<Arc<FleetBus>>, FleetError> {
        let Some(url) = cfg.redis_url.as_deref().filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let client = redis::Client::open(url).map_err(|e| FleetError(e.to_string()))?;
        let (ops, ops_rx) = mpsc::channel(OPS_QUEUE);
        Ok(Some(Arc::new(FleetBus {
            replica: replica_id(),
            prefix: cfg.key_prefix.clone(),
            timeout: cfg.timeout,
            idle,
            replay: replay.max(1),
            client,
            conn: Mutex::new(None),
            ops,
            ops_rx: Mutex::new(Some(ops_rx)),
            sessions,
            refresh_now,
            commands_ok: AtomicBool::new(true),
            subscribed: AtomicBool::new(false),
            script: redis::Script::new(EVENT_SCRIPT),
            last_warning_ms: AtomicU64::new(0),
            stats: FleetStats::default(),
        })))
    }

    /// This replica's id on the bus and in the key check (random per process).
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Tells the other replicas that this one's catalog changed.
    pub fn catalog_changed(&self) {
        let _ = self.ops.try_send(Op::Catalog);
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }

    fn channel(&self) -> String {
        self.key("bus")
    }

    fn warn(&self, what: &str) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let now = crate::clock::now_ms().max(0) as u64;
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!("fleet: Redis {what}; revocations go through the database only, notifications stay on this replica, until it answers");
        }
    }

    fn connection(&self) -> Option<ConnectionManager> {
        match self.conn.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    async fn connect(&self) -> Option<ConnectionManager> {
        if let Some(c) = self.connection() {
            return Some(c);
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        match tokio::time::timeout(
            self.timeout * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        {
            Ok(Ok(c)) => {
                if let Ok(mut g) = self.conn.lock() {
                    *g = Some(c.clone());
                }
                Some(c)
            }
            Ok(Err(e)) => {
                self.warn(&format!("cannot connect ({e})"));
                None
            }
            Err(_) => {
                self.warn("does not answer");
                None
            }
        }
    }

    /// Runs `cmd`, bounded by the timeout; `None` (logged) on failure.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let mut conn = self.connect().await?;
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                self.commands_ok.store(true, Ordering::Relaxed);
                Some(v)
            }
            Ok(Err(e)) => {
                self.commands_ok.store(false, Ordering::Relaxed);
                self.warn(&format!("failed ({e})"));
                None
            }
            Err(_) => {
                self.commands_ok.store(false, Ordering::Relaxed);
                self.warn("did not answer in time");
                None
            }
        }
    }

    async fn publish(&self, message: &BusMessage) -> bool {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(self.channel()).arg(encode(&self.replica, message));
        self.query::<i64>(&cmd).await.is_some()
    }

    async fn send_revocation(&self, nonce: [u8; 16], expires_at: u64) -> bool {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(self.key("revoked"))
            .arg(expires_at.saturating_mul(1000))
            .arg(hex(&nonce));
        self.query::<i64>(&zadd).await.is_some()
            && self
                .publish(&BusMessage::Revoked { nonce, expires_at })
                .await
    }

    async fn send_seen(&self, nonces: &[[u8; 16]]) {
        let now = crate::clock::now_ms();
        for chunk in nonces.chunks(SEEN_BATCH) {
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(self.key("seen"));
            for n in chunk {
                zadd.arg(now).arg(hex(n));
            }
            if self.query::<i64>(&zadd).await.is_none()
                || !self.publish(&BusMessage::Seen(chunk.to_vec())).await
            {
                return;
            }
        }
    }

    async fn send_event(
        &self,
        nonce: [u8; 16],
        expires_at: u64,
        message: &Bytes,
        dedup: Option<u64>,
    ) -> bool {
        let Some(mut conn) = self.connect().await else {
            return false;
        };
        let nonce_hex = hex(&nonce);
        let ttl_ms = expires_at
            .saturating_sub(crate::clock::unix_now())
            .max(1)
            .saturating_mul(1000);
        let mut inv = self.script.prepare_invoke();
        inv.key(self.key(&format!("ev:{nonce_hex}")))
            .key(self.key(&format!("dd:{nonce_hex}:{:016x}", dedup.unwrap_or(0))))
            .key(self.channel())
            .arg(self.replay)
            .arg(message.as_ref())
            .arg(ttl_ms)
            .arg(format!("e {} {nonce_hex} ", self.replica))
            .arg(if dedup.is_some() { "1" } else { "0" })
            .arg(DEDUP_TTL_MS);
        match tokio::time::timeout(self.timeout, inv.invoke_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => {
                self.commands_ok.store(true, Ordering::Relaxed);
                true
            }
            Ok(Err(e)) => {
                self.commands_ok.store(false, Ordering::Relaxed);
                self.warn(&format!("failed ({e})"));
                false
            }
            Err(_) => {
                self.commands_ok.store(false, Ordering::Relaxed);
                self.warn("did not answer in time");
                false
            }
        }
    }

    /// Reads what a (re)subscribing replica may have missed: revocations still in force and
    /// sessions served within the idle timeout.
    async fn resync(&self) {
        let now = crate::clock::now_ms();
        let mut prune = redis::cmd("ZREMRANGEBYSCORE");
        prune.arg(self.key("revoked")).arg("-inf").arg(now);
        let _ = self.query::<i64>(&prune).await;
        let mut revoked = redis::cmd("ZRANGEBYSCORE");
        revoked.arg(self.key("revoked")).arg(now).arg("+inf");
        if let Some(list) = self.query::<Vec<String>>(&revoked).await {
            for n in list.iter().filter_map(|h| unhex(h)) {
                self.sessions.revoked_elsewhere(n);
            }
        }
        let since = now.saturating_sub(i64::try_from(self.idle.as_millis()).unwrap_or(i64::MAX));
        let mut prune = redis::cmd("ZREMRANGEBYSCORE");
        prune
            .arg(self.key("seen"))
            .arg("-inf")
            .arg(format!("({since}"));
        let _ = self.query::<i64>(&prune).await;
        let mut seen = redis::cmd("ZRANGEBYSCORE");
        seen.arg(self.key("seen")).arg(since).arg("+inf");
        if let Some(list) = self.query::<Vec<String>>(&seen).await {
            let nonces: Vec<[u8; 16]> = list.iter().filter_map(|h| unhex(h)).collect();
            self.sessions.seen_elsewhere(&nonces);
        }
    }

    fn handle(&self, payload: &[u8]) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let Some((sender, message)) = decode(payload) else {
            return;
        };
        match message {
            BusMessage::Revoked { nonce, .. } => self.sessions.revoked_elsewhere(nonce),
            BusMessage::Seen(nonces) => {
                if sender != self.replica {
                    self.sessions.seen_elsewhere(&nonces);
                }
            }
            BusMessage::Catalog => {
                if sender != self.replica {
                    (self.refresh_now)();
                }
            }
            BusMessage::Event { nonce, id, message } => {
                self.sessions.deliver(nonce, id, &message);
            }
        }
    }

    /// Reads the channel until shutdown, resubscribing (and resyncing) after a loss.
    async fn subscribe_loop(&self, shutdown: &mut ShutdownWatch) {
        loop {
            let connected = tokio::time::timeout(self.timeout * 2, async {
                let mut ps = self.client.get_async_pubsub().await?;
                ps.subscribe(self.channel()).await?;
                Ok::<_, redis::RedisError>(ps)
            })
            .await;
            match connected {
                Ok(Ok(mut ps)) => {
                    self.resync().await;
                    self.subscribed.store(true, Ordering::Relaxed);
                    info!(replica = %self.replica, "fleet: subscribed to the fleet's channel");
                    let mut stream = ps.on_message();
                    loop {
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            msg = stream.next() => match msg {
                                Some(m) => self.handle(m.get_payload_bytes()),
                                None => break,
                            },
                        }
                    }
                    self.subscribed.store(false, Ordering::Relaxed);
                    self.warn("closed the fleet's channel");
                }
                Ok(Err(e)) => self.warn(&format!("cannot subscribe ({e})")),
                Err(_) => self.warn("does not answer the subscription"),
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Carries out what the request path handed over, until shutdown.
    async fn command_loop(&self, mut rx: mpsc::Receiver<Op>, shutdown: &mut ShutdownWatch) {
        let mut touched: HashSet<[u8; 16]> = HashSet::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                op = rx.recv() => match op {
                    None => return,
                    Some(Op::Revoke { nonce, expires_at }) => {
                        // Not retried: the store carries it (see the module's doc).
                        self.send_revocation(nonce, expires_at).await;
                    }
                    Some(Op::Touch(nonce)) => { touched.insert(nonce); }
                    Some(Op::Event { nonce, expires_at, message, dedup }) => {
                        if !self.send_event(nonce, expires_at, &message, dedup).await {
                            self.stats.local_events.fetch_add(1, Ordering::Relaxed);
                            self.sessions.deliver_local(nonce, &message);
                        }
                    }
                    Some(Op::Catalog) => { self.publish(&BusMessage::Catalog).await; }
                },
                _ = tick.tick() => {
                    if !touched.is_empty() {
                        let batch: Vec<[u8; 16]> = touched.drain().collect();
                        self.send_seen(&batch).await;
                    }
                }
            }
        }
    }
}

impl SessionBus for FleetBus {
    fn revoked(&self, nonce: [u8; 16], expires_at: u64) {
        let _ = self.ops.try_send(Op::Revoke { nonce, expires_at });
    }

    fn touched(&self, nonce: [u8; 16]) {
        let _ = self.ops.try_send(Op::Touch(nonce));
    }

    fn event(&self, nonce: [u8; 16], expires_at: u64, message: Bytes, dedup: Option<u64>) -> bool {
        if !self.subscribed.load(Ordering::Relaxed) || !self.commands_ok.load(Ordering::Relaxed) {
            return false;
        }
        self.ops
            .try_send(Op::Event {
                nonce,
                expires_at,
                message,
                dedup,
            })
            .is_ok()
    }

    fn replay(
        &self,
        nonce: [u8; 16],
        after: Option<u64>,
    ) -> futures::future::BoxFuture<'static, Option<Vec<(u64, Bytes)>>> {
        let conn = self.connection();
        let key = self.key(&format!("ev:{}", hex(&nonce)));
        let timeout = self.timeout;
        let replay = self.replay;
        Box::pin(async move {
            let mut conn = conn?;
            let mut cmd = match after {
                Some(id) => {
                    let mut c = redis::cmd("XRANGE");
                    c.arg(&key)
                        .arg(range_after(id))
                        .arg("+")
                        .arg("COUNT")
                        .arg(replay);
                    c
                }
                None => {
                    let mut c = redis::cmd("XREVRANGE");
                    c.arg(&key).arg("+").arg("-").arg("COUNT").arg(1);
                    c
                }
            };
            let rows: Vec<(String, HashMap<String, Vec<u8>>)> =
                match tokio::time::timeout(timeout, cmd.query_async(&mut conn)).await {
                    Ok(Ok(r)) => r,
                    _ => return None,
                };
            let _ = &mut cmd;
            Some(
                rows.into_iter()
                    .filter_map(|(id, mut fields)| {
                        Some((event_id(&id)?, Bytes::from(fields.remove("m")?)))
                    })
                    .collect(),
            )
        })
    }
}

/// Runs the bus: the channel reader and the command loop.
pub struct FleetService {
    bus: Arc<FleetBus>,
}

impl FleetService {
    /// The service of `bus`.
    pub fn new(bus: Arc<FleetBus>) -> Self {
        FleetService { bus }
    }
}

#[async_trait]
impl BackgroundService for FleetService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let rx = match self.bus.ops_rx.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        let Some(rx) = rx else { return };
        let mut a = shutdown.clone();
        let mut b = shutdown;
        tokio::join!(
            self.bus.subscribe_loop(&mut a),
            self.bus.command_loop(rx, &mut b)
        );
    }
}

/// A random id for this process (16 hex characters).
fn replica_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
