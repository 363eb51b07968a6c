//! The background service of the auth module: keeps the issuer's metadata and keys current and
//! rotates the gateway's minting keys.
//!
//! An unreachable issuer never stops the gateway: the first fetch is retried with exponential
//! backoff (1 s doubling to 60 s) while the gateway serves what it can (dev bypass, 503 with a
//! clear body for bearer requests, `/readyz` says why); once keys are known they are refreshed
//! every `jwks_refresh`, and a failed refresh keeps the known keys.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::issuer::Issuer;
use super::mint::{report_rotation_error, Minter};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Refreshes keys and rotates minting keys until shutdown.
pub struct AuthService {
    issuer: Option<Arc<Issuer>>,
    refresh: Duration,
    minter: Option<Arc<Minter>>,
}

impl AuthService {
    /// A service for whatever is configured (either part may be absent).
    pub fn new(
        issuer: Option<Arc<Issuer>>,
        refresh: Duration,
        minter: Option<Arc<Minter>>,
    ) -> AuthService {
        AuthService {
            issuer,
            refresh: refresh.max(Duration::from_secs(1)),
            minter,
        }
    }

    /// Whether there is anything to do.
    pub fn is_needed(&self) -> bool {
        self.issuer.is_some()
            || self
                .minter
                .as_ref()
                .is_some_and(|m| m.rotation_check_interval().is_some())
    }

    async fn issuer_loop(issuer: Arc<Issuer>, refresh: Duration) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let wait = match issuer.refresh().await {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    refresh
                }
                Err(_) => {
                    let w = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // Known keys are kept: retry at the refresh pace, not the startup pace.
                    if issuer.keys().is_some() {
                        w.max(refresh.min(MAX_BACKOFF))
                    } else {
                        w
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn rotation_loop(minter: Arc<Minter>) {
        let Some(every) = minter.rotation_check_interval() else {
            return;
        };
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = minter.maybe_rotate() {
                report_rotation_error(&e);
            }
        }
    }
}

#[async_trait]
impl BackgroundService for AuthService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let issuer = self
            .issuer
            .clone()
            .map(|i| Self::issuer_loop(i, self.refresh));
        let minter = self.minter.clone().map(Self::rotation_loop);
        let work = async move {
            tokio::join!(
                async move {
                    if let Some(f) = issuer {
                        f.await
                    }
                },
                async move {
                    if let Some(f) = minter {
                        f.await
                    }
                }
            );
        };
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = work => {}
        }
    }
}
