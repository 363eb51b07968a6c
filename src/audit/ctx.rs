//! What the request path notes for the audit record, and the hand-off in the `logging`
//! phase.
//!
//! The request path only moves data it already has into [`AuditCtx`] (the principal, the
//! method name, the session id header) and computes one HMAC over `params`; everything
//! else (pseudonyms, catalog lookups, counting listed tools, JSON for stdout, the hash
//! chain) happens on the audit thread. The hand-off is a non-blocking `try_send`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cortex_filters::contract::Outcome;
use cortex_filters::jsonrpc::{Incoming, Message};
use cortex_filters::version::ProtocolVersion;
use http::Method;
use pingora::proxy::Session;
use serde_json::Value;

use crate::auth::{AuthOutcome, Principal};
use crate::federation::Backend;
use crate::gateway::RequestCtx;
use crate::state::AppState;

/// Where a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `Host` not allowed (DNS-rebinding protection).
    Host,
    /// Browser `Origin` not allowed.
    Origin,
    /// No or invalid credentials (401), or refused by the authorization checks (403).
    Auth,
    /// Authentication could not be decided (503).
    AuthUnavailable,
    /// HTTP method not served (405).
    HttpMethod,
    /// Body over `server.max_body_bytes` (413).
    Body,
    /// Not JSON / not JSON-RPC.
    Parse,
    /// Bad `MCP-Protocol-Version` header.
    Version,
    /// Session missing, unknown or expired.
    Session,
    /// A batch refused as a whole.
    Batch,
    /// The caller lacks the scope the tool requires.
    Scope,
    /// Over the rate limit.
    RateLimit,
}

impl Stage {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Host => "host",
            Stage::Origin => "origin",
            Stage::Auth => "auth",
            Stage::AuthUnavailable => "auth_unavailable",
            Stage::HttpMethod => "http_method",
            Stage::Body => "body",
            Stage::Parse => "parse",
            Stage::Version => "version",
            Stage::Session => "session",
            Stage::Batch => "batch",
            Stage::Scope => "scope",
            Stage::RateLimit => "rate_limit",
        }
    }
}

/// How the JSON-RPC answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcOutcome {
    /// A `result`.
    Result,
    /// An `error` with this code.
    Error(i64),
}

/// Per-request audit notes, a field of [`RequestCtx`].
#[derive(Debug, Default)]
pub struct AuditCtx {
    active: bool,
    rejection: Option<(Stage, Cow<'static, str>)>,
    principal: Option<Principal>,
    method: Option<Cow<'static, str>>,
    tool: Option<String>,
    params: Option<ParamsHash>,
    version: Option<ProtocolVersion>,
    session_id: Option<String>,
    rpc: Option<RpcOutcome>,
    /// `tools/list` only: (tools on the page, answer bytes).
    listed: Option<(u32, usize)>,
}

/// The largest request body kept for hashing its params on the audit thread; larger ones
/// are hashed on the request path, so a full audit queue never holds more than
/// `audit.queue` × 4 KiB of request bodies.
pub const MAX_DEFERRED_BODY: usize = 4 * 1024;

/// What `params_hash` is made of.
#[derive(Debug)]
pub(crate) enum ParamsHash {
    /// Already computed (large bodies).
    Done([u8; 16]),
    /// The request body, to parse and hash on the audit thread.
    Deferred(Bytes),
}

impl ParamsHash {
    /// The hex `params_hash`.
    pub(crate) fn finish(self, keys: &super::AuditKeys) -> Option<String> {
        let mac = match self {
            ParamsHash::Done(mac) => mac,
            ParamsHash::Deferred(body) => {
                let incoming = cortex_filters::jsonrpc::parse_body(&body).ok()?;
                params_mac(keys, &incoming)
            }
        };
        Some(super::keys::hex_id(&mac))
    }
}

/// The HMAC of the params of a message (`params` itself, canonical) or of a batch (the
/// list of every message's params).
fn params_mac(keys: &super::AuditKeys, incoming: &Incoming) -> [u8; 16] {
    match incoming {
        Incoming::Batch(messages) => {
            let params: Vec<Option<&Value>> = messages.iter().map(message_params).collect();
            keys.params_mac(&params)
        }
        Incoming::Single(m) => keys.params_mac(&message_params(m)),
    }
}

impl AuditCtx {
    /// The request reached the MCP endpoint: it will be audited. Keeps the session id
    /// header (pseudonymised later).
    pub fn begin(&mut self, session_id: Option<&str>) {
        self.active = true;
        self.session_id = session_id.map(str::to_string);
    }

