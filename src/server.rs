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
    let state = Arc::new(AppState::new(config)?);

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

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(state.clone()),
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
