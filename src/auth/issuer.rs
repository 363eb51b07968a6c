//! The trusted issuer: its discovered metadata and its current signing keys.
//!
//! Keys are replaced as a whole on every successful JWKS fetch (so a key the issuer stopped
//! publishing stops being accepted) and kept on a failed one (so an authorization-server
//! outage does not log everybody out). Fetches happen:
//! - at start and then every `jwks_refresh` (the background service, with backoff on failure);
//! - when a token names a `kid` we do not know: one refetch, single-flight, at most once per
//!   `jwks_min_refetch`, so a flood of tokens with random `kid`s cannot make the gateway hammer
//!   the issuer. That is how a rotated key is picked up at once, without a restart.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::discovery::{self, AsMetadata};
use super::http::AsClient;
use super::jwk::KeySet;
use super::stats::{bump, AuthStats};

/// What `/readyz` shows about the issuer.
#[derive(Debug, Clone)]
pub struct IssuerStatus {
    /// The configured issuer.
    pub issuer: String,
    /// Whether keys are known (tokens can be validated).
    pub ready: bool,
    /// Number of usable keys.
    pub keys: usize,
    /// The JWKS URL in use.
    pub jwks_uri: Option<String>,
    /// When keys were last fetched successfully.
    pub last_success: Option<SystemTime>,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    metadata: Option<AsMetadata>,
    jwks_uri: Option<String>,
    keys: Option<Arc<KeySet>>,
    last_attempt: Option<Instant>,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
}

/// The issuer's metadata and keys, shared by every request.
pub struct Issuer {
    issuer: String,
    jwks_override: Option<String>,
    client: AsClient,
    min_refetch: Duration,
    state: RwLock<State>,
    fetch: tokio::sync::Mutex<()>,
    stats: Arc<AuthStats>,
}

impl Issuer {
    /// An issuer with nothing fetched yet.
    pub fn new(
        issuer: String,
        jwks_override: Option<String>,
        client: AsClient,
        min_refetch: Duration,
    ) -> Issuer {
        Issuer {
            issuer,
            jwks_override,
            client,
            min_refetch,
            state: RwLock::new(State::default()),
            fetch: tokio::sync::Mutex::new(()),
            stats: Arc::default(),
        }
    }

    /// The counters of the token pipeline of this issuer (shared with its validator).
    pub fn stats(&self) -> &Arc<AuthStats> {
        &self.stats
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The current keys, if any fetch ever succeeded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.read().keys.clone()
    }

    /// Installs a key set directly, without fetching: static keys for benchmarks and tests
    /// (and the place a future `jwks_file` setting would use).
    pub fn set_keys(&self, keys: KeySet) {
        let mut s = self.write();
        s.keys = Some(Arc::new(keys));
        s.last_success = Some(SystemTime::now());
        s.last_error = None;
    }

    /// The discovered metadata, if discovery ever succeeded.
    pub fn metadata(&self) -> Option<AsMetadata> {
        self.read().metadata.clone()
    }

    /// The status for `/readyz`.
    pub fn status(&self) -> IssuerStatus {
        let s = self.read();
        IssuerStatus {
            issuer: self.issuer.clone(),
            ready: s.keys.is_some(),
            keys: s.keys.as_ref().map_or(0, |k| k.len()),
            jwks_uri: s.jwks_uri.clone(),
            last_success: s.last_success,
            last_error: s.last_error.clone(),
        }
    }

    /// Discovers the metadata (again) and fetches the JWKS. Single-flight with the unknown-kid
    /// refetch.
    pub async fn refresh(&self) -> Result<(), String> {
        let _guard = self.fetch.lock().await;
        self.refresh_locked().await
    }

    /// One refetch because a token named `kid`, unless the keys already have it (another
    /// request just fetched) or the last fetch is too recent. Returns the keys to use.
    pub async fn refetch_for_kid(&self, kid: &str) -> Option<Arc<KeySet>> {
        let _guard = self.fetch.lock().await;
        let (keys, recent) = {
            let s = self.read();
            (
                s.keys.clone(),
                s.last_attempt
                    .is_some_and(|t| t.elapsed() < self.min_refetch),
            )
        };
        if keys.as_ref().is_some_and(|k| k.has_kid(kid)) || recent {
            return keys;
        }
        info!(issuer = %self.issuer, kid = ?kid, "token signed with an unknown key id: refetching the JWKS");
        bump(&self.stats.jwks_unknown_kid_refetches);
        // The failure is recorded in the status; the caller gets whatever keys we still have.
        let _ = self.refresh_locked().await;
        self.keys()
    }

    async fn refresh_locked(&self) -> Result<(), String> {
        self.write().last_attempt = Some(Instant::now());
        let result = self.fetch_keys().await;
        let mut s = self.write();
        match result {
            Ok((meta, uri, keys)) => {
                bump(&self.stats.jwks_fetch_ok);
                let changed = s.keys.as_ref().is_none_or(|old| old.kids() != keys.kids());
                if changed {
                    info!(issuer = %self.issuer, jwks_uri = %uri, kids = ?keys.kids(), "issuer signing keys loaded");
                }
                if meta.is_some() {
                    s.metadata = meta;
                }
                s.jwks_uri = Some(uri);
                s.keys = Some(Arc::new(keys));
                s.last_success = Some(SystemTime::now());
                s.last_error = None;
                Ok(())
            }
            Err(e) => {
                bump(&self.stats.jwks_fetch_failed);
                warn!(issuer = %self.issuer, error = %e, "cannot load the issuer's signing keys");
                s.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Metadata (when discoverable), the JWKS URL used, and the keys.
    async fn fetch_keys(&self) -> Result<(Option<AsMetadata>, String, KeySet), String> {
        let discovered = discovery::discover(&self.client, &self.issuer).await;
        let (meta, uri) = match (&self.jwks_override, discovered) {
            (Some(uri), Ok(meta)) => (Some(meta), uri.clone()),
            (Some(uri), Err(_)) => (None, uri.clone()),
            (None, Ok(meta)) => match meta.jwks_uri.clone() {
                Some(uri) => (Some(meta), uri),
                None => {
                    return Err(format!(
                    "the metadata of {} has no jwks_uri; set auth.oauth.jwks_url (OAUTH_JWKS_URL)",
                    self.issuer
                ))
                }
            },
            (None, Err(e)) => {
                // Cortex's convention when there is no metadata: <issuer>/.well-known/jwks.json.
                let fallback = format!(
                    "{}/.well-known/jwks.json",
                    self.issuer.trim_end_matches('/')
                );
                return match self.load_jwks(&fallback).await {
                    Ok(keys) => Ok((None, fallback, keys)),
                    Err(e2) => Err(format!("{e}; fallback {e2}")),
                };
            }
        };
        let keys = self.load_jwks(&uri).await?;
        Ok((meta, uri, keys))
    }

    async fn load_jwks(&self, uri: &str) -> Result<KeySet, String> {
        let body = self
            .client
            .get_bytes(uri)
            .await
            .map_err(|e| e.to_string())?;
        KeySet::parse(&body).map_err(|e| format!("{uri}: {e}"))
    }
}
