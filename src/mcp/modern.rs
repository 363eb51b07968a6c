//! The stateless 2026-07-28 era on the MCP endpoint, beside the session-based versions.
//!
//! A POST whose body carries `_meta["io.modelcontextprotocol/protocolVersion"]` (or whose
//! `MCP-Protocol-Version` names a modern version) is served here; everything else keeps the
//! legacy path unchanged ([`era`] decides, from what the request carries, never from an
//! earlier request). For a modern request the gateway:
//!
//! 1. validates the envelope ([`cortex_filters::modern::envelope::validate`]): `_meta`
//!    (→ 400, -32602), `MCP-Protocol-Version` equal to it (→ 400, -32020), a served version
//!    (→ 400, -32022 with the supported list), `Mcp-Method` / `Mcp-Name` mirroring the body
//!    (→ 400, -32020), the method table (→ 404, -32601, naming a retired method's removal);
//! 2. for `tools/call`, checks the `Mcp-Param-*` headers against the routed tool's
//!    `x-mcp-header` annotations (→ 400, -32020);
//! 3. verifies a presented `requestState` (sealed by this gateway; tampered, foreign,
//!    expired or replayed → 400, -32602);
//! 4. builds the [`CallContext`] from `_meta` (no session; the client capabilities of this
//!    request alone) and runs the same dispatch as the legacy era;
//! 5. decorates the result: `resultType` on every result, `ttlMs` and `cacheScope` on
//!    discover, lists and resource reads; error codes retired by 2026-07-28 (-32002) become
//!    the code the spec now names (-32602).
//!
//! `server/discover` is answered here; `subscriptions/listen` streams from [`super::listen`].

use cortex_filters::jsonrpc::{self, codes, Id, Incoming, Message};
use cortex_filters::modern::discover::{self, Discover, ServerCapabilities, ServerInfo};
use cortex_filters::modern::envelope::{self, ModernRequest};
use cortex_filters::modern::headers::{self, RequestHeaders};
use cortex_filters::modern::hold::{self, Continuation, HoldLimits};
use cortex_filters::modern::mrtr::{self, InputRequest};
use cortex_filters::modern::result::{self, CacheHint, CacheScope, Decoration};
use cortex_filters::modern::state::{request_digest, RequestState, RequestStateError};
use cortex_filters::modern::{select_era, Refusal as ModernRefusal};
use cortex_filters::version::{self, Era};
use pingora::proxy::Session;
use serde_json::Value;

use crate::auth::Principal;
use crate::http::{write_answer, Answer};
use crate::record::Stage;
use crate::sessions::RequestStates;
use crate::state::{AppState, Policy};
use crate::GATEWAY_VERSION;

use super::bridge::{self, Bridge, Start};
use super::call::{CallContext, Dispatched};
use super::lists::Presentation;
use super::request::{Refusal, RequestCtx, RequestFacts, Stop};
use super::{dispatch, lifecycle, listen};

/// How long a `server/discover` answer may be reused: what it says changes only with a
/// configuration reload or a new gateway version.
const DISCOVER_TTL_MS: u64 = 60_000;

