//! The method table: every JSON-RPC message is answered here, from the catalog, the
//! gateway's own tools, or a backend through the [`Backend`](crate::upstream::Backend) seam.
//! Decisions about the request (where a tool call goes, what scope it needed) are written
//! into the request's record as they are made.

use cortex_filters::jsonrpc::{self, codes, Id, Message, RpcError};
use serde_json::{json, Map, Value};

use std::time::Instant;

use cortex_filters::ratelimit::retry_after_seconds;

use crate::limits::{Verdict, Which};
use crate::record::{CallResult, RequestRecord, Stage, Target};
use crate::upstream::calls::{self, Caller};
use crate::upstream::{ListKind, Operation, Replies};

use super::call::{CallContext, Dispatched};
use super::{lifecycle, lists};

/// Answers one message.
pub async fn dispatch(
    cx: &CallContext<'_>,
    message: Message,
    rec: &mut RequestRecord,
) -> Dispatched {
    let (id, method, params) = match message {
        Message::Request { id, method, params } => (id, method, params),
        Message::Notification { method, params } => {
            notification(cx, &method, params.as_ref());
            return Dispatched::Accepted;
        }
        Message::Response { id, outcome } => {
            // The caller's answer to a server request a native backend made during a call:
            // back to that backend, if this caller is the one it was relayed to.
            if !cx.shared.relay.answer(&cx.relay_owner(), &id, outcome) {
                tracing::debug!(%id, "a response that answers no pending server request of this caller");
            }
            return Dispatched::Accepted;
        }
    };
    let params = params.unwrap_or(Value::Object(Map::new()));
    let answer = |r: Result<Value, RpcError>| {
        Dispatched::Answer(match r {
            Ok(v) => jsonrpc::success(&id, &v),
            Err(e) => e.to_response(Some(&id)),
        })
    };
    match method.as_str() {
        "initialize" => lifecycle::initialize(cx, &id, &params),
        "ping" => answer(Ok(json!({}))),
        "tools/list" => lists::list(cx, &id, &params, ListKind::Tools),
        "prompts/list" => lists::list(cx, &id, &params, ListKind::Prompts),
        "resources/list" => lists::list(cx, &id, &params, ListKind::Resources),
        "resources/templates/list" => lists::list(cx, &id, &params, ListKind::Templates),
        "tools/call" => call_tool(cx, &id, &params, rec).await,
        "prompts/get" => streamed(cx, &id, get_prompt(cx, &params).await).await,
        "resources/read" => streamed(cx, &id, read_resource(cx, &params).await).await,
        "completion/complete" => streamed(cx, &id, complete(cx, &params).await).await,
        "logging/setLevel" => {
            let r = lifecycle::set_level(&params);
            if r.is_ok() {
                if let Some(level) = params.get("level").and_then(Value::as_str) {
                    cx.shared.relay.set_level(&cx.relay_owner(), level);
                }
            }
            answer(r)
        }
        "resources/subscribe" => answer(subscribe(cx, &params, true).await),
        "resources/unsubscribe" => answer(subscribe(cx, &params, false).await),
        _ => answer(Err(RpcError::new(
            codes::METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        ))),
    }
}

/// The `inputResponses` of a 2026-07-28 first call (no `requestState`: a retry with the
/// gateway's state continues a held call or answers the gateway's own question, and its
/// answers are not the upstream's to read).
fn first_call_responses<'p>(cx: &CallContext<'_>, params: &'p Value) -> Option<&'p Value> {
    if cx.version != cortex_filters::version::ProtocolVersion::V2026_07_28
        || params.get("requestState").is_some()
    {
        return None;
    }
    params.get("inputResponses").filter(|v| !v.is_null())
}

/// `params.arguments` as an object (`None` when absent or null).
fn arguments(params: &Value) -> Result<Option<&Map<String, Value>>, RpcError> {
    match params.get("arguments") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(a)) => Ok(Some(a)),
        Some(_) => Err(RpcError::invalid_params(
            "Invalid params: \"arguments\" must be an object",
        )),
    }
}

