//! Prometheus metrics (the `prometheus` crate), served on a listener of their own
//! (`metrics.listen`, [`server`]).
//!
//! Two kinds of source, so the request path pays almost nothing:
//! - **The request record.** At the end of every request the closed [`ClosedRecord`] is
//!   observed once ([`Metrics::observe`]): requests by method and outcome, latency per
//!   method, tool calls by backend, tool and outcome, backend call latency. Nothing is
//!   decided again here: the outcome is what the record says (its refusal and stage, the
//!   JSON-RPC outcome, the backend call's result). Per-method counters and histograms are
//!   resolved once and kept in fixed tables ([`MethodTable`]), so observing a request takes
//!   no lock and allocates nothing; only the per-backend and per-tool series go through the
//!   crate's label map (a read lock).
//! - **State read at scrape time** ([`Sources`]): backend health, staleness, catalog age and
//!   sizes, discovery runs, open sessions, page-cache hits, audit queue and drops, rate-limit
//!   and pinning counters. Those parts keep plain atomics; [`Metrics::render`] copies them
//!   into the registry just before encoding.
//!
//! Labels are bounded: methods are a fixed list (anything else is `other`), outcomes a
//! fixed list, backends are the configured ones, tools the catalog's (a call of a name the
//! catalog does not have is counted under `tool="unknown"`). No subject, token or free text
//! is ever a label.
//!
//! Other parts of the gateway export their own counters by handing a collector to
//! [`Metrics::register_collector`] (the edge counters are meant to plug in there).

pub mod mirrored;
pub mod owners;
pub mod server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::audit::AuditSink;
use crate::integrity::Integrity;
use crate::limits::Limiter;
use crate::record::{ClosedRecord, Stage, Target};
use crate::sessions::SessionManager;
use crate::upstream::CatalogStore;

/// The prefix of every metric of the gateway.
pub const PREFIX: &str = "cortex_gateway_";

/// Methods counted under their own name (anything else is `other`; no method: `none`).
pub const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
    "notifications/initialized",
    "notifications/cancelled",
    "batch",
    "admin",
    "other",
    "none",
];

/// Request outcomes: `ok`, `error` (a JSON-RPC error answered), or the refusal's stage.
pub const OUTCOMES: &[&str] = &[
    "ok",
    "error",
    "host",
    "origin",
    "auth",
    "auth_unavailable",
    "http_method",
    "body",
    "parse",
    "version",
    "session",
    "batch",
    "scope",
    "rate_limit",
    "quarantined",
];

/// Latency buckets in seconds: 0.5 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn method_index(method: Option<&str>) -> usize {
    let Some(m) = method else {
        return METHODS.len() - 1;
    };
    if m.starts_with("admin/") {
        return METHODS.len() - 3;
    }
    METHODS
        .iter()
        .position(|k| *k == m)
        .unwrap_or(METHODS.len() - 2)
}

fn outcome_index(r: &ClosedRecord) -> usize {
    let name = match r.refusal() {
        Some((stage, _)) => stage.as_str(),
        None => match r.rpc {
            Some(crate::record::RpcOutcome::Error(_)) => "error",
            _ if r.facts.http_status >= 400 => "error",
            _ => "ok",
        },
    };
    OUTCOMES.iter().position(|o| *o == name).unwrap_or(1)
}

/// Per-method series resolved once: a request finds its counter by index, without a lock.
struct MethodTable {
    requests: IntCounterVec,
    duration: HistogramVec,
    counters: Vec<OnceLock<IntCounter>>,
    histograms: Vec<OnceLock<Histogram>>,
}

impl MethodTable {
    fn counter(&self, method: usize, outcome: usize) -> &IntCounter {
        self.counters[method * OUTCOMES.len() + outcome].get_or_init(|| {
            self.requests
                .with_label_values(&[METHODS[method], OUTCOMES[outcome]])
        })
    }

    fn histogram(&self, method: usize) -> &Histogram {
        self.histograms[method].get_or_init(|| self.duration.with_label_values(&[METHODS[method]]))
    }
}

/// Where the scrape-time values come from.
#[derive(Clone)]
pub struct Sources {
    /// The live catalog and backend health.
    pub catalog: Arc<CatalogStore>,
    /// Sessions.
    pub sessions: Arc<SessionManager>,
    /// The audit trail's counters.
    pub audit: AuditSink,
    /// Rate-limit counters.
    pub limiter: Arc<Limiter>,
    /// Pinning counters.
    pub integrity: Arc<Integrity>,
}

