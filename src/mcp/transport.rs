//! The Streamable HTTP transport on the MCP path: Host/Origin checks, authentication, POST
//! (JSON-RPC in, JSON out), GET (the session's notification stream), DELETE (end session),
//! OPTIONS (CORS preflight).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cortex_filters::jsonrpc::{self, codes, Incoming, Message};
use cortex_filters::sse;
use cortex_filters::version::{self, ProtocolVersion};
use http::Method;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::json;
use tracing::debug;

use crate::auth::metadata as auth_metadata;
use crate::auth::{AuthOutcome, AuthRequest, Principal};
use crate::config::SessionMode;
use crate::gateway::RequestCtx;
use crate::state::AppState;

use super::dispatch::{self, CallContext, Dispatched};
use super::http::{write_answer, Answer, CORS_ALLOW_HEADERS};
use super::sessions::SessionState;

fn header<'a>(session: &'a Session, name: &str) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

fn rpc_error(status: u16, id: Option<&serde_json::Value>, code: i64, message: &str) -> Answer {
    Answer::json(status, jsonrpc::error(id, code, message, None))
}

/// Handles one request on the MCP path. Returns `Ok(false)` only when the request must be
/// proxied to a backend (the decision is in `ctx.forward`).
pub async fn handle(state: &AppState, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    ctx.audit.begin(header(session, "mcp-session-id"));
    // DNS-rebinding protection: Host first, then Origin.
    let host = header(session, "host")
        .map(str::to_string)
        .or_else(|| session.req_header().uri.authority().map(|a| a.to_string()));
    if !state.host.allows(host.as_deref()) {
        let body = json!({
            "error": "forbidden_host",
            "error_description": format!("Host {} is not allowed on this loopback listener (DNS-rebinding protection); add it to server.allowed_hosts", host.as_deref().unwrap_or("")),
        });
        ctx.audit.reject(
            crate::audit::Stage::Host,
            format!("Host {} is not allowed", host.as_deref().unwrap_or("")),
        );
        write_answer(
            session,
            Answer::json(403, serde_json::to_vec(&body).unwrap_or_default()),
            None,
        )
        .await?;
        return Ok(true);
    }
    let origin = header(session, "origin").map(str::to_string);
    if !state.origin.allows(origin.as_deref()) {
        let msg = format!(
            "Forbidden: origin {} is not allowed (server.allowed_origins / CORTEX_ALLOWED_ORIGINS)",
            origin.as_deref().unwrap_or("")
        );
        ctx.audit.reject(crate::audit::Stage::Origin, msg.clone());
        write_answer(
            session,
            rpc_error(403, None, codes::REQUEST_REFUSED, &msg),
            None,
        )
        .await?;
        return Ok(true);
    }
    ctx.cors_origin = origin;
    let method = session.req_header().method.clone();
    if method == Method::OPTIONS {
        let mut a = Answer::empty(204)
            .with_header("access-control-allow-methods", "GET, POST, DELETE, OPTIONS")
            .with_header("access-control-allow-headers", CORS_ALLOW_HEADERS)
            .with_header("access-control-max-age", "600");
        if ctx.cors_origin.is_none() {
            a = a.with_header("allow", "GET, POST, DELETE, OPTIONS");
        }
        write_answer(session, a, ctx.cors_origin.as_deref()).await?;
        return Ok(true);
    }

    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    // Owned copies: the validation may await (unknown kid, introspection).
    let authorization = header(session, "authorization").map(str::to_string);
    let dev_mode = header(session, "x-dev-mode").map(str::to_string);
    let outcome = state
        .auth
        .authenticate(AuthRequest {
            authorization: authorization.as_deref(),
            dev_mode: dev_mode.as_deref(),
            peer,
        })
        .await;
    drop(authorization);
    ctx.audit.auth_outcome(&outcome);
    let refusal = match outcome {
        AuthOutcome::Ok(p) => Ok(p),
        AuthOutcome::Unauthorized {
            reason,
            token_presented,
        } => Err(auth_metadata::unauthorized(state, token_presented, &reason)),
        AuthOutcome::Forbidden {
            error,
            reason,
            scope,
        } => Err(auth_metadata::forbidden(
            state,
            error,
            &reason,
            scope.as_deref(),
        )),
        AuthOutcome::Unavailable { reason } => Err(auth_metadata::unavailable(&reason)),
    };
    let principal = match refusal {
        Ok(p) => p,
        Err(answer) => {
            write_answer(session, answer, ctx.cors_origin.as_deref()).await?;
            return Ok(true);
        }
    };

    let served = match method {
        Method::POST => post(state, session, ctx, &principal).await,
        Method::GET => get(state, session, ctx, &principal).await,
        Method::DELETE => delete(state, session, ctx, &principal).await,
        _ => {
            ctx.audit
                .reject(crate::audit::Stage::HttpMethod, "HTTP method not allowed");
            let a = Answer::empty(405).with_header("allow", "GET, POST, DELETE, OPTIONS");
            write_answer(session, a, ctx.cors_origin.as_deref()).await?;
            Ok(true)
        }
    };
    ctx.audit.set_principal(principal);
    served
}

