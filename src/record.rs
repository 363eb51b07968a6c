//! One record per request: what the request path decided and why, written where each
//! decision is made (the refusal and its stage, the method, the route to a backend, the
//! scope a tool needed, the answer's outcome), then handed whole to its consumers at the end
//! of the request: the audit trail and the metrics. Nothing re-derives a decision later.
//!
//! The request path only moves data it already has into the record (the principal, the
//! method name, the session id header); anything costly (pseudonyms, JSON for stdout, the
//! hash chain) happens on the consumers' side. The one exception is the HMAC of the params
//! of a large body, computed at once through [`ParamsHasher`] so that queued records never
//! pin big bodies.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use cortex_filters::contract::Outcome;
use cortex_filters::jsonrpc::{Incoming, Message};
use cortex_filters::version::ProtocolVersion;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{AuthOutcome, Principal};
pub use crate::store::{clean, MAX_IDENT};

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
    /// A tools/call of a tool quarantined by tool-definition pinning (block mode): its
    /// definition changed and awaits an administrator's approval.
    Quarantine,
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
            Stage::Quarantine => "quarantined",
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

/// Where a tools/call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One of the gateway's own tools.
    Gateway,
    /// A backend's tool (whether or not the caller was allowed to call it).
    Backend {
        /// The backend's id.
        id: String,
        /// The scope the tool requires.
        scope: Option<String>,
    },
}

/// How a backend call ended, as the gateway saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// A result.
    Ok,
    /// A result flagged `isError` (the tool ran and reported a failure).
    ToolError,
    /// A JSON-RPC error mapped from the backend's reply or the transport.
    Error,
    /// No reply within the backend's timeout.
    Timeout,
}

impl CallResult {
    /// The name in metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            CallResult::Ok => "ok",
            CallResult::ToolError => "tool_error",
            CallResult::Error => "backend_error",
            CallResult::Timeout => "timeout",
        }
    }

    /// How `outcome` ended.
    pub fn of(outcome: &Outcome) -> CallResult {
        match outcome {
            Outcome::Result(v) => {
                if v.get("isError").and_then(Value::as_bool) == Some(true) {
                    CallResult::ToolError
                } else {
                    CallResult::Ok
                }
            }
            Outcome::Error { data, .. } => {
                if data.get("timeoutMs").is_some() {
                    CallResult::Timeout
                } else {
                    CallResult::Error
                }
            }
        }
    }
}

/// The record of one request that reached the MCP endpoint, as the request path fills it
/// in. It lives behind a lock it shares with the audit trail's answer hook
/// ([`RecordHandle`]), which spools it just before the answer's last bytes are written; the
/// request path and the hook run on the same task, one after the other, so the lock is
/// never contended.
#[derive(Debug, Default)]
pub struct RequestRecord {
    cell: Arc<Mutex<Draft>>,
}

/// What a [`RequestRecord`] holds.
#[derive(Debug, Default)]
struct Draft {
    active: bool,
    rejection: Option<(Stage, Cow<'static, str>)>,
    principal: Option<Principal>,
    method: Option<Cow<'static, str>>,
    tool: Option<String>,
    target: Option<Target>,
    params: Option<ParamsHash>,
    version: Option<ProtocolVersion>,
    session_id: Option<String>,
    rpc: Option<RpcOutcome>,
    /// `tools/list` only: (tools on the page, answer bytes).
    listed: Option<(u32, usize)>,
    /// The backend call of this request: how long it took and how it ended.
    call: Option<(Duration, CallResult)>,
    /// Where the record was spooled, once it was.
    spooled: Option<Spooled>,
}

/// The largest request body kept for hashing its params on the audit thread; larger ones
/// are hashed on the request path, so a full audit queue never holds more than
/// `audit.queue` × 4 KiB of request bodies.
pub const MAX_DEFERRED_BODY: usize = 4 * 1024;

/// Computes the keyed hash of a message's params (implemented by the audit keys, so the
/// record does not depend on the audit trail).
pub trait ParamsHasher {
    /// The HMAC of the params of `incoming`.
    fn params_mac(&self, incoming: &Incoming) -> [u8; 16];
}

/// What `params_hash` is made of.
#[derive(Debug)]
pub enum ParamsHash {
    /// Already computed (large bodies).
    Done([u8; 16]),
    /// The request body, to parse and hash later.
    Deferred(Bytes),
}

impl ParamsHash {
    /// The MAC, parsing a deferred body now (`None` when it does not parse).
    pub fn mac(self, hasher: &dyn ParamsHasher) -> Option<[u8; 16]> {
        match self {
            ParamsHash::Done(mac) => Some(mac),
            ParamsHash::Deferred(body) => {
                let incoming = cortex_filters::jsonrpc::parse_body(&body).ok()?;
                Some(hasher.params_mac(&incoming))
            }
        }
    }
}

/// The params of a message (`None` for responses and messages without params).
pub fn message_params(m: &Message) -> Option<&Value> {
    match m {
        Message::Request { params, .. } | Message::Notification { params, .. } => params.as_ref(),
        Message::Response { .. } => None,
    }
}

impl RequestRecord {
    fn draft(&self) -> MutexGuard<'_, Draft> {
        self.cell.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request reached the MCP endpoint: it will be recorded. Keeps the session id
    /// header (pseudonymised by the audit trail).
    pub fn begin(&mut self, session_id: Option<&str>) {
        let mut d = self.draft();
        d.active = true;
        d.session_id = session_id.map(str::to_string);
    }