/// Series filled at scrape time.
struct Scraped {
    backend_up: IntGaugeVec,
    backend_stale: IntGaugeVec,
    catalog_age: prometheus::GaugeVec,
    discovery_runs: IntCounterVec,
    discovery_failures: IntCounterVec,
    catalog_entries: IntGaugeVec,
    catalog_generation: IntGauge,
    page_cache: IntCounterVec,
    sessions_open: IntGauge,
    sse_streams_open: IntGauge,
    audit_queue: IntGauge,
    audit_dropped: IntCounterVec,
    audit_store_failures: IntCounter,
    audit_stored: IntCounter,
    rate_limited: IntCounterVec,
    rate_limit_store_errors: IntCounterVec,
    integrity_changes: IntCounterVec,
    integrity_quarantined: IntGaugeVec,
    integrity_approvals: IntCounter,
    integrity_save_failures: IntCounter,
}

/// The gateway's metrics.
pub struct Metrics {
    enabled: bool,
    registry: Registry,
    methods: MethodTable,
    tool_calls: IntCounterVec,
    backend_duration: HistogramVec,
    scraped: Scraped,
    sources: Mutex<Option<Sources>>,
    scrapes: AtomicU64,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("{PREFIX}{name}"), help)
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(opts(name, help), labels).expect("a valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("each metric is registered once");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(opts(name, help), labels).expect("a valid metric definition");
    r.register(Box::new(g.clone()))
        .expect("each metric is registered once");
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(opts(name, help)).expect("a valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("each metric is registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::with_opts(opts(name, help)).expect("a valid metric definition");
    r.register(Box::new(g.clone()))
        .expect("each metric is registered once");
    g
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(format!("{PREFIX}{name}"), help).buckets(BUCKETS.to_vec()),
        labels,
    )
    .expect("a valid metric definition");
    r.register(Box::new(h.clone()))
        .expect("each metric is registered once");
    h
}

/// Sets a counter that mirrors an atomic to `value` (counters only move up; a value below
/// the counter's, which a mirrored atomic never has, is ignored).
fn mirror(c: &IntCounter, value: u64) {
    let now = c.get();
    if value > now {
        c.inc_by(value - now);
    }
}

