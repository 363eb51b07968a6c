//! Everything behind the gateway: the backends (one [`Backend`] seam for every kind), the
//! outbound HTTP client they share, discovery and the live catalog. See `README.md` here for
//! how the parts fit and where the next kind of backend plugs in.

pub mod backend;
pub mod calls;
pub mod catalog;
pub mod contract;
pub mod held;
pub mod http_client;
pub mod native;
pub mod refresh;
pub mod relay;
pub mod vault_auth;

use std::collections::HashMap;
use std::sync::Arc;

pub use backend::{Backend, BackendKind, Call, Discovery, Operation, Replies, Reply};
pub use catalog::{BackendHealth, CatalogState, CatalogStore, ListKind, ListPage};
pub use contract::ContractBackend;
pub use http_client::{HttpClient, Limits, RawReply, Target, TargetError};
pub use native::{NativeBackend, NativeParts, UpstreamAuth};
pub use refresh::{RefreshService, RefreshSettings, Refresher};
pub use relay::Relay;
pub use vault_auth::{vault_refusal, NoVault, VaultAuth};

/// The configured backends, in configuration order (the first listed wins a name
/// collision), with an index by id. Immutable: a configuration reload builds a new one.
#[derive(Default)]
pub struct Upstreams {
    backends: Vec<Arc<dyn Backend>>,
    index: HashMap<String, usize>,
}

impl Upstreams {
    /// The registry of `backends`.
    pub fn new(backends: Vec<Arc<dyn Backend>>) -> Self {
        let index = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id().to_string(), i))
            .collect();
        Upstreams { backends, index }
    }

    /// A backend by id.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Backend>> {
        self.index.get(id).map(|&i| &self.backends[i])
    }

    /// Every backend, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Backend>> {
        self.backends.iter()
    }

    /// How many backends.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}