    /// Whether [`begin`](Self::begin) was called.
    pub fn is_active(&self) -> bool {
        self.draft().active
    }

    /// The gateway refused the request at `stage`; the first refusal noted wins.
    pub fn reject(&mut self, stage: Stage, reason: impl Into<Cow<'static, str>>) {
        let mut d = self.draft();
        if d.rejection.is_none() {
            d.rejection = Some((stage, reason.into()));
        }
    }

    /// Whether the JSON-RPC method noted is `method`.
    pub fn is_method(&self, method: &str) -> bool {
        self.draft().method.as_deref() == Some(method)
    }

    /// The refusal noted, if any.
    pub fn rejection(&self) -> Option<(Stage, String)> {
        self.draft()
            .rejection
            .as_ref()
            .map(|(s, r)| (*s, r.to_string()))
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
        self.draft().principal = Some(principal);
    }

    /// The parsed body: method and tool name, and what `params_hash` is computed from. A
    /// body up to [`MAX_DEFERRED_BODY`] is kept (a reference count, no copy) and hashed
    /// later; a larger one is hashed here with `hasher`, so queued records never pin big
    /// bodies. Without a hasher (no audit trail), params are not kept.
    pub fn message(
        &mut self,
        incoming: &Incoming,
        body: &Bytes,
        hasher: Option<&dyn ParamsHasher>,
    ) {
        let mut d = self.draft();
        match incoming {
            Incoming::Batch(_) => {
                d.method = Some(Cow::Borrowed("batch"));
            }
            Incoming::Single(m) => {
                d.method = m.method().map(method_name);
                let params = message_params(m);
                if m.method() == Some("tools/call") {
                    d.tool = params
                        .and_then(|p| p.get("name"))
                        .and_then(Value::as_str)
                        .map(|s| clean(s, MAX_IDENT));
                }
                if m.method() == Some("initialize") {
                    // The version this initialize negotiates, as dispatch will.
                    let requested = params
                        .and_then(|p| p.get("protocolVersion"))
                        .and_then(Value::as_str);
                    d.version = Some(cortex_filters::version::negotiate(requested));
                }
            }
        }
        let has_params = match incoming {
            Incoming::Batch(_) => true,
            Incoming::Single(m) => message_params(m).is_some(),
        };
        if let (Some(hasher), true) = (hasher, has_params) {
            d.params = Some(if body.len() <= MAX_DEFERRED_BODY {
                ParamsHash::Deferred(body.clone())
            } else {
                ParamsHash::Done(hasher.params_mac(incoming))
            });
        }
    }

    /// The protocol version in force (an `initialize` keeps the version it negotiates).
    pub fn version(&mut self, version: ProtocolVersion) {
        self.draft().version.get_or_insert(version);
    }

    /// A session id issued by `initialize`.
    pub fn session_issued(&mut self, session_id: &str) {
        self.draft().session_id = Some(session_id.to_string());
    }

    /// Where the tools/call of this request was routed (a single message only: the
    /// calls of a batch are not recorded one by one).
    pub fn route(&mut self, target: Target) {
        let mut d = self.draft();
        if d.method.as_deref() == Some("tools/call") {
            d.target = Some(target);
        }
    }

    /// A JSON-RPC answer the gateway wrote itself: notes result or error code (a scan of
    /// the first bytes, never a parse).
    pub fn answered(&mut self, body: &[u8]) {
        self.draft().rpc = rpc_outcome(body);
    }

