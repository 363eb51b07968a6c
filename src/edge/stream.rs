//! The connection as the edge sees it: which part of a request is being read and by when.
//!
//! [`EdgeStream`] wraps a downstream connection under Pingora's HTTP/1 session. While a
//! request header is expected it reads on Pingora's behalf and hands nothing over until
//! the header is complete (an empty line seen), with one deadline counted from the header's
//! first byte. A client that stalls or disconnects before that point is therefore seen by
//! Pingora as a connection closed before any request (which it drops quietly), and the
//! edge logs it at debug level and counts it. Once the gateway has the header it arms the
//! body deadline ([`Conn::expect_body`]); after the body the connection reads freely (a
//! notification stream only watches it for the client's close).
//!
//! Once a request hands its connection over ([`Conn::take_over`], see [`super::takeover`]),
//! the wrapper swallows Pingora's writes and, when dropped, keeps the connection for the
//! edge instead of closing it.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tracing::debug;

use super::takeover::{Handoff, Takeover};
use super::{Edge, EdgeCounters};

/// The largest request header the edge holds (Pingora's own limit is 1 MiB): a larger one
/// closes the connection, so that stalled headers pin at most this much memory per
/// connection (64 KiB × `max_connections`). A request header of the gateway's clients
/// (a bearer token, MCP headers) is a few KiB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Which deadline expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The request header's.
    Header,
    /// The request body's.
    Body,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A request header is expected; the deadline runs from `first_byte` (from the accept
    /// on a new connection; unset on a kept-alive one until the first byte arrives).
    Header { first_byte: Option<Instant> },
    /// Reading under a deadline (the rest of a header Pingora asked more of, or a body).
    Reading { until: Instant, what: Expired },
    /// No deadline of the edge's (after the body; HTTP/2).
    Open,
    /// A deadline passed: every further read fails.
    Expired(Expired),
}

/// One downstream connection's reading state, shared by its [`EdgeStream`] and the
/// requests served on it.
pub struct Conn {
    edge: Arc<Edge>,
    phase: Mutex<Phase>,
    /// A request handed the connection over ([`Conn::take_over`]): the wrapper swallows
    /// Pingora's writes and keeps the connection when dropped. Read on every write, hence
    /// an atomic of its own.
    taken: AtomicBool,
    /// The writer the connection is handed to, and the connection once Pingora let go.
    handoff: Mutex<Parked>,
}

#[derive(Default)]
struct Parked {
    takeover: Option<Takeover>,
    io: Option<(Stream, BytesMut)>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("phase", &self.phase())
            .field("taken", &self.is_taken())
            .finish()
    }
}

impl Conn {
    /// A new connection of `edge`: its first request header is due within the header
    /// deadline from now (a connection that sends nothing is held no longer than one that
    /// sends slowly). On a kept-alive connection the deadline starts with the next header's
    /// first byte instead ([`Conn::expect_header`]); until then the keep-alive timeout
    /// bounds the wait.
    pub fn new(edge: Arc<Edge>) -> Conn {
        Conn {
            edge,
            phase: Mutex::new(Phase::Header {
                first_byte: Some(Instant::now()),
            }),
            taken: AtomicBool::new(false),
            handoff: Mutex::new(Parked::default()),
        }
    }

    /// Hands the connection to `takeover` once the current request is over as far as
    /// Pingora knows: call it after the answer's head (and anything to be written through
    /// Pingora) is written and flushed, and before returning from the request filter. What
    /// Pingora writes afterwards (the end of the answer it believes complete) is dropped;
    /// `takeover` writes the rest. HTTP/1 only (an HTTP/2 stream is not a connection).
    pub fn take_over(&self, takeover: Takeover) {
        self.parked().takeover = Some(takeover);
        self.taken.store(true, Ordering::Release);
    }

