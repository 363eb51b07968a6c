//! Catalog discovery: asks every backend for its catalog at boot and then periodically (with
//! jitter and per-backend exponential backoff on failure), keeps the last good snapshot of a
//! failing backend for the stale grace period, merges, and publishes confirmed changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cortex_filters::catalog::{self, BackendSnapshot, CatalogDiff};
use cortex_filters::contract;
use cortex_filters::contract::DiscoveryReply as Optional;
use futures::future::join_all;
use rand::Rng;
use serde_json::Value;
use tracing::{info, warn};

use super::backend::Backend;
use super::client::ContractClient;
use super::store::CatalogStore;

/// Called with every published change (sends list_changed notifications).
pub type ChangeListener = Arc<dyn Fn(&CatalogDiff) + Send + Sync>;

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

/// The discovery engine (driven by a background service).
pub struct Refresher {
    backends: Vec<Arc<Backend>>,
    client: Arc<ContractClient>,
    store: Arc<CatalogStore>,
    settings: RefreshSettings,
    reserved: Vec<&'static str>,
    listener: ChangeListener,
}

/// Outcome of one backend's discovery.
enum Discovery {
    Ok {
        snapshot: BackendSnapshot,
        warnings: Vec<String>,
    },
    Failed(String),
}

impl Refresher {
    /// A refresher over `backends`, publishing into `store`.
    pub fn new(
        backends: Vec<Arc<Backend>>,
        client: Arc<ContractClient>,
        store: Arc<CatalogStore>,
        settings: RefreshSettings,
        reserved: Vec<&'static str>,
        listener: ChangeListener,
    ) -> Self {
        Refresher {
            backends,
            client,
            store,
            settings,
            reserved,
            listener,
        }
    }

    /// Discovers every backend that is due, then merges and publishes. Returns when done.
    pub async fn tick(&self) {
        let now = Instant::now();
        let due: Vec<usize> = self.store.with_health(|h| {
            h.iter()
                .enumerate()
                .filter(|(_, b)| b.next_due <= now)
                .map(|(i, _)| i)
                .collect()
        });
        if due.is_empty() {
            if self.backends.is_empty() && self.store.current().generation == 0 {
                // No backends: the (empty) catalog is complete at once.
                self.publish_if_changed();
            }
            self.expire_stale(now);
            return;
        }
        let results = join_all(due.iter().map(|&i| {
            let backend = self.backends[i].clone();
            let previous = self.store.with_health(|h| h[i].snapshot.clone());
            async move { (i, self.discover(&backend, previous).await) }
        }))
        .await;
        let now = Instant::now();
        self.store.with_health(|h| {
            for (i, result) in results {
                let b = &mut h[i];
                b.attempted = true;
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
                        b.next_due = now + jitter(self.settings.interval);
                    }
                    Discovery::Failed(reason) => {
                        b.failures = b.failures.saturating_add(1);
                        let backoff = backoff(b.failures, self.settings.max_backoff)
                            .min(self.settings.interval.max(Duration::from_secs(1)));
                        warn!(backend = %b.id, failures = b.failures, retry_in = ?backoff, "discovery failed: {reason}");
                        b.healthy = false;
                        b.stale = b.snapshot.is_some();
                        b.last_error = Some(reason);
                        b.next_due = now + backoff;
                    }
                }
            }
        });
        self.expire_stale(now);
        self.publish_if_changed();
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

    fn publish_if_changed(&self) {
        let snapshots: Vec<BackendSnapshot> = self
            .store
            .with_health(|h| h.iter().filter_map(|b| b.snapshot.clone()).collect());
        let merged = catalog::merge(&snapshots, &self.reserved);
        let current = self.store.current();
        let change = catalog::diff(&current.merged, &merged);
        if change.is_empty() && current.generation > 0 {
            return;
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
    }

    async fn discover(&self, backend: &Backend, previous: Option<BackendSnapshot>) -> Discovery {
        if let Err(e) = backend.resolve().await {
            return Discovery::Failed(e.to_string());
        }
        let tools = match self.call(backend, "list_tools").await {
            Ok(v) => v,
            Err(e) => return Discovery::Failed(format!("list_tools: {e}")),
        };
        let mut warnings = Vec::new();
        let tools = match contract::parse_list_tools(&tools) {
            Ok(p) => {
                warnings.extend(p.warnings.into_iter().map(|w| format!("list_tools: {w}")));
                p.items
            }
            Err(e) => return Discovery::Failed(format!("list_tools: {e}")),
        };
        let (prompts, templates, resources) = futures::join!(
            self.optional(backend, "list_prompts"),
            self.optional(backend, "list_resource_templates"),
            self.optional(backend, "list_resources"),
        );
        let prev = previous.as_ref();
        let prompts = optional_items(
            prompts,
            contract::parse_list_prompts,
            prev.map(|p| p.prompts.clone()),
            "list_prompts",
            &mut warnings,
        );
        let templates = optional_items(
            templates,
            contract::parse_list_resource_templates,
            prev.map(|p| p.templates.clone()),
            "list_resource_templates",
            &mut warnings,
        );
        let resources = optional_items(
            resources,
            contract::parse_list_resources,
            prev.map(|p| p.resources.clone()),
            "list_resources",
            &mut warnings,
        );
        Discovery::Ok {
            snapshot: BackendSnapshot {
                backend_id: backend.id.clone(),
                naming: backend.naming,
                tools,
                prompts,
                templates,
                resources,
            },
            warnings,
        }
    }

    /// A discovery method that must succeed.
    async fn call(&self, backend: &Backend, method: &str) -> Result<Value, String> {
        match self.optional(backend, method).await {
            Optional::Value(v) => Ok(v),
            Optional::NotOffered(why) | Optional::Failed(why) => Err(why),
        }
    }

    /// A discovery method a backend may not offer (4xx = not offered).
    async fn optional(&self, backend: &Backend, method: &str) -> Optional {
        let body = Bytes::from(contract::request_body(method, None));
        let mut headers = Vec::with_capacity(1);
        if let Some(t) = &backend.technical_token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        match self.client.post(backend, body, &headers).await {
            Ok(reply) => contract::classify_discovery_reply(reply.as_reply()),
            Err(f) => Optional::Failed(contract::describe_transport_failure(&f)),
        }
    }
}

fn optional_items<T>(
    got: Optional,
    parse: fn(&Value) -> Result<contract::Parsed<T>, contract::ContractError>,
    previous: Option<Vec<T>>,
    method: &str,
    warnings: &mut Vec<String>,
) -> Vec<T> {
    match got {
        Optional::Value(v) => match parse(&v) {
            Ok(p) => {
                warnings.extend(p.warnings.into_iter().map(|w| format!("{method}: {w}")));
                p.items
            }
            Err(e) => {
                warnings.push(format!("{method}: {e}"));
                previous.unwrap_or_default()
            }
        },
        Optional::NotOffered(_) => Vec::new(),
        Optional::Failed(why) => {
            // A transient failure of an optional list must not withdraw its entries.
            warnings.push(format!("{method}: {why} (keeping the previous entries)"));
            previous.unwrap_or_default()
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
