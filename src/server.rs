//! Builds and runs the Pingora server: the proxy service on every listener (plain and TLS),
//! the catalog refresher and the other background services, the configuration reload, and
//! the shutdown signals that end as soon as the work in flight is done.

use std::sync::Arc;

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use tracing::{info, warn};

use crate::config::{AuthMode, Config};
use crate::edge::EdgeApp;
use crate::gateway::Gateway;
use crate::reload::{ConfigSource, ReloadService};
use crate::shutdown::Signals;
use crate::state::AppState;
use crate::tls::CertStore;
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
    /// The TLS certificate cannot be served.
    #[error("server.tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// This replica cannot join its fleet (keys differ, Redis URL unusable).
    #[error("fleet: {0}")]
    Fleet(String),
}

/// Joins the fleet: checks this replica's keys against the fleet's (PostgreSQL) and builds
/// the bus over Redis (`fleet.redis_url`), attached to the sessions. `None` for a lone
/// gateway.
fn join_fleet(
    state: &AppState,
    store: &Arc<dyn crate::store::Store>,
) -> Result<Option<Arc<crate::fleet::FleetBus>>, StartError> {
    let policy = state.policy();
    let config = &policy.config;
    let shared = &state.shared;
    if config.fleet.redis_url.is_some() && config.sessions.secret.is_none() {
        return Err(StartError::Fleet("fleet.redis_url is set but sessions.secret is not: every replica of a fleet needs the same sessions.secret to open the session ids of the others".into()));
    }
    let catalog = shared.catalog.clone();
    let refresh_now: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let ids: Vec<String> = catalog.with_health(|h| h.iter().map(|b| b.id.clone()).collect());
        for id in ids {
            catalog.mark_due(&id);
        }
    });
    let bus = crate::fleet::FleetBus::from_config(
        &config.fleet,
        shared.sessions.clone(),
        config.sessions.idle_timeout,
        config.sessions.replay_buffer,
        refresh_now,
    )
    .map_err(|e| StartError::Fleet(e.to_string()))?;
    let replica = bus.as_ref().map_or_else(
        || format!("pid-{}", std::process::id()),
        |b| b.replica().to_string(),
    );
    if config.fleet.check_keys {
        let ours = crate::fleet::keys::fingerprints(
            config,
            shared.sessions.key_fingerprint(),
            policy.identity.minter().map(|m| m.current_kid()),
        )
        .map_err(|e| StartError::Fleet(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StartError::Fleet(format!("cannot check the keys: {e}")))?;
        let base: &dyn crate::store::StoreBase = store.as_ref();
        use crate::fleet::keys::Checked;
        match runtime.block_on(crate::fleet::keys::check(base, &ours, &replica)) {
            Ok(Checked::Match(n)) if n > 0 => info!(keys = n, "fleet: keys match the fleet's"),
            Ok(Checked::Match(_) | Checked::NotShared) => {}
            Ok(Checked::Unavailable(e)) => warn!("fleet: the keys could not be compared with the fleet's (the database is down: {e}); they are compared at the next start"),
            Err(e) => return Err(StartError::Fleet(e.to_string())),
        }
    }
    if let Some(bus) = &bus {
        shared
            .sessions
            .attach_bus(bus.clone() as Arc<dyn crate::sessions::SessionBus>);
        info!(replica = %bus.replica(), "fleet: sessions, notifications and catalog changes are shared through Redis");
    }
    Ok(bus)
}

