//! Catalog discovery: asks every backend for its catalog at boot and then periodically (with
//! jitter and per-backend exponential backoff on failure), keeps the last good snapshot of a
//! failing backend for the stale grace period, merges, and publishes confirmed changes.
//!
//! The refresher follows the *current* set of backends (it asks its source at every tick),
//! so backends added or removed by a configuration reload join or leave discovery, and a
//! removed backend's entries leave the catalog with the usual targeted `list_changed`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cortex_filters::catalog::{self, BackendSnapshot, CatalogDiff};
use futures::future::join_all;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rand::Rng;
use tracing::{info, warn};

use super::backend::Discovery;
use super::catalog::CatalogStore;
use super::Upstreams;
use crate::integrity::Integrity;

/// Called with every published change (sends list_changed notifications).
pub type ChangeListener = Arc<dyn Fn(&CatalogDiff) + Send + Sync>;

/// Where the refresher reads the current backends from (the reloadable policy).
pub type UpstreamsSource = Arc<dyn Fn() -> Arc<Upstreams> + Send + Sync>;

/// Discovery settings.
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    /// Base interval between discoveries of a healthy backend.
    pub interval: Duration,
    /// How long a failing backend's last snapshot stays served.
    pub stale_grace: Duration,
    /// Backoff ceiling.
    pub max_backoff: Duration,
}

/// The discovery engine (driven by [`RefreshService`]).
pub struct Refresher {
    upstreams: UpstreamsSource,
    store: Arc<CatalogStore>,
    settings: RefreshSettings,
    reserved: Vec<&'static str>,
    listener: ChangeListener,
    integrity: Option<Arc<Integrity>>,
}

impl Refresher {
    /// A refresher over the backends `upstreams` yields, publishing into `store`; entries
    /// named like one of `reserved` (the gateway's own names) are dropped at merge.
    pub fn new(
        upstreams: UpstreamsSource,
        store: Arc<CatalogStore>,
        settings: RefreshSettings,
        reserved: Vec<&'static str>,
        listener: ChangeListener,
    ) -> Self {
        Refresher {
            upstreams,
            store,
            settings,
            reserved,
            listener,
            integrity: None,
        }
    }

    /// Reviews every fresh discovery against the approved tool definitions before it is
    /// published (quarantined tools never reach the catalog).
    pub fn with_integrity(mut self, integrity: Arc<Integrity>) -> Self {
        self.integrity = Some(integrity);
        self
    }

    /// Discovers every backend that is due, then merges and publishes. Returns when done.
    pub async fn tick(&self) {
        let upstreams = (self.upstreams)();
        let ids: Vec<&str> = upstreams.iter().map(|b| b.id()).collect();
        let membership_changed = self.store.sync_backends(&ids);
        let now = Instant::now();
        let due: Vec<(usize, Option<BackendSnapshot>)> = self.store.with_health(|h| {
            h.iter_mut()
                .enumerate()
                .filter(|(_, b)| b.next_due <= now)
                .map(|(i, b)| {
                    // This discovery sees every change announced so far.
                    b.rediscover = false;
                    (i, b.snapshot.clone())
                })
                .collect()
        });
        if due.is_empty() {
            if membership_changed || (ids.is_empty() && self.store.current().generation == 0) {
                // No backends, or one was removed: the catalog changes at once.
                self.publish_if_changed();
            }
            self.expire_stale(now);
            return;
        }
        let mut results = join_all(due.into_iter().filter_map(|(i, previous)| {
            let backend = upstreams.get(ids.get(i)?)?.clone();
            Some(async move { (i, backend.discover(previous.as_ref()).await) })
        }))
        .await;
        if let Some(integrity) = &self.integrity {
            integrity.ensure_loaded().await;
            for (_, result) in results.iter_mut() {
                if let Discovery::Ok { snapshot, .. } = result {
                    integrity.check(snapshot);
                }
            }
        }
        let now = Instant::now();
        self.store.with_health(|h| {
            for (i, result) in results {
                let Some(b) = h.get_mut(i) else { continue };
                b.attempted = true;
                b.discoveries = b.discoveries.saturating_add(1);
                match result {
                    Discovery::Ok { snapshot, warnings } => {
                        if !b.healthy && b.failures > 0 {
                            info!(backend = %b.id, "backend recovered");
                        }
                        for w in &warnings {
                            warn!(backend = %b.id, "{w}");
                        }
                        b.healthy = true;
                        b.stale = false;
                        b.failures = 0;
                        b.last_ok = Some(now);
                        b.last_error = None;
                        b.warnings = warnings;
                        b.snapshot = Some(snapshot);
                        b.next_due = if std::mem::take(&mut b.rediscover) {
                            now
                        } else {
                            now + jitter(self.settings.interval)
                        };
                    }
                    Discovery::Failed(reason) => {
                        b.failures = b.failures.saturating_add(1);
                        b.discovery_failures = b.discovery_failures.saturating_add(1);
                        let backoff = backoff(b.failures, self.settings.max_backoff)
                            .min(self.settings.interval.max(Duration::from_secs(1)));
                        warn!(backend = %b.id, failures = b.failures, retry_in = ?backoff, "discovery failed: {reason}");
                        b.healthy = false;
                        b.stale = b.snapshot.is_some();
                        b.last_error = Some(reason);
                        b.next_due = now + backoff;
                        b.rediscover = false;
                    }
                }
            }
        });
        self.expire_stale(now);
        if self.publish_if_changed() {
            // The previous catalog and the discovery's intermediate trees are freed by
            // now; hand that memory back (crate::memory).
            crate::memory::release_freed_heap();
        }
        // After publishing: a slow store delays the next tick, never the catalog.
        if let Some(integrity) = &self.integrity {
            integrity.save().await;
        }
    }

