//! Taking a connection out of Pingora's HTTP/1 session for a long answer that only writes.
//!
//! An idle notification stream is an answer whose head is written and whose body is a
//! trickle of events. Served inside Pingora's HTTP/1 session it keeps everything a request
//! needs alive for hours: Pingora's session future and header buffers, the gateway's whole
//! request-filter future and the connection's task, about 60 KiB per stream. Once the head
//! is out none of that is needed: the gateway hands the connection to a small task instead.
//!
//! How (see [`super::app::EdgeApp`]):
//! 1. the request filter writes the answer's head (and whatever it writes first), then calls
//!    [`Conn::take_over`](super::Conn::take_over) with the writer of the rest, and returns
//!    as if the request were answered;
//! 2. from then on the edge's wrapper of the connection swallows what Pingora writes (the
//!    last chunk of the answer it believes complete) and, when Pingora lets go of the
//!    connection, keeps the connection instead of closing it;
//! 3. the edge ends Pingora's futures and runs the writer on the connection in a task of
//!    its own, which holds the connection's slot under the cap; a plain TCP connection is
//!    re-opened without Pingora's buffers first ([`unbuffered`]);
//! 4. when the writer has completed the answer the connection serves the next request as
//!    any kept-alive one would (or closes, where Pingora would have closed it).

use std::fmt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures::future::BoxFuture;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The connection handed to a [`Takeover`].
pub struct Taken {
    /// The client's connection (TCP or TLS), without the edge's wrapper: the answer's head
    /// was written and flushed; the writer writes the rest of the body, framing included.
    pub io: Stream,
    /// Bytes the client sent past its request and not yet served (the start of a pipelined
    /// request): kept for the next request on the connection. A writer that reads the
    /// connection (to notice the client's close) appends what it reads here.
    pub pending: BytesMut,
    /// Pingora's shutdown flag (true once the process shuts down).
    pub shutdown: ShutdownWatch,
}

impl fmt::Debug for Taken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Taken")
            .field("io", &self.io)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// How a taken-over answer ended.
#[derive(Debug)]
pub enum After {
    /// The connection is done with (the client left, a write failed): close it.
    Close,
    /// The answer is complete: the connection may serve the client's next request.
    Complete(Taken),
}

/// The writer of the rest of an answer, run on the connection once Pingora let go of it.
pub type Takeover = Box<dyn FnOnce(Taken) -> BoxFuture<'static, After> + Send>;

/// A taken-over connection on its way from Pingora's session to its writer.
pub(super) struct Handoff {
    pub takeover: Takeover,
    pub io: Stream,
    pub pending: BytesMut,
}

/// Most bytes taken out of Pingora's buffers before a plain TCP connection is re-opened
/// without them ([`unbuffered`]); more (a client pipelining a lot) keeps the connection as
/// it is.
const MAX_UNREAD: usize = 64 * 1024;

/// The connection without Pingora's buffers, for a long idle answer.
///
/// Pingora gives every TCP connection a 64 KiB read buffer and a write buffer for its whole
/// life; an idle stream would keep both, and the pages of them the request touched are most
/// of what it costs. A plain TCP connection is re-opened instead on a duplicate of its
/// descriptor, without buffers, once what Pingora's buffers hold is moved to `pending`
/// (bytes the client sent past its request: its next request). The original is then closed;
/// the socket stays open through the duplicate. Anything else (TLS, a Unix socket, a
/// descriptor that cannot be duplicated, a write not yet flushed) is kept as it is.
pub(super) fn unbuffered(mut io: Stream, pending: &mut BytesMut) -> Stream {
    let peer = match io.get_socket_digest().and_then(|d| d.peer_addr().cloned()) {
        Some(peer @ SocketAddr::Inet(_)) => peer,
        _ => return io,
    };
    if (*io).as_any().downcast_ref::<L4Stream>().is_none() {
        return io;
    }
    // Take what Pingora's buffers hold, without waiting: polling stops at the first
    // `Pending`, which a buffered reader returns only once its buffer is empty.
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    if !matches!(Pin::new(&mut io).poll_flush(&mut cx), Poll::Ready(Ok(()))) {
        return io;
    }
    let mut scratch = vec![0u8; 16 * 1024];
    let mut unread = BytesMut::new();
    loop {
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut io).poll_read(&mut cx, &mut buf) {
            Poll::Pending => break,
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                unread.extend_from_slice(buf.filled());
                if unread.len() > MAX_UNREAD {
                    pending.unsplit(unread);
                    return io;
                }
            }
            // The client closed (or the connection broke): the writer sees it at once.
            Poll::Ready(_) => {
                pending.unsplit(unread);
                return io;
            }
        }
    }
    pending.unsplit(unread);
    let Some(fd) = (*io)
        .as_any()
        .downcast_ref::<L4Stream>()
        .map(|s| s.as_raw_fd())
    else {
        return io;
    };
    // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` only creates a new descriptor (or fails).
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return io;
    }
    // SAFETY: `dup` is a descriptor this function just created and owns alone; it refers to
    // the connected TCP socket of `io` (its peer is an internet address).
    let socket = unsafe { std::net::TcpStream::from_raw_fd(dup) };
    if socket.set_nonblocking(true).is_err() {
        return io;
    }
    let Ok(socket) = tokio::net::TcpStream::from_std(socket) else {
        return io;
    };
    let mut fresh = L4Stream::from(socket);
    let digest = SocketDigest::from_raw_fd(dup);
    let _ = digest.peer_addr.set(Some(peer));
    fresh.set_socket_digest(digest);
    drop(io);
    Box::new(fresh)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BytesMut;
    use pingora::protocols::l4::socket::SocketAddr;
    use pingora::protocols::l4::stream::Stream as L4Stream;
    use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::unbuffered;

    #[tokio::test]
    async fn a_tcp_connection_is_reopened_without_buffers_and_keeps_what_was_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (server, peer) = listener.accept().await.expect("accept");
        let mut l4 = L4Stream::from(server);
        let digest = SocketDigest::from_raw_fd(std::os::unix::io::AsRawFd::as_raw_fd(&l4));
        let _ = digest.peer_addr.set(Some(SocketAddr::Inet(peer)));
        l4.set_socket_digest(digest);
        let io: Stream = Box::new(l4);
        // The start of a next request, sent before the takeover.
        client.write_all(b"POST /").await.expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut pending = BytesMut::from(&b"x"[..]);
        let mut io = unbuffered(io, &mut pending);
        assert_eq!(&pending[..], b"xPOST /", "what was sent is kept, in order");
        assert_eq!(
            io.get_socket_digest()
                .and_then(|d| d.peer_addr().cloned())
                .map(|a| a.to_string()),
            Some(peer.to_string()),
            "the peer address is kept"
        );
        io.write_all(b"event").await.expect("write");
        io.flush().await.expect("flush");
        let mut got = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&got, b"event");
        client.write_all(b"more").await.expect("write");
        let mut more = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut more))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&more, b"more");
        drop(io);
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .expect("read");
        assert!(
            rest.is_empty(),
            "dropping the new stream closes the connection"
        );
    }
}