    /// Whether [`begin`](Self::begin) was called.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The gateway refused the request at `stage`; the first refusal noted wins.
    pub fn reject(&mut self, stage: Stage, reason: impl Into<Cow<'static, str>>) {
        if self.rejection.is_none() {
            self.rejection = Some((stage, reason.into()));
        }
    }

    /// The refusal noted, if any.
    pub fn rejection(&self) -> Option<(Stage, &str)> {
        self.rejection.as_ref().map(|(s, r)| (*s, r.as_ref()))
    }

    /// Notes a refused authentication (nothing for `Ok`).
    pub fn auth_outcome(&mut self, outcome: &AuthOutcome) {
        match outcome {
            AuthOutcome::Ok(_) => {}
            AuthOutcome::Unauthorized { reason, .. } => self.reject(Stage::Auth, reason.clone()),
            AuthOutcome::Forbidden { error, reason, .. } => {
                self.reject(Stage::Auth, format!("{error}: {reason}"))
            }
            AuthOutcome::Unavailable { reason } => {
                self.reject(Stage::AuthUnavailable, reason.clone())
            }
        }
    }

    /// The authenticated caller (moved in once the request is served).
    pub fn set_principal(&mut self, principal: Principal) {
        self.principal = Some(principal);
    }

    /// The parsed body: method and tool name, and what `params_hash` is computed from. A
    /// body up to [`MAX_DEFERRED_BODY`] is kept (a reference count, no copy) and hashed on
    /// the audit thread; a larger one is hashed here, so queued events never pin big bodies.
    pub fn message(&mut self, state: &AppState, incoming: &Incoming, body: &Bytes) {
        match incoming {
            Incoming::Batch(_) => {
                self.method = Some(Cow::Borrowed("batch"));
            }
            Incoming::Single(m) => {
                self.method = m.method().map(method_name);
                let params = message_params(m);
                if m.method() == Some("tools/call") {
                    self.tool = params
                        .and_then(|p| p.get("name"))
                        .and_then(Value::as_str)
                        .map(|s| super::record::clean(s, super::record::MAX_IDENT));
                }
                if m.method() == Some("initialize") {
                    // The version this initialize negotiates, as dispatch will.
                    let requested = params
                        .and_then(|p| p.get("protocolVersion"))
                        .and_then(Value::as_str);
                    self.version = Some(cortex_filters::version::negotiate(requested));
                }
            }
        }
        let has_params = match incoming {
            Incoming::Batch(_) => true,
            Incoming::Single(m) => message_params(m).is_some(),
        };
        if let (Some(keys), true) = (state.audit.keys(), has_params) {
            self.params = Some(if body.len() <= MAX_DEFERRED_BODY {
                ParamsHash::Deferred(body.clone())
            } else {
                ParamsHash::Done(params_mac(keys, incoming))
            });
        }
    }

    /// The protocol version in force (an `initialize` keeps the version it negotiates).
    pub fn version(&mut self, version: ProtocolVersion) {
        self.version.get_or_insert(version);
    }

    /// A session id issued by `initialize`.
    pub fn session_issued(&mut self, session_id: &str) {
        self.session_id = Some(session_id.to_string());
    }

    /// A JSON-RPC answer the gateway wrote itself: notes result or error code (a scan of
    /// the first bytes, never a parse).
    pub fn answered(&mut self, body: &Bytes) {
        self.rpc = rpc_outcome(body);
    }

