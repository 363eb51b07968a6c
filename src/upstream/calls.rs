//! The MCP operations that reach a backend, from a request's point of view: find the entry
//! the caller names in the catalog it may see, then call the owning backend through the
//! [`Backend`](super::Backend) seam. Used by dispatch (`prompts/get`, `resources/read`,
//! `completion/complete`, `tools/call`) and by the builtins (`read_cortex_resource`,
//! `whoami`, tickets), so there is one way to call a backend.
//!
//! An entry the caller's scopes hide answers exactly like one that does not exist.

use cortex_filters::catalog::{MergedCatalog, ResourceRoute};
use cortex_filters::contract::Outcome;
use cortex_filters::jsonrpc::{codes, RpcError};
use serde_json::{json, Value};

use crate::auth::Principal;

use super::backend::{Call, Operation, Replies};
use super::Upstreams;

/// Who calls, and the catalog the call is routed with.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    /// The caller.
    pub principal: &'a Principal,
    /// The catalog as the request saw it.
    pub catalog: &'a MergedCatalog,
    /// The caller's client capabilities (bits of `cortex_filters::session::caps`), 0 when
    /// it cannot be asked anything.
    pub client_caps: u8,
    /// `inputResponses` of a 2026-07-28 caller's first call (see `Call::input_responses`).
    pub input_responses: Option<&'a Value>,
}

fn unknown_backend(id: &str) -> RpcError {
    RpcError::internal(format!("backend {id} is not configured"))
}

/// Calls `backend_id` with `op` for `caller`.
pub async fn call(
    upstreams: &Upstreams,
    caller: Caller<'_>,
    backend_id: &str,
    op: Operation<'_>,
) -> Replies {
    call_with_meta(upstreams, caller, backend_id, op, None).await
}

/// Calls `backend_id` with `op` for `caller`, relaying the request's `_meta` (its progress
/// token) to backends that use it.
pub async fn call_with_meta(
    upstreams: &Upstreams,
    caller: Caller<'_>,
    backend_id: &str,
    op: Operation<'_>,
    meta: Option<&Value>,
) -> Replies {
    match upstreams.get(backend_id) {
        Some(backend) => {
            backend
                .call(Call {
                    caller: caller.principal,
                    catalog: caller.catalog,
                    op,
                    meta,
                    client_caps: caller.client_caps,
                    input_responses: caller.input_responses,
                })
                .await
        }
        None => Replies::Final(Outcome::from(unknown_backend(backend_id))),
    }
}

/// `resources/subscribe` (`subscribe: true`) or `resources/unsubscribe` of a backend
/// resource the caller may read. Returns the owning backend's id with the outcome, so the
/// endpoint can keep the subscription.
pub async fn subscribe(
    upstreams: &Upstreams,
    caller: Caller<'_>,
    uri: &str,
    subscribe: bool,
) -> Result<String, RpcError> {
    let not_found = || {
        RpcError::new(codes::RESOURCE_NOT_FOUND, "Resource not found")
            .with_data(json!({"uri": uri}))
    };
    let Some(owner) = caller.catalog.route_resource(uri).map(ResourceRoute::entry) else {
        return Err(not_found());
    };
    if !caller.principal.grants.allows(owner.scope.as_deref()) {
        return Err(not_found());
    }
    let backend_id = owner.backend_id.clone();
    let op = if subscribe {
        Operation::Subscribe { uri }
    } else {
        Operation::Unsubscribe { uri }
    };
    call(upstreams, caller, &backend_id, op)
        .await
        .outcome()
        .await
        .into_result()
        .map(|_| backend_id)
}

/// `prompts/get` of the exposed prompt `name`.
pub async fn get_prompt(
    upstreams: &Upstreams,
    caller: Caller<'_>,
    name: &str,
    arguments: &Value,
) -> Result<Value, RpcError> {
    get_prompt_replies(upstreams, caller, name, arguments, None)
        .await?
        .outcome()
        .await
        .into_result()
}

