//! The composition root: what one gateway process holds, split in two.
//!
//! - [`Shared`] lives as long as the process: the listeners' identity (canonical URI, MCP
//!   path), caller authentication with its key caches, the live catalog, sessions, the store,
//!   the audit trail, the outbound connection pool.
//! - [`Policy`] is rebuilt from the configuration: backends and their kinds, identity modes,
//!   builtin scopes, allowed origins and hosts. It is swapped atomically
//!   ([`AppState::swap_policy`]) and a request takes it once ([`AppState::policy`]), so every
//!   request runs on one consistent policy from start to end, even across a reload.
//!
//! Only the edge (`server`, `gateway`, `mcp/`, `well_known`) names this module; features take
//! the narrow handles they need (see docs/architecture.md, "House rules").

use std::sync::Arc;

use arc_swap::ArcSwap;
use cortex_filters::origin::{HostPolicy, OriginPolicy};
use cortex_filters::scope::ScopeRules;

use crate::audit::AuditSink;
use crate::auth::{AuthSetupError, Authenticator};
use crate::builtins::{BuiltinRuntime, Builtins};
use crate::config::Config;
use crate::config::{BackendKindConfig, IdentityMode};
use crate::credentials::IdentityService;
use crate::drain::Drain;
use crate::edge::{Edge, EdgeLimits};
use crate::integrity::Integrity;
use crate::limits::{Limiter, Limits};
use crate::metrics::Metrics;
use crate::sessions::SessionManager;
use crate::store::{PinStore, Store};
use crate::upstream::{
    Backend, CatalogStore, ContractBackend, HttpClient, NativeBackend, NativeParts, Relay,
    TargetError, Upstreams, VaultAuth,
};

