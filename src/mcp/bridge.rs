//! A native call answered to a modern (2026-07-28) caller: the bridge between a legacy
//! upstream that talks to its client during a call and a client that is never sent a request.
//!
//! While the call runs, what the upstream sends is handled per item:
//!
//! - progress and log messages are relayed on this request's own stream, and only as the
//!   request asks (`cortex_filters::modern::hold::modern_notification`): the POST is then
//!   answered as an event stream, else as plain JSON;
//! - a server request (elicitation, sampling, roots) becomes an `inputRequests` entry (the
//!   requests the upstream sends at once are gathered into one result). The upstream call is
//!   **held** ([`crate::upstream::held`], bounded per caller, in total and in time) and the
//!   request is answered with an `InputRequiredResult` whose sealed `requestState` names the
//!   held call. A request the client cannot be asked (it did not declare the capability, or
//!   the method has no modern form) is refused upstream at once, and the call goes on;
//! - the final outcome answers the request (with `resultType`, via the caller's decoration).
//!
//! The retry brings `inputResponses` and the state: [`answer`] with [`Start::Resume`] gives
//! each answer to the upstream request that waits for it, asks again for what is missing,
//! and goes on with the same call, which may need another round.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use cortex_filters::jsonrpc::{self, codes, Id};
use cortex_filters::modern::hold::{self, Continuation, HoldLimits};
use cortex_filters::modern::mrtr::{self, InputRequest, MAX_INPUT_REQUESTS};
use cortex_filters::modern::{LogLevel, Refusal as ModernRefusal};
use cortex_filters::{native as rules, sse};
use futures::{FutureExt, StreamExt};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::{json, Map, Value};

use crate::http::{add_cors, write_answer, Answer};
use crate::record::RequestRecord;
use crate::upstream::backend::{Reply, ReplyStream};
use crate::upstream::held::{HeldCall, Waiting};
use crate::upstream::relay::Relay;
use cortex_filters::contract::Outcome;

use super::modern::Asker;

/// How one modern request's native call is answered.
pub struct Bridge<'a> {
    /// The relay tables (the held calls).
    pub relay: &'a Relay,
    /// Who may take a held call back.
    pub owner: String,
    /// Seals input-required results for this caller and this call.
    pub asker: Asker<'a>,
    /// The request's `_meta` log level, if it asked for one.
    pub log_level: Option<LogLevel>,
    /// The request's progress token, if any.
    pub progress_token: Option<Value>,
    /// The bounds on held calls.
    pub limits: HoldLimits,
    /// The allowed browser origin, for CORS headers.
    pub cors_origin: Option<&'a str>,
    /// Keep-alive comments while an event stream is idle.
    pub keepalive: Duration,
    /// Turns the JSON-RPC answer of a completed call into its modern form (`resultType`,
    /// caching hints, 2026-07-28 error codes, the vault's consent).
    pub finish: &'a (dyn Fn(Vec<u8>) -> Vec<u8> + Sync),
}

/// Where the call starts.
pub enum Start<'r> {
    /// A fresh call's replies.
    Fresh(ReplyStream),
    /// A held call taken back by its retry, with the retry's `inputResponses`.
    Resume {
        /// The held call.
        call: HeldCall,
        /// The answers the retry carries.
        responses: Option<&'r Map<String, Value>>,
    },
}

/// The response being written: plain JSON until something must be streamed first.
struct Out<'s, 'a> {
    session: &'s mut Session,
    cors_origin: Option<&'a str>,
    keepalive: Duration,
    streaming: bool,
}

impl Out<'_, '_> {
    async fn event(&mut self, message: &[u8]) -> pingora::Result<()> {
        if !self.streaming {
            let mut h = ResponseHeader::build(200, Some(6))?;
            h.insert_header("content-type", "text/event-stream")?;
            h.insert_header("cache-control", "no-cache")?;
            h.insert_header("x-accel-buffering", "no")?;
            if !self.session.as_downstream().is_http2() {
                h.insert_header("transfer-encoding", "chunked")?;
            }
            if let Some(origin) = self.cors_origin {
                add_cors(&mut h, origin)?;
            }
            self.session
                .set_write_timeout(Some(self.keepalive.max(Duration::from_secs(5)) * 2));
            self.session
                .write_response_header(Box::new(h), false)
                .await?;
            self.streaming = true;
        }
        self.session
            .write_response_body(Some(Bytes::from(sse::message_event(None, message))), false)
            .await
    }

