//! The one outbound HTTP POST of the gateway, on Pingora's connector (shared TLS stack and
//! connection pool): contract calls, discovery and the ticket webhook all go through
//! [`HttpClient::post`], to a [`Target`] made once from a URL.
//!
//! Every call is bounded as a whole: connect, send and the complete reply must fit in the
//! given timeout (a backend that drips one byte at a time cannot hold a call longer), and a
//! reply larger than the given limit stops being read at once.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cortex_filters::contract::TransportFailure;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession as ClientSession;
use pingora::protocols::http::v1::client::{http_req_header_to_wire, HttpSession as H1Session};
use pingora::protocols::Stream;
use pingora::upstreams::peer::{HttpPeer, Peer as _};
use tokio::io::AsyncWriteExt;

/// How long an idle pooled connection is kept (before typical backend keep-alive timeouts,
/// so a reused connection is rarely a dead one).
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Why a URL cannot be a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The URL does not parse, is not http(s), or has no host.
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// Host name.
        host: String,
        /// Resolver error.
        reason: String,
    },
}

/// Where requests go: scheme, host, port, the `Host` header and the request path, with the
/// resolved address (refreshed by [`Target::resolve`]).
#[derive(Debug)]
pub struct Target {
    /// `https`?
    pub tls: bool,
    /// Host name or address, without brackets (SNI, resolution).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The `Host` header: `host[:port]`, the port only when it is not the scheme's default,
    /// IPv6 addresses in brackets.
    pub host_header: String,
    /// Request path (and query).
    pub path: String,
    addr: RwLock<Option<SocketAddr>>,
}

impl Target {
    /// A target for `url`, with `extra_path` appended to the URL's own path (the contract
    /// path of a backend; empty for a webhook URL, whose query is kept). Does not resolve
    /// the host name, except an address literal.
    pub fn from_url(url: &str, extra_path: &str) -> Result<Target, TargetError> {
        let invalid = |reason: &str| TargetError::InvalidUrl {
            url: url.to_string(),
            reason: reason.into(),
        };
        let u = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let tls = match u.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(invalid("scheme must be http or https")),
        };
        let host = u
            .host_str()
            .ok_or_else(|| invalid("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = u
            .port_or_known_default()
            .ok_or_else(|| invalid("no port"))?;
        let default_port = if tls { 443 } else { 80 };
        let bracketed = match u.host() {
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            _ => host.clone(),
        };
        let host_header = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        let mut path = format!("{}{extra_path}", u.path().trim_end_matches('/'));
        if path.is_empty() {
            path.push('/');
        }
        if let Some(q) = u.query() {
            path.push('?');
            path.push_str(q);
        }
        let literal = host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        Ok(Target {
            tls,
            host,
            port,
            host_header,
            path,
            addr: RwLock::new(literal),
        })
    }

    /// The URL form, for administrators and logs.
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            self.host_header,
            self.path
        )
    }

    /// The current address, if the host name resolved.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self.addr.read() {
            Ok(a) => *a,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn is_literal(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }

    fn set_addr(&self, addr: SocketAddr) {
        match self.addr.write() {
            Ok(mut a) => *a = Some(addr),
            Err(poisoned) => *poisoned.into_inner() = Some(addr),
        }
    }

    /// Resolves the host name now, blocking (for start-up, outside the async runtime).
    pub fn resolve_blocking(&self) -> Result<(), TargetError> {
        if self.is_literal() {
            return Ok(());
        }
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| self.resolve_error(e.to_string()))?
            .next()
            .ok_or_else(|| self.resolve_error("no address".into()))?;
        self.set_addr(addr);
        Ok(())
    }

    /// Re-resolves the host name without blocking the runtime.
    pub async fn resolve(&self) -> Result<(), TargetError> {
        if self.is_literal() {
            return Ok(());
        }
        let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| self.resolve_error(e.to_string()))?
            .next()
            .ok_or_else(|| self.resolve_error("no address".into()))?;
        self.set_addr(addr);
        Ok(())
    }

    fn resolve_error(&self, reason: String) -> TargetError {
        TargetError::Resolve {
            host: self.host.clone(),
            reason,
        }
    }

    /// A Pingora peer with the per-phase timeouts of `timeout` (the whole call is bounded by
    /// [`HttpClient::post`]).
    fn peer(&self, timeout: Duration) -> Option<HttpPeer> {
        let mut peer = HttpPeer::new(self.addr()?, self.tls, self.host.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(timeout.min(Duration::from_secs(5)));
        o.total_connection_timeout = Some(timeout);
        o.read_timeout = Some(timeout);
        o.write_timeout = Some(timeout);
        o.idle_timeout = Some(POOL_IDLE);
        Some(peer)
    }
}