/// Why the state cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A backend could not be prepared.
    #[error("backend `{id}`: {source}")]
    Backend {
        /// The backend's id.
        id: String,
        /// Why.
        source: TargetError,
    },
    /// A native MCP backend could not be prepared.
    #[error("backend `{id}`: {reason}")]
    NativeBackend {
        /// The backend's id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Authentication or identity propagation could not be set up.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    /// The vault could not be set up.
    #[error("vault: {0}")]
    Vault(String),
    /// A rate limit cannot be used.
    #[error("rate_limits.{key}: {message}")]
    RateLimits {
        /// The key under `rate_limits`.
        key: String,
        /// Why.
        message: String,
    },
    /// The shared rate-limit store cannot be set up.
    #[error(transparent)]
    Limiter(#[from] crate::limits::LimiterError),
    /// Pinning cannot start (keys, or a baseline file that does not verify).
    #[error(transparent)]
    Integrity(#[from] crate::integrity::IntegrityError),
}

/// Whether anything consumes request records (the audit trail or the metrics): when not,
/// the request path leaves its record unclosed.
pub fn records_wanted(audit: &AuditSink, metrics: &Metrics) -> bool {
    audit.is_enabled() || metrics.is_enabled()
}

/// Hands a closed request record to its consumers: the metrics observe it, then the audit
/// trail takes it (the one place that order and the "audit enabled" check live; the logging
/// phase and a taken-over stream both end here).
pub fn hand_on(audit: &AuditSink, metrics: &Metrics, closed: crate::record::ClosedRecord) {
    metrics.observe(&closed);
    if audit.is_enabled() {
        audit.submit(closed);
    }
}

/// What lives as long as the process.
pub struct Shared {
    /// Canonical URI of the MCP endpoint (the token audience).
    pub canonical_uri: String,
    /// Path of the MCP endpoint.
    pub mcp_path: String,
    /// Origin (scheme://host[:port]) of the canonical URI.
    pub public_origin: String,
    /// URL of the protected-resource metadata (for 401 challenges).
    pub resource_metadata_url: String,
    /// Caller authentication (with its JWKS and token caches).
    pub auth: Authenticator,
    /// The live catalog.
    pub catalog: Arc<CatalogStore>,
    /// Sessions and their streams.
    pub sessions: Arc<SessionManager>,
    /// Tickets, webhook outbox and audit trail; `None` for a bare state (benches).
    pub store: Option<Arc<dyn Store>>,
    /// The audit trail's request-path handle (disabled for a bare state).
    pub audit: AuditSink,
    /// The outbound HTTP client (one connection pool for every backend call).
    pub client: Arc<HttpClient>,
    /// The builtins' process-lifetime parts (search index, webhook wake-up).
    pub builtins: BuiltinRuntime,
    /// Prometheus metrics (observed from each request's record).
    pub metrics: Arc<Metrics>,
    /// Rate-limit buckets (in memory or Redis) and their counters.
    pub limiter: Arc<Limiter>,
    /// Tool-definition pinning.
    pub integrity: Arc<Integrity>,
    /// The HTTP edge: connection cap, header/body deadlines, body budget, and their
    /// counters (`edge.counters`, for the metrics endpoint).
    pub edge: Arc<Edge>,
    /// What relays messages between callers and native MCP backends (server requests
    /// waiting for answers, calls in flight, log levels, resource subscriptions).
    pub relay: Arc<Relay>,
    /// The per-user token vault (`vault:`), once the store is known ([`AppState::with_vault`]).
    pub vault: Option<Arc<crate::vault::Vault>>,
    /// Requests in flight and the draining flag (graceful shutdown).
    pub drain: Arc<Drain>,
    /// What the configuration reloads did (shown on `/readyz`).
    pub reloads: Arc<ReloadStatus>,
}

/// What the configuration and certificate reloads did, for `/readyz` and the logs.
#[derive(Debug, Default)]
pub struct ReloadStatus {
    /// Reloads that put a new policy in force.
    pub applied: std::sync::atomic::AtomicU64,
    /// Reloads refused (the file did not validate); the running policy stayed.
    pub refused: std::sync::atomic::AtomicU64,
    /// TLS certificates taken from disk after start.
    pub certificates: std::sync::atomic::AtomicU64,
    /// TLS certificate changes refused (the pair did not load); the old one stayed.
    pub certificate_errors: std::sync::atomic::AtomicU64,
    /// The last reload's outcome.
    pub last: std::sync::Mutex<Option<ReloadReport>>,
}

/// The outcome of one reload.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadReport {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// What started it: `SIGHUP` or `file change`.
    pub trigger: String,
    /// `applied`, `unchanged` or `refused`.
    pub outcome: &'static str,
    /// Keys put in force.
    pub applied: Vec<String>,
    /// Keys that changed in the file but need a restart (not applied).
    pub needs_restart: Vec<String>,
    /// Why it was refused.
    pub error: Option<String>,
}

impl ReloadStatus {
    /// Records `report` as the last outcome.
    pub fn record(&self, report: ReloadReport) {
        let mut last = match self.last.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *last = Some(report);
    }

    /// The counters and the last outcome, as `/readyz` shows them.
    pub fn to_json(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let last = match self.last.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        serde_json::json!({
            "applied": self.applied.load(Relaxed),
            "refused": self.refused.load(Relaxed),
            "certificates": self.certificates.load(Relaxed),
            "certificateErrors": self.certificate_errors.load(Relaxed),
            "last": last,
        })
    }
}

/// What a configuration reload replaces.
pub struct Policy {
    /// The configuration this policy was built from.
    pub config: Arc<Config>,
    /// `serverInfo.websiteUrl`.
    pub website_url: String,
    /// Origin allowlist.
    pub origin: OriginPolicy,
    /// Host check (DNS-rebinding protection).
    pub host: HostPolicy,
    /// Scope implication rules.
    pub scope_rules: ScopeRules,
    /// The backends, in configuration order.
    pub upstreams: Arc<Upstreams>,
    /// The credential each backend receives.
    pub identity: Arc<IdentityService>,
    /// The gateway's own tools and their scopes.
    pub builtins: Arc<Builtins>,
    /// The rate limits in force.
    pub limits: Limits,
}

/// Shared state of one gateway process.
pub struct AppState {
    /// What lives as long as the process.
    pub shared: Shared,
    policy: ArcSwap<Policy>,
}

impl AppState {
    /// Builds the state from a validated configuration, without a store or audit trail
    /// (see [`AppState::with_store`]).
    pub fn new(config: Config) -> Result<Self, StateError> {
        let canonical_uri = config.canonical_uri();
        let mcp_path = config.mcp_path();
        let public_origin = match url::Url::parse(&canonical_uri) {
            Ok(u) => u.origin().ascii_serialization(),
            Err(_) => canonical_uri.clone(),
        };
        let trimmed_path = mcp_path.trim_start_matches('/');
        let resource_metadata_url = if trimmed_path.is_empty() {
            format!("{public_origin}/.well-known/oauth-protected-resource")
        } else {
            format!("{public_origin}/.well-known/oauth-protected-resource/{trimmed_path}")
        };
        let scope_rules = ScopeRules {
            implies: config.scopes.implies.clone(),
        };
        let auth = Authenticator::new(&config, &canonical_uri, &scope_rules)?;
        let outbound = &config.outbound;
        let client = Arc::new(HttpClient::with_tls(
            outbound.ca_file.clone(),
            outbound
                .client_cert_file
                .clone()
                .zip(outbound.client_key_file.clone()),
        ));
        let ids: Vec<String> = config.backends.iter().map(|b| b.id.clone()).collect();
        let sessions = Arc::new(SessionManager::new(&config.sessions));
        let shared = Shared {
            relay: Arc::new(Relay::new(sessions.clone())),
            sessions,
            catalog: Arc::new(CatalogStore::new(&ids)),
            canonical_uri,
            mcp_path,
            public_origin,
            resource_metadata_url,
            auth,
            store: None,
            audit: AuditSink::disabled(),
            client,
            builtins: BuiltinRuntime::default(),
            drain: Drain::new(),
            reloads: Arc::new(ReloadStatus::default()),
            vault: None,
            edge: Arc::new(Edge::new(EdgeLimits::from_config(&config.server.limits))),
            metrics: Arc::new(Metrics::new(config.metrics.listen.is_some())),
            limiter: Arc::new(Limiter::from_config(&config.rate_limits)?),
            integrity: Arc::new(Integrity::from_config(&config.integrity, None)?),
        };
        let policy = Policy::build(Arc::new(config), &shared)?;
        Ok(AppState {
            shared,
            policy: ArcSwap::from_pointee(policy),
        })
    }

    /// The state with the store and the audit trail over it (tool pins persist in it unless
    /// a baseline file is configured).
    pub fn with_store(mut self, store: Arc<dyn Store>, audit: AuditSink) -> Self {
        let integrity = &self.policy().config.integrity;
        match Integrity::from_config(integrity, Some(store.clone() as Arc<dyn PinStore>)) {
            Ok(i) => self.shared.integrity = Arc::new(i),
            // Unreachable: the same configuration built one in `new`.
            Err(e) => tracing::error!("{e}"),
        }
        self.shared
            .sessions
            .share_ends(store.clone() as Arc<dyn crate::store::SessionStore>);
        self.shared.store = Some(store);
        self.shared.audit = audit;
        self
    }

    /// The state with the per-user token vault over its store (when `vault:` has a key), and
    /// the policy rebuilt so that backends naming a `vault_provider` hold it.
    pub fn with_vault(mut self) -> Result<Self, StateError> {
        let config = self.policy().config.clone();
        let Some(store) = self.shared.store.clone() else {
            return Ok(self);
        };
        let vault = crate::vault::Vault::from_config(
            &config.vault,
            store as Arc<dyn crate::store::VaultStore>,
            &self.shared.public_origin,
        )
        .map_err(StateError::Vault)?;
        self.shared.vault = vault.map(Arc::new);
        let policy = Policy::build(config, &self.shared)?;
        self.swap_policy(policy);
        Ok(self)
    }

    /// What the metrics read at scrape time.
    pub fn metric_sources(&self) -> crate::metrics::Sources {
        crate::metrics::Sources {
            catalog: self.shared.catalog.clone(),
            sessions: self.shared.sessions.clone(),
            audit: self.shared.audit.clone(),
            limiter: self.shared.limiter.clone(),
            integrity: self.shared.integrity.clone(),
        }
    }

    /// The policy in force. Take it once per request.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Puts a new policy in force (requests already running keep theirs).
    pub fn swap_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }
}

