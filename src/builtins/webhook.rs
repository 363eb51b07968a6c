//! The blocking-ticket webhook: a durable outbox drained by a background service.
//!
//! A new blocking ticket enqueues a delivery in the store in the same transaction as the
//! ticket ([`crate::store::TicketStore::create_ticket`]), so neither exists without the other and
//! nothing is lost when the receiver is down or the gateway restarts. [`DeliveryService`]
//! claims due deliveries (a lease, so replicas sharing a database never send one delivery
//! concurrently), POSTs them, and records the outcome: delivered on a 2xx, otherwise retried
//! with exponential backoff (1 s doubling up to `tickets.webhook_max_backoff`, ±20 % jitter).
//! A delivery still failing [`GIVE_UP_AFTER`] after it was enqueued is marked dead and
//! logged as an error.
//!
//! Each request carries:
//! - `X-Cortex-Delivery: <id>`: the same on every attempt; receivers drop repeats (a
//!   receiver that accepted a delivery whose 2xx was lost sees it again);
//! - `X-Cortex-Event: cortex.ticket.blocking`;
//! - `X-Cortex-Timestamp: <unix seconds>` of this attempt;
//! - `X-Cortex-Signature: sha256=<hex>`: HMAC-SHA256 under `tickets.webhook_secret` of
//!   `<timestamp>.<body>` (receivers recompute it and reject stale timestamps).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use cortex_filters::contract::TransportFailure;
use hmac::{Hmac, Mac};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rand::Rng;
use sha2::Sha256;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::config::TicketsConfig;
use crate::store::{Delivery, DeliveryOutcome, Store};
use crate::upstream::{HttpClient, Limits, Target};
use crate::GATEWAY_VERSION;

use crate::clock::now_ms;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-cortex-signature";
/// Header carrying the delivery id.
pub const DELIVERY_HEADER: &str = "x-cortex-delivery";
/// Header carrying the event type.
pub const EVENT_HEADER: &str = "x-cortex-event";
/// Header carrying the attempt's timestamp (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-cortex-timestamp";
/// A delivery failing for this long after it was enqueued is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the outbox is checked when nothing wakes the service.
const POLL: Duration = Duration::from_secs(1);
/// Deliveries claimed per round (sent concurrently).
const BATCH: u32 = 16;
/// Most bytes of a receiver's reply read (a larger reply fails the attempt).
const MAX_REPLY: usize = 1024 * 1024;

/// How often the outbox depth is counted in the store when no delivery was attempted (it is
/// also counted after every round that attempted one).
const DEPTH_EVERY: Duration = Duration::from_secs(10);

/// What the delivery service did, in plain atomics read at scrape time (metrics).
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// Pending deliveries in the outbox at the last count (every replica sharing the store
    /// sees the same outbox).
    pub depth: AtomicU64,
    /// Attempts the receiver accepted (2xx).
    pub delivered: AtomicU64,
    /// Attempts that failed and were rescheduled.
    pub failed: AtomicU64,
    /// Deliveries given up after [`GIVE_UP_AFTER`].
    pub dead: AtomicU64,
    /// Attempts that were not a delivery's first (retries).
    pub retries: AtomicU64,
}

impl OutboxStats {
    /// `[depth, delivered, failed, dead, retries]`.
    pub fn values(&self) -> [u64; 5] {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            g(&self.depth),
            g(&self.delivered),
            g(&self.failed),
            g(&self.dead),
            g(&self.retries),
        ]
    }
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `<timestamp>.<body>`).
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The wait before attempt `attempts + 1`, given `attempts` made: 1 s doubling, capped,
/// with ±20 % jitter so that replicas and receivers coming back are not hit in lockstep.
pub fn backoff(attempts: i64, max: Duration) -> Duration {
    let exp = attempts.clamp(1, 32) - 1;
    let base = Duration::from_secs(1)
        .saturating_mul(1u32 << exp.min(31))
        .min(max);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    base.mul_f64(jitter).min(max.mul_f64(1.2))
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The target URL cannot be used.
    #[error("bad webhook URL: {0}")]
    BadUrl(String),
    /// No reply in time.
    #[error("timed out after {0}ms")]
    Timeout(u64),
    /// Connection or protocol failure.
    #[error("{0}")]
    Transport(String),
    /// The receiver answered with a non-2xx status.
    #[error("receiver answered HTTP {0}")]
    Status(u16),
}