/// The era `incoming` speaks on this request (see [`select_era`] for the rules).
pub fn era(session: &Session, incoming: &Incoming) -> Era {
    let h = &session.req_header().headers;
    let headers = RequestHeaders::from_pairs(h.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    select_era("POST", &headers, incoming)
}

/// A modern refusal as the transport's refusal (recorded with its stage, answered with its
/// HTTP status and JSON-RPC error).
fn refusal(r: ModernRefusal, id: Option<&Id>) -> Refusal {
    let stage = match r.code {
        codes::UNSUPPORTED_PROTOCOL_VERSION | codes::HEADER_MISMATCH => Stage::Version,
        // Unknown or retired methods, malformed _meta or retry fields: the message itself.
        _ => Stage::Parse,
    };
    let answer = Answer::json(r.http_status, r.body(id));
    Refusal::new(stage, r.message, answer)
}

/// What the handlers need of a validated envelope, copied out of the borrowed message.
struct Facts {
    method: String,
    client_caps: u8,
    is_retry: bool,
}

/// Serves one modern POST.
pub async fn post(
    state: &AppState,
    policy: &Policy,
    facts: &RequestFacts,
    session: &mut Session,
    ctx: &mut RequestCtx,
    principal: &Principal,
    incoming: Incoming,
) -> Result<(), Stop> {
    let Incoming::Single(message) = incoming else {
        // select_era never picks the modern era for a batch.
        let r = ModernRefusal::new(
            400,
            codes::INVALID_REQUEST,
            "Invalid Request: MCP 2026-07-28 has no JSON-RPC batches",
        );
        return Err(refusal(r, None).into());
    };
    let id = match &message {
        Message::Request { id, .. } => Some(id.clone()),
        _ => None,
    };
    let header_map = session.req_header().headers.clone();
    let headers =
        RequestHeaders::from_pairs(header_map.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    let served = envelope::Policy::default();
    let req = envelope::validate("POST", &headers, &message, &served)
        .map_err(|r| refusal(r, id.as_ref()))?;
    ctx.record.version(req.version);
    let Some(id) = id else {
        // notifications/cancelled: on HTTP, closing the response stream is what cancels.
        write_answer(session, Answer::empty(202), ctx.cors_origin.as_deref()).await?;
        return Ok(());
    };
    let opened = check_request(state, policy, principal, &headers, &req)
        .map_err(|r| refusal(r, Some(&id)))?;
    let f = Facts {
        method: req.method.to_owned(),
        client_caps: req.client_caps,
        is_retry: req.is_retry(),
    };
    let cx = CallContext {
        shared: &state.shared,
        policy,
        principal,
        session: None,
        version: req.version,
        presentation: Presentation::from_headers(
            facts.tool_mode.as_deref(),
            facts.backends.as_deref(),
            policy.config.catalog.tool_mode,
        ),
        client_caps: f.client_caps,
    };
    let cors = ctx.cors_origin.clone();
    // What an input-required answer of this call is sealed with (params without `_meta` and
    // the retry fields are what binds the state to this very call).
    let call_params = req.params.cloned();
    let asker = Asker {
        states: state.shared.sessions.request_states(),
        sub: &principal.sub,
        method: &f.method,
        params: call_params.as_ref(),
        declared: f.client_caps,
    };
    let finish = |body: Vec<u8>| match asker.vault_consent(&id, &body) {
        Some(asked) => asked,
        None => decorate(&id, &f, body, policy),
    };
    let limits = held_limits(policy);
    let (log_level, progress_token) = (req.log_level, req.progress_token.cloned());
    let bridge = || Bridge {
        relay: &state.shared.relay,
        owner: cx.relay_owner(),
        asker: asker.clone(),
        log_level,
        progress_token: progress_token.clone(),
        limits,
        cors_origin: cors.as_deref(),
        keepalive: policy.config.sessions.keepalive_interval,
        finish: &finish,
    };
    // A retry that continues a held native call: the call goes on where it stopped.
    if let Some(Continuation::Held(held)) = opened.as_ref().map(|o| Continuation::parse(&o.payload))
    {
        let Some(call) = state.shared.relay.held().take(&cx.relay_owner(), &held) else {
            let r = hold::held_call_gone(limits.timeout_secs);
            return Err(refusal(r, Some(&id)).into());
        };
        let start = Start::Resume {
            call,
            responses: req.input_responses,
        };
        let b = bridge();
        return Ok(bridge::answer(session, &b, id.clone(), start, &mut ctx.record).await?);
    }
    let answer = match f.method.as_str() {
        "server/discover" => {
            let body = jsonrpc::success_raw(&id, &discover_result(&cx));
            ctx.record.answered(&body);
            Answer::json(200, body)
        }
        "subscriptions/listen" => {
            let params = match &message {
                Message::Request { params, .. } => params.as_ref(),
                _ => None,
            };
            return listen::serve(&cx, session, ctx, &id, params).await;
        }
        _ => {
            let body = match dispatch::dispatch(&cx, message, &mut ctx.record).await {
                Dispatched::Answer(body) => body,
                Dispatched::List { body, entries } => {
                    ctx.record.listed(entries, body.len());
                    body.to_vec()
                }
                // A native backend's streamed call: progress and logs relayed as the
                // request asks, the upstream's requests to the client turned into
                // input-required results while the call is held (super::bridge).
                Dispatched::Stream { id, replies, .. } => {
                    let b = bridge();
                    let start = Start::Fresh(replies);
                    return Ok(bridge::answer(session, &b, id, start, &mut ctx.record).await?);
                }
                // Not reachable: the modern method table has no initialize.
                Dispatched::Initialized { body, .. } => body,
                Dispatched::Accepted => {
                    write_answer(session, Answer::empty(202), cors.as_deref()).await?;
                    return Ok(());
                }
            };
            let body = finish(body);
            ctx.record.answered(&body);
            Answer::json(200, body)
        }
    };
    write_answer(session, answer, cors.as_deref()).await?;
    Ok(())
}

/// The checks a modern request needs beyond its envelope: the `Mcp-Param-*` headers of a
/// tool call, and the integrity of a presented `requestState`.
fn check_request(
    state: &AppState,
    policy: &Policy,
    principal: &Principal,
    headers: &RequestHeaders<'_>,
    req: &ModernRequest<'_>,
) -> Result<Option<RequestState>, ModernRefusal> {
    if req.method == "tools/call" {
        check_param_headers(state, policy, principal, headers, req)?;
    }
    let Some(token) = req.request_state else {
        return Ok(None);
    };
    let states = state.shared.sessions.request_states();
    open_state(
        states,
        &principal.sub,
        req.method,
        req.params,
        token,
        crate::clock::unix_now(),
    )
    .map(Some)
}

/// The bounds on native calls held for a caller's input, from configuration.
fn held_limits(policy: &Policy) -> HoldLimits {
    let s = &policy.config.sessions;
    HoldLimits {
        timeout_secs: s.held_call_timeout.as_secs().max(1),
        per_caller: s.max_held_calls_per_caller,
        total: s.max_held_calls,
    }
}

/// Seals the input-required answers of one modern request: for this caller, this very call
/// (method and params), and only input requests whose capability the request declared.
#[derive(Clone)]
pub struct Asker<'a> {
    /// The sealer and replay set.
    pub states: &'a RequestStates,
    /// The caller.
    pub sub: &'a str,
    /// The request's method.
    pub method: &'a str,
    /// The request's params.
    pub params: Option<&'a Value>,
    /// The client capabilities the request declared.
    pub declared: u8,
}

impl Asker<'_> {
    /// The serialized `InputRequiredResult` asking `requests`, whose state continues with
    /// `then`.
    pub fn ask(
        &self,
        requests: &[InputRequest],
        then: &Continuation,
    ) -> Result<Vec<u8>, ModernRefusal> {
        let needed = InputNeeded {
            requests: requests.to_vec(),
            payload: then.payload(),
        };
        input_required(
            self.states,
            self.sub,
            self.method,
            self.params,
            self.declared,
            &needed,
            crate::clock::unix_now(),
        )
    }

    /// The vault's linking consent for a modern caller: when `body` (the JSON-RPC answer of
    /// a tool call) is the tool error of a provider the caller has not linked (from any kind
    /// of backend with a `vault_provider`), and the request declared URL-mode elicitation,
    /// the answer becomes an `InputRequiredResult` with one URL elicitation to the link page;
    /// the retry runs the call again (linked by then, it goes through). Otherwise `None`: the
    /// tool error, which names the link page, is the answer.
    pub fn vault_consent(&self, id: &Id, body: &[u8]) -> Option<Vec<u8>> {
        const MARK: &[u8] = b"cortex/link";
        if self.method != "tools/call" || !body.windows(MARK.len()).any(|w| w == MARK) {
            return None;
        }
        let v: Value = serde_json::from_slice(body).ok()?;
        let request = cortex_filters::vault::link_input_request(v.get("result")?)?;
        if request.required_caps() & !self.declared != 0 {
            return None;
        }
        let result = self
            .ask(std::slice::from_ref(&request), &Continuation::Again)
            .ok()?;
        Some(jsonrpc::success_raw(id, &result))
    }
}