    /// A list answer: for `tools/list`, the tools on the page and the answer's size (the
    /// page itself is never kept: a queue of large pages would hold a lot of memory).
    pub fn listed(&mut self, entries: u32, bytes: usize) {
        if self.method.as_deref() == Some("tools/list") {
            self.listed = Some((entries, bytes));
        }
    }

    /// The mapped reply of a proxied call.
    pub fn outcome(&mut self, outcome: &Outcome) {
        self.rpc = Some(match outcome {
            Outcome::Result(_) => RpcOutcome::Result,
            Outcome::Error { code, .. } => RpcOutcome::Error(*code),
        });
    }
}

fn message_params(m: &Message) -> Option<&Value> {
    match m {
        Message::Request { params, .. } | Message::Notification { params, .. } => params.as_ref(),
        Message::Response { .. } => None,
    }
}

/// Known method names without an allocation; others copied (bounded).
fn method_name(m: &str) -> Cow<'static, str> {
    const KNOWN: &[&str] = &[
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
    ];
    match KNOWN.iter().find(|k| **k == m) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(super::record::clean(m, super::record::MAX_IDENT)),
    }
}

/// `{"jsonrpc":"2.0","id":<id>,"result"…` or `…"error":{"code":<n>…` as the gateway's
/// JSON-RPC writer lays them out. `None` for anything else (a batch array, an empty body).
pub fn rpc_outcome(body: &[u8]) -> Option<RpcOutcome> {
    const PREFIX: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":";
    let rest = body.strip_prefix(PREFIX)?;
    // Skip the id: a string (with escapes), a number or null.
    let after_id = match rest.first()? {
        b'"' => {
            let mut i = 1;
            loop {
                match rest.get(i)? {
                    b'\\' => i += 2,
                    b'"' => break &rest[i + 1..],
                    _ => i += 1,
                }
            }
        }
        _ => {
            let end = rest.iter().position(|b| *b == b',')?;
            &rest[end..]
        }
    };
    if after_id.starts_with(b",\"result\":") {
        return Some(RpcOutcome::Result);
    }
    let code = after_id.strip_prefix(b",\"error\":{\"code\":")?;
    let end = code
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'-'))
        .unwrap_or(code.len());
    let n = std::str::from_utf8(&code[..end])
        .ok()?
        .parse::<i64>()
        .ok()?;
    Some(RpcOutcome::Error(n))
}

