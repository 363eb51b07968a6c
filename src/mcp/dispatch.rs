//! The MCP method table: every JSON-RPC request is answered here or turned into a
//! [`Forward`] to a backend through the proxy path.

use std::sync::Arc;

use bytes::Bytes;
use cortex_filters::catalog::{self, ResourceRoute};
use cortex_filters::contract::{self, Outcome, ReplyContext};
use cortex_filters::jsonrpc::{self, codes, Id, Message};
use cortex_filters::session::caps;
use cortex_filters::version::{self, ProtocolVersion};
use serde_json::{json, Map, Value};

use crate::auth::Principal;
use crate::federation::{Backend, ListKind, ListPage};
use crate::state::{AppState, GATEWAY_VERSION};

use super::sessions::SessionState;

/// A tools/call to send to a backend through Pingora's proxy path.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The owning backend.
    pub backend: Arc<Backend>,
    /// The contract body `{"method","params"}`.
    pub body: Bytes,
    /// Headers to send (Authorization, X-Cortex-*).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON-RPC id to answer with.
    pub rpc_id: Id,
    /// The backend's own tool name.
    pub method: String,
    /// The exposed tool name.
    pub tool: String,
}

/// What to do with one message.
#[derive(Debug)]
pub enum Dispatched {
    /// Answer with this JSON-RPC message.
    Answer(Vec<u8>),
    /// Answer a list request with this JSON-RPC message holding `entries` entries.
    List {
        /// The JSON-RPC response.
        body: Vec<u8>,
        /// Entries on the page (recorded by the audit trail).
        entries: u32,
    },
    /// Answer `initialize`, issuing this session id.
    Initialized {
        /// The JSON-RPC response.
        body: Vec<u8>,
        /// The sealed session id.
        session_id: String,
    },
    /// Notification or response: 202.
    Accepted,
    /// Proxy to a backend.
    Forward(Forward),
}

/// Per-request context for dispatch.
pub struct CallContext<'a> {
    /// Shared state.
    pub state: &'a AppState,
    /// The caller.
    pub principal: &'a Principal,
    /// The caller's session, if any.
    pub session: Option<&'a Arc<SessionState>>,
    /// The version in force (session's, or header's).
    pub version: ProtocolVersion,
    /// How `tools/list` is presented (`X-Cortex-Tool-Mode`, `X-Cortex-Backends`).
    pub presentation: crate::builtins::Presentation,
}

/// Dispatches one message. Calls that must reach a backend outside the proxy path
/// (prompts, resources, completions) are awaited here.
pub async fn dispatch(cx: &CallContext<'_>, message: Message) -> Dispatched {
    let (id, method, params) = match message {
        Message::Request { id, method, params } => (id, method, params),
        Message::Notification { .. } | Message::Response { .. } => return Dispatched::Accepted,
    };
    let params = params.unwrap_or(Value::Object(Map::new()));
    let answer = |r: Result<Value, (i64, String, Option<Value>)>| match r {
        Ok(v) => Dispatched::Answer(jsonrpc::success(&id, &v)),
        Err((code, msg, data)) => {
            Dispatched::Answer(jsonrpc::error(Some(&id), code, &msg, data.as_ref()))
        }
    };
    match method.as_str() {
        "initialize" => initialize(cx, &id, &params),
        "ping" => Dispatched::Answer(jsonrpc::success(&id, &json!({}))),
        "tools/list" => crate::builtins::catalog::tools_list(cx, &id, &params),
        "prompts/list" => list(cx, &id, &params, ListKind::Prompts),
        "resources/list" => crate::builtins::catalog::resources_list(cx, &id, &params),
        "resources/templates/list" => list(cx, &id, &params, ListKind::Templates),
        "tools/call" if crate::builtins::is_builtin_call(cx, &params) => {
            crate::builtins::call(cx, &id, &params).await
        }
        "tools/call" => match route_tool_call(cx, &id, &params) {
            Ok(mut f) => match backend_headers(cx, &f.backend.id).await {
                Ok(h) => {
                    f.headers = h;
                    Dispatched::Forward(f)
                }
                Err(e) => answer(Err(e)),
            },
            Err(e) => answer(Err(e)),
        },
        "prompts/get" => answer(get_prompt(cx, &params).await),
        "resources/read" => answer(crate::builtins::resources::read(cx, &params).await),
        "completion/complete" => answer(complete(cx, &params).await),
        "logging/setLevel" => answer(set_level(&params)),
        _ => answer(Err((
            codes::METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
            None,
        ))),
    }
}