    /// Whether a request handed the connection over.
    pub fn is_taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, Parked> {
        self.handoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the connection Pingora let go of (its wrapper was dropped).
    fn park(&self, io: Stream, unread: BytesMut) {
        self.parked().io = Some((io, unread));
    }

    /// The writer and the connection, once both are there (the taken flag is cleared).
    pub(super) fn take_handoff(&self) -> Option<Handoff> {
        let mut parked = self.parked();
        self.taken.store(false, Ordering::Release);
        let takeover = parked.takeover.take();
        let io = parked.io.take();
        match (takeover, io) {
            (Some(takeover), Some((io, pending))) => Some(Handoff {
                takeover,
                io,
                pending,
            }),
            _ => None,
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
    }

    /// The next request header is expected (a new connection, or the previous response
    /// was written).
    pub fn expect_header(&self) {
        if !matches!(self.phase(), Phase::Expired(_)) {
            self.set(Phase::Header { first_byte: None });
        }
    }

    /// The header is in; its body (if any) must arrive within the body deadline.
    pub fn expect_body(&self) {
        if !matches!(self.phase(), Phase::Expired(_)) {
            self.set(Phase::Reading {
                until: Instant::now() + self.edge.limits.body_timeout,
                what: Expired::Body,
            });
        }
    }

    /// The request has no body, or it was read: no deadline until the next header.
    pub fn body_done(&self) {
        if !matches!(self.phase(), Phase::Expired(_)) {
            self.set(Phase::Open);
        }
    }

    /// Whether the body deadline passed (a read error is then the deadline's doing).
    pub fn body_expired(&self) -> bool {
        matches!(self.phase(), Phase::Expired(Expired::Body))
    }

    /// The edge this connection belongs to.
    pub fn edge(&self) -> &Arc<Edge> {
        &self.edge
    }

    /// Marks `what` expired; counts it the first time.
    fn expire(&self, what: Expired) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*phase, Phase::Expired(_)) {
            return;
        }
        *phase = Phase::Expired(what);
        let c = &self.edge.counters;
        EdgeCounters::inc(match what {
            Expired::Header => &c.header_timeouts,
            Expired::Body => &c.body_timeouts,
        });
    }
}

/// A downstream connection with the edge's deadlines (see the module documentation).
pub struct EdgeStream {
    inner: Stream,
    conn: Arc<Conn>,
    /// Header bytes read and not yet handed over.
    held: BytesMut,
    /// Bytes handed over, not yet read by Pingora.
    ready: BytesMut,
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl fmt::Debug for EdgeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeStream")
            .field("inner", &self.inner)
            .field("held", &self.held.len())
            .finish()
    }
}

impl EdgeStream {
    /// Wraps `inner`, read under `conn`'s deadlines.
    pub fn new(inner: Stream, conn: Arc<Conn>) -> EdgeStream {
        EdgeStream {
            inner,
            conn,
            held: BytesMut::new(),
            ready: BytesMut::new(),
            timer: None,
        }
    }

    /// Wraps `inner` again after a takeover ([`super::takeover`]); `pending` (bytes the
    /// client sent past the previous request) is read first.
    pub(super) fn resume(inner: Stream, conn: Arc<Conn>, pending: BytesMut) -> EdgeStream {
        let mut stream = EdgeStream::new(inner, conn);
        stream.ready = pending;
        stream
    }

    /// The connection state of this stream.
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Whether `until` has passed; registers a wake-up for it otherwise.
    fn passed(&mut self, cx: &mut Context<'_>, until: Instant) -> bool {
        if Instant::now() >= until {
            return true;
        }
        let timer = match &mut self.timer {
            Some((at, sleep)) if *at == until => sleep,
            slot => {
                let sleep = Box::pin(tokio::time::sleep_until(until.into()));
                &mut slot.insert((until, sleep)).1
            }
        };
        timer.as_mut().poll(cx).is_ready()
    }

    fn peer(&self) -> String {
        self.inner
            .get_socket_digest()
            .and_then(|d| d.peer_addr().map(|a| a.to_string()))
            .unwrap_or_default()
    }