enum BodyRead {
    Ok(Bytes),
    TooLarge,
}

async fn read_body(session: &mut Session, limit: u64) -> Result<BodyRead> {
    let declared = header(session, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(BodyRead::TooLarge);
    }
    let expects_continue =
        header(session, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        session.write_continue_response().await?;
    }
    session.enable_retry_buffering();
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit) as usize);
    while let Some(chunk) = session.read_request_body().await? {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Ok(BodyRead::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(BodyRead::Ok(buf.freeze()))
}

async fn post(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    principal: &Principal,
) -> Result<bool> {
    let cors = ctx.cors_origin.clone();
    let cors = cors.as_deref();
    let limit = state.config.server.max_body_bytes;
    let body = match read_body(session, limit).await? {
        BodyRead::Ok(b) => b,
        BodyRead::TooLarge => {
            session.set_keepalive(None);
            let msg =
                format!("Request body exceeds the limit of {limit} bytes (server.max_body_bytes)");
            ctx.audit.reject(crate::audit::Stage::Body, msg.clone());
            write_answer(
                session,
                rpc_error(413, None, codes::INVALID_REQUEST, &msg),
                cors,
            )
            .await?;
            return Ok(true);
        }
    };
    let incoming = match jsonrpc::parse_body(&body) {
        Ok(i) => i,
        Err(e) => {
            ctx.audit
                .reject(crate::audit::Stage::Parse, e.message.clone());
            write_answer(
                session,
                rpc_error(400, e.id.as_ref(), e.code, &e.message),
                cors,
            )
            .await?;
            return Ok(true);
        }
    };
    let first_id = match &incoming {
        Incoming::Single(Message::Request { id, .. }) => Some(id.clone()),
        _ => None,
    };
    let is_initialize =
        matches!(&incoming, Incoming::Single(m) if m.method() == Some("initialize"));
    ctx.audit.message(state, &incoming, &body);

    let header_version = if is_initialize {
        None
    } else {
        match version::from_header(
            session
                .req_header()
                .headers
                .get("mcp-protocol-version")
                .map(|v| v.as_bytes()),
        ) {
            Ok(v) => Some(v),
            Err(e) => {
                let msg = format!("Bad Request: {e}");
                ctx.audit.reject(crate::audit::Stage::Version, msg.clone());
                let a = Answer::json(
                    400,
                    jsonrpc::error(
                        first_id.as_ref(),
                        codes::INVALID_REQUEST,
                        &msg,
                        Some(
                            &json!({"supported": version::SUPPORTED.iter().map(|v| v.as_str()).collect::<Vec<_>>()}),
                        ),
                    ),
                );
                write_answer(session, a, cors).await?;
                return Ok(true);
            }
        }
    };

    let mcp_session = if is_initialize {
        None
    } else {
        match session_for(state, session, principal, first_id.as_ref()) {
            Ok(s) => s,
            Err(answer) => {
                ctx.audit.reject(
                    crate::audit::Stage::Session,
                    "session id unknown, expired or required",
                );
                write_answer(session, answer, cors).await?;
                return Ok(true);
            }
        }
    };
    let in_force = header_version
        .or_else(|| mcp_session.as_ref().map(|s| s.version()))
        .unwrap_or(version::HEADERLESS_DEFAULT);
    ctx.audit.version(in_force);
    let cx = CallContext {
        state,
        principal,
        session: mcp_session.as_ref(),
        version: in_force,
        presentation: crate::builtins::Presentation::from_headers(
            header(session, "x-cortex-tool-mode"),
            header(session, "x-cortex-backends"),
            state.config.catalog.tool_mode,
        ),
    };

    let message = match incoming {
        Incoming::Single(m) => m,
        Incoming::Batch(messages) => {
            let answer = batch(&cx, in_force, messages).await;
            if answer.status == 400 {
                ctx.audit
                    .reject(crate::audit::Stage::Batch, "batch refused");
            }
            write_answer(session, answer, cors).await?;
            return Ok(true);
        }
    };
    match dispatch::dispatch(&cx, message).await {
        Dispatched::Answer(body) => {
            let a = Answer::json(200, body);
            ctx.audit.answered(&a.body);
            write_answer(session, a, cors).await?
        }
        Dispatched::List { body, entries } => {
            let a = Answer::json(200, body);
            ctx.audit.answered(&a.body);
            ctx.audit.listed(entries, a.body.len());
            write_answer(session, a, cors).await?
        }
        Dispatched::Initialized { body, session_id } => {
            ctx.audit.session_issued(&session_id);
            let a = Answer::json(200, body).with_header("mcp-session-id", session_id);
            ctx.audit.answered(&a.body);
            write_answer(session, a, cors).await?;
        }
        Dispatched::Accepted => write_answer(session, Answer::empty(202), cors).await?,
        Dispatched::Forward(f) => {
            if session.retry_buffer_truncated() {
                // Over Pingora's 64 KiB retry buffer the proxy path would send no body:
                // call the backend ourselves.
                debug!(tool = %f.tool, bytes = body.len(), "large body: forwarding outside the proxy path");
                let reply = Answer::json(200, dispatch::execute_forward(state, &f).await);
                ctx.audit.answered(&reply.body);
                write_answer(session, reply, cors).await?;
            } else {
                ctx.forward = Some(f);
                return Ok(false);
            }
        }
    }
    Ok(true)
}

async fn batch(cx: &CallContext<'_>, in_force: ProtocolVersion, messages: Vec<Message>) -> Answer {
    if !in_force.allows_batches() {
        let msg = format!(
            "Invalid Request: JSON-RPC batches are not supported in protocol version {in_force}; send one message per POST"
        );
        return rpc_error(400, None, codes::INVALID_REQUEST, &msg);
    }
    if messages.iter().any(|m| m.method() == Some("initialize")) {
        return rpc_error(
            400,
            None,
            codes::INVALID_REQUEST,
            "Invalid Request: initialize must not be part of a batch",
        );
    }
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for m in messages {
        match dispatch::dispatch(cx, m).await {
            Dispatched::Answer(b) | Dispatched::List { body: b, .. } => parts.push(b),
            Dispatched::Forward(f) => parts.push(dispatch::execute_forward(cx.state, &f).await),
            Dispatched::Accepted | Dispatched::Initialized { .. } => {}
        }
    }
    if parts.is_empty() {
        return Answer::empty(202);
    }
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum::<usize>() + parts.len() + 2);
    out.push(b'[');
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(p);
    }
    out.push(b']');
    Answer::json(200, out)
}