/// A reply as received.
#[derive(Debug, Clone)]
pub struct RawReply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `X-Cortex-Reply` (the contract's reply kind).
    pub reply_kind: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl RawReply {
    /// Borrowed view for the contract mappers.
    pub fn as_reply(&self) -> cortex_filters::contract::Reply<'_> {
        cortex_filters::contract::Reply {
            status: self.status,
            content_type: self.content_type.as_deref(),
            reply_kind: self.reply_kind.as_deref(),
            body: &self.body,
        }
    }
}

/// Bounds of one POST.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole call: connect, send, and the complete reply.
    pub timeout: Duration,
    /// The largest reply body read.
    pub max_reply: usize,
}

/// The shared outbound client: one Pingora connector (connections, TLS), so every call
/// shares its pool of idle connections.
pub struct HttpClient {
    connector: Connector,
    idle: IdlePool,
}

/// The most idle HTTP/1 connections kept per peer.
const MAX_IDLE_PER_PEER: usize = 128;

/// Idle keep-alive HTTP/1 connections, per peer (Pingora's reuse hash), most recently used
/// last.
///
/// Kept here rather than in Pingora's pool: a connection given back to Pingora's pool is
/// watched by a task spawned for it, and a call that asks for it before that task has let
/// go of it (the next call of a sequential caller, a few microseconds later, often on the
/// other worker thread) finds it still held, drops it and opens a new connection (one call
/// in three at one caller). Here a connection is back the moment its reply is read. A
/// connection the server closed while idle is found closed when taken and dropped then;
/// at most [`MAX_IDLE_PER_PEER`] per peer, none older than [`POOL_IDLE`].
#[derive(Default)]
struct IdlePool {
    peers: std::sync::Mutex<std::collections::HashMap<u64, Vec<(Instant, Stream)>>>,
}

impl IdlePool {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Vec<(Instant, Stream)>>> {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently used idle connection to `key` that is still open, if any.
    fn take(&self, key: u64) -> Option<Stream> {
        loop {
            let (since, stream) = {
                let mut peers = self.lock();
                let idle = peers.get_mut(&key)?;
                let last = idle.pop();
                if idle.is_empty() {
                    peers.remove(&key);
                }
                last?
            };
            if since.elapsed() >= POOL_IDLE {
                // The rest idled longer still.
                self.lock().remove(&key);
                return None;
            }
            if let Some(stream) = still_open(stream) {
                return Some(stream);
            }
        }
    }