    /// A list answer: for `tools/list`, the tools on the page and the answer's size (the
    /// page itself is never kept: a queue of large pages would hold a lot of memory).
    pub fn listed(&mut self, entries: u32, bytes: usize) {
        let mut d = self.draft();
        if d.method.as_deref() == Some("tools/list") {
            d.listed = Some((entries, bytes));
        }
    }

    /// An event that is not a request, recorded on a backend's tool (a pinning review
    /// finding a changed, new, removed or quarantined tool): `action` names it.
    pub fn event(action: &'static str, backend: &str, tool: &str) -> RequestRecord {
        let draft = Draft {
            active: true,
            method: Some(Cow::Borrowed(action)),
            tool: Some(clean(tool, MAX_IDENT)),
            target: Some(Target::Backend {
                id: clean(backend, MAX_IDENT),
                scope: None,
            }),
            ..Draft::default()
        };
        RequestRecord {
            cell: Arc::new(Mutex::new(draft)),
        }
    }

    /// A request that is not JSON-RPC but is recorded as one action (the admin API).
    pub fn action(&mut self, name: &'static str) {
        self.draft().method = Some(Cow::Borrowed(name));
    }

    /// The backend call made for this request took `latency` and ended as `result`.
    pub fn backend_call(&mut self, latency: Duration, result: CallResult) {
        self.draft().call = Some((latency, result));
    }

    /// The mapped reply of a backend call.
    pub fn outcome(&mut self, outcome: &Outcome) {
        self.draft().rpc = Some(match outcome.error_code() {
            None => RpcOutcome::Result,
            Some(code) => RpcOutcome::Error(code),
        });
    }

    /// Ends the request: the record with what only the end knows, for the consumers.
    /// `None` when the request did not reach the MCP endpoint.
    pub fn close(&mut self, facts: Facts) -> Option<ClosedRecord> {
        let mut d = self.draft();
        if !d.active {
            return None;
        }
        let r = std::mem::take(&mut *d);
        Some(r.closed(facts))
    }

    /// A handle on this record for the audit trail's answer hook.
    pub fn handle(&self) -> RecordHandle {
        RecordHandle(self.cell.clone())
    }
}

impl Draft {
    fn closed(self, facts: Facts) -> ClosedRecord {
        ClosedRecord {
            facts,
            rejection: self.rejection,
            principal: self.principal,
            method: self.method,
            tool: self.tool,
            target: self.target,
            params: self.params,
            version: self.version,
            session_id: self.session_id,
            rpc: self.rpc,
            listed: self.listed,
            call: self.call,
            spooled: self.spooled,
        }
    }
}

impl ClosedRecord {
    fn reopened(self) -> (Draft, Facts) {
        let draft = Draft {
            active: true,
            rejection: self.rejection,
            principal: self.principal,
            method: self.method,
            tool: self.tool,
            target: self.target,
            params: self.params,
            version: self.version,
            session_id: self.session_id,
            rpc: self.rpc,
            listed: self.listed,
            call: self.call,
            spooled: self.spooled,
        };
        (draft, self.facts)
    }
}

/// The audit trail's hold on a request's record, for the moment the answer's last bytes
/// are about to be written.
#[derive(Clone)]
pub struct RecordHandle(Arc<Mutex<Draft>>);

impl RecordHandle {
    /// When the record is active and not yet spooled: lends it, as it stands, closed with
    /// `facts`, to `spool`, and keeps where `spool` put it. Returns `facts` back.
    pub fn spool_now(
        &self,
        facts: Facts,
        spool: impl FnOnce(&mut ClosedRecord) -> Option<Spooled>,
    ) -> Facts {
        let mut d = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !d.active || d.spooled.is_some() {
            return facts;
        }
        let mut closed = std::mem::take(&mut *d).closed(facts);
        let spooled = spool(&mut closed);
        let (mut draft, facts) = closed.reopened();
        draft.spooled = spooled;
        *d = draft;
        facts
    }
}

/// A record's unique id: the writing process's random tag and a counter. Written as 32
/// hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rid {
    /// The process's tag (random at start).
    pub tag: u64,
    /// The record's number in that process.
    pub n: u64,
}

impl std::fmt::Display for Rid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}{:016x}", self.tag, self.n)
    }
}

impl std::str::FromStr for Rid {
    type Err = ();
    fn from_str(s: &str) -> Result<Rid, ()> {
        if s.len() != 32 || !s.is_ascii() {
            return Err(());
        }
        let tag = u64::from_str_radix(&s[..16], 16).map_err(|_| ())?;
        let n = u64::from_str_radix(&s[16..], 16).map_err(|_| ())?;
        Ok(Rid { tag, n })
    }
}