/// Counters kept by other parts of the gateway in their own atomics, exported on the metrics
/// listener next to the request metrics, read at scrape time: the HTTP edge (connection cap,
/// deadlines, body budget, clients leaving mid-header; docs/security.md), the
/// configuration reloads (docs/operations.md), the token pipeline and the webhook outbox
/// (`metrics::owners`). A collector that cannot be registered (a name
/// taken twice) is logged and left out; the gateway still serves.
fn register_extra_collectors(shared: &crate::state::Shared) {
    use crate::metrics::mirrored::{Kind, Mirrored, Spec};
    use std::sync::atomic::Ordering::Relaxed;
    let spec = Spec::new;
    let edge_specs = vec![
        spec("edge_connections_refused_total", "Client connections answered 503 and closed because server.limits.max_connections were open.", Kind::Counter),
        spec("edge_header_timeouts_total", "Connections closed because the request header did not arrive within server.limits.header_timeout.", Kind::Counter),
        spec("edge_body_timeouts_total", "Requests answered 408 because the body did not arrive within server.limits.body_timeout.", Kind::Counter),
        spec("edge_body_budget_refusals_total", "Requests answered 503 because server.limits.body_budget was spent.", Kind::Counter),
        spec("edge_disconnects_mid_header_total", "Connections the client closed or reset in the middle of a request header.", Kind::Counter),
        spec("edge_headers_too_large_total", "Connections closed because a request header passed 64 KiB.", Kind::Counter),
        spec("edge_open_connections", "Client connections open now.", Kind::Gauge),
        spec("edge_max_connections", "The connection cap in force (lowered at start to keep reserved_fds free).", Kind::Gauge),
        spec("edge_body_budget_available_bytes", "Request-body bytes still available in the global body budget.", Kind::Gauge),
    ];
    let edge = shared.edge.clone();
    let read_edge = std::sync::Arc::new(move || {
        let mut v: Vec<f64> = edge
            .counters
            .snapshot()
            .iter()
            .map(|(_, n)| *n as f64)
            .collect();
        v.push(edge.open_connections() as f64);
        v.push(edge.max_connections() as f64);
        v.push(edge.body_budget_available() as f64);
        v
    });
    let reload_specs = vec![
        spec(
            "config_reloads_applied_total",
            "Configuration reloads that put a new policy in force.",
            Kind::Counter,
        ),
        spec(
            "config_reloads_refused_total",
            "Configuration reloads refused (the file did not validate); the running policy stayed.",
            Kind::Counter,
        ),
        spec(
            "tls_certificate_reloads_total",
            "TLS certificates taken from disk after start.",
            Kind::Counter,
        ),
        spec(
            "tls_certificate_reload_errors_total",
            "TLS certificate changes refused (the pair did not load); the old one stayed.",
            Kind::Counter,
        ),
    ];
    let reloads = shared.reloads.clone();
    let read_reloads = std::sync::Arc::new(move || {
        vec![
            reloads.applied.load(Relaxed) as f64,
            reloads.refused.load(Relaxed) as f64,
            reloads.certificates.load(Relaxed) as f64,
            reloads.certificate_errors.load(Relaxed) as f64,
        ]
    });
    for (specs, read) in [
        (edge_specs, read_edge as crate::metrics::mirrored::Reader),
        (
            reload_specs,
            read_reloads as crate::metrics::mirrored::Reader,
        ),
    ] {
        let registered =
            Mirrored::new(specs, read).and_then(|m| shared.metrics.register_collector(Box::new(m)));
        if let Err(e) = registered {
            warn!("metrics: a collector could not be registered: {e}");
        }
    }
    let outbox = shared.builtins.webhook_stats();
    for collector in crate::metrics::owners::collectors(
        shared.auth.stats(),
        shared.auth.issuer().cloned(),
        std::sync::Arc::new(move || outbox.values()),
    ) {
        if let Err(e) = collector.and_then(|m| shared.metrics.register_collector(Box::new(m))) {
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

/// Builds the server for `config`, without configuration reload (the demo). Returns the
/// server ready to run and the shared state.
pub fn build(config: Config) -> Result<(Server, Arc<AppState>), StartError> {
    build_with(config, None)
}

/// Builds the server for `config`; with a `source`, SIGHUP and a change of its files reload
/// the configuration (`crate::reload`).
pub fn build_with(
    config: Config,
    source: Option<ConfigSource>,
) -> Result<(Server, Arc<AppState>), StartError> {
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
    let certs = match &config.server.tls {
        Some(tls) => Some(CertStore::open(&tls.cert_file, &tls.key_file)?),
        None => None,
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let listen = config.listen_addrs();
    let tls_listen = config.tls_listen_addrs();
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
    let state = Arc::new(
        AppState::new(config)?
            .with_store(store.clone(), audit)
            .with_vault()?,
    );
    let fleet = join_fleet(&state, &store)?;
    let shared = &state.shared;
    let policy = state.policy();
    if let Some(bus) = &fleet {
        server.add_service(background_service(
            "fleet bus",
            crate::fleet::FleetService::new(bus.clone()),
        ));
    }
    server.add_service(background_service(
        "ticket webhook",
        crate::builtins::webhook::DeliveryService::new(
            store.clone(),
            shared.client.clone(),
            &policy.config.tickets,
            shared.builtins.webhook_wake(),
        )
        .with_drain(shared.drain.clone())
        .with_stats(shared.builtins.webhook_stats()),
    ));
    server.add_service(background_service(
        "session ends",
        crate::sessions::RevocationSync::new(
            shared.sessions.clone(),
            store.clone() as Arc<dyn crate::store::SessionStore>,
        ),
    ));
    server.add_service(background_service(
        "audit flush",
        crate::audit::FlushOnShutdown::new(shared.audit.clone()),
    ));

    let sessions = shared.sessions.clone();
    let published = shared.catalog.clone();
    let on_change: crate::upstream::refresh::ChangeListener = match fleet {
        // Every replica sees a change: each session hears of one catalog state once, and
        // the other replicas rediscover now instead of at their next refresh.
        Some(bus) => Arc::new(move |diff| {
            let digest = cortex_filters::fleet::catalog_digest(&published.current().merged);
            sessions.notify_catalog_change_of(diff, Some(digest));
            bus.catalog_changed();
        }),
        None => Arc::new(move |diff| sessions.notify_catalog_change(diff)),
    };
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
            on_change,
        )
        .with_integrity(shared.integrity.clone()),
    );
    let audit_sink = shared.audit.clone();
    shared
        .integrity
        .set_listener(Arc::new(move |review| audit_review(&audit_sink, review)));
    shared.metrics.set_sources(state.metric_sources());
    register_extra_collectors(shared);
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

    let proxy = pingora::proxy::http_proxy(
        &server.configuration,
        match dev_as {
            Some(dev_as) => Gateway::new(state.clone()).with_dev_authorization_server(dev_as),
            None => Gateway::new(state.clone()),
        },
    );
    let edge = state.shared.edge.clone();
    let plan = edge.fit_descriptors();
    let limits = edge.limits();
    info!(
        max_connections = plan.max_connections,
        configured = limits.max_connections,
        reserved_fds = limits.reserved_fds,
        descriptor_limit = plan.soft_limit,
        raised_from = plan.raised_from,
        header_timeout = ?limits.header_timeout,
        body_timeout = ?limits.body_timeout,
        body_budget = limits.body_budget,
        "edge limits"
    );
    if plan.max_connections < limits.max_connections {
        warn!(
            "server.limits.max_connections lowered from {} to {}: the descriptor limit is {} and server.limits.reserved_fds keeps {} free for backends and the store (raise `ulimit -n`)",
            limits.max_connections,
            plan.max_connections,
            plan.soft_limit.unwrap_or_default(),
            limits.reserved_fds
        );
    }
    let mut proxy = pingora::services::listening::Service::new(
        "cortex-gateway".to_string(),
        EdgeApp::new(proxy, edge),
    );
    for addr in &listen {
        proxy.add_tcp(&addr.to_string());
    }
    if let Some(certs) = &certs {
        for addr in &tls_listen {
            proxy.add_tls_with_settings(&addr.to_string(), None, certs.listener_settings()?);
        }
    }
    server.add_service(proxy);
    if let Some(source) = source {
        server.add_service(background_service(
            "configuration reload",
            ReloadService::new(state.clone(), source, certs.clone()),
        ));
    }
    for addr in &listen {
        info!(
            "listening on http://{addr} (MCP endpoint {}{})",
            addr, state.shared.mcp_path
        );
    }
    for addr in &tls_listen {
        info!(
            "listening on https://{addr} (TLS, HTTP/2 and HTTP/1.1; MCP endpoint {}{})",
            addr, state.shared.mcp_path
        );
    }
    info!(canonical_uri = %state.shared.canonical_uri, backends = policy.upstreams.len(), "cortex-gateway ready to serve");
    Ok((server, state))
}

/// Runs `server` until a shutdown signal (`crate::shutdown`): SIGTERM drains and exits as
/// soon as nothing is in flight (at most `server.grace_period`), flushing the audit queue.
pub fn run(server: Server, state: &Arc<AppState>) -> ! {
    let grace = state.policy().config.server.grace_period;
    let audit = state.shared.audit.clone();
    let signals = Signals::new(
        state.shared.drain.clone(),
        grace,
        Box::new(move || {
            if !audit.close(crate::audit::CLOSE_TIMEOUT) {
                warn!("audit: not every record reached the store before shutdown");
            }
        }),
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    std::process::exit(0)
}