/// How long a sealed `requestState` stays valid: long enough for a person to answer an
/// elicitation or link an account, short enough that a leaked state is soon worthless.
pub const REQUEST_STATE_TTL_SECS: u64 = 600;

/// What a call answers when it needs the user before it can go on (the vault's
/// account-linking consent, a native upstream's elicitation, sampling or roots request): the
/// input requests, and the gateway's own continuation data, sealed into the `requestState`.
#[derive(Debug, Clone)]
pub struct InputNeeded {
    /// What to ask the client (keys unique; only methods whose capability the request
    /// declared, else the answer is -32021).
    pub requests: Vec<InputRequest>,
    /// The continuation: what the retry needs to resume the call (bounded by
    /// [`cortex_filters::modern::state::MAX_PAYLOAD`]).
    pub payload: Vec<u8>,
}

/// The `InputRequiredResult` (serialized `result`) of a modern `method` call with `params`
/// by `sub`: `needed`'s input requests and a `requestState` sealed for this caller and this
/// very call, valid [`REQUEST_STATE_TTL_SECS`] from `now`.
pub fn input_required(
    states: &RequestStates,
    sub: &str,
    method: &str,
    params: Option<&Value>,
    declared_caps: u8,
    needed: &InputNeeded,
    now: u64,
) -> Result<Vec<u8>, ModernRefusal> {
    let internal = |e: RequestStateError| {
        ModernRefusal::new(500, codes::INTERNAL_ERROR, format!("Internal error: {e}"))
    };
    if !mrtr::allows_input_required(method) {
        return Err(ModernRefusal::new(
            500,
            codes::INTERNAL_ERROR,
            format!("Internal error: {method} cannot ask for input"),
        ));
    }
    let digest = request_digest(method, params);
    let sealed = states
        .sealer()
        .seal(&RequestState::new(
            sub,
            digest,
            now,
            REQUEST_STATE_TTL_SECS,
            needed.payload.clone(),
        ))
        .map_err(internal)?;
    mrtr::input_required_result(&needed.requests, Some(&sealed), declared_caps)
}

