//! Tool-definition pinning on the live catalog (the decisions are
//! `cortex_filters::pinning`): every successful discovery of a backend is reviewed against
//! its approved baseline before the catalog is published.
//!
//! - `off`: nothing is reviewed.
//! - `warn`: changes are logged, counted (metrics), handed to the change listener (the audit
//!   trail) and served; the catalog change itself sends `list_changed`; the baseline follows.
//! - `block`: a changed or new tool is quarantined: removed from the backend's snapshot, so
//!   it is neither listed nor callable, until an admin approves it
//!   ([`Integrity::approve`]), after which the backend is rediscovered.
//!
//! Baselines persist per backend in the store ([`PinStore`]), or, when
//! `integrity.baseline_file` is set, in that file (verified at start, rewritten and signed on
//! every change when the private key is configured). A file that fails verification stops the
//! start ([`Integrity::from_config`] returns the error, `preflight` reports it first).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cortex_filters::catalog::BackendSnapshot;
use cortex_filters::pinning::{
    self, ApprovalRequest, Approved, BackendReview, Baseline, BaselineKeys, IntegrityReport, Mode,
    ObservedTool, PinningError, ToolStatus,
};
use serde_json::{Map, Value};
use tracing::{error, info, warn};

use crate::config::{IntegrityConfig, IntegrityMode};
use crate::store::{PinStore, StoredPins};

/// Why pinning cannot start.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    /// The keys or the baseline file are unusable.
    #[error("integrity: {0}")]
    Pinning(#[from] PinningError),
    /// The baseline file cannot be read.
    #[error("integrity.baseline_file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// Longest wait for the stored pins at each attempt.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters of reviews (exported as metrics).
#[derive(Debug, Default)]
pub struct IntegrityStats {
    /// Tools found changed since their pin.
    pub changed: AtomicU64,
    /// Tools found that were never pinned (first sight excluded).
    pub new: AtomicU64,
    /// Pinned tools no longer listed.
    pub removed: AtomicU64,
    /// Approvals made through the admin API.
    pub approvals: AtomicU64,
    /// Baseline writes that failed.
    pub save_failures: AtomicU64,
}

/// Called with every review that found changes (the audit trail records it).
pub type ReviewListener = Arc<dyn Fn(&BackendReview) + Send + Sync>;

struct Inner {
    baseline: Baseline,
    reviews: BTreeMap<String, BackendReview>,
    observed: BTreeMap<String, Vec<ObservedTool>>,
    /// Backends whose pins changed since the last save.
    dirty: Vec<String>,
    /// The tools quarantined now, by exposed name: (backend, required scope). A call of one
    /// is told it awaits approval instead of "Unknown tool".
    held: BTreeMap<String, (String, Option<String>)>,
}

/// Where baselines persist.
enum Persist {
    None,
    File(PathBuf),
    Store(Arc<dyn PinStore>),
}

/// Pinning for one gateway process.
pub struct Integrity {
    /// The modes and the first-sight rule: live, a configuration reload replaces them
    /// ([`Integrity::set_modes`]).
    modes: Mutex<Modes>,
    keys: BaselineKeys,
    persist: Persist,
    inner: Mutex<Inner>,
    listener: Mutex<Option<ReviewListener>>,
    /// The stored pins were read (always true without a store).
    loaded: AtomicBool,
    /// What reviews found.
    pub stats: IntegrityStats,
}

/// What a reload may change of pinning: the global mode, the modes per backend, and whether a
/// backend never seen before is pinned as it is.
#[derive(Debug, Clone, PartialEq)]
struct Modes {
    default: IntegrityMode,
    backends: BTreeMap<String, IntegrityMode>,
    pin_first_sight: bool,
}

impl Modes {
    fn of(cfg: &IntegrityConfig) -> Modes {
        Modes {
            default: cfg.mode,
            backends: cfg.backends.clone(),
            pin_first_sight: cfg.pin_first_sight,
        }
    }
}

fn mode(m: IntegrityMode) -> Mode {
    match m {
        IntegrityMode::Off => Mode::Off,
        IntegrityMode::Warn => Mode::Warn,
        IntegrityMode::Block => Mode::Block,
    }
}

/// Reads and verifies the baseline file of `cfg` (absent file: an empty baseline, written on
/// the first change). Used at start and by `check-config`.
pub fn read_baseline_file(cfg: &IntegrityConfig) -> Result<Option<Baseline>, IntegrityError> {
    let keys = BaselineKeys::from_env(cfg.private_key.as_deref(), cfg.public_key.as_deref())?;
    let Some(path) = cfg.baseline_file.as_deref() else {
        return Ok(None);
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let loaded = pinning::load(&text, keys.verifier().as_ref())?;
            Ok(Some(loaded.baseline))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(Baseline::default())),
        Err(e) => Err(IntegrityError::File {
            path: path.to_owned(),
            message: e.to_string(),
        }),
    }
}