    /// Keeps `stream` for the next request to `key`.
    fn put(&self, key: u64, stream: Stream) {
        let now = Instant::now();
        let mut peers = self.lock();
        let idle = peers.entry(key).or_default();
        idle.retain(|(since, _)| now.duration_since(*since) < POOL_IDLE);
        if idle.len() >= MAX_IDLE_PER_PEER {
            idle.remove(0);
        }
        idle.push((now, stream));
    }
}

/// `stream` when it is still usable: nothing to read (a server never speaks first on an
/// idle HTTP/1 connection) and not closed.
fn still_open(mut stream: Stream) -> Option<Stream> {
    use futures::FutureExt;
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    match tokio::task::unconstrained(stream.read(&mut byte)).now_or_never() {
        None => Some(stream),
        Some(_) => None,
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with its own connection pool.
    pub fn new() -> Self {
        HttpClient {
            connector: Connector::new(None),
            idle: IdlePool::default(),
        }
    }

    /// A client verifying `https://` peers with the CA bundle `ca_file` (instead of the
    /// system's roots) and showing the client certificate `client_cert_key` (certificate
    /// and key files) to peers that ask for one. The files were checked by the start-up
    /// checks.
    pub fn with_tls(ca_file: Option<String>, client_cert_key: Option<(String, String)>) -> Self {
        if ca_file.is_none() && client_cert_key.is_none() {
            return Self::new();
        }
        let mut options = pingora::connectors::ConnectorOptions::new(128);
        options.ca_file = ca_file;
        options.cert_key_file = client_cert_key;
        HttpClient {
            connector: Connector::new(Some(options)),
            idle: IdlePool::default(),
        }
    }

    /// A session to `peer`: an idle pooled HTTP/1 connection when one is open, else one
    /// from the connector (a new connection, or HTTP/2).
    async fn session(&self, peer: &HttpPeer) -> pingora::Result<ClientSession> {
        if let Some(stream) = self.idle.take(peer.reuse_hash()) {
            return Ok(ClientSession::H1(H1Session::new_with_options(stream, peer)));
        }
        let (session, _reused) = self.connector.get_http_session(peer).await?;
        Ok(session)
    }

    /// Gives a session whose reply was read whole back for reuse (an HTTP/1 connection the
    /// server keeps alive goes to [`IdlePool`]; HTTP/2 to the connector).
    async fn release(&self, session: ClientSession, peer: &HttpPeer) {
        match session {
            ClientSession::H1(mut h1) => {
                h1.respect_keepalive();
                if let Some(stream) = h1.reuse().await {
                    self.idle.put(peer.reuse_hash(), stream);
                }
            }
            other => {
                self.connector
                    .release_http_session(other, peer, Some(POOL_IDLE))
                    .await
            }
        }
    }

    /// POSTs `body` (JSON) to `target` with `headers` (lowercase name, value) besides `Host`,
    /// `Content-Type` and `Content-Length`, within `limits`. Never retried: the request may
    /// have reached the other side.
    pub async fn post(
        &self,
        target: &Target,
        headers: &[(&'static str, String)],
        body: Bytes,
        limits: Limits,
    ) -> Result<RawReply, TransportFailure> {
        let timeout = limits.timeout;
        // Boxed: the exchange holds Pingora's connect and session state (several KB), and
        // every caller up to the request handler would otherwise move it by value.
        let exchange = Box::pin(self.exchange(target, headers, body, limits));
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(TransportFailure::Timeout {
                timeout_ms: duration_ms(timeout),
            }),
        }
    }

    async fn exchange(
        &self,
        target: &Target,
        headers: &[(&'static str, String)],
        body: Bytes,
        limits: Limits,
    ) -> Result<RawReply, TransportFailure> {
        let peer = target
            .peer(limits.timeout)
            .ok_or_else(|| TransportFailure::Unreachable {
                reason: format!("host {} does not resolve", target.host),
            })?;
        let failed = |e: Box<pingora::Error>| classify(&e, limits.timeout);
        let session = self.session(&peer).await.map_err(failed)?;
        let head = request_head(target, "POST", headers, body.len())?;
        let (mut session, written) = write_request(session, &peer, head, Some(body)).await;
        // A server may answer before it has read the whole body (413, 401...): its answer
        // matters more than the write error.
        if let Err(write_error) = written {
            if session.read_response_header().await.is_err() || session.response_header().is_none()
            {
                return Err(failed(write_error));
            }
        }
        if session.response_header().is_none() {
            session.read_response_header().await.map_err(failed)?;
        }
        while session
            .response_header()
            .is_some_and(|h| h.status.is_informational())
        {
            session.read_response_header().await.map_err(failed)?;
        }
        let (status, content_type, reply_kind, announced) = match session.response_header() {
            Some(h) => (
                h.status.as_u16(),
                header_text(h, "content-type"),
                header_text(h, cortex_filters::contract::REPLY_KIND_HEADER),
                header_text(h, "content-length").and_then(|v| v.trim().parse::<u64>().ok()),
            ),
            None => {
                return Err(TransportFailure::Unreachable {
                    reason: "no response header".into(),
                })
            }
        };
        // A reply that announces more than the limit is refused before its body is read:
        // reading 16 MiB only to throw it away costs the call's whole timeout under load.
        if announced.is_some_and(|n| n > limits.max_reply as u64) {
            return Err(TransportFailure::Unreachable {
                reason: format!("reply larger than {} bytes", limits.max_reply),
            });
        }
        let mut buf = BytesMut::new();
        while let Some(chunk) = session.read_response_body().await.map_err(failed)? {
            if buf.len() + chunk.len() > limits.max_reply {
                // Stop here: the connection is dropped, never pooled with a reply half read.
                return Err(TransportFailure::Unreachable {
                    reason: format!("reply larger than {} bytes", limits.max_reply),
                });
            }
            buf.extend_from_slice(&chunk);
        }
        self.release(session, &peer).await;
        Ok(RawReply {
            status,
            content_type,
            reply_kind,
            body: buf.freeze(),
        })
    }
}

/// The request head of every outbound POST: a fresh header, so nothing of the client's own
/// request (cookies, session ids, its `Authorization`) leaks except what `headers` carries.
fn request_head(
    target: &Target,
    method: &str,
    headers: &[(&'static str, String)],
    body_len: usize,
) -> Result<RequestHeader, TransportFailure> {
    let invalid = |name: &str, e: Box<pingora::Error>| TransportFailure::Unreachable {
        reason: format!("invalid header {name}: {e}"),
    };
    let mut req = RequestHeader::build(method, target.path.as_bytes(), Some(headers.len() + 3))
        .map_err(|e| invalid("path", e))?;
    req.insert_header("host", &target.host_header)
        .map_err(|e| invalid("host", e))?;
    req.insert_header("content-type", "application/json")
        .map_err(|e| invalid("content-type", e))?;
    req.insert_header("content-length", body_len.to_string())
        .map_err(|e| invalid("content-length", e))?;
    for (name, value) in headers {
        req.insert_header(*name, value.as_str())
            .map_err(|e| invalid(name, e))?;
    }
    Ok(req)
}

/// A reply whose body is read as it arrives: the replies of MCP servers, which may be a
/// stream of server-sent events as long as the call lasts. Every read is bounded by the
/// timeout the request was sent with; dropping it drops the connection (never pooled half
/// read); [`HttpClient::read_whole`] reads it to its end and pools the connection again.
pub struct OpenReply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Mcp-Session-Id`.
    pub session_id: Option<String>,
    session: ClientSession,
    peer: HttpPeer,
    timeout: Duration,
}

impl OpenReply {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, TransportFailure> {
        self.session
            .read_response_body()
            .await
            .map_err(|e| classify(&e, self.timeout))
    }

    /// The whole (rest of the) body, at most `max` bytes.
    pub async fn body(&mut self, max: usize) -> Result<Bytes, TransportFailure> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            if buf.len() + chunk.len() > max {
                return Err(TransportFailure::Unreachable {
                    reason: format!("reply larger than {max} bytes"),
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

impl HttpClient {
    /// The whole body of `reply` (at most `max` bytes), then its connection goes back to the
    /// pool for the next request to the same peer: a JSON reply read to its end leaves the
    /// connection clean, so a call to an MCP server does not pay a new connection each time.
    pub async fn read_whole(
        &self,
        mut reply: OpenReply,
        max: usize,
    ) -> Result<Bytes, TransportFailure> {
        let body = reply.body(max).await?;
        self.release(reply.session, &reply.peer).await;
        Ok(body)
    }

    /// Sends `method` (POST, DELETE…) with an optional JSON body and returns as soon as the
    /// reply's header is in; the body is read with [`OpenReply::chunk`]. Connect, send and
    /// the header must come within `timeout`, and so must every later read. The connection
    /// is a pooled one when one is idle; it goes back to the pool only through
    /// [`HttpClient::read_whole`] (a stream may last as long as a call).
    pub async fn send(
        &self,
        target: &Target,
        method: &str,
        headers: &[(String, String)],
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<OpenReply, TransportFailure> {
        let open = Box::pin(self.open(target, method, headers, body, timeout));
        match tokio::time::timeout(timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(TransportFailure::Timeout {
                timeout_ms: duration_ms(timeout),
            }),
        }
    }

    async fn open(
        &self,
        target: &Target,
        method: &str,
        headers: &[(String, String)],
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<OpenReply, TransportFailure> {
        let peer = target
            .peer(timeout)
            .ok_or_else(|| TransportFailure::Unreachable {
                reason: format!("host {} does not resolve", target.host),
            })?;
        let failed = |e: Box<pingora::Error>| classify(&e, timeout);
        let session = self.session(&peer).await.map_err(failed)?;
        let len = body.as_ref().map_or(0, Bytes::len);
        let mut head = request_head(target, method, &[], len)?;
        if body.is_none() {
            head.remove_header("content-type");
        }
        for (name, value) in headers {
            head.insert_header(name.clone(), value.as_str())
                .map_err(|e| TransportFailure::Unreachable {
                    reason: format!("invalid header {name}: {e}"),
                })?;
        }
        let (mut session, written) = write_request(session, &peer, head, body).await;
        written.map_err(failed)?;
        session.read_response_header().await.map_err(failed)?;
        while session
            .response_header()
            .is_some_and(|h| h.status.is_informational())
        {
            session.read_response_header().await.map_err(failed)?;
        }
        let Some(h) = session.response_header() else {
            return Err(TransportFailure::Unreachable {
                reason: "no response header".into(),
            });
        };
        Ok(OpenReply {
            status: h.status.as_u16(),
            content_type: header_text(h, "content-type"),
            session_id: header_text(h, "mcp-session-id"),
            session,
            peer,
            timeout,
        })
    }
}

/// Writes the request head and its body. Over HTTP/1 both go out in one vectored write, so
/// a small request is one segment and one system call (Pingora's own request writer flushes
/// the head on its own, then writes the body: two of each); the session is then rebuilt on
/// the same connection to read the reply, as the connector builds it. Other protocols use
/// Pingora's writer. Returns the session (to read the reply even after a write error).
async fn write_request(
    session: ClientSession,
    peer: &HttpPeer,
    head: RequestHeader,
    body: Option<Bytes>,
) -> (ClientSession, pingora::Result<()>) {
    match session {
        ClientSession::H1(h1) => {
            let Some(wire) = http_req_header_to_wire(&head) else {
                return (
                    ClientSession::H1(h1),
                    pingora::Error::e_explain(
                        pingora::ErrorType::InvalidHTTPHeader,
                        "the request line holds a forbidden byte",
                    ),
                );
            };
            let mut stream = h1.into_inner();
            let body = body.unwrap_or_default();
            let written = match write_all_two(&mut stream, &wire, &body).await {
                Ok(()) => stream.flush().await,
                Err(e) => Err(e),
            };
            let session = ClientSession::H1(H1Session::new_with_options(stream, peer));
            let written = written.map_err(|e| {
                pingora::Error::because(pingora::ErrorType::WriteError, "writing the request", e)
            });
            (session, written)
        }
        mut other => {
            let written = write_with_pingora(&mut other, head, body).await;
            (other, written)
        }
    }
}

async fn write_with_pingora(
    session: &mut ClientSession,
    head: RequestHeader,
    body: Option<Bytes>,
) -> pingora::Result<()> {
    session.write_request_header(Box::new(head)).await?;
    if let Some(body) = body {
        session.write_request_body(body, false).await?;
    }
    session.finish_request_body().await
}

/// Writes `first` then `second` with as few (vectored) writes as the socket allows.
async fn write_all_two(
    stream: &mut pingora::protocols::Stream,
    mut first: &[u8],
    mut second: &[u8],
) -> std::io::Result<()> {
    while !first.is_empty() || !second.is_empty() {
        let n = if first.is_empty() {
            stream.write(second).await?
        } else {
            let parts = [std::io::IoSlice::new(first), std::io::IoSlice::new(second)];
            stream.write_vectored(&parts).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_first = n.min(first.len());
        first = &first[from_first..];
        second = &second[n - from_first..];
    }
    Ok(())
}

fn header_text(h: &pingora::http::ResponseHeader, name: &str) -> Option<String> {
    h.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Maps a Pingora error to a transport failure (timeouts are named as such).
pub fn classify(e: &pingora::Error, timeout: Duration) -> TransportFailure {
    use pingora::ErrorType::*;
    match e.etype() {
        ConnectTimedout | ReadTimedout | WriteTimedout => TransportFailure::Timeout {
            timeout_ms: duration_ms(timeout),
        },
        ConnectRefused => TransportFailure::Unreachable {
            reason: "connection refused".into(),
        },
        _ => {
            let mut s = e.etype().as_str().to_string();
            if let Some(ctx) = e.context.as_ref() {
                s.push_str(": ");
                s.push_str(ctx.as_str());
            }
            TransportFailure::Unreachable {
                reason: s.chars().take(200).collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_omits_default_ports_and_brackets_ipv6() {
        let t = Target::from_url("http://crm.internal:80/base/", "/api/cortex/backend").unwrap();
        assert_eq!(t.host_header, "crm.internal");
        assert_eq!(t.path, "/base/api/cortex/backend");
        let t = Target::from_url("https://[::1]:8443", "/x").unwrap();
        assert_eq!(t.host_header, "[::1]:8443");
        assert_eq!(t.host, "::1");
        assert!(t.addr().is_some());
        let t = Target::from_url("https://hooks.example/in?k=v", "").unwrap();
        assert_eq!(t.host_header, "hooks.example");
        assert_eq!(t.path, "/in?k=v");
        assert!(t.addr().is_none());
        let t = Target::from_url("http://127.0.0.1:9", "").unwrap();
        assert_eq!(t.path, "/");
        assert_eq!(t.url(), "http://127.0.0.1:9/");
    }

    /// A connected pair on 127.0.0.1: the client side as a Pingora stream, and the server's.
    async fn pair() -> (Stream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let l4: pingora::protocols::l4::stream::Stream = client.into();
        (Box::new(l4), server)
    }

    #[tokio::test]
    async fn idle_connections_come_back_newest_first_and_closed_ones_are_dropped() {
        let pool = IdlePool::default();
        let (a, _a_server) = pair().await;
        let (b, b_server) = pair().await;
        let (a_id, b_id) = (a.id(), b.id());
        pool.put(7, a);
        pool.put(7, b);
        assert!(
            pool.take(8).is_none(),
            "another peer's connections are not shared"
        );
        let newest = pool.take(7).expect("an open idle connection");
        assert_eq!(newest.id(), b_id);
        pool.put(7, newest);
        // The server closes the newest one while it idles: it is skipped and dropped.
        drop(b_server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let next = pool.take(7).expect("the older connection is still open");
        assert_eq!(next.id(), a_id);
        assert!(pool.take(7).is_none());
    }

    #[test]
    fn bad_urls_are_refused() {
        for u in ["ftp://x", "not a url", "http://"] {
            assert!(Target::from_url(u, "").is_err(), "{u}");
        }
    }
}
