//! The edge in front of Pingora's HTTP/1 session loop: the connection cap, and the
//! deadlines of [`super::stream`] armed at the start of every request on a connection.
//!
//! Pingora's own loop (`impl ServerApp for T: HttpServerApp`) is reproduced here, with the
//! same defaults, because it is the one place that sees the boundary between two requests
//! of a keep-alive connection, where the next header's deadline starts, and where a request
//! can hand its connection over to a small writer ([`super::takeover`]). HTTP/2 (over TLS
//! with ALPN `h2`) is handed to Pingora's loop as it is, under the connection cap only.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Shutdown, Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use super::takeover::{unbuffered, After, Handoff, Taken};
use super::{Conn, Edge, EdgeCounters, EdgeStream, Slot};

/// Pingora's default keep-alive for a new HTTP/1 connection (the gateway's request filter
/// replaces it with `server.keepalive_timeout` where the connection is kept).
const INITIAL_KEEPALIVE_SECS: u64 = 60;

/// The body of the answer to a connection over the cap.
const OVER_CAP_BODY: &str = "{\"error\":\"too_many_connections\",\"error_description\":\"the gateway is at server.limits.max_connections; retry shortly\"}";

/// The answer to a connection over the cap.
fn over_cap() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{OVER_CAP_BODY}",
        OVER_CAP_BODY.len()
    )
}

/// How long a refused connection may take: reading what the client sent at once (so that
/// closing does not reset the connection before the client reads the answer), writing the
/// answer, and waiting for the client's close.
const REFUSAL_READ: Duration = Duration::from_millis(100);
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// An HTTP application (the gateway's Pingora proxy) behind the edge's limits.
pub struct EdgeApp<A> {
    inner: Arc<A>,
    edge: Arc<Edge>,
}

impl<A> EdgeApp<A> {
    /// `inner` behind `edge`.
    pub fn new(inner: A, edge: Arc<Edge>) -> EdgeApp<A> {
        EdgeApp {
            inner: Arc::new(inner),
            edge,
        }
    }
}

#[async_trait]
impl<A> ServerApp for EdgeApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(slot) = self.edge.try_admit() else {
            EdgeCounters::inc(&self.edge.counters.connections_refused);
            refuse(&self.edge, stream).await;
            return None;
        };
        let conn = Arc::new(Conn::new(self.edge.clone()));
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let stream: Stream = Box::new(EdgeStream::new(stream, conn.clone()));
        if h2 {
            conn.body_done();
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let mut session = ServerSession::new_http1(stream);
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(INITIAL_KEEPALIVE_SECS));
        }
        session.set_keepalive_reuses_remaining(
            self.inner
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
        // Requests a client sends before reading the previous answer are served in order
        // (RFC 9112 §9.3.2), not dropped with the connection.
        session.set_pipelining_enabled(true);
        let result = self.inner.process_new_http(session, shutdown).await;
        if let Some(handoff) = self.serve_kept(&conn, shutdown, result).await {
            // The rest of the connection's life is a small task's: this one (Pingora's, with
            // its session futures) ends here.
            let app = self.clone();
            tokio::spawn(app.run_taken(handoff, conn, slot, shutdown.clone()));
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

/// A taken-over connection and what Pingora would do with it after the answer.
struct Kept {
    handoff: Handoff,
    /// The connection's settings for its next request; `None` when Pingora would have
    /// closed it after this answer.
    settings: Option<HttpPersistentSettings>,
}

impl<A> EdgeApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// Serves the requests of a kept-alive HTTP/1 connection after the one that gave
    /// `result`, until the connection closes (`None`) or a request hands it over.
    async fn serve_kept(
        &self,
        conn: &Arc<Conn>,
        shutdown: &ShutdownWatch,
        mut result: Option<ReusedHttpStream>,
    ) -> Option<Kept> {
        loop {
            if conn.is_taken() {
                // Dropping Pingora's stream parks the connection in `conn`.
                let settings = result.and_then(|r| r.consume().1);
                let handoff = conn.take_handoff()?;
                return Some(Kept { handoff, settings });
            }
            let (stream, settings) = result?.consume();
            conn.expect_header();
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            result = self.inner.process_new_http(session, shutdown).await;
        }
    }

    /// Runs taken-over answers on a connection, and the requests after them, until it
    /// closes. Holds the connection's slot under the cap.
    async fn run_taken(
        self: Arc<Self>,
        mut kept: Kept,
        conn: Arc<Conn>,
        _slot: Slot,
        shutdown: ShutdownWatch,
    ) {
        loop {
            let Kept { handoff, settings } = kept;
            let mut pending = handoff.pending;
            let io = unbuffered(handoff.io, &mut pending);
            let taken = Taken {
                io,
                pending,
                shutdown: shutdown.clone(),
            };
            let After::Complete(mut taken) = (handoff.takeover)(taken).await else {
                return;
            };
            let Some(settings) = settings else {
                // Pingora would have closed the connection after this answer.
                let _ = tokio::time::timeout(REFUSAL_WRITE, async {
                    Shutdown::shutdown(&mut *taken.io).await;
                })
                .await;
                return;
            };
            // Boxed: while an answer is taken over, this task holds only a pointer to the
            // HTTP session's (much larger) futures.
            match Box::pin(self.resume(&conn, &shutdown, taken, settings)).await {
                Some(next) => kept = next,
                None => return,
            }
        }
    }

    /// Serves the next requests on a connection whose taken-over answer is complete.
    async fn resume(
        &self,
        conn: &Arc<Conn>,
        shutdown: &ShutdownWatch,
        taken: Taken,
        settings: HttpPersistentSettings,
    ) -> Option<Kept> {
        conn.expect_header();
        let stream: Stream = Box::new(EdgeStream::resume(taken.io, conn.clone(), taken.pending));
        let mut session = ServerSession::new_http1(stream);
        settings.apply_to_session(&mut session);
        let result = self.inner.process_new_http(session, shutdown).await;
        self.serve_kept(conn, shutdown, result).await
    }
}

/// Answers a connection over the cap with 503 and closes it, within bounded time; closes
/// it unanswered when too many refusals are being answered already.
async fn refuse(edge: &Arc<Edge>, mut stream: Stream) {
    let Some(_refusing) = edge.begin_refusal() else {
        debug!("connection over server.limits.max_connections closed unanswered");
        return;
    };
    debug!(
        max_connections = edge.max_connections(),
        "connection over server.limits.max_connections refused"
    );
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_READ, stream.read(&mut scratch)).await;
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(over_cap().as_bytes()).await?;
        stream.flush().await?;
        AsyncWriteExt::shutdown(&mut stream).await
    })
    .await;
    let _ = tokio::time::timeout(REFUSAL_READ, async {
        while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_refusal_declares_its_length() {
        let text = super::over_cap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }
}
