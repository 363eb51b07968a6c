//! RFC 7662 token introspection, for revocation: a signature-valid token is also asked about
//! at the authorization server, and the answer is cached (`cache_ttl`, never beyond `exp`).
//!
//! Unlike the TypeScript Cortex, which let every token through when the endpoint failed, this
//! fails closed by default: the request gets a 503 saying revocation cannot be checked.
//! `fail_open: true` restores the Cortex behaviour for those who prefer availability.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tracing::warn;

use super::cache::{deadline_for, digest, DeadlineCache};
use super::http::{AsClient, ClientAuth};
use super::stats::{bump, AuthStats};
use crate::config::IntrospectionConfig;

/// What introspection says about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspected {
    /// Active.
    Active,
    /// Revoked, expired or unknown to the authorization server.
    Inactive,
    /// The endpoint failed and the configuration says to fail closed.
    Unavailable(String),
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    active: bool,
}

/// The introspection client and its cache.
pub struct Introspector {
    url: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    ttl: Duration,
    fail_open: bool,
    client: AsClient,
    cache: DeadlineCache<bool>,
    stats: Arc<AuthStats>,
}

impl Introspector {
    /// From configuration; `None` when no URL is set.
    pub fn new(cfg: &IntrospectionConfig, client: AsClient, capacity: u64) -> Option<Introspector> {
        let url = cfg.url.clone()?;
        Some(Introspector {
            url,
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            ttl: cfg.cache_ttl,
            fail_open: cfg.fail_open,
            client,
            cache: DeadlineCache::new(capacity),
            stats: Arc::default(),
        })
    }

    /// Counts its requests in `stats` (the issuer's).
    pub fn with_stats(mut self, stats: Arc<AuthStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Asks about `token`, whose `exp` is known from its (already verified) claims.
    pub async fn check(&self, token: &str, exp: u64) -> Introspected {
        let key = digest(&[b"introspect", token.as_bytes()]);
        if let Some(active) = self.cache.get(&key) {
            return if active {
                Introspected::Active
            } else {
                Introspected::Inactive
            };
        }
        let auth = match (&self.client_id, &self.client_secret) {
            (Some(id), Some(secret)) => Some(ClientAuth::Basic { id, secret }),
            (Some(id), None) => Some(ClientAuth::Basic { id, secret: "" }),
            _ => None,
        };
        let form = [("token", token), ("token_type_hint", "access_token")];
        match self
            .client
            .post_form::<Answer>(&self.url, auth, &form)
            .await
        {
            Ok(answer) => {
                bump(if answer.active {
                    &self.stats.introspection_active
                } else {
                    &self.stats.introspection_inactive
                });
                // An inactive token never becomes active again: remember it until it expires.
                let ttl = if answer.active {
                    self.ttl
                } else {
                    Duration::MAX
                };
                if let Some(deadline) = deadline_for(exp, ttl) {
                    self.cache
                        .insert(key, answer.active, deadline.min(far_future()));
                }
                if answer.active {
                    Introspected::Active
                } else {
                    Introspected::Inactive
                }
            }
            Err(e) if self.fail_open => {
                bump(&self.stats.introspection_failed);
                warn!(error = %e, "token introspection failed; accepting the token (introspection.fail_open: true)");
                Introspected::Active
            }
            Err(e) => {
                bump(&self.stats.introspection_failed);
                warn!(error = %e, "token introspection failed; refusing the request (fail closed)");
                Introspected::Unavailable(format!(
                    "the authorization server's introspection endpoint cannot be reached, so token revocation cannot be checked: {e}"
                ))
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(24 * 3600)
}