impl Integrity {
    /// Pinning as configured; the baseline file (if any) is read and verified now, the
    /// store's pins by [`Integrity::load`].
    pub fn from_config(
        cfg: &IntegrityConfig,
        store: Option<Arc<dyn PinStore>>,
    ) -> Result<Integrity, IntegrityError> {
        let keys = BaselineKeys::from_env(cfg.private_key.as_deref(), cfg.public_key.as_deref())?;
        let from_file = read_baseline_file(cfg)?;
        let persist = match (&cfg.baseline_file, store) {
            (Some(path), _) => Persist::File(PathBuf::from(path)),
            (None, Some(store)) => Persist::Store(store),
            (None, None) => Persist::None,
        };
        Ok(Integrity {
            modes: Mutex::new(Modes::of(cfg)),
            keys,
            inner: Mutex::new(Inner {
                baseline: from_file.unwrap_or_default(),
                reviews: BTreeMap::new(),
                observed: BTreeMap::new(),
                dirty: Vec::new(),
                held: BTreeMap::new(),
            }),
            listener: Mutex::new(None),
            loaded: AtomicBool::new(!matches!(persist, Persist::Store(_))),
            persist,
            stats: IntegrityStats::default(),
        })
    }

    /// Sets who hears about reviews with changes.
    pub fn set_listener(&self, listener: ReviewListener) {
        *lock(&self.listener) = Some(listener);
    }