impl Policy {
    /// Builds the policy of `config` for the process `shared`.
    pub fn build(config: Arc<Config>, shared: &Shared) -> Result<Policy, StateError> {
        let website_url = config
            .server
            .website_url
            .clone()
            .unwrap_or_else(|| shared.public_origin.clone());
        let scope_rules = ScopeRules {
            implies: config.scopes.implies.clone(),
        };
        let identity = Arc::new(IdentityService::new(
            &config,
            &shared.public_origin,
            shared.auth.issuer().cloned(),
        )?);
        let origin = OriginPolicy::new(
            &config.server.allowed_origins,
            shared.auth.dev_modes_active(),
        );
        let mut allowed_hosts: Vec<String> = config
            .server
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if let Ok(u) = url::Url::parse(&shared.canonical_uri) {
            if let Some(h) = u.host_str() {
                allowed_hosts.push(h.trim_matches(['[', ']']).to_ascii_lowercase());
            }
        }
        let host = HostPolicy::new(config.all_listeners_loopback(), &allowed_hosts);
        let native = NativeParts {
            client: shared.client.clone(),
            catalog: shared.catalog.clone(),
            relay: shared.relay.clone(),
            identity: identity.clone(),
        };
        let backends = config
            .backends
            .iter()
            .map(|b| match b.kind {
                BackendKindConfig::Contract => ContractBackend::from_config(
                    b,
                    config.technical_token.as_deref(),
                    shared.client.clone(),
                    identity.clone(),
                )
                .map(|c| match (&b.vault_provider, &shared.vault) {
                    (Some(provider), Some(vault)) => {
                        c.with_vault(crate::vault::VaultLink::new(vault.clone(), provider))
                    }
                    _ => c,
                })
                .map(|c| Arc::new(c) as Arc<dyn Backend>)
                .map_err(|source| StateError::Backend {
                    id: b.id.clone(),
                    source,
                }),
                BackendKindConfig::Mcp | BackendKindConfig::Stdio => {
                    NativeBackend::from_config(b, &native)
                        .map(
                            |n| match (&b.vault_provider, &shared.vault, b.identity_mode()) {
                                (Some(provider), Some(vault), IdentityMode::Vault) => {
                                    n.with_auth(Arc::new(VaultAuth::new(
                                        crate::vault::VaultLink::new(vault.clone(), provider),
                                    )))
                                }
                                _ => n,
                            },
                        )
                        .map(|n| Arc::new(n) as Arc<dyn Backend>)
                        .map_err(|reason| StateError::NativeBackend {
                            id: b.id.clone(),
                            reason,
                        })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let limits = Limits::from_config(&config.rate_limits).map_err(|(key, e)| {
            StateError::RateLimits {
                key,
                message: e.to_string(),
            }
        })?;
        Ok(Policy {
            limits,
            website_url,
            origin,
            host,
            scope_rules,
            upstreams: Arc::new(Upstreams::new(backends)),
            identity,
            builtins: Arc::new(Builtins::new(&config)),
            config,
        })
    }
}