/// `tools/call`: a builtin, or a backend tool the caller may see. A tool hidden by scope
/// answers exactly like one that does not exist; the record keeps what really happened.
async fn call_tool(
    cx: &CallContext<'_>,
    id: &Id,
    params: &Value,
    rec: &mut RequestRecord,
) -> Dispatched {
    let answer = |r: Result<Value, RpcError>| {
        Dispatched::Answer(match r {
            Ok(v) => jsonrpc::success(id, &v),
            Err(e) => e.to_response(Some(id)),
        })
    };
    let name = params.get("name").and_then(Value::as_str);
    if let Some(name) = name.filter(|n| cx.policy.builtins.get(n).is_some()) {
        rec.route(Target::Gateway);
        if cx.policy.builtins.usable(name, cx.principal).is_none() {
            return answer(Err(RpcError::invalid_params(format!(
                "Unknown tool: {name}"
            ))));
        }
        let empty = Map::new();
        let result = match arguments(params) {
            Ok(args) => crate::builtins::call(&cx.builtin_cx(), name, args.unwrap_or(&empty)).await,
            Err(e) => Err(e),
        };
        return answer(result);
    }
    let Some(name) = name else {
        return answer(Err(RpcError::invalid_params(
            "Invalid params: tools/call needs a string \"name\"",
        )));
    };
    let args = match arguments(params) {
        Ok(a) => a,
        Err(e) => return answer(Err(e)),
    };
    let current = cx.shared.catalog.current();
    let unknown = || RpcError::invalid_params(format!("Unknown tool: {name}"));
    let Some(tool) = current.merged.tool(name) else {
        return answer(Err(quarantined(cx, name, rec).unwrap_or_else(unknown)));
    };
    rec.route(Target::Backend {
        id: tool.backend_id.clone(),
        scope: tool.scope.clone(),
    });
    if !cx.principal.grants.allows(tool.scope.as_deref())
        || cx.policy.upstreams.get(&tool.backend_id).is_none()
    {
        return answer(Err(unknown()));
    }
    if let Some(refused) = rate_limit(cx, name, &tool.backend_id, rec).await {
        return answer(Err(refused));
    }
    let caller = Caller {
        principal: cx.principal,
        catalog: &current.merged,
        client_caps: cx.client_caps,
        input_responses: first_call_responses(cx, params),
    };
    let arguments = params.get("arguments").filter(|_| args.is_some());
    let op = Operation::CallTool {
        name: &tool.target,
        arguments,
    };
    let meta = params.get("_meta");
    let started = Instant::now();
    let outcome =
        match calls::call_with_meta(&cx.policy.upstreams, caller, &tool.backend_id, op, meta).await
        {
            Replies::Final(outcome) => outcome,
            Replies::Stream(replies) => {
                return Dispatched::Stream {
                    id: id.clone(),
                    replies,
                    call: cx.shared.relay.begin_call(&cx.relay_owner(), id),
                }
            }
        };
    rec.backend_call(started.elapsed(), CallResult::of(&outcome));
    // A provider the caller has not linked: a client that declared URL-mode elicitation is
    // sent to the link page in the middle of the call (the vault, docs/vault.md).
    let url_mode = cx.session.is_some_and(|s| {
        s.client_caps() & cortex_filters::session::caps::ELICITATION_URL != 0
            && s.version() >= cortex_filters::version::ProtocolVersion::V2025_11_25
    });
    if let (true, cortex_filters::contract::Outcome::Result(result)) = (url_mode, &outcome) {
        let elicitation_id = crate::store::random_id("el_");
        if let Some(e) = cortex_filters::vault::url_elicitation_for(result, &elicitation_id) {
            let code = e["code"]
                .as_i64()
                .unwrap_or(cortex_filters::vault::URL_ELICITATION_REQUIRED);
            let message = e["message"].as_str().unwrap_or("");
            return Dispatched::Answer(jsonrpc::error(Some(id), code, message, Some(&e["data"])));
        }
    }
    Dispatched::Answer(outcome.to_response(id))
}

/// The answer to a call of a tool that pinning holds back (block mode): the caller is told
/// it awaits an administrator's approval, and the record says so (stage `quarantined`). A
/// caller whose scopes would not allow the tool is told nothing more than "Unknown tool".
fn quarantined(cx: &CallContext<'_>, name: &str, rec: &mut RequestRecord) -> Option<RpcError> {
    let (backend, scope) = cx.shared.integrity.quarantined_tool(name)?;
    if !cx.principal.grants.allows(scope.as_deref()) {
        return None;
    }
    let reason = format!(
        "Tool {name} is quarantined and awaits an administrator's approval: its definition is new or changed since it was last approved (tool-definition pinning), so it cannot be called until then"
    );
    rec.route(Target::Backend {
        id: backend.clone(),
        scope,
    });
    rec.reject(Stage::Quarantine, reason.clone());
    Some(
        RpcError::invalid_params(reason)
            .with_data(json!({"quarantined": true, "backend": backend})),
    )
}

/// A notification from the caller: `notifications/cancelled` stops the caller's own call in
/// flight (a native backend then tells its server); the others need nothing.
fn notification(cx: &CallContext<'_>, method: &str, params: Option<&Value>) {
    if method == "notifications/cancelled" {
        if let Some(request_id) = params.and_then(|p| p.get("requestId")) {
            cx.shared.relay.cancel(&cx.relay_owner(), request_id);
        }
    }
}