/// Everything the audit thread needs to build one record.
#[derive(Debug)]
pub(crate) struct AuditEvent {
    pub ts_ms: i64,
    pub latency: Duration,
    pub http_method: Method,
    pub http_status: u16,
    pub response_size: u64,
    pub rejection: Option<(Stage, Cow<'static, str>)>,
    pub principal: Option<Principal>,
    pub method: Option<Cow<'static, str>>,
    pub tool: Option<String>,
    pub backend: Option<Arc<Backend>>,
    pub params: Option<ParamsHash>,
    pub version: Option<ProtocolVersion>,
    pub origin: Option<String>,
    pub session_id: Option<String>,
    pub rpc: Option<RpcOutcome>,
    pub listed: Option<(u32, usize)>,
    pub backends_filter: Option<String>,
    pub tool_mode: Option<String>,
    pub proxy_error: Option<String>,
}

/// The `logging` phase: turns the request's notes into an event for the audit thread.
/// Does nothing for requests that did not reach the MCP endpoint or when auditing is off.
pub fn finish(
    state: &AppState,
    session: &Session,
    error: Option<&pingora::Error>,
    ctx: &mut RequestCtx,
    elapsed: Duration,
) {
    if !ctx.audit.active || !state.audit.is_enabled() {
        return;
    }
    let a = std::mem::take(&mut ctx.audit);
    let forward = ctx.forward.take();
    let req = session.req_header();
    let is_list = a.method.as_deref() == Some("tools/list");
    let list_header = |name: &str| {
        if !is_list {
            return None;
        }
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| super::record::clean(v, super::record::MAX_IDENT))
    };
    let backends_filter = list_header("x-cortex-backends");
    let tool_mode = list_header("x-cortex-tool-mode");
    let (tool, backend) = match forward {
        Some(f) => (Some(f.tool), Some(f.backend)),
        None => (a.tool, None),
    };
    let event = AuditEvent {
        ts_ms: crate::clock::now_ms(),
        latency: elapsed,
        http_method: req.method.clone(),
        http_status: session.response_written().map_or(0, |r| r.status.as_u16()),
        response_size: session.body_bytes_sent() as u64,
        rejection: a.rejection,
        principal: a.principal,
        method: a.method,
        tool,
        backend,
        params: a.params,
        version: a.version,
        origin: ctx.cors_origin.take().or_else(|| {
            req.headers
                .get("origin")
                .and_then(|v| v.to_str().ok())
                .map(|v| super::record::clean(v, super::record::MAX_IDENT))
        }),
        session_id: a.session_id,
        rpc: a.rpc,
        listed: a.listed,
        backends_filter,
        tool_mode,
        proxy_error: error.map(|e| e.to_string()),
    };
    state.audit.submit(event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use cortex_filters::jsonrpc;
    use serde_json::json;

    #[test]
    fn rpc_outcome_reads_results_and_error_codes() {
        for id in [
            json!(1),
            json!("a\"b,\"error\":{\"code\":5}"),
            json!(null),
            json!(-7),
        ] {
            let ok = jsonrpc::success(&id, &json!({"x": 1}));
            assert_eq!(rpc_outcome(&ok), Some(RpcOutcome::Result), "{id}");
            let err = jsonrpc::error(Some(&id), -32602, "bad", None);
            assert_eq!(rpc_outcome(&err), Some(RpcOutcome::Error(-32602)), "{id}");
        }
        let err = jsonrpc::error(None, -32700, "parse", None);
        assert_eq!(rpc_outcome(&err), Some(RpcOutcome::Error(-32700)));
        assert_eq!(rpc_outcome(b"[{}]"), None);
        assert_eq!(rpc_outcome(b""), None);
        assert_eq!(
            rpc_outcome(b"{\"jsonrpc\":\"2.0\",\"id\":\"unterminated"),
            None
        );
    }

    #[test]
    fn deferred_and_immediate_params_hashes_agree() {
        use crate::audit::keys::SecretSource;
        let keys = crate::audit::AuditKeys::from_secret(
            b"0123456789abcdef0123456789abcdef",
            SecretSource::Ephemeral,
        );
        let single = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"b":1,"a":2}}}"#);
        let reordered = Bytes::from_static(br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"arguments":{"a":2,"b":1},"name":"t"}}"#);
        let batch = Bytes::from_static(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t"}}]"#);
        for body in [&single, &batch] {
            let incoming = jsonrpc::parse_body(body).unwrap();
            let now = ParamsHash::Done(params_mac(&keys, &incoming)).finish(&keys);
            let later = ParamsHash::Deferred(body.clone()).finish(&keys);
            assert!(now.is_some());
            assert_eq!(now, later);
        }
        // Same params, another id and key order: the same hash.
        assert_eq!(
            ParamsHash::Deferred(single.clone()).finish(&keys),
            ParamsHash::Deferred(reordered).finish(&keys)
        );
        assert_ne!(
            ParamsHash::Deferred(single).finish(&keys),
            ParamsHash::Deferred(batch).finish(&keys)
        );
    }

    #[test]
    fn first_rejection_wins() {
        let mut a = AuditCtx::default();
        a.reject(Stage::Origin, "first");
        a.reject(Stage::Auth, "second");
        assert_eq!(a.rejection(), Some((Stage::Origin, "first")));
    }

    #[test]
    fn known_methods_do_not_allocate() {
        assert!(matches!(method_name("tools/call"), Cow::Borrowed(_)));
        assert_eq!(method_name("x\ny"), "x\u{FFFD}y");
    }
}