/// Opens the `requestState` a retry presents: sealed by this gateway, for `sub`, for this
/// very call (`method` and `params`, without `_meta` and the retry fields), unexpired, and
/// never used before. Returns the continuation; anything else is HTTP 400, -32602.
pub fn open_state(
    states: &RequestStates,
    sub: &str,
    method: &str,
    params: Option<&Value>,
    token: &str,
    now: u64,
) -> Result<RequestState, ModernRefusal> {
    let digest = request_digest(method, params);
    let opened = states
        .sealer()
        .open(token, sub, &digest, now)
        .map_err(RequestStateError::refusal)?;
    if !states.first_use(&opened) {
        return Err(RequestStateError::Replayed.refusal());
    }
    Ok(opened)
}

/// `Mcp-Param-*` against the routed tool's `x-mcp-header` annotations. A tool the caller
/// cannot see is not checked here (dispatch answers it like a missing tool, revealing
/// nothing about its schema).
fn check_param_headers(
    state: &AppState,
    policy: &Policy,
    principal: &Principal,
    headers: &RequestHeaders<'_>,
    req: &ModernRequest<'_>,
) -> Result<(), ModernRefusal> {
    let Some(name) = req.name else {
        return Ok(());
    };
    let arguments = req.params.and_then(|p| p.get("arguments"));
    if policy.builtins.get(name).is_some() {
        // Builtins annotate no argument: only the header count bound applies.
        return headers::check_param_headers(headers, &[], arguments);
    }
    let current = state.shared.catalog.current();
    let Some(tool) = current.merged.tool(name) else {
        return Ok(());
    };
    if !principal.grants.allows(tool.scope.as_deref()) {
        return Ok(());
    }
    let annotations = tool
        .entry
        .get("inputSchema")
        .map(headers::param_headers)
        .transpose()
        .unwrap_or_default()
        .unwrap_or_default();
    headers::check_param_headers(headers, &annotations, arguments)
}