type RpcResult = Result<Value, (i64, String, Option<Value>)>;

fn invalid(msg: impl Into<String>) -> (i64, String, Option<Value>) {
    (codes::INVALID_PARAMS, msg.into(), None)
}

fn initialize(cx: &CallContext<'_>, id: &Id, params: &Value) -> Dispatched {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let negotiated = version::negotiate(requested);
    let client_caps = params.get("capabilities").map_or(0, |c| {
        let mut bits = 0;
        if c.get("roots").is_some() {
            bits |= caps::ROOTS;
        }
        if c.get("sampling").is_some() {
            bits |= caps::SAMPLING;
        }
        if c.get("elicitation").is_some() {
            bits |= caps::ELICITATION;
        }
        bits
    });
    let state = cx.state;
    let mut server_info = json!({
        "name": state.config.server.name,
        "version": GATEWAY_VERSION,
    });
    if negotiated >= ProtocolVersion::V2025_06_18 {
        server_info["title"] = json!("Cortex Gateway");
    }
    if negotiated >= ProtocolVersion::V2025_11_25 {
        server_info["websiteUrl"] = json!(state.website_url);
    }
    let result = json!({
        "protocolVersion": negotiated.as_str(),
        "capabilities": {
            "tools": {"listChanged": true},
            "resources": {"listChanged": true, "subscribe": false},
            "prompts": {"listChanged": true},
            "completions": {},
            "logging": {},
        },
        "serverInfo": server_info,
        "instructions": instructions(state),
    });
    let session_id = state.sessions.create(
        &cx.principal.sub,
        negotiated,
        client_caps,
        cx.principal.grants.clone(),
    );
    Dispatched::Initialized {
        body: jsonrpc::success(id, &result),
        session_id,
    }
}

/// The `instructions` of `initialize`: which apps are live and how to get help.
pub fn instructions(state: &AppState) -> String {
    let health = state.catalog.health();
    let live: Vec<&str> = health
        .iter()
        .filter(|b| b.snapshot.is_some())
        .map(|b| b.id.as_str())
        .collect();
    let down: Vec<&str> = health
        .iter()
        .filter(|b| b.snapshot.is_none())
        .map(|b| b.id.as_str())
        .collect();
    let mut s = String::with_capacity(512);
    s.push_str(&format!(
        "{} is a gateway federating the tools of several business apps behind one MCP endpoint. ",
        state.config.server.name
    ));
    if live.is_empty() {
        s.push_str("No app is reachable right now. ");
    } else {
        s.push_str(&format!("Live apps: {}. ", live.join(", ")));
    }
    if !down.is_empty() {
        s.push_str(&format!("Unreachable right now: {}. ", down.join(", ")));
    }
    s.push_str(
        "Tools are named <app>_<tool> after the app that owns them. Before guessing how an app \
         works, call its <app>_get_help tool when it has one: it explains the app's concepts, \
         workflows and conventions. Each app enforces its own permissions on your identity, so \
         a refusal from an app is final for this account. You only see the tools your token's \
         scopes allow.",
    );
    s.push_str(crate::builtins::INSTRUCTIONS);
    if let Some(extra) = &state.config.server.instructions {
        s.push(' ');
        s.push_str(extra);
    }
    s
}