    async fn finish(self, status: u16, body: Vec<u8>) -> pingora::Result<()> {
        if self.streaming {
            self.session
                .write_response_body(Some(Bytes::from(sse::message_event(None, &body))), false)
                .await?;
            self.session.write_response_body(None, true).await
        } else {
            write_answer(self.session, Answer::json(status, body), self.cors_origin).await
        }
    }
}

/// Answers one modern request whose native call starts (or resumes) with `start`.
pub async fn answer(
    session: &mut Session,
    b: &Bridge<'_>,
    id: Id,
    start: Start<'_>,
    rec: &mut RequestRecord,
) -> pingora::Result<()> {
    let mut out = Out {
        session,
        cors_origin: b.cors_origin,
        keepalive: b.keepalive,
        streaming: false,
    };
    let (mut replies, mut peeked, mut asked) = match start {
        Start::Fresh(replies) => {
            let fused: ReplyStream = Box::pin(replies.fuse());
            (fused, VecDeque::new(), 0u32)
        }
        Start::Resume { call, responses } => match deliver(b, call, responses) {
            Resumed::Go(call) => (call.replies, call.peeked, call.asked),
            Resumed::Answer(status, body) => {
                let body = body(&id);
                rec.answered(&body);
                return out.finish(status, body).await;
            }
        },
    };
    let mut tick = tokio::time::interval(b.keepalive);
    tick.tick().await;
    loop {
        let item = match peeked.pop_front() {
            Some(i) => Some(i),
            None => tokio::select! {
                r = replies.next() => r,
                _ = tick.tick(), if out.streaming => {
                    out.session
                        .write_response_body(Some(Bytes::from_static(sse::KEEPALIVE)), false)
                        .await?;
                    continue;
                }
                _ = out.session.as_downstream_mut().read_body_or_idle(true) => {
                    // The caller left: dropping the replies ends the call upstream.
                    return Ok(());
                }
            },
        };
        match item {
            None => {
                let body = (b.finish)(jsonrpc::error(
                    Some(&id),
                    codes::INTERNAL_ERROR,
                    "Internal error: the backend ended the call without an answer",
                    None,
                ));
                rec.answered(&body);
                return out.finish(200, body).await;
            }
            Some(Reply::Notification(bytes)) => {
                if let Some(n) =
                    hold::modern_notification(&bytes, b.log_level, b.progress_token.as_ref())
                {
                    out.event(&n).await?;
                }
            }
            Some(Reply::Final(outcome)) => {
                // -32021 is an HTTP 400 in 2026-07-28 (when nothing was streamed before it).
                let status = match &outcome {
                    Outcome::Error { code, .. }
                        if *code == codes::MISSING_REQUIRED_CLIENT_CAPABILITY =>
                    {
                        400
                    }
                    _ => 200,
                };
                let body = (b.finish)(outcome.to_response(&id));
                rec.answered(&body);
                return out.finish(status, body).await;
            }
            Some(Reply::ServerRequest {
                method,
                params,
                respond,
                key,
                more,
            }) => {
                let mut waiting = Vec::new();
                let mut more = more;
                ask(b, &mut asked, &mut waiting, (method, params, key), respond);
                // What the upstream asked at the same moment goes into the same result: a
                // 2026-07-28 upstream's round whole (`more`), a session-based upstream's
                // requests already there.
                while waiting.len() < MAX_INPUT_REQUESTS {
                    let next = if more {
                        Some(replies.next().await)
                    } else {
                        replies.next().now_or_never()
                    };
                    match next {
                        Some(Some(Reply::ServerRequest {
                            method,
                            params,
                            respond,
                            key,
                            more: m,
                        })) => {
                            more = m;
                            ask(b, &mut asked, &mut waiting, (method, params, key), respond)
                        }
                        Some(Some(other)) => {
                            peeked.push_back(other);
                            break;
                        }
                        Some(None) | None => break,
                    }
                }
                if waiting.is_empty() {
                    continue;
                }
                let call = HeldCall {
                    owner: b.owner.clone(),
                    replies,
                    waiting,
                    peeked,
                    asked,
                };
                let (status, body) = hold_and_ask(b, call, &id);
                rec.answered(&body);
                return out.finish(status, body).await;
            }
        }
    }
}