/// The gateway's identity for `_meta["io.modelcontextprotocol/serverInfo"]`.
fn server_info(policy: &Policy) -> ServerInfo<'_> {
    ServerInfo {
        name: &policy.config.server.name,
        version: GATEWAY_VERSION,
        title: Some("Cortex Gateway"),
        website_url: Some(&policy.website_url),
    }
}

/// The capabilities the gateway offers a modern client. `logging` only when a native backend
/// is configured (their log messages are relayed on the request's stream, and only when the
/// request's `_meta` asks for a level); the gateway itself sends none. No resource
/// subscriptions on a listen stream.
fn capabilities(relays_logs: bool) -> ServerCapabilities {
    ServerCapabilities {
        tools: true,
        tools_list_changed: true,
        prompts: true,
        prompts_list_changed: true,
        resources: true,
        resources_list_changed: true,
        resources_subscribe: false,
        completions: true,
        logging: relays_logs,
        extensions: Vec::new(),
    }
}

/// The serialized `DiscoverResult`. Nothing in it depends on the caller (the instructions
/// name every configured app, whatever the caller's scopes), so it is `public`.
fn discover_result(cx: &CallContext<'_>) -> Vec<u8> {
    let instructions = lifecycle::instructions(cx);
    let caps = capabilities(cx.policy.upstreams.iter().any(|b| b.kind().is_native()));
    let info = server_info(cx.policy);
    discover::discover_result(&Discover {
        versions: &version::ALL,
        capabilities: &caps,
        instructions: Some(&instructions),
        server_info: &info,
        cache: CacheHint {
            ttl_ms: DISCOVER_TTL_MS,
            scope: CacheScope::Public,
        },
    })
}

/// The caching hint of a cacheable answer. Lists and resource reads are filtered by the
/// caller's scopes, so they are `private`, every page alike. A list stays valid until the
/// next catalog refresh (listen streams announce earlier changes); a resource read is read
/// from its backend each time, so it is immediately stale.
fn cache_hint(method: &str, policy: &Policy) -> CacheHint {
    let ttl_ms = if method == "resources/read" {
        0
    } else {
        u64::try_from(policy.config.catalog.refresh.as_millis()).unwrap_or(u64::MAX)
    };
    CacheHint {
        ttl_ms,
        scope: CacheScope::Private,
    }
}

/// Decorates a JSON-RPC answer built by the shared dispatch for a modern client: the result
/// gets `resultType` (and caching hints where required), an error its 2026-07-28 code.
fn decorate(id: &Id, f: &Facts, body: Vec<u8>, policy: &Policy) -> Vec<u8> {
    let prefix = {
        let mut p = jsonrpc::success_raw(id, b"");
        p.pop();
        p
    };
    if body.starts_with(&prefix) && body.last() == Some(&b'}') {
        let result = &body[prefix.len()..body.len() - 1];
        let d = Decoration::complete(&f.method, f.is_retry, cache_hint(&f.method, policy), None);
        return match result::decorate(result, &d) {
            Ok(decorated) => jsonrpc::success_raw(id, &decorated),
            Err(e) => jsonrpc::error(
                Some(id),
                codes::INTERNAL_ERROR,
                &format!("Internal error: the result could not be decorated: {e}"),
                None,
            ),
        };
    }
    modern_error(body)
}