/// The backend-only lists: prompts and resource templates (tools and resources also list
/// the gateway's own entries: `builtins::catalog`).
fn list(cx: &CallContext<'_>, id: &Id, params: &Value, kind: ListKind) -> Dispatched {
    let cursor = match params.get("cursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c.as_str()),
        Some(_) => {
            return Dispatched::Answer(jsonrpc::error(
                Some(id),
                codes::INVALID_PARAMS,
                "Invalid params: cursor must be a string",
                None,
            ))
        }
    };
    let state = cx.state;
    let current = state.catalog.current();
    let grants = &cx.principal.grants;
    let page_size = state.config.catalog.page_size;
    let built = state.catalog.view(
        current.generation,
        kind,
        0,
        &cx.principal.scope_key,
        cursor,
        || {
            let merged = &current.merged;
            let (key, entries, next): (&str, Vec<&Value>, Option<String>) = match kind {
                ListKind::Templates => {
                    let vis = catalog::visible_templates(merged, grants);
                    let (range, next) =
                        catalog::page(&vis, |t| t.exposed.as_str(), cursor, page_size)?;
                    (
                        "resourceTemplates",
                        vis[range].iter().map(|p| &p.entry).collect(),
                        next,
                    )
                }
                _ => {
                    let vis = catalog::visible_prompts(merged, grants);
                    let (range, next) =
                        catalog::page(&vis, |t| t.exposed.as_str(), cursor, page_size)?;
                    (
                        "prompts",
                        vis[range].iter().map(|p| &p.entry).collect(),
                        next,
                    )
                }
            };
            Ok(ListPage {
                entries: u32::try_from(entries.len()).unwrap_or(u32::MAX),
                bytes: Bytes::from(list_result(key, entries.into_iter(), next.as_deref())),
            })
        },
    );
    list_answer(id, built)
}

/// The answer to a list request from a built (or cached) page.
pub fn list_answer(id: &Id, built: Result<ListPage, catalog::BadCursor>) -> Dispatched {
    match built {
        Ok(page) => Dispatched::List {
            body: jsonrpc::success_raw(id, &page.bytes),
            entries: page.entries,
        },
        Err(e) => Dispatched::Answer(jsonrpc::error(
            Some(id),
            codes::INVALID_PARAMS,
            &format!("Invalid params: {e}"),
            None,
        )),
    }
}

fn list_result<'a>(
    key: &str,
    entries: impl Iterator<Item = &'a Value>,
    next: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":[");
    for (i, e) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if serde_json::to_writer(&mut out, e).is_err() {
            out.extend_from_slice(b"null");
        }
    }
    out.push(b']');
    if let Some(n) = next {
        out.extend_from_slice(b",\"nextCursor\":");
        if serde_json::to_writer(&mut out, n).is_err() {
            out.extend_from_slice(b"null");
        }
    }
    out.push(b'}');
    out
}

/// Identity headers sent with every user call (Cortex contract §1).
pub fn identity_headers(p: &Principal) -> Vec<(&'static str, String)> {
    let mut h = Vec::with_capacity(6);
    if let Some(c) = &p.credential {
        h.push(("authorization", format!("Bearer {c}")));
    }
    h.push(("x-cortex-user-id", header_safe(&p.sub)));
    h.push((
        "x-cortex-user-email",
        header_safe(p.email.as_deref().unwrap_or("")),
    ));
    h.push((
        "x-cortex-user-role",
        header_safe(p.role.as_deref().unwrap_or("")),
    ));
    h.push((
        "x-cortex-user-pool",
        header_safe(p.pool.as_deref().unwrap_or("")),
    ));
    h.push(("x-cortex-scopes", header_safe(&p.scopes_header())));
    h
}

