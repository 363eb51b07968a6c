//! The session's notification stream (GET with `Accept: text/event-stream`): a priming
//! event, the events missed since `Last-Event-ID`, then live events and keep-alive comments
//! until the client leaves, the session ends or the gateway shuts down.
//!
//! On HTTP/1 the stream is written by [`IdleStream`], a small task that takes the connection
//! over from Pingora's session once the head and the preamble are out
//! ([`crate::edge::takeover`]): an idle stream then holds its channel, its timer and its
//! connection, not a whole HTTP request's futures. Over HTTP/2 the request writes it.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cortex_filters::sse;
use futures::future::BoxFuture;
use http::Method;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::audit::AuditSink;
use crate::auth::Principal;
use crate::drain::{Drain, InFlight};
use crate::edge::{After, Taken};
use crate::http::{add_cors, header, Answer};
use crate::metrics::Metrics;
use crate::record::{clean, Facts, RequestRecord, Stage, MAX_IDENT};
use crate::state::{AppState, Policy, Shared};

use super::envelope::{self, Need};
use super::request::{Refusal, RequestCtx, RequestFacts, Stop};

/// Serves the stream until it ends.
pub async fn open(
    state: &AppState,
    policy: &Policy,
    facts: &RequestFacts,
    session: &mut Session,
    ctx: &mut RequestCtx,
    principal: &Principal,
) -> Result<(), Stop> {
    let wants_sse = facts
        .accept
        .as_deref()
        .is_some_and(|a| a.to_ascii_lowercase().contains("text/event-stream"));
    if !wants_sse {
        return Err(Refusal::new(
            Stage::HttpMethod,
            "GET needs Accept: text/event-stream",
            Answer::empty(405).with_header("allow", "POST, DELETE"),
        )
        .into());
    }
    let Some(mcp_session) =
        envelope::session(&state.shared, &facts.session_id, principal, Need::Stream)?
    else {
        return Ok(());
    };
    let last_event_id = facts
        .last_event_id
        .as_deref()
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut handle = state
        .shared
        .sessions
        .open_stream_shared(&mcp_session, last_event_id)
        .await;
    drop(mcp_session);

    let mut h = ResponseHeader::build(200, Some(6))?;
    h.insert_header("content-type", "text/event-stream")?;
    h.insert_header("cache-control", "no-cache")?;
    h.insert_header("x-accel-buffering", "no")?;
    if !session.as_downstream().is_http2() {
        h.insert_header("transfer-encoding", "chunked")?;
    }
    if let Some(origin) = &ctx.cors_origin {
        add_cors(&mut h, origin)?;
    }
    let keepalive = policy.config.sessions.keepalive_interval;
    let write_timeout = keepalive.max(Duration::from_secs(5)) * 2;
    session.set_write_timeout(Some(write_timeout));
    session.write_response_header(Box::new(h), false).await?;
    for event in handle.preamble.drain(..) {
        session.write_response_body(Some(event), false).await?;
    }
    if let Some(conn) = ctx.conn.clone() {
        if !session.as_downstream().is_http2() {
            let record = OpenRecord::take(&state.shared, session, ctx, principal);
            let idle = IdleStream {
                rx: handle.rx,
                keepalive,
                drain: state.shared.drain.clone(),
                _in_flight: ctx.in_flight.take(),
                body: ChunkedBody::new(write_timeout, record),
            };
            conn.take_over(Box::new(move |taken| -> BoxFuture<'static, After> {
                Box::pin(idle.run(taken))
            }));
            return Ok(());
        }
    }
    let mut tick = tokio::time::interval(keepalive);
    tick.tick().await;
    loop {
        tokio::select! {
            event = handle.rx.recv() => match event {
                Some(ev) => session.write_response_body(Some(ev), false).await?,
                None => break,
            },
            _ = tick.tick() => {
                if session.is_process_shutting_down() {
                    break;
                }
                session.write_response_body(Some(Bytes::from_static(sse::KEEPALIVE)), false).await?;
            }
            _ = session.as_downstream_mut().read_body_or_idle(true) => {
                return Ok(());
            }
            // Graceful shutdown: the stream ends cleanly now (the client reconnects to
            // another instance with `Last-Event-ID`), so the drain need not wait for it.
            _ = state.shared.drain.stopped() => break,
        }
    }
    session.write_response_body(None, true).await?;
    Ok(())
}