/// `prompts/get` as the backend's replies (a native backend streams its progress, log
/// messages and requests to the caller), with the request's `_meta`.
pub async fn get_prompt_replies(
    upstreams: &Upstreams,
    caller: Caller<'_>,
    name: &str,
    arguments: &Value,
    meta: Option<&Value>,
) -> Result<Replies, RpcError> {
    let p = caller
        .catalog
        .prompt(name)
        .filter(|p| caller.principal.grants.allows(p.scope.as_deref()))
        .ok_or_else(|| RpcError::invalid_params(format!("Unknown prompt: {name}")))?;
    let op = Operation::GetPrompt {
        name: &p.target,
        arguments,
    };
    Ok(call_with_meta(upstreams, caller, &p.backend_id, op, meta).await)
}

/// `resources/read` of a backend resource (`uri` matches a static resource or a template
/// the caller may see).
pub async fn read_resource(
    upstreams: &Upstreams,
    caller: Caller<'_>,
    uri: &str,
) -> Result<Value, RpcError> {
    read_resource_replies(upstreams, caller, uri, None)
        .await?
        .outcome()
        .await
        .into_result()
}

/// `resources/read` as the backend's replies, with the request's `_meta`.
pub async fn read_resource_replies(
    upstreams: &Upstreams,
    caller: Caller<'_>,
    uri: &str,
    meta: Option<&Value>,
) -> Result<Replies, RpcError> {
    let not_found = || {
        RpcError::new(codes::RESOURCE_NOT_FOUND, "Resource not found")
            .with_data(json!({"uri": uri}))
    };
    let Some(owner) = caller.catalog.route_resource(uri).map(ResourceRoute::entry) else {
        return Err(not_found());
    };
    if !caller.principal.grants.allows(owner.scope.as_deref()) {
        return Err(not_found());
    }
    Ok(call_with_meta(
        upstreams,
        caller,
        &owner.backend_id,
        Operation::ReadResource { uri },
        meta,
    )
    .await)
}

/// `completion/complete`: `ref` names an exposed prompt or a resource template; the backend
/// gets the request with `ref` in its own names. A template the caller cannot see completes
/// to nothing.
pub async fn complete(
    upstreams: &Upstreams,
    caller: Caller<'_>,
    params: &Value,
) -> Result<Value, RpcError> {
    complete_replies(upstreams, caller, params)
        .await?
        .outcome()
        .await
        .into_result()
}

/// `completion/complete` as the backend's replies (the request's `_meta` is in `params`).
pub async fn complete_replies(
    upstreams: &Upstreams,
    caller: Caller<'_>,
    params: &Value,
) -> Result<Replies, RpcError> {
    let empty = json!({"completion": {"values": [], "hasMore": false}});
    let reference = params
        .get("ref")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            RpcError::invalid_params("Invalid params: completion/complete needs a \"ref\" object")
        })?;
    if params.get("argument").and_then(Value::as_object).is_none() {
        return Err(RpcError::invalid_params(
            "Invalid params: completion/complete needs an \"argument\" object",
        ));
    }
    let grants = &caller.principal.grants;
    let (backend_id, backend_ref) = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => {
            let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
            let p = caller
                .catalog
                .prompt(name)
                .filter(|p| grants.allows(p.scope.as_deref()))
                .ok_or_else(|| RpcError::invalid_params(format!("Unknown prompt: {name}")))?;
            (
                p.backend_id.as_str(),
                json!({"type": "ref/prompt", "name": p.target}),
            )
        }
        Some("ref/resource") => {
            let uri = reference.get("uri").and_then(Value::as_str).unwrap_or("");
            let owner = caller
                .catalog
                .templates()
                .iter()
                .find(|t| t.target == uri)
                .filter(|t| grants.allows(t.scope.as_deref()));
            match owner {
                Some(t) => (
                    t.backend_id.as_str(),
                    json!({"type": "ref/resource", "uri": uri}),
                ),
                None => return Ok(Replies::Final(Outcome::Result(empty))),
            }
        }
        _ => {
            return Err(RpcError::invalid_params(
                "Invalid params: ref.type must be ref/prompt or ref/resource",
            ))
        }
    };
    let mut forwarded = params.clone();
    forwarded["ref"] = backend_ref;
    let meta = params.get("_meta");
    Ok(call_with_meta(
        upstreams,
        caller,
        backend_id,
        Operation::Complete { params: &forwarded },
        meta,
    )
    .await)
}
