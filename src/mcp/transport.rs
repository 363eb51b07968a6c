//! The Streamable HTTP transport on the MCP path, as one straight chain of guards:
//!
//! Host (DNS rebinding) → Origin → CORS preflight → authentication → the caller's rate
//! limit → HTTP method → body (bounded) → JSON-RPC parse → envelope (version, session) →
//! dispatch.
//!
//! Each guard returns the value the next one needs or a [`Stop`]; one place records a
//! refusal with its stage and reason and writes its answer ([`handle`]).

use cortex_filters::jsonrpc::{self, codes, Incoming, Message};
use http::Method;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::json;

use crate::auth::{AuthOutcome, AuthRequest, Principal};
use crate::edge::{read_body, EdgeBodyRead};
use crate::http::{write_answer, Answer, CORS_ALLOW_HEADERS};
use crate::limits::Verdict;
use crate::record::Stage;
use crate::state::{AppState, Policy};
use crate::well_known;
use cortex_filters::ratelimit::retry_after_seconds;

use super::call::{CallContext, Dispatched};
use super::envelope::{self, Need};
use super::lists::Presentation;
use super::request::{Refusal, RequestCtx, RequestFacts, Stop};
use super::{dispatch, modern, stream};
use cortex_filters::version::Era;

const ALLOW: &str = "GET, POST, DELETE, OPTIONS";

fn rpc_error(status: u16, id: Option<&serde_json::Value>, code: i64, message: &str) -> Answer {
    Answer::json(status, jsonrpc::error(id, code, message, None))
}

/// Handles one request on the MCP path; always answers it.
pub async fn handle(
    state: &AppState,
    policy: &Policy,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    let facts = RequestFacts::of(session);
    ctx.record.begin(facts.session_id.as_str());
    match serve(state, policy, &facts, session, ctx).await {
        Ok(()) => {}
        Err(Stop::Refused(r)) => {
            ctx.record.reject(r.stage, r.reason);
            if r.close {
                session.set_keepalive(None);
            }
            write_answer(session, r.answer, ctx.cors_origin.as_deref()).await?;
        }
        Err(Stop::Answered(a)) => write_answer(session, a, ctx.cors_origin.as_deref()).await?,
        Err(Stop::Failed(e)) => return Err(e),
    }
    Ok(true)
}