/// An HTTP/1 notification stream after its preamble, on a connection taken over from
/// Pingora's session ([`crate::edge::takeover`]).
struct IdleStream {
    rx: mpsc::Receiver<Bytes>,
    keepalive: Duration,
    drain: Arc<Drain>,
    /// The stream counts as in flight until it ends (the drain closes it).
    _in_flight: Option<InFlight>,
    body: ChunkedBody,
}

impl IdleStream {
    /// Writes events and keep-alive comments until the client leaves (the connection
    /// closes), the session's channel closes or the gateway shuts down (the answer is
    /// completed and the connection serves the next request).
    async fn run(mut self, mut taken: Taken) -> After {
        let mut tick = tokio::time::interval(self.keepalive);
        tick.tick().await;
        let mut probe = [0u8; 1];
        let ended = loop {
            tokio::select! {
                event = self.rx.recv() => match event {
                    Some(ev) => {
                        if let Err(e) = self.body.send(&mut taken, &ev).await {
                            break Err(e);
                        }
                    }
                    None => break Ok(()),
                },
                _ = tick.tick() => {
                    if *taken.shutdown.borrow() {
                        break Ok(());
                    }
                    if let Err(e) = self.body.send(&mut taken, sse::KEEPALIVE).await {
                        break Err(e);
                    }
                }
                // The client's close ends the stream; nothing more is sent.
                read = taken.io.read(&mut probe), if taken.pending.is_empty() => {
                    if !ChunkedBody::read_more(&mut taken, read, &probe) {
                        return self.body.client_left();
                    }
                }
                // Graceful shutdown: the stream ends cleanly now (the client reconnects to
                // another instance with `Last-Event-ID`), so the drain need not wait for it.
                _ = self.drain.stopped() => break Ok(()),
            }
        };
        self.body.end(taken, ended, &[]).await
    }
}

/// The last chunk of a chunked body.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The body of a taken-over HTTP/1 stream: chunks written on the connection within the
/// write timeout, counted for the request's record, which is closed when the body ends.
pub(super) struct ChunkedBody {
    write_timeout: Duration,
    record: Option<Box<OpenRecord>>,
}

impl ChunkedBody {
    /// A body whose writes each complete within `write_timeout`, for `record`.
    pub(super) fn new(write_timeout: Duration, record: Option<Box<OpenRecord>>) -> ChunkedBody {
        ChunkedBody {
            write_timeout,
            record,
        }
    }

    /// Writes `data` as one chunk (one write, then a flush).
    pub(super) async fn send(&mut self, taken: &mut Taken, data: &[u8]) -> io::Result<()> {
        let mut chunk = Vec::with_capacity(data.len() + 12);
        chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        chunk.extend_from_slice(data);
        chunk.extend_from_slice(b"\r\n");
        write_all(taken, &chunk, self.write_timeout).await?;
        if let Some(r) = self.record.as_mut() {
            r.sent += data.len() as u64;
        }
        Ok(())
    }

