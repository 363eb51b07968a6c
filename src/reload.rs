//! Configuration reload without a restart: on SIGHUP, or when the YAML file or the
//! `--env-file` changes on disk, and the TLS certificate when its files change.
//!
//! A reload loads the files exactly as `serve` and `check-config` do (`preflight::load`): a
//! file that does not validate is refused with the same errors (file, line, column, fix),
//! logged, counted (`/readyz` → `reloads.refused`), and the running policy stays. A valid
//! file is compared with the running configuration (`config::diff`): the keys a running
//! process can change are put in force as one new [`Policy`], swapped atomically (requests
//! already running finish on the policy they started with); the keys that need a restart
//! (listeners, storage, secrets, …, `config::RESTART`) keep their running values
//! (`config::keep_restart_keys`: nothing half-applied) and are logged as "needs a restart".
//!
//! After a swap the catalog follows: the refresher reads the backends of the policy in force,
//! so a removed backend's entries leave the catalog (and open sessions get a targeted
//! `list_changed`) at its next tick; a changed backend is rediscovered at once; cached list
//! pages are dropped because presentation settings may have changed.
//!
//! The files are polled (content compared every [`POLL`]) rather than watched through inotify:
//! it follows a Kubernetes ConfigMap's symlink swap and an editor's rename alike, and costs a
//! small read per second. A change is applied once two polls in a row read the same content,
//! so a file caught half-written is not taken.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::config::{self, EnvSource, ProcessEnv};
use crate::state::{AppState, Policy, ReloadReport};
use crate::tls::CertStore;

/// How often the watched files are read.
pub const POLL: Duration = Duration::from_secs(1);

/// Where the running configuration came from: what a reload reads again.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The YAML file (`serve --config`), if any.
    pub file: Option<PathBuf>,
    /// The Cortex env file (`serve --env-file`), if any.
    pub env_file: Option<PathBuf>,
}

impl ConfigSource {
    /// The files' contents now (`None` for a file that cannot be read), to notice a change.
    fn fingerprint(&self) -> Vec<Option<Vec<u8>>> {
        [&self.file, &self.env_file]
            .into_iter()
            .flatten()
            .map(|p| std::fs::read(p).ok())
            .collect()
    }

    /// The environment a load sees: the process environment over the env file, read now.
    fn environment(&self) -> Result<Box<dyn EnvSource>, String> {
        match &self.env_file {
            None => Ok(Box::new(ProcessEnv)),
            Some(path) => config::read_env_file(path)
                .map(|file| {
                    Box::new(config::LayeredEnv::new(ProcessEnv, file)) as Box<dyn EnvSource>
                })
                .map_err(|e| e.to_string()),
        }
    }
}