/// POSTs signed webhook bodies through the gateway's outbound client (shared TLS stack and
/// pool).
pub struct WebhookSender {
    client: Arc<HttpClient>,
    secret: Option<Vec<u8>>,
    timeout: Duration,
}

impl WebhookSender {
    /// A sender signing with `secret` (unsigned when `None`).
    pub fn new(client: Arc<HttpClient>, secret: Option<&str>, timeout: Duration) -> Self {
        WebhookSender {
            client,
            secret: secret.map(|s| s.as_bytes().to_vec()),
            timeout,
        }
    }

    /// Sends one delivery to `url`.
    pub async fn send(&self, url: &str, d: &Delivery) -> Result<(), SendError> {
        let ts = (now_ms() / 1000).max(0) as u64;
        let mut headers: Vec<(&'static str, String)> = vec![
            (DELIVERY_HEADER, d.id.clone()),
            (EVENT_HEADER, d.kind.clone()),
            (TIMESTAMP_HEADER, ts.to_string()),
            ("user-agent", format!("cortex-gateway/{GATEWAY_VERSION}")),
        ];
        if let Some(secret) = &self.secret {
            headers.push((
                SIGNATURE_HEADER,
                signature(secret, ts, d.payload.as_bytes()),
            ));
        }
        let body = Bytes::from(d.payload.clone());
        let target = Target::from_url(url, "").map_err(|e| SendError::BadUrl(e.to_string()))?;
        match tokio::time::timeout(self.timeout, target.resolve()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(SendError::Transport(e.to_string())),
            Err(_) => return Err(SendError::Timeout(self.timeout.as_millis() as u64)),
        }
        let limits = Limits {
            timeout: self.timeout,
            max_reply: MAX_REPLY,
        };
        match self.client.post(&target, &headers, body, limits).await {
            Ok(reply) if (200..300).contains(&reply.status) => Ok(()),
            Ok(reply) => Err(SendError::Status(reply.status)),
            Err(TransportFailure::Timeout { timeout_ms }) => Err(SendError::Timeout(timeout_ms)),
            Err(TransportFailure::Unreachable { reason }) => Err(SendError::Transport(reason)),
        }
    }
}

/// Drains the outbox: the background service of the webhook.
pub struct DeliveryService {
    store: Arc<dyn Store>,
    sender: WebhookSender,
    wake: Arc<Notify>,
    /// The configured URL; it wins over the one stored with a delivery, so fixing a wrong
    /// URL also fixes the deliveries already waiting.
    current_url: Option<String>,
    max_backoff: Duration,
    lease: Duration,
    /// Graceful shutdown waits for the last round of deliveries.
    drain: Option<Arc<crate::drain::Drain>>,
    stats: Arc<OutboxStats>,
}

impl DeliveryService {
    /// Counts the last round of deliveries at shutdown as work in flight, so a graceful
    /// shutdown waits for it.
    pub fn with_drain(mut self, drain: Arc<crate::drain::Drain>) -> Self {
        self.drain = Some(drain);
        self
    }