    /// Reads a whole header on Pingora's behalf (see the module documentation).
    fn poll_header(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        mut first_byte: Option<Instant>,
    ) -> Poll<io::Result<()>> {
        let timeout = self.conn.edge.limits.header_timeout;
        loop {
            if let Some(start) = first_byte {
                if self.passed(cx, start + timeout) {
                    debug!(peer = %self.peer(), bytes = self.held.len(), "request header not complete within server.limits.header_timeout; closing");
                    self.conn.expire(Expired::Header);
                    self.held.clear();
                    // No bytes handed over: Pingora sees a connection closed before a request.
                    return Poll::Ready(Ok(()));
                }
            }
            // Not zeroed: the read only writes into it, and zeroing 4 KiB on every poll of
            // every request header showed in the profile.
            let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
            let mut rb = ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    if self.held.is_empty() {
                        return Poll::Ready(Err(e));
                    }
                    self.mid_header_close(&e.to_string());
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    if !self.held.is_empty() {
                        self.mid_header_close("closed");
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    let scan_from = self.held.len().saturating_sub(2);
                    self.held.extend_from_slice(rb.filled());
                    if first_byte.is_none() {
                        let now = Instant::now();
                        first_byte = Some(now);
                        self.conn.set(Phase::Header {
                            first_byte: Some(now),
                        });
                    }
                    if self.held.len() > MAX_HEADER_BYTES
                        && !header_complete(&self.held[scan_from..])
                    {
                        debug!(peer = %self.peer(), "request header larger than 64 KiB; closing");
                        EdgeCounters::inc(&self.conn.edge.counters.headers_too_large);
                        self.held.clear();
                        self.conn.set(Phase::Expired(Expired::Header));
                        return Poll::Ready(Ok(()));
                    }
                    if header_complete(&self.held[scan_from..]) {
                        let start = first_byte.unwrap_or_else(Instant::now);
                        self.conn.set(Phase::Reading {
                            until: start + timeout,
                            what: Expired::Header,
                        });
                        self.ready = std::mem::take(&mut self.held);
                        self.hand_over(buf);
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }

    fn mid_header_close(&mut self, how: &str) {
        debug!(peer = %self.peer(), bytes = self.held.len(), how, "client left in the middle of a request header");
        EdgeCounters::inc(&self.conn.edge.counters.disconnects_mid_header);
        self.held.clear();
    }

    fn hand_over(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.ready.len().min(buf.remaining());
        buf.put_slice(&self.ready[..n]);
        self.ready.advance(n);
    }
}

/// Whether `bytes` hold the empty line that ends a header (`\n\n` or `\n\r\n`).
fn header_complete(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

impl AsyncRead for EdgeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ready.is_empty() {
            this.hand_over(buf);
            return Poll::Ready(Ok(()));
        }
        match this.conn.phase() {
            Phase::Open => Pin::new(&mut this.inner).poll_read(cx, buf),
            Phase::Header { first_byte } => this.poll_header(cx, buf, first_byte),
            Phase::Reading { until, what } => {
                if this.passed(cx, until) {
                    this.conn.expire(what);
                    return Poll::Ready(Err(deadline_error(what)));
                }
                Pin::new(&mut this.inner).poll_read(cx, buf)
            }
            Phase::Expired(what) => Poll::Ready(Err(deadline_error(what))),
        }
    }
}

fn deadline_error(what: Expired) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        match what {
            Expired::Header => "request header deadline (server.limits.header_timeout) passed",
            Expired::Body => "request body deadline (server.limits.body_timeout) passed",
        },
    )
}