async fn serve(
    state: &AppState,
    policy: &Policy,
    facts: &RequestFacts,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> std::result::Result<(), Stop> {
    guard_host(policy, facts)?;
    ctx.cors_origin = guard_origin(policy, facts)?;
    if facts.method == Method::OPTIONS {
        return Err(Stop::Answered(preflight(ctx.cors_origin.is_some())));
    }
    let principal = authenticate(state, policy, facts, ctx).await?;
    if let Err(refused) = guard_rate(state, policy, &principal).await {
        ctx.record.set_principal(principal);
        return Err(refused.into());
    }
    let served = match facts.method {
        Method::POST => post(state, policy, facts, session, ctx, &principal).await,
        Method::GET => stream::open(state, policy, facts, session, ctx, &principal).await,
        Method::DELETE => end_session(state, facts, session, ctx, &principal).await,
        _ => Err(Refusal::new(
            Stage::HttpMethod,
            "HTTP method not allowed",
            Answer::empty(405).with_header("allow", ALLOW),
        )
        .into()),
    };
    ctx.record.set_principal(principal);
    served
}

/// The caller's rate limit, before the body is read: over it, 429 with `Retry-After` (and
/// the wait in `data.retryAfterMs`); a shared store that cannot decide and fails closed,
/// 503.
async fn guard_rate(
    state: &AppState,
    policy: &Policy,
    principal: &Principal,
) -> std::result::Result<(), Refusal> {
    let verdict = state
        .shared
        .limiter
        .check_subject(&policy.limits, &principal.sub)
        .await;
    match verdict {
        Verdict::Allowed => Ok(()),
        Verdict::Limited { retry_after_ms, .. } => {
            let secs = retry_after_seconds(retry_after_ms);
            let msg = format!("Rate limit exceeded for this caller: retry after {secs} s");
            let data = json!({"retryAfterMs": retry_after_ms, "limit": "subject"});
            let body = jsonrpc::error(None, codes::REQUEST_REFUSED, &msg, Some(&data));
            Err(Refusal::new(
                Stage::RateLimit,
                msg,
                Answer::json(429, body).with_header("retry-after", secs.to_string()),
            ))
        }
        Verdict::Unavailable => {
            let msg = "Rate limits cannot be decided right now (the shared store is unavailable); retry shortly";
            let data = json!({"retryAfterMs": 1000, "limit": "subject"});
            let body = jsonrpc::error(None, codes::REQUEST_REFUSED, msg, Some(&data));
            Err(Refusal::new(
                Stage::RateLimit,
                msg,
                Answer::json(503, body).with_header("retry-after", "1"),
            ))
        }
    }
}

/// DNS-rebinding protection: the `Host` must be one this listener serves.
fn guard_host(policy: &Policy, facts: &RequestFacts) -> std::result::Result<(), Refusal> {
    if policy.host.allows(facts.host.as_deref()) {
        return Ok(());
    }
    let host = facts.host.as_deref().unwrap_or("");
    let body = json!({
        "error": "forbidden_host",
        "error_description": format!("Host {host} is not allowed on this loopback listener (DNS-rebinding protection); add it to server.allowed_hosts"),
    });
    Err(Refusal::new(
        Stage::Host,
        format!("Host {host} is not allowed"),
        Answer::json(403, serde_json::to_vec(&body).unwrap_or_default()),
    ))
}

/// A browser `Origin` must be allowed; the allowed origin is echoed in CORS headers.
fn guard_origin(
    policy: &Policy,
    facts: &RequestFacts,
) -> std::result::Result<Option<String>, Refusal> {
    if policy.origin.allows(facts.origin.as_deref()) {
        return Ok(facts.origin.clone());
    }
    let msg = format!(
        "Forbidden: origin {} is not allowed (server.allowed_origins / CORTEX_ALLOWED_ORIGINS)",
        facts.origin.as_deref().unwrap_or("")
    );
    let answer = rpc_error(403, None, codes::REQUEST_REFUSED, &msg);
    Err(Refusal::new(Stage::Origin, msg, answer))
}

/// The CORS preflight answer.
fn preflight(cors: bool) -> Answer {
    let a = Answer::empty(204)
        .with_header("access-control-allow-methods", ALLOW)
        .with_header("access-control-allow-headers", CORS_ALLOW_HEADERS)
        .with_header("access-control-max-age", "600");
    if cors {
        a
    } else {
        a.with_header("allow", ALLOW)
    }
}

/// The caller, or the 401/403/503 answer.
async fn authenticate(
    state: &AppState,
    policy: &Policy,
    facts: &RequestFacts,
    ctx: &mut RequestCtx,
) -> std::result::Result<Principal, Stop> {
    let outcome = state
        .shared
        .auth
        .authenticate(AuthRequest {
            authorization: facts.authorization.as_deref(),
            dev_mode: facts.dev_mode.as_deref(),
            peer: facts.peer,
        })
        .await;
    ctx.record.auth_outcome(&outcome);
    let shared = &state.shared;
    let answer = match outcome {
        AuthOutcome::Ok(p) => return Ok(p),
        AuthOutcome::Unauthorized {
            reason,
            token_presented,
        } => well_known::unauthorized(shared, policy, token_presented, &reason),
        AuthOutcome::Forbidden {
            error,
            reason,
            scope,
        } => well_known::forbidden(shared, error, &reason, scope.as_deref()),
        AuthOutcome::Unavailable { reason } => well_known::unavailable(&reason),
    };
    // The refusal is already recorded with its precise stage (auth or auth_unavailable).
    Err(Stop::Answered(answer))
}

/// POST: one JSON-RPC message (or a batch) in, JSON out.
async fn post(
    state: &AppState,
    policy: &Policy,
    facts: &RequestFacts,
    session: &mut Session,
    ctx: &mut RequestCtx,
    principal: &Principal,
) -> std::result::Result<(), Stop> {
    let limit = policy.config.server.max_body_bytes;
    let edge = &state.shared.edge;
    let read = read_body(
        session,
        limit,
        edge,
        ctx.conn.as_deref(),
        &mut ctx.body_permit,
    )
    .await?;
    let body = match read {
        EdgeBodyRead::Complete(b) => b,
        refused => return Err(body_refusal(refused, limit, edge).into()),
    };
    let incoming = jsonrpc::parse_body(&body).map_err(|e| {
        let answer = rpc_error(400, e.id.as_ref(), e.code, &e.message);
        Refusal::new(Stage::Parse, e.message, answer)
    })?;
    let first_id = match &incoming {
        Incoming::Single(Message::Request { id, .. }) => Some(id.clone()),
        _ => None,
    };
    let is_initialize =
        matches!(&incoming, Incoming::Single(m) if m.method() == Some("initialize"));
    ctx.record
        .message(&incoming, &body, state.shared.audit.hasher());
    if modern::era(session, &incoming) == Era::Modern {
        return modern::post(state, policy, facts, session, ctx, principal, incoming).await;
    }
    let env = envelope::open(
        &state.shared,
        policy.config.sessions.mode,
        &facts.session_id,
        facts.protocol_version.as_ref(),
        principal,
        is_initialize,
        first_id.as_ref(),
    )?;
    ctx.record.version(env.version);
    let cx = CallContext {
        shared: &state.shared,
        policy,
        principal,
        session: env.session.as_ref(),
        version: env.version,
        presentation: Presentation::from_headers(
            facts.tool_mode.as_deref(),
            facts.backends.as_deref(),
            policy.config.catalog.tool_mode,
        ),
        client_caps: env.session.as_ref().map_or(0, |s| s.claims.client_caps),
    };
    let cors = ctx.cors_origin.clone();
    let answer = match incoming {
        Incoming::Single(m) => match dispatch::dispatch(&cx, m, &mut ctx.record).await {
            Dispatched::Answer(body) => {
                ctx.record.answered(&body);
                Answer::json(200, body)
            }
            Dispatched::List { body, entries } => {
                // The head holds the outcome (`…,"result":`).
                ctx.record.answered(&body.head);
                ctx.record.listed(entries, body.len());
                Answer::json_parts(200, body.head, body.end)
            }
            Dispatched::Initialized { body, session_id } => {
                ctx.record.session_issued(&session_id);
                ctx.record.answered(&body);
                Answer::json(200, body).with_header("mcp-session-id", session_id)
            }
            Dispatched::Accepted => Answer::empty(202),
            Dispatched::Stream { id, replies, call } => {
                let how = super::streaming::StreamAnswer {
                    relay: &state.shared.relay,
                    owner: cx.relay_owner(),
                    cors_origin: cors.as_deref(),
                    accepts_sse: facts
                        .accept
                        .as_deref()
                        .is_some_and(|a| a.to_ascii_lowercase().contains("text/event-stream")),
                    keepalive: policy.config.sessions.keepalive_interval,
                };
                super::streaming::answer(session, how, id, replies, call, &mut ctx.record).await?;
                return Ok(());
            }
        },
        Incoming::Batch(messages) => batch(&cx, messages).await?,
    };
    write_answer(session, answer, cors.as_deref()).await?;
    Ok(())
}

/// The refusal of a body that was not read whole: too large (413), over the body budget
/// (503, retry shortly), too slow (408), malformed (400). The connection is closed: the
/// rest of the body is unread or untrustworthy.
fn body_refusal(read: EdgeBodyRead, limit: u64, edge: &crate::edge::Edge) -> Refusal {
    let (status, msg) = match read {
        EdgeBodyRead::Complete(_) | EdgeBodyRead::TooLarge => (
            413,
            format!("Request body exceeds the limit of {limit} bytes (server.max_body_bytes)"),
        ),
        EdgeBodyRead::OverBudget => (
            503,
            "The gateway is reading too many request bodies at once (server.limits.body_budget); retry shortly".to_string(),
        ),
        EdgeBodyRead::TimedOut => (
            408,
            format!(
                "Request body not received within {} (server.limits.body_timeout)",
                crate::config::units::format_duration(edge.limits().body_timeout)
            ),
        ),
        EdgeBodyRead::Malformed(why) => (400, format!("Malformed request body: {why}")),
    };
    let mut answer = rpc_error(status, None, codes::INVALID_REQUEST, &msg);
    if status == 503 {
        answer = answer.with_header("retry-after", "1");
    }
    Refusal::new(Stage::Body, msg, answer).closing()
}

/// A 2025-03-26 batch: every message dispatched in order, one array answered. The calls
/// of a batch are not recorded one by one.
async fn batch(
    cx: &CallContext<'_>,
    messages: Vec<Message>,
) -> std::result::Result<Answer, Refusal> {
    if !cx.version.allows_batches() {
        let msg = format!(
            "Invalid Request: JSON-RPC batches are not supported in protocol version {}; send one message per POST",
            cx.version
        );
        let answer = rpc_error(400, None, codes::INVALID_REQUEST, &msg);
        return Err(Refusal::new(Stage::Batch, "batch refused", answer));
    }
    if messages.iter().any(|m| m.method() == Some("initialize")) {
        let answer = rpc_error(
            400,
            None,
            codes::INVALID_REQUEST,
            "Invalid Request: initialize must not be part of a batch",
        );
        return Err(Refusal::new(Stage::Batch, "batch refused", answer));
    }
    let mut scratch = crate::record::RequestRecord::default();
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for m in messages {
        match dispatch::dispatch(cx, m, &mut scratch).await {
            Dispatched::Answer(b) => parts.push(b),
            Dispatched::List { body, .. } => parts.push(body.to_vec()),
            Dispatched::Stream { id, replies, .. } => {
                // A batch answers with one array: only the outcome of a streamed call.
                let outcome = crate::upstream::Replies::Stream(replies).outcome().await;
                parts.push(outcome.to_response(&id));
            }
            Dispatched::Accepted | Dispatched::Initialized { .. } => {}
        }
    }
    if parts.is_empty() {
        return Ok(Answer::empty(202));
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
    Ok(Answer::json(200, out))
}

/// DELETE: ends the caller's session.
async fn end_session(
    state: &AppState,
    facts: &RequestFacts,
    session: &mut Session,
    ctx: &mut RequestCtx,
    principal: &Principal,
) -> std::result::Result<(), Stop> {
    if let Some(s) = envelope::session(&state.shared, &facts.session_id, principal, Need::End)? {
        state.shared.sessions.revoke(&s);
    }
    write_answer(session, Answer::empty(204), ctx.cors_origin.as_deref()).await?;
    Ok(())
}