/// `resources/subscribe` / `resources/unsubscribe` of a resource the caller may read, on a
/// native backend that offers subscriptions; the session then receives
/// `notifications/resources/updated` for it on its stream.
async fn subscribe(cx: &CallContext<'_>, params: &Value, on: bool) -> Result<Value, RpcError> {
    let verb = if on { "subscribe" } else { "unsubscribe" };
    let uri = params.get("uri").and_then(Value::as_str).ok_or_else(|| {
        RpcError::invalid_params(format!(
            "Invalid params: resources/{verb} needs a string \"uri\""
        ))
    })?;
    let current = cx.shared.catalog.current();
    let caller = Caller {
        principal: cx.principal,
        catalog: &current.merged,
        client_caps: cx.client_caps,
        input_responses: None,
    };
    let owner = cx.relay_owner();
    if !on {
        cx.shared.relay.unsubscribe(&owner, uri);
    }
    let backend = calls::subscribe(&cx.policy.upstreams, caller, uri, on).await?;
    if on {
        if let Some(session) = cx.session {
            if !cx.shared.relay.subscribe(&owner, &backend, uri, session) {
                return Err(RpcError::internal(
                    "too many resource subscriptions on this gateway; try again later",
                ));
            }
        }
    }
    Ok(json!({}))
}

/// The caller-and-tool and backend limits of a tool call: the JSON-RPC error to answer
/// (with `data.retryAfterMs`) when one refuses, recorded as a rate-limit refusal.
async fn rate_limit(
    cx: &CallContext<'_>,
    tool: &str,
    backend: &str,
    rec: &mut RequestRecord,
) -> Option<RpcError> {
    let verdict = cx
        .shared
        .limiter
        .check_call(&cx.policy.limits, &cx.principal.sub, tool, backend)
        .await;
    let (message, data) = match verdict {
        Verdict::Allowed => return None,
        Verdict::Limited {
            retry_after_ms,
            which,
        } => {
            let what = match which {
                Which::Backend => format!("backend {backend}"),
                _ => format!("tool {tool}"),
            };
            (
                format!(
                    "Rate limit exceeded for {what}: retry after {} s",
                    retry_after_seconds(retry_after_ms)
                ),
                json!({"retryAfterMs": retry_after_ms, "limit": which.as_str()}),
            )
        }
        Verdict::Unavailable => (
            "Rate limits cannot be decided right now (the shared store is unavailable); retry shortly"
                .to_owned(),
            json!({"retryAfterMs": 1000, "limit": "unavailable"}),
        ),
    };
    rec.reject(Stage::RateLimit, message.clone());
    Some(RpcError::new(codes::REQUEST_REFUSED, message).with_data(data))
}

/// The answer of a call whose backend may stream what happens during it (`prompts/get`,
/// `resources/read`, `completion/complete` on a native backend): its replies, relayed to the
/// caller as `tools/call`'s are; or the one outcome.
async fn streamed(cx: &CallContext<'_>, id: &Id, r: Result<Replies, RpcError>) -> Dispatched {
    let result = match r {
        Ok(Replies::Stream(replies)) => {
            return Dispatched::Stream {
                id: id.clone(),
                replies,
                call: cx.shared.relay.begin_call(&cx.relay_owner(), id),
            }
        }
        Ok(Replies::Final(outcome)) => outcome.into_result(),
        Err(e) => Err(e),
    };
    Dispatched::Answer(match result {
        Ok(v) => jsonrpc::success(id, &v),
        Err(e) => e.to_response(Some(id)),
    })
}

async fn get_prompt(cx: &CallContext<'_>, params: &Value) -> Result<Replies, RpcError> {
    let name = params.get("name").and_then(Value::as_str).ok_or_else(|| {
        RpcError::invalid_params("Invalid params: prompts/get needs a string \"name\"")
    })?;
    let arguments = match arguments(params)? {
        None => json!({}),
        Some(a) => Value::Object(a.clone()),
    };
    let current = cx.shared.catalog.current();
    let caller = Caller {
        principal: cx.principal,
        catalog: &current.merged,
        client_caps: cx.client_caps,
        input_responses: first_call_responses(cx, params),
    };
    let meta = params.get("_meta");
    calls::get_prompt_replies(&cx.policy.upstreams, caller, name, &arguments, meta).await
}

async fn read_resource(cx: &CallContext<'_>, params: &Value) -> Result<Replies, RpcError> {
    let uri = params.get("uri").and_then(Value::as_str).ok_or_else(|| {
        RpcError::invalid_params("Invalid params: resources/read needs a string \"uri\"")
    })?;
    crate::builtins::resources::read_replies(&cx.builtin_cx(), uri, params.get("_meta")).await
}

async fn complete(cx: &CallContext<'_>, params: &Value) -> Result<Replies, RpcError> {
    let current = cx.shared.catalog.current();
    let caller = Caller {
        principal: cx.principal,
        catalog: &current.merged,
        client_caps: cx.client_caps,
        input_responses: None,
    };
    calls::complete_replies(&cx.policy.upstreams, caller, params).await
}