    /// Reads the pins kept in the store, until it succeeds (the refresher calls it before
    /// each review; once read, it returns at once). Each attempt is bounded by
    /// [`LOAD_TIMEOUT`]. Until the pins are read, reviews pin nothing and save nothing: a
    /// backend is not trusted on first sight (its tools are new: served with a warning in
    /// `warn` mode, quarantined in `block` mode), so a slow or down store can never replace
    /// the approvals it holds.
    pub async fn ensure_loaded(&self) {
        if self.loaded.load(Ordering::Acquire) {
            return;
        }
        let Persist::Store(store) = &self.persist else {
            return;
        };
        let rows = match tokio::time::timeout(LOAD_TIMEOUT, store.load_pins()).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                error!("integrity: cannot read the stored baseline (retrying at the next refresh): {e}");
                return;
            }
            Err(_) => {
                error!("integrity: the store did not answer within {LOAD_TIMEOUT:?} (retrying at the next refresh)");
                return;
            }
        };
        match baseline_of_rows(&rows) {
            Ok(b) => {
                info!(
                    pinned = b.pinned_count(),
                    "integrity: baseline read from the store"
                );
                lock(&self.inner).baseline = b;
                self.loaded.store(true, Ordering::Release);
            }
            Err(e) => error!("integrity: the stored baseline is unreadable: {e}"),
        }
    }

    fn mode_of(&self, backend: &str) -> IntegrityMode {
        let modes = lock(&self.modes);
        modes
            .backends
            .get(backend)
            .copied()
            .unwrap_or(modes.default)
    }

    /// Puts the modes of `cfg` in force (a configuration reload); the baseline file and keys
    /// stay as they were read at start. Returns whether anything changed, so that the caller
    /// reviews every backend again under the new modes.
    pub fn set_modes(&self, cfg: &IntegrityConfig) -> bool {
        let new = Modes::of(cfg);
        let mut modes = lock(&self.modes);
        if *modes == new {
            return false;
        }
        *modes = new;
        true
    }

    /// Reviews a backend's fresh snapshot: quarantined tools are removed from it (block
    /// mode), the baseline moves as the mode wants, changes are reported.
    pub fn check(&self, snapshot: &mut BackendSnapshot) {
        let m = mode(self.mode_of(&snapshot.backend_id));
        if m == Mode::Off {
            lock(&self.inner)
                .held
                .retain(|_, (backend, _)| *backend != snapshot.backend_id);
            return;
        }
        let observed: Vec<ObservedTool> = snapshot
            .tools
            .iter()
            .map(|t| ObservedTool::new(t, None))
            .collect();
        let at = crate::clock::iso8601_ms(crate::clock::now_ms());
        let review = {
            let mut inner = lock(&self.inner);
            let loaded = self.loaded.load(Ordering::Acquire);
            let review = pinning::review(
                &inner.baseline,
                &snapshot.backend_id,
                &observed,
                m,
                lock(&self.modes).pin_first_sight && loaded,
            );
            if loaded
                && inner.baseline.apply(&review, &observed, &at)
                && !inner.dirty.contains(&snapshot.backend_id)
            {
                inner.dirty.push(snapshot.backend_id.clone());
            }
            inner.observed.insert(snapshot.backend_id.clone(), observed);
            inner
                .reviews
                .insert(snapshot.backend_id.clone(), review.clone());
            review
        };
        let quarantined: Vec<&str> = review.quarantined().collect();
        {
            let mut inner = lock(&self.inner);
            inner
                .held
                .retain(|_, (backend, _)| *backend != snapshot.backend_id);
            for t in snapshot
                .tools
                .iter()
                .filter(|t| quarantined.contains(&t.name.as_str()))
            {
                if let Some(exposed) = cortex_filters::naming::exposed_name(
                    &snapshot.backend_id,
                    &t.name,
                    snapshot.naming,
                ) {
                    inner
                        .held
                        .insert(exposed, (snapshot.backend_id.clone(), t.scope.clone()));
                }
            }
        }
        if !quarantined.is_empty() {
            snapshot
                .tools
                .retain(|t| !quarantined.contains(&t.name.as_str()));
        }
        if review.has_changes() && !review.first_sight {
            for t in review
                .tools
                .iter()
                .filter(|t| t.status != ToolStatus::Unchanged)
            {
                let counter = match t.status {
                    ToolStatus::Changed => &self.stats.changed,
                    ToolStatus::New => &self.stats.new,
                    _ => &self.stats.removed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                warn!(
                    backend = %review.backend,
                    tool = %t.tool,
                    status = ?t.status,
                    verdict = ?t.verdict,
                    changed_fields = ?t.changed_fields,
                    "integrity: tool definition differs from its approved pin"
                );
            }
            let listener = lock(&self.listener).clone();
            if let Some(l) = listener {
                l(&review);
            }
        }
    }

    /// Writes the pins changed since the last save (after a refresh or an approval).
    pub async fn save(&self) {
        if !self.loaded.load(Ordering::Acquire) {
            return;
        }
        let (dirty, baseline) = {
            let mut inner = lock(&self.inner);
            if inner.dirty.is_empty() {
                return;
            }
            (std::mem::take(&mut inner.dirty), inner.baseline.clone())
        };
        let result = match &self.persist {
            Persist::None => Ok(()),
            Persist::Store(store) => {
                match tokio::time::timeout(
                    LOAD_TIMEOUT,
                    store.save_pins(rows_of(&baseline, &dirty)),
                )
                .await
                {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("the store did not answer within {LOAD_TIMEOUT:?}")),
                }
            }
            Persist::File(path) => self.write_file(path, &baseline),
        };
        if let Err(e) = result {
            self.stats.save_failures.fetch_add(1, Ordering::Relaxed);
            error!("integrity: the baseline could not be saved: {e}");
            let mut inner = lock(&self.inner);
            for b in dirty {
                if !inner.dirty.contains(&b) {
                    inner.dirty.push(b);
                }
            }
        }
    }

    fn write_file(&self, path: &std::path::Path, baseline: &Baseline) -> Result<(), String> {
        let mut doc = baseline.to_json();
        if let Some(signer) = self.keys.signer() {
            let at = crate::clock::iso8601_ms(crate::clock::now_ms());
            pinning::sign_document(&mut doc, signer, &at, self.keys.signing(), None)
                .map_err(|e| e.to_string())?;
        } else if self.keys.verifier().is_some() {
            return Err(
                "only the public key is configured: approvals hold until a restart; export the baseline and sign it offline"
                    .into(),
            );
        }
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    }

    /// `GET /admin/integrity`.
    pub fn report(&self) -> IntegrityReport {
        let inner = lock(&self.inner);
        pinning::report(
            mode(lock(&self.modes).default),
            self.keys.signing(),
            &inner.baseline,
            inner.reviews.values().cloned().collect(),
        )
    }

    /// The baseline as a file (format version 2), signed when the private key is configured
    /// (`GET /admin/integrity/baseline`; sign it offline otherwise).
    pub fn export(&self) -> Result<Value, PinningError> {
        let mut doc = lock(&self.inner).baseline.to_json();
        if let Some(signer) = self.keys.signer() {
            let at = crate::clock::iso8601_ms(crate::clock::now_ms());
            pinning::sign_document(&mut doc, signer, &at, self.keys.signing(), None)?;
        }
        Ok(doc)
    }

    /// The backend and required scope of the tool exposed as `name`, when it is quarantined
    /// now (asked only for a tools/call of a name the catalog does not have).
    pub fn quarantined_tool(&self, name: &str) -> Option<(String, Option<String>)> {
        lock(&self.inner).held.get(name).cloned()
    }

    /// Tools quarantined now, per backend (for metrics).
    pub fn quarantined(&self) -> Vec<(String, usize)> {
        lock(&self.inner)
            .reviews
            .values()
            .map(|r| (r.backend.clone(), r.quarantined().count()))
            .collect()
    }

    /// `POST /admin/integrity/approve`: pins one tool, or a whole backend, as last listed.
    /// The caller then has the backend rediscovered so the catalog follows.
    pub async fn approve(&self, req: &ApprovalRequest) -> Result<Value, PinningError> {
        self.ensure_loaded().await;
        let at = crate::clock::iso8601_ms(crate::clock::now_ms());
        let outcome = {
            let mut inner = lock(&self.inner);
            let observed = inner
                .observed
                .get(&req.backend)
                .cloned()
                .unwrap_or_default();
            let outcome = match &req.tool {
                Some(tool) => {
                    let r = inner
                        .baseline
                        .approve_tool(&req.backend, tool, &observed, &at)?;
                    serde_json::json!({"backend": req.backend, "tool": tool, "approved": r})
                }
                None => {
                    if !inner.observed.contains_key(&req.backend)
                        && !inner.baseline.backends.contains_key(&req.backend)
                    {
                        return Err(PinningError::UnknownTool {
                            backend: req.backend.clone(),
                            tool: "*".into(),
                        });
                    }
                    inner.baseline.approve_backend(&req.backend, &observed, &at);
                    serde_json::json!({"backend": req.backend, "approved": Approved::Pinned, "tools": observed.len()})
                }
            };
            if !inner.dirty.contains(&req.backend) {
                inner.dirty.push(req.backend.clone());
            }
            outcome
        };
        self.stats.approvals.fetch_add(1, Ordering::Relaxed);
        self.save().await;
        Ok(outcome)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The stored rows of `backends` (their pins as in a version-2 file's `tools.<backend>`).
fn rows_of(baseline: &Baseline, backends: &[String]) -> Vec<StoredPins> {
    let doc = baseline.to_json();
    backends
        .iter()
        .map(|b| StoredPins {
            backend: b.clone(),
            pins: doc
                .get("tools")
                .and_then(|t| t.get(b))
                .map_or_else(|| "{}".to_owned(), Value::to_string),
            saved_at: baseline.saved_at.clone(),
        })
        .collect()
}

/// The baseline the stored rows make.
fn baseline_of_rows(rows: &[StoredPins]) -> Result<Baseline, PinningError> {
    let mut tools = Map::new();
    let mut saved_at = String::new();
    for r in rows {
        let pins: Value = serde_json::from_str(&r.pins)
            .map_err(|e| PinningError::Json(format!("pins of {}: {e}", r.backend)))?;
        tools.insert(r.backend.clone(), pins);
        if r.saved_at > saved_at {
            saved_at = r.saved_at.clone();
        }
    }
    Baseline::from_json(&serde_json::json!({
        "version": pinning::FORMAT_VERSION,
        "savedAt": saved_at,
        "tools": tools,
        "quarantine": {},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cortex_filters::catalog::ToolDef;
    use cortex_filters::naming::NamingMode;

    fn tool(name: &str, description: &str) -> ToolDef {
        ToolDef {
            name: name.into(),
            title: None,
            description: description.into(),
            scope: None,
            input_schema: serde_json::json!({"type": "object"}),
            output_schema: None,
            annotations: None,
            version: "1.0.0".into(),
            deprecated: None,
        }
    }

    fn snapshot(tools: Vec<ToolDef>) -> BackendSnapshot {
        BackendSnapshot {
            backend_id: "crm".into(),
            naming: NamingMode::default(),
            tools,
            prompts: vec![],
            templates: vec![],
            resources: vec![],
        }
    }

    #[tokio::test]
    async fn block_mode_quarantines_a_changed_tool_until_approved() {
        let cfg = IntegrityConfig {
            mode: IntegrityMode::Block,
            ..IntegrityConfig::default()
        };
        let integrity = Integrity::from_config(&cfg, None).unwrap();
        let mut first = snapshot(vec![tool("a", "reads"), tool("b", "writes")]);
        integrity.check(&mut first);
        assert_eq!(first.tools.len(), 2, "first sight pins and serves");
        let mut changed = snapshot(vec![
            tool("a", "reads AND exfiltrates"),
            tool("b", "writes"),
        ]);
        integrity.check(&mut changed);
        assert_eq!(
            changed
                .tools
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(integrity.stats.changed.load(Ordering::Relaxed), 1);
        assert_eq!(integrity.report().quarantined_tools, 1);
        integrity
            .approve(&ApprovalRequest {
                backend: "crm".into(),
                tool: Some("a".into()),
            })
            .await
            .unwrap();
        let mut again = snapshot(vec![
            tool("a", "reads AND exfiltrates"),
            tool("b", "writes"),
        ]);
        integrity.check(&mut again);
        assert_eq!(again.tools.len(), 2);
    }

    /// A store that is down.
    struct DownStore;

    #[async_trait::async_trait]
    impl crate::store::StoreBase for DownStore {
        fn kind(&self) -> crate::store::StoreKind {
            crate::store::StoreKind::Postgres("down".into())
        }
        async fn ping(&self) -> Result<(), crate::store::StoreError> {
            Err(crate::store::StoreError::Unavailable("down".into()))
        }
        async fn schema_version(&self) -> Result<i64, crate::store::StoreError> {
            Err(crate::store::StoreError::Unavailable("down".into()))
        }
    }

    #[async_trait::async_trait]
    impl PinStore for DownStore {
        async fn load_pins(&self) -> Result<Vec<StoredPins>, crate::store::StoreError> {
            Err(crate::store::StoreError::Unavailable("down".into()))
        }
        async fn save_pins(&self, _: Vec<StoredPins>) -> Result<(), crate::store::StoreError> {
            panic!("nothing is saved before the stored pins are read");
        }
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_read_never_trusts_on_first_sight() {
        let cfg = IntegrityConfig {
            mode: IntegrityMode::Block,
            ..IntegrityConfig::default()
        };
        let integrity = Integrity::from_config(&cfg, Some(Arc::new(DownStore))).unwrap();
        integrity.ensure_loaded().await;
        let mut snap = snapshot(vec![tool("a", "reads")]);
        integrity.check(&mut snap);
        assert!(snap.tools.is_empty(), "unapproved tools stay quarantined");
        integrity.save().await;
        assert_eq!(lock(&integrity.inner).baseline.pinned_count(), 0);
    }

    #[test]
    fn stored_rows_round_trip() {
        let cfg = IntegrityConfig::default();
        let integrity = Integrity::from_config(&cfg, None).unwrap();
        integrity.check(&mut snapshot(vec![tool("a", "reads")]));
        let baseline = lock(&integrity.inner).baseline.clone();
        let rows = rows_of(&baseline, &["crm".to_owned()]);
        assert_eq!(baseline_of_rows(&rows).unwrap(), baseline);
    }
}