impl Metrics {
    /// The metrics; `enabled` false makes [`observe`](Self::observe) a no-op (no listener).
    pub fn new(enabled: bool) -> Metrics {
        let r = Registry::new();
        let requests = counter_vec(
            &r,
            "mcp_requests_total",
            "Requests to the MCP endpoint by JSON-RPC method and outcome (ok, error, or the stage that refused it).",
            &["method", "outcome"],
        );
        let duration = histogram_vec(
            &r,
            "mcp_request_duration_seconds",
            "Time from the first byte of a request to the end of its answer, by JSON-RPC method.",
            &["method"],
        );
        let methods = MethodTable {
            requests,
            duration,
            counters: (0..METHODS.len() * OUTCOMES.len())
                .map(|_| OnceLock::new())
                .collect(),
            histograms: (0..METHODS.len()).map(|_| OnceLock::new()).collect(),
        };
        let tool_calls = counter_vec(
            &r,
            "tool_calls_total",
            "tools/call by backend (gateway for builtins, none when the tool is unknown), tool and outcome: ok, tool_error, backend_error, timeout, scope_refused, rate_limited, quarantined, unknown_tool, error.",
            &["backend", "tool", "outcome"],
        );
        let backend_duration = histogram_vec(
            &r,
            "backend_call_duration_seconds",
            "Duration of tool calls to a backend, by backend and result.",
            &["backend", "result"],
        );
        let scraped = Scraped {
            backend_up: gauge_vec(
                &r,
                "backend_up",
                "1 when the backend's last discovery succeeded.",
                &["backend"],
            ),
            backend_stale: gauge_vec(
                &r,
                "backend_stale",
                "1 when the backend's entries are served from an older discovery (it is failing, within stale_grace).",
                &["backend"],
            ),
            catalog_age: {
                let g = prometheus::GaugeVec::new(
                    opts(
                        "backend_catalog_age_seconds",
                        "Seconds since the backend's last successful discovery (absent before the first).",
                    ),
                    &["backend"],
                )
                .expect("a valid metric definition");
                r.register(Box::new(g.clone()))
                    .expect("each metric is registered once");
                g
            },
            discovery_runs: counter_vec(
                &r,
                "discovery_runs_total",
                "Catalog discoveries attempted, by backend.",
                &["backend"],
            ),
            discovery_failures: counter_vec(
                &r,
                "discovery_failures_total",
                "Catalog discoveries that failed, by backend.",
                &["backend"],
            ),
            catalog_entries: gauge_vec(
                &r,
                "catalog_entries",
                "Entries in the merged catalog served now, by kind (tool, prompt, resource, template).",
                &["kind"],
            ),
            catalog_generation: gauge(
                &r,
                "catalog_generation",
                "Generation of the catalog served (increases on every published change).",
            ),
            page_cache: counter_vec(
                &r,
                "list_page_cache_total",
                "List pages served from the page cache (hit) or built (miss).",
                &["result"],
            ),
            sessions_open: gauge(&r, "sessions_open", "Sessions tracked on this replica."),
            sse_streams_open: gauge(
                &r,
                "sse_streams_open",
                "Notification streams (GET SSE) open on this replica.",
            ),
            audit_queue: gauge(
                &r,
                "audit_queue_depth",
                "Audit records waiting to be written.",
            ),
            audit_dropped: counter_vec(
                &r,
                "audit_dropped_total",
                "Audit records dropped, by reason (queue_full, store_down, refused).",
                &["reason"],
            ),
            audit_store_failures: counter(
                &r,
                "audit_store_failures_total",
                "Audit batch writes the store failed.",
            ),
            audit_stored: counter(
                &r,
                "audit_records_stored_total",
                "Audit records written to the store.",
            ),
            rate_limited: counter_vec(
                &r,
                "rate_limit_rejections_total",
                "Requests and calls refused by a rate limit, by bucket (subject, tool, backend).",
                &["limit"],
            ),
            rate_limit_store_errors: counter_vec(
                &r,
                "rate_limit_store_errors_total",
                "Rate-limit decisions the shared store (Redis) could not take, by what was done (fail_open, fail_closed).",
                &["action"],
            ),
            integrity_changes: counter_vec(
                &r,
                "integrity_changes_total",
                "Tool definitions found different from their approved pin, by status (changed, new, removed).",
                &["status"],
            ),
            integrity_quarantined: gauge_vec(
                &r,
                "integrity_quarantined_tools",
                "Tools quarantined now (block mode), by backend.",
                &["backend"],
            ),
            integrity_approvals: counter(
                &r,
                "integrity_approvals_total",
                "Approvals made through the admin API.",
            ),
            integrity_save_failures: counter(
                &r,
                "integrity_baseline_save_failures_total",
                "Baseline writes (store or file) that failed.",
            ),
        };
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = r.register(Box::new(pc)) {
                tracing::warn!("process metrics unavailable: {e}");
            }
        }
        Metrics {
            enabled,
            registry: r,
            methods,
            tool_calls,
            backend_duration,
            scraped,
            sources: Mutex::new(None),
            scrapes: AtomicU64::new(0),
        }
    }

    /// Whether a metrics listener is configured.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Where scrape-time values come from (set once the parts exist).
    pub fn set_sources(&self, sources: Sources) {
        *lock(&self.sources) = Some(sources);
    }

    /// Adds another part's collector to the exposition (e.g. the edge's counters).
    pub fn register_collector(
        &self,
        collector: Box<dyn Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// Counts a finished request from its record.
    pub fn observe(&self, r: &ClosedRecord) {
        if !self.enabled {
            return;
        }
        let method = method_index(r.method.as_deref());
        self.methods.counter(method, outcome_index(r)).inc();
        self.methods
            .histogram(method)
            .observe(r.facts.latency.as_secs_f64());
        if r.method.as_deref() == Some("tools/call") {
            self.observe_tool_call(r);
        }
    }

    fn observe_tool_call(&self, r: &ClosedRecord) {
        let tool = r.tool.as_deref().unwrap_or("");
        let (backend, tool) = match &r.target {
            Some(Target::Backend { id, .. }) => (id.as_str(), tool),
            Some(Target::Gateway) => ("gateway", tool),
            None => ("none", "unknown"),
        };
        let outcome = match (r.refusal(), r.call, &r.target) {
            (Some((Stage::RateLimit, _)), _, _) => "rate_limited",
            (Some((Stage::Scope, _)), _, _) => "scope_refused",
            (Some((Stage::Quarantine, _)), _, _) => "quarantined",
            (_, Some((latency, result)), Some(Target::Backend { id, .. })) => {
                self.backend_duration
                    .with_label_values(&[id.as_str(), result.as_str()])
                    .observe(latency.as_secs_f64());
                result.as_str()
            }
            (_, _, None) => "unknown_tool",
            _ => match r.rpc {
                Some(crate::record::RpcOutcome::Error(_)) => "error",
                _ => "ok",
            },
        };
        self.tool_calls
            .with_label_values(&[backend, tool, outcome])
            .inc();
    }

    /// The text exposition, with the scrape-time values brought up to date.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let sources = lock(&self.sources).clone();
        if let Some(s) = sources {
            self.refresh(&s);
        }
        self.scrapes.fetch_add(1, Ordering::Relaxed);
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }

    fn refresh(&self, s: &Sources) {
        let m = &self.scraped;
        let now = std::time::Instant::now();
        for b in s.catalog.health() {
            let id = b.id.as_str();
            m.backend_up
                .with_label_values(&[id])
                .set(i64::from(b.healthy));
            m.backend_stale
                .with_label_values(&[id])
                .set(i64::from(b.stale));
            if let Some(ok) = b.last_ok {
                m.catalog_age
                    .with_label_values(&[id])
                    .set(now.duration_since(ok).as_secs_f64());
            }
            mirror(&m.discovery_runs.with_label_values(&[id]), b.discoveries);
            mirror(
                &m.discovery_failures.with_label_values(&[id]),
                b.discovery_failures,
            );
        }
        let current = s.catalog.current();
        let merged = &current.merged;
        for (kind, n) in [
            ("tool", merged.tools().len()),
            ("prompt", merged.prompts().len()),
            ("resource", merged.resources().len()),
            ("template", merged.templates().len()),
        ] {
            m.catalog_entries
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        m.catalog_generation
            .set(i64::try_from(current.generation).unwrap_or(i64::MAX));
        let (hits, misses) = s.catalog.page_cache_counts();
        mirror(&m.page_cache.with_label_values(&["hit"]), hits);
        mirror(&m.page_cache.with_label_values(&["miss"]), misses);
        m.sessions_open
            .set(i64::try_from(s.sessions.tracked()).unwrap_or(i64::MAX));
        m.sse_streams_open
            .set(i64::try_from(s.sessions.open_streams()).unwrap_or(i64::MAX));
        let a = s.audit.stats();
        m.audit_queue
            .set(i64::try_from(a.backlog).unwrap_or(i64::MAX));
        mirror(
            &m.audit_dropped.with_label_values(&["queue_full"]),
            a.dropped_queue_full,
        );
        mirror(
            &m.audit_dropped.with_label_values(&["store_down"]),
            a.dropped_store_down,
        );
        mirror(
            &m.audit_dropped.with_label_values(&["refused"]),
            a.refused_by_store,
        );
        mirror(&m.audit_store_failures, a.store_failures);
        mirror(&m.audit_stored, a.stored);
        let l = &s.limiter.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        mirror(
            &m.rate_limited.with_label_values(&["subject"]),
            g(&l.limited_subject),
        );
        mirror(
            &m.rate_limited.with_label_values(&["tool"]),
            g(&l.limited_tool),
        );
        mirror(
            &m.rate_limited.with_label_values(&["backend"]),
            g(&l.limited_backend),
        );
        mirror(
            &m.rate_limit_store_errors.with_label_values(&["fail_open"]),
            g(&l.failed_open),
        );
        mirror(
            &m.rate_limit_store_errors
                .with_label_values(&["fail_closed"]),
            g(&l.failed_closed),
        );
        let i = &s.integrity.stats;
        mirror(
            &m.integrity_changes.with_label_values(&["changed"]),
            g(&i.changed),
        );
        mirror(&m.integrity_changes.with_label_values(&["new"]), g(&i.new));
        mirror(
            &m.integrity_changes.with_label_values(&["removed"]),
            g(&i.removed),
        );
        mirror(&m.integrity_approvals, g(&i.approvals));
        mirror(&m.integrity_save_failures, g(&i.save_failures));
        for (backend, n) in s.integrity.quarantined() {
            m.integrity_quarantined
                .with_label_values(&[backend.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_and_outcome_has_a_slot() {
        assert_eq!(method_index(Some("tools/call")), 3);
        assert_eq!(METHODS[method_index(Some("x/y"))], "other");
        assert_eq!(METHODS[method_index(None)], "none");
        assert_eq!(METHODS[method_index(Some("admin/approve"))], "admin");
        for stage in [
            Stage::Host,
            Stage::Origin,
            Stage::Auth,
            Stage::AuthUnavailable,
            Stage::HttpMethod,
            Stage::Body,
            Stage::Parse,
            Stage::Version,
            Stage::Session,
            Stage::Batch,
            Stage::Scope,
            Stage::RateLimit,
            Stage::Quarantine,
        ] {
            assert!(OUTCOMES.contains(&stage.as_str()), "{stage:?}");
        }
    }

    #[test]
    fn the_exposition_names_every_family_with_the_prefix() {
        let m = Metrics::new(true);
        let text = m.render().unwrap();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(
                name.starts_with(PREFIX) || name.starts_with("process_"),
                "{name}"
            );
        }
    }
}