/// The caller's session, when it presents one; `Err` is the answer to send instead.
fn session_for(
    state: &AppState,
    session: &Session,
    principal: &Principal,
    id: Option<&serde_json::Value>,
) -> std::result::Result<Option<std::sync::Arc<SessionState>>, Answer> {
    match header(session, "mcp-session-id") {
        Some(sid) => match state.sessions.validate(sid, &principal.sub, &principal.grants) {
            Ok(s) => Ok(Some(s)),
            Err(_) => Err(rpc_error(404, id, codes::SESSION_ERROR, "Session not found or expired: initialize a new session")),
        },
        None if state.config.sessions.mode == SessionMode::Required => Err(rpc_error(
            400,
            id,
            codes::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required (sessions.mode: required); call initialize first",
        )),
        None => Ok(None),
    }
}

async fn delete(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    principal: &Principal,
) -> Result<bool> {
    let cors = ctx.cors_origin.clone();
    let answer = match header(session, "mcp-session-id") {
        None => rpc_error(
            400,
            None,
            codes::INVALID_REQUEST,
            "Bad Request: DELETE needs an Mcp-Session-Id header",
        ),
        Some(sid) => match state
            .sessions
            .validate(sid, &principal.sub, &principal.grants)
        {
            Ok(s) => {
                state.sessions.revoke(&s);
                Answer::empty(204)
            }
            Err(_) => rpc_error(
                404,
                None,
                codes::SESSION_ERROR,
                "Session not found or expired",
            ),
        },
    };
    if answer.status >= 400 {
        ctx.audit.reject(
            crate::audit::Stage::Session,
            "session id missing, unknown or expired",
        );
    }
    write_answer(session, answer, cors.as_deref()).await?;
    Ok(true)
}