/// An error answer with the codes of 2026-07-28: the retired -32002 (resource not found)
/// becomes -32602, and nothing else in -32020..-32099 that the spec does not define leaves
/// the gateway (those become -32603).
fn modern_error(body: Vec<u8>) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    let Some(code) = v.pointer("/error/code").and_then(Value::as_i64) else {
        return body;
    };
    let new = match code {
        codes::RESOURCE_NOT_FOUND => codes::INVALID_PARAMS,
        codes::HEADER_MISMATCH
        | codes::MISSING_REQUIRED_CLIENT_CAPABILITY
        | codes::UNSUPPORTED_PROTOCOL_VERSION => code,
        -32099..=-32020 => codes::INTERNAL_ERROR,
        _ => return body,
    };
    if new == code {
        return body;
    }
    v["error"]["code"] = Value::from(new);
    serde_json::to_vec(&v).unwrap_or(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SessionsConfig;
    use crate::sessions::SessionManager;
    use cortex_filters::session::caps;
    use serde_json::json;

    fn call(args: Value) -> Value {
        json!({"name": "crm_export", "arguments": args,
               "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}})
    }

    #[test]
    fn an_input_required_answer_resumes_once_for_its_caller_and_call() {
        let sessions = SessionManager::new(&SessionsConfig::default());
        let states = sessions.request_states();
        let needed = InputNeeded {
            requests: vec![InputRequest::elicit_url(
                "link",
                "Link your CRM account to continue.",
                "https://gw.example/link/start",
            )],
            payload: b"backend=crm".to_vec(),
        };
        let params = call(json!({"q": "x"}));
        let now = 1_900_000_000;
        // A client that did not declare URL elicitation is not asked (-32021).
        let refused = input_required(
            states,
            "alice",
            "tools/call",
            Some(&params),
            0,
            &needed,
            now,
        )
        .unwrap_err();
        assert_eq!((refused.http_status, refused.code), (400, -32021));
        let body = input_required(
            states,
            "alice",
            "tools/call",
            Some(&params),
            caps::ELICITATION | caps::ELICITATION_URL,
            &needed,
            now,
        )
        .expect("input required");
        let result: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(result["resultType"], "input_required");
        assert_eq!(
            result["inputRequests"]["link"]["method"],
            "elicitation/create"
        );
        assert!(result["ttlMs"].is_null(), "never cacheable");
        let token = result["requestState"].as_str().unwrap();

        // The retry: same call (its _meta may differ), other fields added by the client.
        let mut retry = call(json!({"q": "x"}));
        retry["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                "io.modelcontextprotocol/clientCapabilities": {}});
        retry["requestState"] = json!(token);
        retry["inputResponses"] = json!({"link": {"action": "accept"}});
        let later = now + 5;
        // Another caller, or the same state on a different call: refused.
        let other = open_state(states, "bob", "tools/call", Some(&retry), token, later);
        assert_eq!(other.unwrap_err().code, -32602);
        let changed = call(json!({"q": "y"}));
        let mismatch = open_state(states, "alice", "tools/call", Some(&changed), token, later);
        assert_eq!(mismatch.unwrap_err().code, -32602);
        // Tampered: one character changed.
        let mut bad = token.to_owned();
        let last = if bad.ends_with('A') { "B" } else { "A" };
        bad.replace_range(bad.len() - 1.., last);
        let tampered = open_state(states, "alice", "tools/call", Some(&retry), &bad, later);
        assert_eq!(tampered.unwrap_err().http_status, 400);
        // Expired.
        let expired = open_state(
            states,
            "alice",
            "tools/call",
            Some(&retry),
            token,
            now + REQUEST_STATE_TTL_SECS,
        );
        assert!(expired.unwrap_err().message.contains("expired"));
        // The right caller, the right call: the continuation, once.
        let opened =
            open_state(states, "alice", "tools/call", Some(&retry), token, later).expect("resumes");
        assert_eq!(opened.payload, b"backend=crm");
        let replay = open_state(states, "alice", "tools/call", Some(&retry), token, later);
        assert!(replay.unwrap_err().message.contains("already used"));
    }

    #[test]
    fn retired_and_undefined_codes_are_rewritten() {
        let body = jsonrpc::error(Some(&json!(1)), -32002, "Resource not found", None);
        let v: Value = serde_json::from_slice(&modern_error(body)).unwrap();
        assert_eq!(v["error"]["code"], -32602);
        let body = jsonrpc::error(Some(&json!(1)), -32042, "url elicitation", None);
        let v: Value = serde_json::from_slice(&modern_error(body)).unwrap();
        assert_eq!(v["error"]["code"], -32603);
        let body = jsonrpc::error(Some(&json!(1)), -32021, "caps", None);
        let v: Value = serde_json::from_slice(&modern_error(body)).unwrap();
        assert_eq!(v["error"]["code"], -32021);
        let body = jsonrpc::error(Some(&json!(1)), -32601, "nope", None);
        assert_eq!(modern_error(body.clone()), body);
    }
}