/// One upstream request (method, params, and the key a 2026-07-28 upstream gave it): kept
/// for the client when it can be asked, else refused upstream. The upstream's own key is
/// kept when it is usable (valid and not taken in this round); else the gateway names it.
fn ask(
    b: &Bridge<'_>,
    asked: &mut u32,
    waiting: &mut Vec<Waiting>,
    (method, params, upstream_key): (String, Value, Option<String>),
    respond: tokio::sync::oneshot::Sender<Result<Value, Value>>,
) {
    *asked += 1;
    let message = json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params});
    let usable = upstream_key.filter(|k| {
        !k.is_empty()
            && k.len() <= mrtr::MAX_KEY_LEN
            && !waiting.iter().any(|w| &w.request.key == k)
    });
    let key = match (usable, mrtr::InputMethod::parse(&method)) {
        (Some(k), Some(_)) => k,
        (None, Some(m)) => hold::input_key(m, *asked),
        (_, None) => String::new(),
    };
    let refuse = |respond: tokio::sync::oneshot::Sender<_>, why: String| {
        let _ = respond.send(Err(rules::error_object(codes::METHOD_NOT_FOUND, &why)));
    };
    match mrtr::legacy_request_to_input(key, &message) {
        Err(e) => refuse(respond, format!("the caller cannot be asked this: {e}")),
        Ok(request) => {
            let missing = request.required_caps() & !b.asker.declared;
            if missing != 0 {
                let names = cortex_filters::session::caps::to_json(missing);
                refuse(
                    respond,
                    format!(
                    "the caller did not declare the client capabilities {names} for this request"
                ),
                );
            } else {
                waiting.push(Waiting { request, respond });
            }
        }
    }
}

type Body = Box<dyn FnOnce(&Id) -> Vec<u8> + Send>;

enum Resumed {
    Go(HeldCall),
    Answer(u16, Body),
}

fn refusal_body(r: ModernRefusal) -> Resumed {
    Resumed::Answer(r.http_status, Box::new(move |id: &Id| r.body(Some(id))))
}

/// Hands the retry's answers to the upstream requests that wait for them. Missing answers
/// are asked for again (a new result, the call held again); a malformed one ends the call.
fn deliver(b: &Bridge<'_>, mut call: HeldCall, responses: Option<&Map<String, Value>>) -> Resumed {
    let expected: Vec<(&str, mrtr::InputMethod)> = call
        .waiting
        .iter()
        .map(|w| (w.request.key.as_str(), w.request.method))
        .collect();
    let matched = match mrtr::match_input_responses(&expected, responses) {
        Ok(m) => m,
        Err(r) => return refusal_body(r),
    };
    let answers: Vec<(String, Value)> = matched
        .answered
        .iter()
        .map(|(k, v)| (k.to_string(), hold::upstream_answer(v)))
        .collect();
    for (key, answer) in answers {
        if let Some(at) = call.waiting.iter().position(|w| w.request.key == key) {
            let w = call.waiting.swap_remove(at);
            let _ = w.respond.send(Ok(answer));
        }
    }
    if call.waiting.is_empty() {
        return Resumed::Go(call);
    }
    call.waiting
        .sort_by(|a, b| a.request.key.cmp(&b.request.key));
    let (status, body) = hold_and_ask_later(b, call);
    Resumed::Answer(status, body)
}

/// Holds `call` and answers with its input requests (or why it cannot be held).
fn hold_and_ask(b: &Bridge<'_>, call: HeldCall, id: &Id) -> (u16, Vec<u8>) {
    let (status, body) = hold_and_ask_later(b, call);
    (status, body(id))
}

fn hold_and_ask_later(b: &Bridge<'_>, call: HeldCall) -> (u16, Body) {
    let requests: Vec<InputRequest> = call.waiting.iter().map(|w| w.request.clone()).collect();
    let held = match b.relay.held().hold(call, &b.limits) {
        Ok(h) => h,
        Err(refused) => {
            tracing::info!(owner = %b.owner, "a call cannot be held for its caller's input: {:?}", refused);
            let r = refused.refusal();
            return (r.http_status, Box::new(move |id: &Id| r.body(Some(id))));
        }
    };
    match b.asker.ask(&requests, &Continuation::Held(held.clone())) {
        Ok(result) => (
            200,
            Box::new(move |id: &Id| jsonrpc::success_raw(id, &result)),
        ),
        Err(r) => {
            // Dropping the held call ends it upstream.
            drop(b.relay.held().take(&b.owner, &held));
            (r.http_status, Box::new(move |id: &Id| r.body(Some(id))))
        }
    }
}
