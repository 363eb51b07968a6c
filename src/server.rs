//! Builds and runs the Pingora server: the proxy service on every listener and the
//! catalog refresher as a background service.

use std::sync::Arc;

use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use tracing::{info, warn};

use crate::config::{AuthMode, Config};
use crate::gateway::Gateway;
use crate::state::AppState;
use crate::upstream::{RefreshService, RefreshSettings, Refresher};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The shared state (backends, authentication, identity) could not be built.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The development authorization server is refused or its key is unusable.
    #[error(transparent)]
    DevAuthServer(#[from] crate::dev_as::DevAsError),
    /// The store or the audit trail cannot be set up.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Counters kept by other parts of the gateway, exported on the metrics listener next to the
/// request metrics: each part hands a `prometheus` collector over its own atomics to
/// [`Metrics::register_collector`](crate::metrics::Metrics::register_collector) here (the
/// edge counters plug in at this place). A collector that cannot be registered (a name
/// taken twice) is logged and left out; the gateway still serves.
fn register_extra_collectors(metrics: &crate::metrics::Metrics) {
    let extra: Vec<Box<dyn prometheus::core::Collector>> = Vec::new();
    for collector in extra {
        if let Err(e) = metrics.register_collector(collector) {
            warn!("metrics: a collector could not be registered: {e}");
        }
    }
}

/// Each finding of a pinning review with changes, as an audit record
/// (`integrity/changed`, `integrity/new`, `integrity/removed`, `integrity/quarantined`).
fn audit_review(audit: &crate::audit::AuditSink, review: &cortex_filters::pinning::BackendReview) {
    use cortex_filters::pinning::{ToolStatus, Verdict};
    if !audit.is_enabled() {
        return;
    }
    for t in review
        .tools
        .iter()
        .filter(|t| t.status != ToolStatus::Unchanged)
    {
        let action = match (t.verdict, t.status) {
            (Verdict::Quarantine, _) => "integrity/quarantined",
            (_, ToolStatus::Changed) => "integrity/changed",
            (_, ToolStatus::New) => "integrity/new",
            _ => "integrity/removed",
        };
        let mut record = crate::record::RequestRecord::event(action, &review.backend, &t.tool);
        let facts = crate::record::Facts {
            ts_ms: crate::clock::now_ms(),
            latency: std::time::Duration::ZERO,
            http_method: http::Method::GET,
            http_status: 0,
            response_size: 0,
            origin: None,
            backends_filter: None,
            tool_mode: None,
            error: None,
        };
        if let Some(closed) = record.close(facts) {
            audit.submit(closed);
        }
    }
}

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
    let store = crate::store::open(&config)?;
    let audit = crate::audit::start(&config, store.clone())?;
    let state = Arc::new(AppState::new(config)?.with_store(store.clone(), audit));
    let shared = &state.shared;
    let policy = state.policy();
    server.add_service(background_service(
        "ticket webhook",
        crate::builtins::webhook::DeliveryService::new(
            store,
            shared.client.clone(),
            &policy.config.tickets,
            shared.builtins.webhook_wake(),
        ),
    ));
    server.add_service(background_service(
        "audit flush",
        crate::audit::FlushOnShutdown::new(shared.audit.clone()),
    ));

    let sessions = shared.sessions.clone();
    let policy_source = state.clone();
    let catalog = &policy.config.catalog;
    let refresher = Arc::new(
        Refresher::new(
            Arc::new(move || policy_source.policy().upstreams.clone()),
            shared.catalog.clone(),
            RefreshSettings {
                interval: catalog.refresh,
                stale_grace: catalog.stale_grace,
                max_backoff: catalog.max_backoff,
            },
            crate::builtins::reserved_names(),
            Arc::new(move |diff| sessions.notify_catalog_change(diff)),
        )
        .with_integrity(shared.integrity.clone()),
    );
    let audit_sink = shared.audit.clone();
    shared
        .integrity
        .set_listener(Arc::new(move |review| audit_review(&audit_sink, review)));
    shared.metrics.set_sources(state.metric_sources());
    register_extra_collectors(&shared.metrics);
    let metrics_addr = policy
        .config
        .metrics
        .listen
        .as_deref()
        .and_then(|l| crate::config::parse_listen(l).ok());
    if let Some(addr) = metrics_addr {
        let mut metrics = pingora::services::listening::Service::new(
            "metrics".to_string(),
            crate::metrics::server::MetricsApp::new(shared.metrics.clone()),
        );
        metrics.add_tcp(&addr.to_string());
        server.add_service(metrics);
        info!("metrics on http://{addr}/metrics");
    }
    server.add_service(background_service(
        "catalog refresh",
        RefreshService::new(refresher),
    ));
    let auth_service = crate::auth::service::AuthService::new(
        shared.auth.issuer().cloned(),
        policy.config.auth.oauth.jwks_refresh,
        policy.identity.minter().cloned(),
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
            addr, state.shared.mcp_path
        );
    }
    info!(canonical_uri = %state.shared.canonical_uri, backends = policy.upstreams.len(), "cortex-gateway ready to serve");
    Ok((server, state))
}