/// The headers of a user call to `backend_id`: `X-Cortex-*` plus the `Authorization` its
/// identity mode calls for (passthrough, minted or exchanged token; see `auth::identity`).
pub(crate) async fn backend_headers(
    cx: &CallContext<'_>,
    backend_id: &str,
) -> Result<Vec<(&'static str, String)>, (i64, String, Option<Value>)> {
    let current = cx.state.catalog.current();
    cx.state
        .identity
        .headers_for(&current.merged, backend_id, cx.principal)
        .await
        .map_err(|e| e.rpc())
}

/// Header values must be visible ASCII or spaces: anything else becomes `?`.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn route_tool_call(
    cx: &CallContext<'_>,
    id: &Id,
    params: &Value,
) -> Result<Forward, (i64, String, Option<Value>)> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("Invalid params: tools/call needs a string \"name\""))?;
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => None,
        Some(a @ Value::Object(_)) => Some(a),
        Some(_) => return Err(invalid("Invalid params: \"arguments\" must be an object")),
    };
    let current = cx.state.catalog.current();
    let tool = current
        .merged
        .tool(name)
        .filter(|t| cx.principal.grants.allows(t.scope.as_deref()))
        .ok_or_else(|| invalid(format!("Unknown tool: {name}")))?;
    let backend = cx
        .state
        .backend(&tool.backend_id)
        .ok_or_else(|| invalid(format!("Unknown tool: {name}")))?
        .clone();
    Ok(Forward {
        body: Bytes::from(contract::request_body(&tool.original, arguments)),
        // Filled by the caller with the backend's identity mode (may need the network).
        headers: Vec::new(),
        rpc_id: id.clone(),
        method: tool.original.clone(),
        tool: tool.exposed.clone(),
        backend,
    })
}

/// Executes a forward outside the proxy path (batches, oversized bodies) and maps the reply.
pub async fn execute_forward(state: &AppState, f: &Forward) -> Vec<u8> {
    let ctx = ReplyContext {
        backend_id: &f.backend.id,
        method: &f.method,
    };
    let outcome = match state
        .client
        .post(&f.backend, f.body.clone(), &f.headers)
        .await
    {
        Ok(reply) => contract::map_tool_reply(reply.as_reply(), ctx),
        Err(failure) => contract::map_transport_failure(&failure, ctx),
    };
    outcome_bytes(&f.rpc_id, outcome)
}

/// Serializes an outcome as a JSON-RPC response.
pub fn outcome_bytes(id: &Id, outcome: Outcome) -> Vec<u8> {
    match outcome {
        Outcome::Result(v) => jsonrpc::success(id, &v),
        Outcome::Error {
            code,
            message,
            data,
        } => jsonrpc::error(Some(id), code, &message, Some(&data)),
    }
}

fn outcome_result(outcome: Outcome) -> RpcResult {
    match outcome {
        Outcome::Result(v) => Ok(v),
        Outcome::Error {
            code,
            message,
            data,
        } => Err((code, message, Some(data))),
    }
}

async fn call_backend(
    cx: &CallContext<'_>,
    backend_id: &str,
    method: &str,
    params: Value,
    map: impl FnOnce(contract::Reply<'_>, ReplyContext<'_>) -> Outcome,
) -> RpcResult {
    let backend = cx.state.backend(backend_id).ok_or_else(|| {
        (
            codes::INTERNAL_ERROR,
            format!("backend {backend_id} is not configured"),
            None,
        )
    })?;
    let ctx = ReplyContext { backend_id, method };
    let body = Bytes::from(contract::request_body(method, Some(&params)));
    let headers = backend_headers(cx, backend_id).await?;
    let outcome = match cx.state.client.post(backend, body, &headers).await {
        Ok(reply) => map(reply.as_reply(), ctx),
        Err(f) => contract::map_transport_failure(&f, ctx),
    };
    outcome_result(outcome)
}

