//! Everything the request path and the background services share, built once from config.

use std::collections::HashMap;
use std::sync::Arc;

use cortex_filters::origin::{HostPolicy, OriginPolicy};
use cortex_filters::scope::ScopeRules;

use crate::auth::identity::IdentityService;
use crate::auth::{AuthSetupError, Authenticator};
use crate::config::Config;
use crate::federation::backend::BackendError;
use crate::federation::{Backend, CatalogStore, ContractClient};
use crate::mcp::sessions::SessionManager;

/// The version the gateway reports in `serverInfo`.
pub const GATEWAY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the shared state cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A backend could not be prepared.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Authentication or identity propagation could not be set up.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
}

/// Shared state of one gateway process.
pub struct AppState {
    /// The loaded configuration.
    pub config: Config,
    /// Canonical URI of the MCP endpoint.
    pub canonical_uri: String,
    /// Path of the MCP endpoint.
    pub mcp_path: String,
    /// Origin (scheme://host[:port]) of the canonical URI.
    pub public_origin: String,
    /// URL of the protected-resource metadata (for 401 challenges).
    pub resource_metadata_url: String,
    /// `serverInfo.websiteUrl`.
    pub website_url: String,
    /// Origin allowlist.
    pub origin: OriginPolicy,
    /// Host check.
    pub host: HostPolicy,
    /// Caller authentication.
    pub auth: Authenticator,
    /// The credential each backend receives (passthrough, mint, exchange).
    pub identity: IdentityService,
    /// Scope implication rules.
    pub scope_rules: ScopeRules,
    /// Backends in configuration order.
    pub backends: Vec<Arc<Backend>>,
    backend_index: HashMap<String, usize>,
    /// Client for calls outside the proxy path.
    pub client: Arc<ContractClient>,
    /// The live catalog.
    pub catalog: Arc<CatalogStore>,
    /// Sessions and their streams.
    pub sessions: Arc<SessionManager>,
    /// Tickets, webhook outbox and audit trail; `None` until `audit::install` opens it
    /// (`server::build` does; a bare state, e.g. in benches, has none).
    pub store: Option<Arc<dyn crate::store::Store>>,
    /// The audit trail's request-path handle (disabled until `audit::install`).
    pub audit: crate::audit::AuditSink,
    /// The gateway's own tools (whoami, find_tools, tickets, resources).
    pub builtins: Arc<crate::builtins::Builtins>,
}

impl AppState {
    /// Builds the state from a validated configuration.
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
        let website_url = config
            .server
            .website_url
            .clone()
            .unwrap_or_else(|| public_origin.clone());
        let scope_rules = ScopeRules {
            implies: config.scopes.implies.clone(),
        };
        let auth = Authenticator::new(&config, &canonical_uri, &scope_rules)?;
        let identity = IdentityService::new(&config, &public_origin, auth.issuer().cloned())?;
        let origin = OriginPolicy::new(&config.server.allowed_origins, auth.dev_modes_active());
        let mut allowed_hosts: Vec<String> = config
            .server
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if let Ok(u) = url::Url::parse(&canonical_uri) {
            if let Some(h) = u.host_str() {
                allowed_hosts.push(h.trim_matches(['[', ']']).to_ascii_lowercase());
            }
        }
        let host = HostPolicy::new(config.all_listeners_loopback(), &allowed_hosts);
        let backends = config
            .backends
            .iter()
            .map(|b| Backend::from_config(b, config.technical_token.as_deref()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let backend_index = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id.clone(), i))
            .collect();
        let ids: Vec<String> = backends.iter().map(|b| b.id.clone()).collect();
        let sessions = Arc::new(SessionManager::new(&config.sessions));
        Ok(AppState {
            canonical_uri,
            mcp_path,
            public_origin,
            resource_metadata_url,
            website_url,
            origin,
            host,
            auth,
            identity,
            scope_rules,
            backends,
            backend_index,
            client: Arc::new(ContractClient::new()),
            catalog: Arc::new(CatalogStore::new(&ids)),
            sessions,
            store: None,
            audit: crate::audit::AuditSink::disabled(),
            builtins: Arc::new(crate::builtins::Builtins::new(&config)),
            config,
        })
    }

    /// A backend by id.
    pub fn backend(&self, id: &str) -> Option<&Arc<Backend>> {
        self.backend_index.get(id).map(|&i| &self.backends[i])
    }
}