impl AsyncWrite for EdgeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.is_taken() {
            // Pingora ending an answer whose rest the takeover writes.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.is_taken() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.is_taken() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.is_taken() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for EdgeStream {
    async fn shutdown(&mut self) {
        if self.conn.is_taken() {
            return;
        }
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl Drop for EdgeStream {
    fn drop(&mut self) {
        if self.conn.is_taken() {
            // The connection was handed over: keep it for the edge (an empty stand-in
            // takes its place for the rest of the drop).
            let io = std::mem::replace(
                &mut self.inner,
                Box::new(std::io::Cursor::new(Vec::<u8>::new())),
            );
            let mut unread = std::mem::take(&mut self.ready);
            unread.unsplit(std::mem::take(&mut self.held));
            self.conn.park(io, unread);
        }
    }
}

impl UniqueID for EdgeStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for EdgeStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for EdgeStream {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> std::time::Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> std::time::Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for EdgeStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for EdgeStream {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for EdgeStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        // Bytes already taken from the socket cannot be peeked again.
        if !self.ready.is_empty() || !self.held.is_empty() {
            return Ok(false);
        }
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::{header_complete, Conn, EdgeStream};
    use crate::edge::{Edge, EdgeLimits};

    fn edge(header_timeout: Duration) -> Arc<Edge> {
        Arc::new(Edge::new(EdgeLimits {
            header_timeout,
            body_timeout: Duration::from_secs(5),
            max_connections: 10,
            reserved_fds: 0,
            body_budget: 1024,
        }))
    }

    /// A connected pair: the client socket and the server side under the edge.
    async fn pair(edge: &Arc<Edge>) -> (TcpStream, EdgeStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let stream: pingora::protocols::Stream =
            Box::new(pingora::protocols::l4::stream::Stream::from(server));
        let conn = Arc::new(Conn::new(edge.clone()));
        (client, EdgeStream::new(stream, conn))
    }

    async fn read_all_now(stream: &mut EdgeStream) -> Vec<u8> {
        let mut buf = vec![0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a read within 5s")
            .expect("no read error");
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn a_header_is_handed_over_only_when_complete() {
        let edge = edge(Duration::from_secs(5));
        let (mut client, mut server) = pair(&edge).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nHo")
            .await
            .expect("write");
        let early =
            tokio::time::timeout(Duration::from_millis(200), server.read(&mut [0u8; 64])).await;
        assert!(
            early.is_err(),
            "nothing is handed over before the empty line"
        );
        client.write_all(b"st: a\r\n\r\nbody").await.expect("write");
        let got = read_all_now(&mut server).await;
        assert_eq!(got, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody");
    }

    #[tokio::test]
    async fn leaving_mid_header_is_counted_and_reads_as_a_quiet_close() {
        let edge = edge(Duration::from_secs(5));
        let (mut client, mut server) = pair(&edge).await;
        client
            .write_all(b"POST /mcp HTTP/1.1\r\nHost")
            .await
            .expect("write");
        drop(client);
        assert!(read_all_now(&mut server).await.is_empty());
        assert_eq!(
            edge.counters.disconnects_mid_header.load(Ordering::Relaxed),
            1
        );
        assert_eq!(edge.counters.header_timeouts.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_stalled_header_is_cut_at_the_deadline_and_counted() {
        let edge = edge(Duration::from_millis(300));
        let (mut client, mut server) = pair(&edge).await;
        client
            .write_all(b"POST /mcp HTTP/1.1\r\nHost")
            .await
            .expect("write");
        assert!(read_all_now(&mut server).await.is_empty());
        assert_eq!(edge.counters.header_timeouts.load(Ordering::Relaxed), 1);
        let mut rest = [0u8; 8];
        assert!(
            server.read(&mut rest).await.is_err(),
            "reads after the deadline fail"
        );
        drop(client);
    }

    #[tokio::test]
    async fn a_header_past_64_kib_closes_the_connection() {
        let edge = edge(Duration::from_secs(5));
        let (mut client, mut server) = pair(&edge).await;
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', super::MAX_HEADER_BYTES));
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&big).await;
            client
        });
        assert!(read_all_now(&mut server).await.is_empty());
        assert_eq!(edge.counters.headers_too_large.load(Ordering::Relaxed), 1);
        drop(writer.await);
    }

    #[tokio::test]
    async fn the_body_deadline_fails_reads_and_is_counted_once() {
        let edge = edge(Duration::from_secs(5));
        let (mut client, mut server) = pair(&edge).await;
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        read_all_now(&mut server).await;
        let conn = server.conn().clone();
        conn.expect_body();
        // Pretend the deadline is now.
        *conn.phase.lock().unwrap_or_else(|p| p.into_inner()) = super::Phase::Reading {
            until: std::time::Instant::now(),
            what: super::Expired::Body,
        };
        for _ in 0..2 {
            assert!(server.read(&mut [0u8; 8]).await.is_err());
        }
        assert!(conn.body_expired());
        assert_eq!(edge.counters.body_timeouts.load(Ordering::Relaxed), 1);
        drop(client);
    }

    #[tokio::test]
    async fn a_taken_over_connection_drops_pingoras_writes_and_is_kept_for_the_edge() {
        let edge = edge(Duration::from_secs(5));
        let (mut client, mut server) = pair(&edge).await;
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        read_all_now(&mut server).await;
        let conn = server.conn().clone();
        conn.body_done();
        server.write_all(b"head;").await.expect("write");
        server.flush().await.expect("flush");
        conn.take_over(Box::new(|taken| {
            Box::pin(async move { crate::edge::After::Complete(taken) })
        }));
        // What Pingora writes after the takeover (the last chunk) is dropped.
        server.write_all(b"0\r\n\r\n").await.expect("write");
        server.flush().await.expect("flush");
        drop(server);
        let handoff = conn.take_handoff().expect("the connection is kept");
        assert!(!conn.is_taken(), "taking the handoff clears the flag");
        let mut io = handoff.io;
        io.write_all(b"rest").await.expect("write");
        io.flush().await.expect("flush");
        drop(io);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
            .await
            .expect("the connection closes")
            .expect("read");
        assert_eq!(got, b"head;rest");
    }

    #[test]
    fn header_end_is_an_empty_line_with_or_without_cr() {
        assert!(header_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(header_complete(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(header_complete(b"\n\r\n"));
        assert!(!header_complete(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!header_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r"));
    }
}
