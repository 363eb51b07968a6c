//! The session's notification stream (GET with `Accept: text/event-stream`): a priming
//! event, the events missed since `Last-Event-ID`, then live events and keep-alive comments
//! until the client leaves, the session ends or the gateway shuts down.

use std::time::Duration;

use bytes::Bytes;
use cortex_filters::sse;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::auth::Principal;
use crate::http::{add_cors, Answer};
use crate::record::Stage;
use crate::state::{AppState, Policy};

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
    session.set_write_timeout(Some(keepalive.max(Duration::from_secs(5)) * 2));
    session.write_response_header(Box::new(h), false).await?;
    for event in handle.preamble.drain(..) {
        session.write_response_body(Some(event), false).await?;
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
