//! The answer to a call whose backend streams what happens during it (a native MCP server's
//! progress, log messages and requests to the caller). If the outcome comes first, the POST
//! is answered with JSON as usual; as soon as the backend sends anything before it, the POST
//! is answered as an event stream carrying those messages, then the response.
//!
//! A server request is relayed with an id of the gateway's ([`crate::upstream::relay`]),
//! bound to this caller, so the caller's answer (a later POST) reaches the server that asked
//! and no other caller can answer it. Log messages below the caller's `logging/setLevel` are
//! not relayed. The call stops (and the server is told `notifications/cancelled`) when the
//! caller closes the stream or cancels the request.

use std::time::Duration;

use bytes::Bytes;
use cortex_filters::jsonrpc::Id;
use cortex_filters::{native as rules, sse};
use futures::StreamExt;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::Value;

use crate::http::{add_cors, write_answer, Answer};
use crate::record::RequestRecord;
use crate::upstream::backend::{Reply, ReplyStream};
use crate::upstream::relay::{InFlightCall, Relay};

/// How the stream is answered.
pub struct StreamAnswer<'a> {
    /// The relay tables.
    pub relay: &'a Relay,
    /// Who the relayed messages are bound to.
    pub owner: String,
    /// The allowed browser origin, for CORS headers.
    pub cors_origin: Option<&'a str>,
    /// Whether the caller accepts an event stream (else only the outcome is answered).
    pub accepts_sse: bool,
    /// Keep-alive comments while the stream is idle.
    pub keepalive: Duration,
}

/// Writes the answer of a streamed call; returns when the response is complete.
pub async fn answer(
    session: &mut Session,
    how: StreamAnswer<'_>,
    id: Id,
    mut replies: ReplyStream,
    mut call: InFlightCall,
    rec: &mut RequestRecord,
) -> pingora::Result<()> {
    let first = tokio::select! {
        r = replies.next() => r,
        _ = &mut call.cancelled => None,
        _ = session.as_downstream_mut().read_body_or_idle(true) => {
            // The caller left before anything came: dropping the replies cancels the call.
            return Ok(());
        }
    };
    let first = match first {
        None => {
            // Cancelled (or the backend ended without an answer): nothing more to say.
            return write_answer(session, Answer::empty(202), how.cors_origin).await;
        }
        Some(Reply::Final(outcome)) => {
            let body = outcome.to_response(&id);
            rec.answered(&body);
            return write_answer(session, Answer::json(200, body), how.cors_origin).await;
        }
        Some(other) if !how.accepts_sse => {
            drop(other);
            let outcome = crate::upstream::Replies::Stream(replies).outcome().await;
            let body = outcome.to_response(&id);
            rec.answered(&body);
            return write_answer(session, Answer::json(200, body), how.cors_origin).await;
        }
        Some(other) => other,
    };

    let mut h = ResponseHeader::build(200, Some(6))?;
    h.insert_header("content-type", "text/event-stream")?;
    h.insert_header("cache-control", "no-cache")?;
    h.insert_header("x-accel-buffering", "no")?;
    if !session.as_downstream().is_http2() {
        h.insert_header("transfer-encoding", "chunked")?;
    }
    if let Some(origin) = how.cors_origin {
        add_cors(&mut h, origin)?;
    }
    session.set_write_timeout(Some(how.keepalive.max(Duration::from_secs(5)) * 2));
    session.write_response_header(Box::new(h), false).await?;

    let level = how.relay.level(&how.owner);
    let mut tick = tokio::time::interval(how.keepalive);
    tick.tick().await;
    let mut next = Some(first);
    loop {
        let item = match next.take() {
            Some(i) => i,
            None => tokio::select! {
                r = replies.next() => match r {
                    Some(i) => i,
                    None => break,
                },
                _ = &mut call.cancelled => break,
                _ = tick.tick() => {
                    session
                        .write_response_body(Some(Bytes::from_static(sse::KEEPALIVE)), false)
                        .await?;
                    continue;
                }
                _ = session.as_downstream_mut().read_body_or_idle(true) => {
                    // The caller closed the stream: dropping the replies cancels the call.
                    return Ok(());
                }
            },
        };
        let event = match item {
            Reply::Notification(bytes) => {
                if !passes_level(level.as_deref(), &bytes) {
                    continue;
                }
                sse::message_event(None, &bytes)
            }
            Reply::ServerRequest {
                method,
                params,
                respond,
                ..
            } => match how.relay.register_request(&how.owner, respond) {
                Some(relayed) => {
                    sse::message_event(None, &rules::relayed_request(&relayed, &method, &params))
                }
                // Too many waiting: dropping `respond` answers the server with an error.
                None => continue,
            },
            Reply::Final(outcome) => {
                let body = outcome.to_response(&id);
                rec.answered(&body);
                session
                    .write_response_body(Some(Bytes::from(sse::message_event(None, &body))), false)
                    .await?;
                break;
            }
        };
        session
            .write_response_body(Some(Bytes::from(event)), false)
            .await?;
    }
    session.write_response_body(None, true).await?;
    Ok(())
}

/// Whether a relayed notification passes the caller's log level (only log messages are
/// filtered).
fn passes_level(level: Option<&str>, bytes: &[u8]) -> bool {
    if level.is_none() {
        return true;
    }
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return true;
    };
    if v.get("method").and_then(Value::as_str) != Some("notifications/message") {
        return true;
    }
    v.get("params")
        .is_none_or(|p| rules::level_passes(level, p))
}
