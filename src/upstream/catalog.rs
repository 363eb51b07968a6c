//! The live catalog: the merged catalog currently served, its generation, per-backend health,
//! and a cache of serialized list pages per scope set.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use cortex_filters::catalog::{BackendSnapshot, MergedCatalog};

/// The catalog as served at one moment. Replaced wholesale on every change.
#[derive(Debug, Default)]
pub struct CatalogState {
    /// Increases on every published change; part of every view-cache key.
    pub generation: u64,
    /// The merged catalog.
    pub merged: MergedCatalog,
}

/// What the gateway knows about one backend's discovery.
#[derive(Debug, Clone)]
pub struct BackendHealth {
    /// Backend id.
    pub id: String,
    /// Whether any discovery attempt finished yet.
    pub attempted: bool,
    /// Whether the last discovery succeeded.
    pub healthy: bool,
    /// Whether its entries are served from an older successful discovery.
    pub stale: bool,
    /// The last successful discovery.
    pub last_ok: Option<Instant>,
    /// Consecutive failures (drives the backoff).
    pub failures: u32,
    /// The next discovery is due at.
    pub next_due: Instant,
    /// The last error, for operators.
    pub last_error: Option<String>,
    /// Entries skipped or repaired in the last discovery.
    pub warnings: Vec<String>,
    /// Discoveries attempted (metrics).
    pub discoveries: u64,
    /// Discoveries failed (metrics).
    pub discovery_failures: u64,
    /// The last good snapshot.
    pub snapshot: Option<BackendSnapshot>,
    /// The backend said its catalog changed while a discovery of it was running: discover it
    /// again as soon as that one ends (the change may have come after the server answered).
    pub rediscover: bool,
}

impl BackendHealth {
    /// A backend not yet discovered, due now.
    pub fn new(id: &str) -> Self {
        BackendHealth {
            id: id.to_string(),
            attempted: false,
            healthy: false,
            stale: false,
            last_ok: None,
            failures: 0,
            next_due: Instant::now(),
            last_error: None,
            warnings: Vec::new(),
            discoveries: 0,
            discovery_failures: 0,
            snapshot: None,
            rediscover: false,
        }
    }

    /// Number of tools currently served for it.
    pub fn tool_count(&self) -> usize {
        self.snapshot.as_ref().map_or(0, |s| s.tools.len())
    }
}

/// Kinds of list results kept in the view cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// tools/list
    Tools,
    /// prompts/list
    Prompts,
    /// resources/list
    Resources,
    /// resources/templates/list
    Templates,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ViewKey {
    generation: u64,
    kind: ListKind,
    variant: u64,
    scope_key: Arc<str>,
    cursor: Option<Box<str>>,
}

/// One serialized list page and how many entries it holds (so the audit trail can record
/// the count without keeping or re-parsing the page).
///
/// The page is kept with the `}` that closes the JSON-RPC answer around it: an answer from
/// the cache is then the request's own short head (`{"jsonrpc":"2.0","id":…,"result":`)
/// followed by these shared bytes, written as they are (no copy, no re-serialization).
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The serialized `result` object, then `}`.
    end: Bytes,
    /// Entries on the page.
    pub entries: u32,
}

impl ListPage {
    /// A page of `entries` entries whose `result` object `write` serializes.
    pub fn new(entries: u32, write: impl FnOnce(&mut Vec<u8>)) -> ListPage {
        let mut out = Vec::with_capacity(1024);
        write(&mut out);
        out.push(b'}');
        // Cached pages are large and many: keep no spare capacity (a realloc once, when
        // the page is built).
        out.shrink_to_fit();
        ListPage {
            end: Bytes::from(out),
            entries,
        }
    }

    /// The serialized `result` object (shares the page's bytes).
    pub fn result(&self) -> Bytes {
        self.end.slice(..self.end.len().saturating_sub(1))
    }

    /// What every answer from this page ends with: the `result` object and the envelope's
    /// closing brace (shares the page's bytes).
    pub fn answer_end(&self) -> Bytes {
        self.end.clone()
    }

    /// Bytes held by the page.
    pub fn len(&self) -> usize {
        self.end.len()
    }

    /// Whether the page holds no bytes (never, once built).
    pub fn is_empty(&self) -> bool {
        self.end.is_empty()
    }
}

/// The live catalog shared by the proxy and the refresher.
pub struct CatalogStore {
    current: RwLock<Arc<CatalogState>>,
    health: Mutex<Vec<BackendHealth>>,
    views: moka::sync::Cache<ViewKey, ListPage>,
    page_hits: std::sync::atomic::AtomicU64,
    page_misses: std::sync::atomic::AtomicU64,
    /// Wakes the refresh loop when a backend is marked due (a list change it announced is
    /// then discovered at once, not at the next tick).
    due: tokio::sync::Notify,
}