impl Serialize for Rid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rid, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom("not a record id"))
    }
}

/// Where a record was spooled: its id and the spool segment that holds it (told when the
/// record is safely stored, so the segment can go).
#[derive(Clone)]
pub struct Spooled {
    /// The record's id.
    pub rid: Rid,
    /// The segment.
    pub segment: Arc<dyn SpoolSegment>,
}

impl std::fmt::Debug for Spooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spooled({})", self.rid)
    }
}

/// A spool segment, as the record sees it.
pub trait SpoolSegment: Send + Sync {
    /// One record of this segment will not be needed from the spool any more (stored, or
    /// refused by the store for good).
    fn finished(&self);
}

/// What only the end of the request knows, from the HTTP exchange.
#[derive(Debug)]
pub struct Facts {
    /// When the request ended, Unix milliseconds.
    pub ts_ms: i64,
    /// Time from the first byte of the request to the end of the response.
    pub latency: Duration,
    /// HTTP method.
    pub http_method: Method,
    /// Status answered (0 when no response could be written).
    pub http_status: u16,
    /// Bytes of response body sent.
    pub response_size: u64,
    /// The browser `Origin` (cleaned and bounded), when sent.
    pub origin: Option<String>,
    /// `tools/list`: the `X-Cortex-Backends` header.
    pub backends_filter: Option<String>,
    /// `tools/list`: the `X-Cortex-Tool-Mode` header.
    pub tool_mode: Option<String>,
    /// Why the HTTP exchange failed, if it did.
    pub error: Option<String>,
}

/// A finished request: its decisions and its facts, ready for the audit trail and the
/// metrics.
#[derive(Debug)]
pub struct ClosedRecord {
    /// The HTTP facts.
    pub facts: Facts,
    /// The refusal, if the gateway refused the request.
    pub rejection: Option<(Stage, Cow<'static, str>)>,
    /// The authenticated caller.
    pub principal: Option<Principal>,
    /// The JSON-RPC method (`batch` for a batch).
    pub method: Option<Cow<'static, str>>,
    /// The tool named by a tools/call.
    pub tool: Option<String>,
    /// Where that tools/call was routed.
    pub target: Option<Target>,
    /// What `params_hash` is made of.
    pub params: Option<ParamsHash>,
    /// The protocol version in force.
    pub version: Option<ProtocolVersion>,
    /// The `Mcp-Session-Id` (a bearer secret: consumers pseudonymise or drop it).
    pub session_id: Option<String>,
    /// How the JSON-RPC answer ended.
    pub rpc: Option<RpcOutcome>,
    /// `tools/list`: (tools on the page, answer bytes).
    pub listed: Option<(u32, usize)>,
    /// The backend call: how long it took and how it ended.
    pub call: Option<(Duration, CallResult)>,
    /// Where the record was spooled (by the answer hook, or at submission).
    pub spooled: Option<Spooled>,
}

impl ClosedRecord {
    /// The refusal as recorded, or a scope refusal: a tools/call answered with an error for
    /// a backend tool the caller's scopes do not allow (the caller was told "unknown tool",
    /// so as not to reveal the catalog; the record says what really happened).
    pub fn refusal(&self) -> Option<(Stage, Cow<'_, str>)> {
        if let Some((stage, reason)) = &self.rejection {
            return Some((*stage, Cow::Borrowed(reason.as_ref())));
        }
        let refused = matches!(self.rpc, Some(RpcOutcome::Error(_)));
        match (&self.target, &self.tool, &self.principal) {
            (Some(Target::Backend { scope, .. }), Some(tool), Some(p))
                if refused && !p.grants.allows(scope.as_deref()) =>
            {
                Some((
                    Stage::Scope,
                    Cow::Owned(format!(
                        "tool {tool} requires scope {}",
                        scope.as_deref().unwrap_or("")
                    )),
                ))
            }
            _ => None,
        }
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
        None => Cow::Owned(clean(m, MAX_IDENT)),
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
    fn first_rejection_wins() {
        let mut a = RequestRecord::default();
        a.reject(Stage::Origin, "first");
        a.reject(Stage::Auth, "second");
        assert_eq!(a.rejection(), Some((Stage::Origin, "first".to_string())));
    }

    #[test]
    fn known_methods_do_not_allocate() {
        assert!(matches!(method_name("tools/call"), Cow::Borrowed(_)));
        assert_eq!(method_name("x\ny"), "x\u{FFFD}y");
    }
}
