//! A configured contract backend, resolved for the connector: address, TLS, host header.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::RwLock;
use std::time::Duration;

use cortex_filters::naming::NamingMode;
use pingora::upstreams::peer::HttpPeer;

use crate::config::{BackendConfig, Naming};

/// Why a backend URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The URL does not parse or is not http(s).
    #[error("backend `{id}`: invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// Backend id.
        id: String,
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The host name does not resolve.
    #[error("backend `{id}`: cannot resolve {host}: {reason}")]
    Resolve {
        /// Backend id.
        id: String,
        /// Host name.
        host: String,
        /// Resolver error.
        reason: String,
    },
}

/// A backend ready to be called.
#[derive(Debug)]
pub struct Backend {
    /// Lowercase id.
    pub id: String,
    /// Base URL as configured (for logs and admin views).
    pub url: String,
    /// `https`?
    pub tls: bool,
    /// Host name (SNI and `Host` header).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `Host` header value (`host[:port]`).
    pub host_header: String,
    /// Request path: the URL's own path joined with the contract path.
    pub path: String,
    /// Per-call timeout.
    pub timeout: Duration,
    /// How its entries are named.
    pub naming: NamingMode,
    /// Discovery token.
    pub technical_token: Option<String>,
    /// The resolved address; `None` while the host name does not resolve (the refresher
    /// retries, and calls fail as "unreachable" meanwhile: a DNS hiccup at start must not keep
    /// the gateway down).
    addr: RwLock<Option<SocketAddr>>,
}

impl Backend {
    /// Builds a backend from configuration, resolving its host once (the refresher re-resolves
    /// names periodically with [`Backend::resolve`]).
    pub fn from_config(
        cfg: &BackendConfig,
        technical_token: Option<&str>,
    ) -> Result<Self, BackendError> {
        let invalid = |reason: &str| BackendError::InvalidUrl {
            id: cfg.id.clone(),
            url: cfg.url.clone(),
            reason: reason.into(),
        };
        let url = url::Url::parse(&cfg.url).map_err(|e| invalid(&e.to_string()))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(invalid("scheme must be http or https")),
        };
        let host = url
            .host_str()
            .ok_or_else(|| invalid("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("no port"))?;
        let default_port = if tls { 443 } else { 80 };
        let host_header = match url.host() {
            Some(url::Host::Ipv6(a)) if port != default_port => format!("[{a}]:{port}"),
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            _ if port != default_port => format!("{host}:{port}"),
            _ => host.clone(),
        };
        let base = url.path().trim_end_matches('/');
        let path = format!("{base}{}", cfg.path);
        let addr = match resolve_host(&cfg.id, &host, port) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!("{e}; retrying at every discovery");
                None
            }
        };
        Ok(Backend {
            id: cfg.id.clone(),
            url: cfg.url.clone(),
            tls,
            host,
            port,
            host_header,
            path,
            timeout: cfg.timeout,
            naming: match cfg.naming {
                Naming::Prefix => NamingMode::Prefix,
                Naming::None => NamingMode::None,
            },
            technical_token: cfg
                .technical_token
                .clone()
                .or_else(|| technical_token.map(str::to_string)),
            addr: RwLock::new(addr),
        })
    }

    /// The current address, if the host name resolved.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self.addr.read() {
            Ok(a) => *a,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Re-resolves the host name off the async threads (DNS is blocking).
    pub async fn resolve(&self) -> Result<(), BackendError> {
        if self.host.parse::<std::net::IpAddr>().is_ok() {
            return Ok(());
        }
        let (id, host, port) = (self.id.clone(), self.host.clone(), self.port);
        let resolved = tokio::task::spawn_blocking(move || resolve_host(&id, &host, port))
            .await
            .map_err(|e| BackendError::Resolve {
                id: self.id.clone(),
                host: self.host.clone(),
                reason: e.to_string(),
            })??;
        if let Ok(mut a) = self.addr.write() {
            *a = Some(resolved);
        }
        Ok(())
    }

    /// A pingora peer for this backend with its timeouts set. Connections are pooled by the
    /// connector; idle pooled connections are dropped after 30 s (before typical backend
    /// keep-alive timeouts) so a reused connection is rarely a dead one.
    pub fn peer(&self) -> Option<HttpPeer> {
        let mut peer = HttpPeer::new(self.addr()?, self.tls, self.host.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(self.timeout.min(Duration::from_secs(5)));
        o.total_connection_timeout = Some(self.timeout);
        o.read_timeout = Some(self.timeout);
        o.write_timeout = Some(self.timeout);
        o.idle_timeout = Some(Duration::from_secs(30));
        Some(peer)
    }
}

fn resolve_host(id: &str, host: &str, port: u16) -> Result<SocketAddr, BackendError> {
    let err = |reason: String| BackendError::Resolve {
        id: id.into(),
        host: host.into(),
        reason,
    };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))
}