async fn get(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    principal: &Principal,
) -> Result<bool> {
    let cors = ctx.cors_origin.clone();
    let wants_sse = header(session, "accept")
        .is_some_and(|a| a.to_ascii_lowercase().contains("text/event-stream"));
    if !wants_sse {
        ctx.audit.reject(
            crate::audit::Stage::HttpMethod,
            "GET needs Accept: text/event-stream",
        );
        let a = Answer::empty(405).with_header("allow", "POST, DELETE");
        write_answer(session, a, cors.as_deref()).await?;
        return Ok(true);
    }
    let mcp_session = match header(session, "mcp-session-id") {
        None => {
            ctx.audit.reject(
                crate::audit::Stage::Session,
                "the notification stream needs a session id",
            );
            let a = rpc_error(400, None, codes::INVALID_REQUEST, "Bad Request: the notification stream needs an Mcp-Session-Id header; call initialize first");
            write_answer(session, a, cors.as_deref()).await?;
            return Ok(true);
        }
        Some(sid) => match state
            .sessions
            .validate(sid, &principal.sub, &principal.grants)
        {
            Ok(s) => s,
            Err(_) => {
                ctx.audit.reject(
                    crate::audit::Stage::Session,
                    "session id unknown or expired",
                );
                let a = rpc_error(
                    404,
                    None,
                    codes::SESSION_ERROR,
                    "Session not found or expired",
                );
                write_answer(session, a, cors.as_deref()).await?;
                return Ok(true);
            }
        },
    };
    let last_event_id = header(session, "last-event-id").and_then(|v| v.trim().parse::<u64>().ok());
    let mut handle = state.sessions.open_stream(&mcp_session, last_event_id);
    drop(mcp_session);

    let mut h = ResponseHeader::build(200, Some(6))?;
    h.insert_header("content-type", "text/event-stream")?;
    h.insert_header("cache-control", "no-cache")?;
    h.insert_header("x-accel-buffering", "no")?;
    if !session.as_downstream().is_http2() {
        h.insert_header("transfer-encoding", "chunked")?;
    }
    if let Some(origin) = &cors {
        super::http::add_cors(&mut h, origin)?;
    }
    let keepalive = state.config.sessions.keepalive_interval;
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
                return Ok(true);
            }
        }
    }
    session.write_response_body(None, true).await?;
    Ok(true)
}