impl CatalogStore {
    /// An empty catalog for the given backend ids (in configuration order).
    pub fn new(backend_ids: &[String]) -> Self {
        CatalogStore {
            current: RwLock::new(Arc::new(CatalogState::default())),
            health: Mutex::new(
                backend_ids
                    .iter()
                    .map(|id| BackendHealth::new(id))
                    .collect(),
            ),
            views: moka::sync::Cache::builder()
                .max_capacity(64 * 1024 * 1024)
                .weigher(|k: &ViewKey, v: &ListPage| {
                    (v.len() + k.scope_key.len() + 64).min(u32::MAX as usize) as u32
                })
                .build(),
            due: tokio::sync::Notify::new(),
            page_hits: Default::default(),
            page_misses: Default::default(),
        }
    }

    /// List pages served from the cache and built, since start (metrics).
    pub fn page_cache_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.page_hits.load(Relaxed), self.page_misses.load(Relaxed))
    }

    /// Has backend `id` discovered again at the next refresher tick (admin refresh, an
    /// approval). `false` when no such backend.
    pub fn refresh_now(&self, id: &str) -> bool {
        self.with_health(|h| match h.iter_mut().find(|b| b.id == id) {
            Some(b) => {
                b.next_due = Instant::now();
                true
            }
            None => false,
        })
    }

    /// The catalog currently served.
    pub fn current(&self) -> Arc<CatalogState> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Publishes a new merged catalog; returns its generation.
    pub fn publish(&self, merged: MergedCatalog) -> u64 {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let generation = guard.generation + 1;
        *guard = Arc::new(CatalogState { generation, merged });
        drop(guard);
        // Old generations can never be hit again; free them now rather than by eviction.
        self.views.invalidate_all();
        generation
    }

    /// Drops every cached list page (after a configuration reload: the pages were built
    /// under the previous presentation settings).
    pub fn forget_views(&self) {
        self.views.invalidate_all();
    }

    /// A snapshot of every backend's health.
    pub fn health(&self) -> Vec<BackendHealth> {
        match self.health.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Runs `f` on the health table.
    pub fn with_health<R>(&self, f: impl FnOnce(&mut Vec<BackendHealth>) -> R) -> R {
        let mut g = match self.health.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }

    /// Makes backend `id` due for discovery now (a native server said its lists changed);
    /// the refresher picks it up at its next tick.
    pub fn mark_due(&self, id: &str) {
        let now = std::time::Instant::now();
        self.with_health(|h| {
            if let Some(b) = h.iter_mut().find(|b| b.id == id) {
                b.next_due = now;
                b.rediscover = true;
            }
        });
        self.due.notify_one();
    }

    /// Resolves when a backend was marked due since the last call ([`Self::mark_due`]).
    pub async fn marked_due(&self) {
        self.due.notified().await
    }

    /// Makes the health table follow `ids` (the current backends, in configuration order):
    /// new ids get a fresh entry due now, removed ids leave with their snapshot. Returns
    /// whether anything changed.
    pub fn sync_backends(&self, ids: &[&str]) -> bool {
        self.with_health(|h| {
            if h.len() == ids.len() && h.iter().zip(ids).all(|(b, id)| b.id == *id) {
                return false;
            }
            let mut old: Vec<BackendHealth> = std::mem::take(h);
            for id in ids {
                match old.iter().position(|b| b.id == *id) {
                    Some(i) => h.push(old.swap_remove(i)),
                    None => h.push(BackendHealth::new(id)),
                }
            }
            true
        })
    }

    /// Whether every backend had at least one discovery attempt and the catalog that came
    /// out of it is published (so a ready gateway never lists an empty catalog by mistake).
    pub fn ready(&self) -> bool {
        self.with_health(|h| h.iter().all(|b| b.attempted)) && self.current().generation > 0
    }

    /// A cached serialized list page, or builds and caches it. `variant` distinguishes
    /// presentations of the same list (e.g. a compact mode or a backend filter).
    pub fn view(
        &self,
        generation: u64,
        kind: ListKind,
        variant: u64,
        scope_key: &str,
        cursor: Option<&str>,
        build: impl FnOnce() -> Result<ListPage, cortex_filters::catalog::BadCursor>,
    ) -> Result<ListPage, cortex_filters::catalog::BadCursor> {
        let key = ViewKey {
            generation,
            kind,
            variant,
            scope_key: Arc::from(scope_key),
            cursor: cursor.map(Box::from),
        };
        if let Some(hit) = self.views.get(&key) {
            self.page_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(hit);
        }
        self.page_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let built = build()?;
        self.views.insert(key, built.clone());
        Ok(built)
    }
}