    /// Counts deliveries and the outbox depth in `stats` (exported as metrics).
    pub fn with_stats(mut self, stats: Arc<OutboxStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Counts the pending deliveries in the store (one `count(*)`); a failed count leaves
    /// the last value.
    async fn count_depth(&self) {
        match self.store.count_pending_deliveries().await {
            Ok(n) => self.stats.depth.store(n, Ordering::Relaxed),
            Err(e) => debug!(error = %e, "webhook outbox: depth not counted"),
        }
    }

    /// A service for `store`, sending through `client`, woken early through `wake` when a
    /// delivery is enqueued.
    pub fn new(
        store: Arc<dyn Store>,
        client: Arc<HttpClient>,
        cfg: &TicketsConfig,
        wake: Arc<Notify>,
    ) -> Self {
        DeliveryService {
            store,
            sender: WebhookSender::new(client, cfg.webhook_secret.as_deref(), cfg.webhook_timeout),
            wake,
            current_url: cfg.webhook_url.clone(),
            max_backoff: cfg.webhook_max_backoff,
            lease: cfg.webhook_timeout + Duration::from_secs(10),
            drain: None,
            stats: Arc::default(),
        }
    }

    /// Claims and attempts every due delivery; returns how many were attempted.
    pub async fn run_once(&self) -> usize {
        let mut attempted = 0;
        loop {
            let now = now_ms();
            let claimed = match self
                .store
                .claim_deliveries(now, self.lease.as_millis() as i64, BATCH)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "webhook outbox: claim failed (store unavailable?)");
                    return attempted;
                }
            };
            if claimed.is_empty() {
                return attempted;
            }
            attempted += claimed.len();
            let n = claimed.len();
            futures::future::join_all(claimed.iter().map(|d| self.attempt(d))).await;
            if n < BATCH as usize {
                return attempted;
            }
        }
    }

    async fn attempt(&self, d: &Delivery) {
        let url = self.current_url.as_deref().unwrap_or(&d.target);
        if d.attempts > 1 {
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        let result = self.sender.send(url, d).await;
        let now = now_ms();
        let outcome = match &result {
            Ok(()) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                info!(delivery = %d.id, attempts = d.attempts, "webhook delivered");
                DeliveryOutcome::Delivered { at_ms: now }
            }
            Err(e) if now - d.created_at_ms > GIVE_UP_AFTER.as_millis() as i64 => {
                self.stats.dead.fetch_add(1, Ordering::Relaxed);
                error!(delivery = %d.id, attempts = d.attempts, error = %e, "webhook delivery given up after 7 days");
                DeliveryOutcome::Dead {
                    error: e.to_string(),
                }
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let wait = backoff(d.attempts, self.max_backoff);
                warn!(delivery = %d.id, attempts = d.attempts, error = %e, retry_in_ms = wait.as_millis() as u64, "webhook delivery failed; will retry");
                DeliveryOutcome::Retry {
                    at_ms: now + wait.as_millis() as i64,
                    error: e.to_string(),
                }
            }
        };
        let Some(token) = d.lease_token.as_deref() else {
            warn!(delivery = %d.id, "claimed delivery without a lease token");
            return;
        };
        match self.store.finish_delivery(&d.id, token, outcome).await {
            Ok(true) => {}
            Ok(false) => {
                warn!(delivery = %d.id, "delivery lease expired before the attempt finished")
            }
            Err(e) => {
                warn!(delivery = %d.id, error = %e, "could not record a delivery attempt; it will be retried when its lease expires")
            }
        }
    }
}

#[async_trait]
impl BackgroundService for DeliveryService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut counted: Option<Instant> = None;
        loop {
            let attempted = self.run_once().await;
            if attempted > 0 || counted.is_none_or(|t| t.elapsed() >= DEPTH_EVERY) {
                self.count_depth().await;
                counted = Some(Instant::now());
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        // Shutting down: one last round for what came due meanwhile (each attempt bounded
        // by the webhook timeout). What is still waiting stays in the outbox for the next
        // start or another replica.
        let _in_flight = self.drain.as_ref().map(|d| d.enter());
        self.run_once().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Expected value from Python's hmac module:
        // hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest()
        let sig = signature(b"key", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
        assert_ne!(sig, signature(b"key", 1_700_000_001, b"{}"));
        assert_ne!(sig, signature(b"other", 1_700_000_000, b"{}"));
        assert_eq!(sig, signature(b"key", 1_700_000_000, b"{}"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let max = Duration::from_secs(60);
        for (attempts, base) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (6, 32.0),
            (7, 60.0),
            (40, 60.0),
        ] {
            let d = backoff(attempts, max).as_secs_f64();
            assert!(
                d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                "{attempts}: {d}"
            );
        }
        assert!(backoff(0, max) <= Duration::from_millis(1200));
    }
}