async fn get_prompt(cx: &CallContext<'_>, params: &Value) -> RpcResult {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("Invalid params: prompts/get needs a string \"name\""))?;
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(a @ Value::Object(_)) => a.clone(),
        Some(_) => return Err(invalid("Invalid params: \"arguments\" must be an object")),
    };
    let (backend_id, original) = {
        let current = cx.state.catalog.current();
        let p = current
            .merged
            .prompt(name)
            .filter(|p| cx.principal.grants.allows(p.scope.as_deref()))
            .ok_or_else(|| invalid(format!("Unknown prompt: {name}")))?;
        (p.backend_id.clone(), p.original.clone())
    };
    call_backend(
        cx,
        &backend_id,
        "get_prompt",
        json!({"name": original, "arguments": arguments}),
        contract::map_prompt_reply,
    )
    .await
}

pub(crate) async fn read_resource(cx: &CallContext<'_>, params: &Value) -> RpcResult {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("Invalid params: resources/read needs a string \"uri\""))?
        .to_string();
    let not_found = || {
        (
            codes::RESOURCE_NOT_FOUND,
            "Resource not found".to_string(),
            Some(json!({"uri": uri})),
        )
    };
    let backend_id = {
        let current = cx.state.catalog.current();
        let (backend, scope) = match current.merged.route_resource(&uri) {
            Some(ResourceRoute::Static(r)) => (r.backend_id.clone(), r.scope.clone()),
            Some(ResourceRoute::Template(t)) => (t.backend_id.clone(), t.scope.clone()),
            None => return Err(not_found()),
        };
        if !cx.principal.grants.allows(scope.as_deref()) {
            return Err(not_found());
        }
        backend
    };
    let uri_for_map = uri.clone();
    call_backend(
        cx,
        &backend_id,
        "read_resource",
        json!({"uri": uri}),
        move |r, c| contract::map_resource_reply(r, c, &uri_for_map),
    )
    .await
}

async fn complete(cx: &CallContext<'_>, params: &Value) -> RpcResult {
    let empty = json!({"completion": {"values": [], "hasMore": false}});
    let reference = params
        .get("ref")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("Invalid params: completion/complete needs a \"ref\" object"))?;
    if params.get("argument").and_then(Value::as_object).is_none() {
        return Err(invalid(
            "Invalid params: completion/complete needs an \"argument\" object",
        ));
    }
    let (backend_id, backend_ref) = {
        let current = cx.state.catalog.current();
        match reference.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
                let p = current
                    .merged
                    .prompt(name)
                    .filter(|p| cx.principal.grants.allows(p.scope.as_deref()))
                    .ok_or_else(|| invalid(format!("Unknown prompt: {name}")))?;
                (
                    p.backend_id.clone(),
                    json!({"type": "ref/prompt", "name": p.original}),
                )
            }
            Some("ref/resource") => {
                let uri = reference.get("uri").and_then(Value::as_str).unwrap_or("");
                let owner = current
                    .merged
                    .templates()
                    .iter()
                    .find(|t| t.uri_template == uri)
                    .filter(|t| cx.principal.grants.allows(t.scope.as_deref()));
                match owner {
                    Some(t) => (
                        t.backend_id.clone(),
                        json!({"type": "ref/resource", "uri": uri}),
                    ),
                    None => return Ok(empty),
                }
            }
            _ => {
                return Err(invalid(
                    "Invalid params: ref.type must be ref/prompt or ref/resource",
                ))
            }
        }
    };
    let mut forwarded = params.clone();
    forwarded["ref"] = backend_ref;
    call_backend(
        cx,
        &backend_id,
        "complete",
        forwarded,
        contract::map_completion_reply,
    )
    .await
}

fn set_level(params: &Value) -> RpcResult {
    const LEVELS: [&str; 8] = [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ];
    match params.get("level").and_then(Value::as_str) {
        Some(l) if LEVELS.contains(&l) => Ok(json!({})),
        _ => Err(invalid(format!(
            "Invalid params: level must be one of {}",
            LEVELS.join(", ")
        ))),
    }
}
