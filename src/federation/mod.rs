//! Federation of contract backends: resolution, calls, discovery and the live catalog.

pub mod backend;
pub mod client;
pub mod refresh;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

pub use backend::Backend;
pub use client::{ContractClient, RawReply};
pub use refresh::{RefreshSettings, Refresher};
pub use store::{CatalogStore, ListKind, ListPage};

/// Drives the [`Refresher`]: a first discovery at once, then a check every 250 ms for
/// backends whose next discovery is due.
pub struct RefreshService {
    refresher: Arc<Refresher>,
}

impl RefreshService {
    /// Wraps a refresher.
    pub fn new(refresher: Arc<Refresher>) -> Self {
        RefreshService { refresher }
    }
}

#[async_trait]
impl BackgroundService for RefreshService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => self.refresher.tick().await,
            }
        }
    }
}