    /// Drops snapshots of backends failing for longer than the grace period.
    fn expire_stale(&self, now: Instant) {
        let grace = self.settings.stale_grace;
        let expired = self.store.with_health(|h| {
            let mut any = false;
            for b in h.iter_mut() {
                if b.stale && b.last_ok.is_none_or(|t| now.duration_since(t) > grace) {
                    warn!(backend = %b.id, "stale grace period over: its entries are withdrawn");
                    b.snapshot = None;
                    b.stale = false;
                    any = true;
                }
            }
            any
        });
        if expired {
            self.publish_if_changed();
        }
    }

    /// Merges the snapshots and publishes the result if it differs from the catalog in
    /// force (or none was published yet). Returns whether it published.
    fn publish_if_changed(&self) -> bool {
        let snapshots: Vec<BackendSnapshot> = self
            .store
            .with_health(|h| h.iter().filter_map(|b| b.snapshot.clone()).collect());
        let merged = catalog::merge(&snapshots, &self.reserved);
        let current = self.store.current();
        let change = catalog::diff(&current.merged, &merged);
        if change.is_empty() && current.generation > 0 {
            return false;
        }
        for p in merged.problems() {
            warn!("catalog problem: {p:?}");
        }
        let generation = self.store.publish(merged);
        info!(
            generation,
            tools = self.store.current().merged.tools().len(),
            "catalog published"
        );
        if current.generation > 0 && !change.is_empty() {
            (self.listener)(&change);
        }
        true
    }
}

/// The shortest time between two discoveries woken by a backend marked due.
const MIN_WAKE_SPACING: Duration = Duration::from_millis(100);

/// Drives the [`Refresher`]: a first discovery at once, then a check every 250 ms for
/// backends whose next discovery is due, and at once when one is marked due (a list change
/// it announced).
pub struct RefreshService {
    refresher: Arc<Refresher>,
}

impl RefreshService {
    /// Wraps a refresher.
    pub fn new(refresher: Arc<Refresher>) -> Self {
        RefreshService { refresher }
    }
}

#[async_trait]
impl BackgroundService for RefreshService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_wake = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => self.refresher.tick().await,
                _ = self.refresher.store.marked_due() => {
                    // At once, but never more than 10 times a second (an upstream that
                    // announces list changes in a loop must not keep discovery busy).
                    tokio::time::sleep_until(last_wake + MIN_WAKE_SPACING).await;
                    last_wake = tokio::time::Instant::now();
                    self.refresher.tick().await
                }
            }
        }
    }
}

fn jitter(base: Duration) -> Duration {
    let spread = base.as_secs_f64() * 0.1;
    let delta = rand::thread_rng().gen_range(-spread..=spread);
    Duration::from_secs_f64((base.as_secs_f64() + delta).max(0.1))
}

fn backoff(failures: u32, max: Duration) -> Duration {
    let secs = 1u64
        .checked_shl(failures.saturating_sub(1).min(20))
        .unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, max), Duration::from_secs(1));
        assert_eq!(backoff(2, max), Duration::from_secs(2));
        assert_eq!(backoff(4, max), Duration::from_secs(8));
        assert_eq!(backoff(30, max), max);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(60));
            assert!(j >= Duration::from_secs(54) && j <= Duration::from_secs(66));
        }
    }
}