/// Reloads the configuration now; `trigger` names what asked (for the logs and `/readyz`).
pub fn reload(state: &AppState, source: &ConfigSource, trigger: &str) -> ReloadReport {
    let report = |outcome, applied, needs_restart, error| ReloadReport {
        at_ms: u64::try_from(crate::clock::now_ms()).unwrap_or(0),
        trigger: trigger.to_string(),
        outcome,
        applied,
        needs_restart,
        error,
    };
    let refuse = |message: String| {
        state.shared.reloads.refused.fetch_add(1, Ordering::Relaxed);
        error!(
            trigger,
            "configuration reload refused, the running configuration stays in force:\n{message}"
        );
        let r = report("refused", Vec::new(), Vec::new(), Some(message));
        state.shared.reloads.record(r.clone());
        r
    };
    let env = match source.environment() {
        Ok(env) => env,
        Err(e) => return refuse(e),
    };
    let loaded = match crate::preflight::load(source.file.as_deref(), env.as_ref()) {
        Ok(loaded) => loaded,
        Err(errors) => return refuse(errors.to_string()),
    };
    let running = state.policy();
    let changes = config::diff(&running.config, &loaded.config);
    if changes.is_empty() {
        info!(trigger, "configuration reload: nothing changed");
        let r = report("unchanged", Vec::new(), Vec::new(), None);
        state.shared.reloads.record(r.clone());
        return r;
    }
    let merged = match config::keep_restart_keys(&running.config, &loaded.config) {
        Ok(c) => c,
        Err(e) => {
            return refuse(format!(
                "internal: the new configuration does not read back ({e})"
            ))
        }
    };
    let policy = match Policy::build(Arc::new(merged), &state.shared) {
        Ok(p) => p,
        Err(e) => return refuse(e.to_string()),
    };
    for w in &loaded.warnings {
        warn!("config: {w}");
    }
    let (live, restart): (Vec<_>, Vec<_>) = changes.into_iter().partition(|c| c.reloadable);
    // Backends whose settings changed are rediscovered at once (new URL, kind, scopes);
    // added ones are due at once anyway, removed ones leave at the refresher's next tick.
    let changed_backends: Vec<String> = live
        .iter()
        .filter_map(|c| c.path.strip_prefix("backends["))
        .filter_map(|rest| rest.split_once(']'))
        .filter(|(_, after)| !after.is_empty())
        .map(|(id, _)| id.to_string())
        .collect();
    let implications_changed = running.config.scopes != policy.config.scopes;
    if implications_changed {
        // Callers' grants are expanded at authentication: from now on with the new rules.
        state.shared.auth.set_scope_rules(&policy.scope_rules);
    }
    // Pinning modes are live: when they change, every backend is reviewed again at once
    // (block quarantines what warn let through; warn or off releases what block held).
    let modes_changed = state.shared.integrity.set_modes(&policy.config.integrity);
    state.swap_policy(policy);
    let now = Instant::now();
    state.shared.catalog.with_health(|h| {
        for b in h
            .iter_mut()
            .filter(|b| modes_changed || changed_backends.contains(&b.id))
        {
            b.next_due = now;
        }
    });
    state.shared.catalog.forget_views();
    state.shared.reloads.applied.fetch_add(1, Ordering::Relaxed);
    for c in &live {
        info!(trigger, key = %c.path, "configuration reload: applied");
    }
    for c in &restart {
        warn!(
            trigger,
            key = %c.path,
            "configuration reload: this change needs a restart and is NOT applied; the running value stays until the process restarts"
        );
    }
    info!(
        trigger,
        applied = live.len(),
        needs_restart = restart.len(),
        "configuration reload: new policy in force (requests already running finish on the previous one)"
    );
    let r = report(
        "applied",
        live.into_iter().map(|c| c.path).collect(),
        restart.into_iter().map(|c| c.path).collect(),
        None,
    );
    state.shared.reloads.record(r.clone());
    r
}

/// Re-reads the TLS certificate when its files changed.
fn reload_certificate(state: &AppState, certs: &CertStore) {
    match certs.reload_if_changed() {
        Ok(false) => {}
        Ok(true) => {
            state
                .shared
                .reloads
                .certificates
                .fetch_add(1, Ordering::Relaxed);
            info!(
                cert_file = certs.cert_file(),
                "TLS certificate reloaded from disk: new handshakes use it"
            );
        }
        Err(e) => {
            state
                .shared
                .reloads
                .certificate_errors
                .fetch_add(1, Ordering::Relaxed);
            warn!(
                "TLS certificate changed on disk but cannot be served, the previous one stays: {e}"
            );
        }
    }
}

/// The background service: SIGHUP and the file watch.
pub struct ReloadService {
    state: Arc<AppState>,
    source: ConfigSource,
    certs: Option<Arc<CertStore>>,
}

impl ReloadService {
    /// Reloads `state` from `source`; also follows the certificate of `certs`.
    pub fn new(
        state: Arc<AppState>,
        source: ConfigSource,
        certs: Option<Arc<CertStore>>,
    ) -> ReloadService {
        ReloadService {
            state,
            source,
            certs,
        }
    }
}

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                error!("cannot listen for SIGHUP, reload by signal is off: {e}");
                None
            }
        };
        let mut seen = self.source.fingerprint();
        let mut pending: Option<Vec<Option<Vec<u8>>>> = None;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(
            file = ?self.source.file,
            env_file = ?self.source.env_file,
            "configuration reload: on SIGHUP and when the configuration files change"
        );
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = async {
                    match hup.as_mut() {
                        Some(h) => { h.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {
                    info!("SIGHUP: reloading the configuration");
                    reload(&self.state, &self.source, "SIGHUP");
                    seen = self.source.fingerprint();
                    pending = None;
                    if let Some(certs) = &self.certs {
                        reload_certificate(&self.state, certs);
                    }
                }
                _ = tick.tick() => {
                    let now = self.source.fingerprint();
                    if now == seen {
                        pending = None;
                    } else if pending.as_ref() == Some(&now) {
                        info!("configuration file changed: reloading");
                        reload(&self.state, &self.source, "file change");
                        seen = now;
                        pending = None;
                    } else {
                        pending = Some(now);
                    }
                    if let Some(certs) = &self.certs {
                        reload_certificate(&self.state, certs);
                    }
                }
            }
        }
    }
}
