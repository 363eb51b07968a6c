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
//!    its own, which holds the connection's slot under the cap;
//! 4. when the writer has completed the answer the connection serves the next request as
//!    any kept-alive one would (or closes, where Pingora would have closed it).

use std::fmt;

use bytes::BytesMut;
use futures::future::BoxFuture;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

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
