//! `subscriptions/listen` (2026-07-28): the modern replacement for the session's GET stream.
//!
//! The answer is an SSE stream on the listen request itself. Its first message is
//! `notifications/subscriptions/acknowledged` with the part of the requested filter the
//! gateway honours (list changes of tools, prompts and resources; no resource updates, which
//! contract backends cannot announce). Then, for each catalog change, the notifications the
//! caller asked for, and only when the change touches an entry the caller may see; every
//! message carries the subscription id (the listen request's id). Keep-alive comments hold
//! the connection open. When the gateway shuts down it ends the stream with
//! `notifications/cancelled` for the listen request (the only case in which a server sends
//! it); when the client closes the stream, nothing more is sent.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cortex_filters::catalog::CatalogDiff;
use cortex_filters::jsonrpc::Id;
use cortex_filters::modern::listen::{self, Event, Filter, Support};
use cortex_filters::scope::GrantedScopes;
use cortex_filters::sse;
use futures::future::BoxFuture;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::drain::InFlight;
use crate::edge::{After, Taken};
use crate::http::add_cors;
use crate::record::Stage;

use super::call::CallContext;
use super::request::{Refusal, RequestCtx, Stop};
use super::stream::{ChunkedBody, OpenRecord};

/// What the gateway can announce on a listen stream.
const SUPPORT: Support = Support {
    tools_list_changed: true,
    prompts_list_changed: true,
    resources_list_changed: true,
    resource_updates: false,
};

/// The events of `diff` that the holder of `grants` can see and `granted` asked for.
fn events(
    grants: &GrantedScopes,
    granted: &Filter,
    diff: Option<&CatalogDiff>,
) -> Vec<Event<'static>> {
    let mut out = Vec::with_capacity(3);
    let changed = |kind: Event<'static>| match (diff, kind) {
        // A lagging stream missed changes: announce every list it subscribed to.
        (None, _) => true,
        (Some(d), Event::ToolsListChanged) => d.tools_changed_for(grants),
        (Some(d), Event::PromptsListChanged) => d.prompts_changed_for(grants),
        (Some(d), Event::ResourcesListChanged) => d.resources_changed_for(grants),
        (Some(_), Event::ResourceUpdated { .. }) => false,
    };
    for e in [
        Event::ToolsListChanged,
        Event::PromptsListChanged,
        Event::ResourcesListChanged,
    ] {
        if granted.wants(&e) && changed(e) {
            out.push(e);
        }
    }
    out
}

/// Serves a listen request until the client leaves or the gateway shuts down.
pub async fn serve(
    cx: &CallContext<'_>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    id: &Id,
    params: Option<&Value>,
) -> Result<(), Stop> {
    let requested = listen::parse_filter(params).map_err(|r| {
        let answer = crate::http::Answer::json(r.http_status, r.body(Some(id)));
        Stop::from(Refusal::new(Stage::Parse, r.message, answer))
    })?;
    let granted = listen::acknowledge(&requested, &SUPPORT, |_| false);
    let mut changes = cx.shared.sessions.catalog_changes();

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
    let keepalive = cx.policy.config.sessions.keepalive_interval;
    let write_timeout = keepalive.max(Duration::from_secs(5)) * 2;
    session.set_write_timeout(Some(write_timeout));
    session.write_response_header(Box::new(h), false).await?;
    let event = |data: &[u8]| Bytes::from(sse::message_event(None, data));
    session
        .write_response_body(Some(event(&listen::acknowledgement(id, &granted))), false)
        .await?;
    ctx.record.answered(b"");
    if let Some(conn) = ctx.conn.clone() {
        if !session.as_downstream().is_http2() {
            // HTTP/1: the rest is written by a small task that takes the connection over
            // (crate::edge::takeover), as for the session's GET stream.
            let record = OpenRecord::take(cx.shared, session, ctx, cx.principal);
            let idle = IdleListen {
                changes,
                grants: cx.principal.grants.clone(),
                granted,
                id: id.clone(),
                keepalive,
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
            change = changes.recv() => {
                let diff: Option<Arc<CatalogDiff>> = match change {
                    Ok(d) => Some(d),
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => break,
                };
                for e in events(&cx.principal.grants, &granted, diff.as_deref()) {
                    let msg = listen::notification(id, &e);
                    session.write_response_body(Some(event(&msg)), false).await?;
                }
            }
            _ = tick.tick() => {
                if session.is_process_shutting_down() {
                    break;
                }
                session.write_response_body(Some(Bytes::from_static(sse::KEEPALIVE)), false).await?;
            }
            _ = session.as_downstream_mut().read_body_or_idle(true) => {
                // The client closed the stream: that cancels the subscription; send nothing.
                return Ok(());
            }
        }
    }
    let bye = listen::cancelled(id, Some("the gateway is shutting down"));
    session
        .write_response_body(Some(event(&bye)), false)
        .await?;
    session.write_response_body(None, true).await?;
    Ok(())
}

/// An HTTP/1 listen stream after its acknowledgement, on a connection taken over from
/// Pingora's session ([`crate::edge::takeover`]).
struct IdleListen {
    changes: broadcast::Receiver<Arc<CatalogDiff>>,
    grants: Arc<GrantedScopes>,
    granted: Filter,
    id: Id,
    keepalive: Duration,
    /// The stream counts as in flight until it ends.
    _in_flight: Option<InFlight>,
    body: ChunkedBody,
}

impl IdleListen {
    /// Writes notifications and keep-alive comments until the client leaves or the gateway
    /// shuts down (then `notifications/cancelled` ends the stream).
    async fn run(mut self, mut taken: Taken) -> After {
        let mut tick = tokio::time::interval(self.keepalive);
        tick.tick().await;
        let mut probe = [0u8; 1];
        let ended = 'stream: loop {
            tokio::select! {
                change = self.changes.recv() => {
                    let diff: Option<Arc<CatalogDiff>> = match change {
                        Ok(d) => Some(d),
                        Err(RecvError::Lagged(_)) => None,
                        Err(RecvError::Closed) => break Ok(()),
                    };
                    for e in events(&self.grants, &self.granted, diff.as_deref()) {
                        let msg = sse::message_event(None, &listen::notification(&self.id, &e));
                        if let Err(e) = self.body.send(&mut taken, &msg).await {
                            break 'stream Err(e);
                        }
                    }
                }
                _ = tick.tick() => {
                    if *taken.shutdown.borrow() {
                        break Ok(());
                    }
                    if let Err(e) = self.body.send(&mut taken, sse::KEEPALIVE).await {
                        break Err(e);
                    }
                }
                // The client closed the stream: that cancels the subscription; send nothing.
                read = taken.io.read(&mut probe), if taken.pending.is_empty() => {
                    if !ChunkedBody::read_more(&mut taken, read, &probe) {
                        return self.body.client_left();
                    }
                }
            }
        };
        let bye = sse::message_event(
            None,
            &listen::cancelled(&self.id, Some("the gateway is shutting down")),
        );
        self.body.end(taken, ended, &bye).await
    }
}
