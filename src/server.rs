//! Builds and runs the Pingora server: the proxy service on every listener and the
//! catalog refresher as a background service.

use std::sync::Arc;

use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use tracing::{info, warn};

use crate::config::{AuthMode, Config};
use crate::federation::{RefreshService, RefreshSettings, Refresher};
use crate::gateway::Gateway;
use crate::state::AppState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A backend could not be prepared.
    #[error(transparent)]
    Backend(#[from] crate::federation::backend::BackendError),
    /// The shared state (backends, authentication, identity) could not be built.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The development authorization server is refused or its key is unusable.
    #[error(transparent)]
    DevAuthServer(#[from] crate::dev_as::DevAsError),
    /// The store or the audit trail cannot be set up.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// Names the gateway reserves for its own tools; a backend entry can never take one.
pub const RESERVED_NAMES: &[&str] = &[
    "whoami",
    "find_tools",
    "report_missing_capability",
    "list_cortex_tickets",
    "triage_cortex_ticket",
    "list_cortex_resources",
    "read_cortex_resource",
    crate::builtins::ARCHITECTURE_URI,
];

/// Builds the server for `config`. Returns the server ready to run and the shared state.
pub fn build(config: Config) -> Result<(Server, Arc<AppState>), StartError> {
    let mut conf = ServerConf {
        threads: config.server.threads.max(1),
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upstream_keepalive_pool_size: 1024,
        ..ServerConf::default()
    };
    conf.pid_file = std::env::temp_dir()
        .join(format!("cortex-gateway-{}.pid", std::process::id()))
        .to_string_lossy()
        .into_owned();
    conf.upgrade_sock = std::env::temp_dir()
        .join(format!("cortex-gateway-{}.sock", std::process::id()))
        .to_string_lossy()
        .into_owned();
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let listen = config.listen_addrs();
    if config.auth.mode == AuthMode::None {
        warn!("AUTH IS OFF (auth.mode: none): every request runs as the configured principal; loopback listeners only");
    }
    if config.sessions.secret.is_none() {
        info!("sessions.secret not set: session ids are sealed with a random per-process key (they end with a restart; replicas of a fleet need a shared secret)");
    }
    let dev_as = if config.dev_authorization_server.enabled {
        let dev_as = crate::dev_as::DevAuthServer::from_config(&config)?;
        warn!(
            issuer = dev_as.issuer(),
            key_file = %dev_as.key_file().display(),
            "DEVELOPMENT AUTHORIZATION SERVER ON (dev_authorization_server.enabled): {}{} hands a token for any of its users to anyone on this machine, with one click and no password. For trying things out only; production points auth.oauth.issuer at a real authorization server",
            dev_as.issuer(),
            crate::dev_as::AUTHORIZE_PATH,
        );
        Some(Arc::new(dev_as))
    } else {
        None
    };
    let mut state = AppState::new(config)?;
    crate::audit::install(&mut state)?;
    let state = Arc::new(state);
    if let Some(store) = state.store.clone() {
        server.add_service(background_service(
            "ticket webhook",
            crate::builtins::webhook::DeliveryService::new(
                store,
                &state.config.tickets,
                state.builtins.webhook_wake(),
            ),
        ));
    }
    server.add_service(background_service(
        "audit flush",
        crate::audit::FlushOnShutdown::new(state.audit.clone()),
    ));

    let sessions = state.sessions.clone();
    let refresher = Arc::new(Refresher::new(
        state.backends.clone(),
        state.client.clone(),
        state.catalog.clone(),
        RefreshSettings {
            interval: state.config.catalog.refresh,
            stale_grace: state.config.catalog.stale_grace,
            max_backoff: state.config.catalog.max_backoff,
        },
        RESERVED_NAMES.to_vec(),
        Arc::new(move |diff| sessions.notify_catalog_change(diff)),
    ));
    server.add_service(background_service(
        "catalog refresh",
        RefreshService::new(refresher),
    ));
    let auth_service = crate::auth::service::AuthService::new(
        state.auth.issuer().cloned(),
        state.config.auth.oauth.jwks_refresh,
        state.identity.minter().cloned(),
    );
    if auth_service.is_needed() {
        server.add_service(background_service("auth keys", auth_service));
    }

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        match dev_as {
            Some(dev_as) => Gateway::new(state.clone()).with_dev_authorization_server(dev_as),
            None => Gateway::new(state.clone()),
        },
        "cortex-gateway",
    );
    for addr in &listen {
        proxy.add_tcp(&addr.to_string());
    }
    server.add_service(proxy);
    for addr in &listen {
        info!(
            "listening on http://{addr} (MCP endpoint {}{})",
            addr, state.mcp_path
        );
    }
    info!(canonical_uri = %state.canonical_uri, backends = state.backends.len(), "cortex-gateway ready to serve");
    Ok((server, state))
}