    /// What a read of the connection during the stream means: `false` when the client left
    /// (closed or reset). Bytes it sent instead start its next request: they are kept for
    /// after the stream, and the connection is not read further (as Pingora's session
    /// does), so a later close shows as a failed write.
    pub(super) fn read_more(taken: &mut Taken, read: io::Result<usize>, probe: &[u8]) -> bool {
        match read {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                taken
                    .pending
                    .extend_from_slice(&probe[..n.min(probe.len())]);
                true
            }
        }
    }

    /// The client left: nothing more is written; the record is closed.
    pub(super) fn client_left(mut self) -> After {
        close_record(self.record.take(), None);
        After::Close
    }

    /// Ends the body: after `last` (an event, or nothing) the last chunk, unless the stream
    /// already failed (`ended`); closes the record.
    pub(super) async fn end(
        mut self,
        mut taken: Taken,
        ended: io::Result<()>,
        last: &[u8],
    ) -> After {
        let mut ended = ended;
        if ended.is_ok() && !last.is_empty() {
            ended = self.send(&mut taken, last).await;
        }
        if ended.is_ok() {
            // As the audit trail's answer hook does for an answer written through Pingora:
            // the record is in the spool before the answer's last bytes are written.
            if let Some(open) = &self.record {
                open.spool();
            }
            ended = write_all(&mut taken, LAST_CHUNK, self.write_timeout).await;
        }
        match ended {
            Ok(()) => {
                close_record(self.record.take(), None);
                After::Complete(taken)
            }
            Err(e) => {
                close_record(self.record.take(), Some(e.to_string()));
                After::Close
            }
        }
    }
}

/// Writes and flushes `bytes` within `timeout`.
async fn write_all(taken: &mut Taken, bytes: &[u8], timeout: Duration) -> io::Result<()> {
    let io = &mut taken.io;
    match tokio::time::timeout(timeout, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await
    {
        Ok(written) => written,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read the stream within the write timeout",
        )),
    }
}

/// A stream's record, kept open until the stream ends, with what the logging phase would
/// have closed it with.
pub(super) struct OpenRecord {
    record: RequestRecord,
    method: Method,
    started: Instant,
    origin: Option<String>,
    /// Body bytes sent (events and comments, without the chunk framing).
    sent: u64,
    audit: AuditSink,
    metrics: Arc<Metrics>,
}

impl OpenRecord {
    /// The HTTP facts of the stream now.
    fn facts(&self, error: Option<String>) -> Facts {
        Facts {
            ts_ms: crate::clock::now_ms(),
            latency: self.started.elapsed(),
            http_method: self.method.clone(),
            http_status: 200,
            response_size: self.sent,
            origin: self.origin.clone(),
            backends_filter: None,
            tool_mode: None,
            error,
        }
    }

    /// Spools the record as it stands (when the audit trail spools).
    fn spool(&self) {
        if !self.audit.spools() {
            return;
        }
        let sink = &self.audit;
        self.record
            .handle()
            .spool_now(self.facts(None), |closed| sink.spool(closed));
    }

    /// Takes the request's record out of `ctx`, when anything consumes records (the logging
    /// phase then finds it inactive and leaves it to the stream).
    pub(super) fn take(
        shared: &Shared,
        session: &Session,
        ctx: &mut super::request::RequestCtx,
        principal: &Principal,
    ) -> Option<Box<OpenRecord>> {
        if !ctx.record.is_active() || !crate::state::records_wanted(&shared.audit, &shared.metrics)
        {
            return None;
        }
        let mut record = std::mem::take(&mut ctx.record);
        record.set_principal(principal.clone());
        Some(Box::new(OpenRecord {
            record,
            method: session.req_header().method.clone(),
            started: ctx.started,
            origin: ctx
                .cors_origin
                .clone()
                .or_else(|| header(session, "origin").map(|v| clean(v, MAX_IDENT))),
            sent: session.body_bytes_sent() as u64,
            audit: shared.audit.clone(),
            metrics: shared.metrics.clone(),
        }))
    }
}

/// Closes a stream's record and hands it to the metrics and the audit trail.
fn close_record(open: Option<Box<OpenRecord>>, error: Option<String>) {
    let Some(mut open) = open else {
        return;
    };
    let facts = open.facts(error);
    if let Some(closed) = open.record.close(facts) {
        crate::state::hand_on(&open.audit, &open.metrics, closed);
    }
}
