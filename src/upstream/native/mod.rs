//! Native MCP backends: MCP servers behind the gateway, which is their client. `kind: mcp`
//! speaks streamable HTTP to a URL ([`http`]); `kind: stdio` runs the server as a supervised
//! child process and speaks over its stdin/stdout ([`stdio`]). Both are one [`NativeBackend`]
//! over a [`link::Link`], so dispatch sees one more implementation of the `Backend` seam.
//!
//! A call is driven by a task of its own ([`drive`]): it relays the server's notifications
//! (progress with the caller's own token, log messages) and requests (sampling, elicitation,
//! roots) to the caller as [`Reply`] items, sends the caller's answers back, and ends with the
//! response. When the caller goes away (it closed the stream, or sent
//! `notifications/cancelled`), the reply stream is dropped and the task tells the server
//! `notifications/cancelled`. Every wait is bounded: the call's timeout while the server
//! works, [`SERVER_REQUEST_TIMEOUT`] while the caller answers a request.

pub mod http;
pub mod link;
pub mod stdio;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cortex_filters::catalog::BackendSnapshot;
use cortex_filters::contract::{self, Outcome};
use cortex_filters::jsonrpc::{codes, RpcError};
use cortex_filters::naming::NamingMode;
use cortex_filters::native::{self as rules, Upstream};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::config::{BackendConfig, BackendKindConfig, IdentityMode, Naming};
use crate::credentials::IdentityService;

use super::backend::{Backend, BackendKind, Call, Discovery, Operation, Replies, Reply};
use super::catalog::CatalogStore;
use super::http_client::HttpClient;
use super::relay::Relay;
use cortex_filters::modern::mrtr::{self, InputMethod};
use cortex_filters::modern::upstream::{self as modern_rules, UpstreamResult};
use link::{Exchange, Exchanged, LinkError, Outgoing, Peer};

/// How long a caller has to answer a server request (a person may be answering an
/// elicitation) before the server is told nobody will.
pub const SERVER_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The largest message the gateway accepts from a native server.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How many replies of one call may wait for the caller's stream.
const REPLY_QUEUE: usize = 64;

/// The credential a native backend receives with one user call: asked per call, so that a
/// per-user credential (a linked account from the vault, a minted or exchanged token) can be
/// injected without the backend knowing where it comes from. `Ok(None)`: no `Authorization`
/// beyond the backend's static configuration.
#[async_trait]
pub trait UpstreamAuth: Send + Sync {
    /// The `Authorization` header value for `call` to `backend_id`, if any. An `Err` is the
    /// caller's answer instead of calling the server: a JSON-RPC error, or a result (a tool
    /// error such as "link your account first", which clients that declared URL-mode
    /// elicitation receive as the `-32042` URL elicitation).
    async fn authorization(
        &self,
        backend_id: &str,
        call: &Call<'_>,
    ) -> Result<Option<String>, Outcome>;

    /// The `Authorization` value for discovery (no caller), if any: e.g. the linked token of
    /// a vault provider's catalog subject. Default none (the static credential only).
    async fn discovery_authorization(&self, _backend_id: &str) -> Option<String> {
        None
    }

    /// The server answered HTTP 401 to `rejected`, the value this source gave for `call`
    /// (`renewed_already`: it was itself the answer of an earlier `rejected` for this call).
    /// `Some(Ok)`: a renewed value to send once more; `Some(Err)`: the caller's answer
    /// instead (e.g. "link your account again"); `None` (the default): the failure stands.
    async fn rejected(
        &self,
        _backend_id: &str,
        _call: &Call<'_>,
        _rejected: &str,
        _renewed_already: bool,
    ) -> Option<Result<String, Outcome>> {
        None
    }
}

/// `identity: mint` or `exchange` for a native backend: the credential the identity service
/// derives for this backend's audience; with an explicit `identity: passthrough`, the
/// caller's own token (a first-party server in the gateway's trust domain only).
struct IdentityAuth(Arc<IdentityService>);

#[async_trait]
impl UpstreamAuth for IdentityAuth {
    async fn authorization(
        &self,
        backend_id: &str,
        call: &Call<'_>,
    ) -> Result<Option<String>, Outcome> {
        let headers = self
            .0
            .headers_for(call.catalog, backend_id, call.caller)
            .await
            .map_err(|e| Outcome::from(RpcError::from(e)))?;
        Ok(headers
            .into_iter()
            .find(|(name, _)| *name == "authorization")
            .map(|(_, v)| v))
    }
}

/// Where a backend's messages that belong to no call go: list changes mark the backend due
/// for discovery at once; resource updates reach the sessions subscribed to the resource.
pub struct Sink {
    backend_id: String,
    catalog: Arc<CatalogStore>,
    relay: Arc<Relay>,
}

impl Sink {
    /// What every native backend of a process reports to.
    pub fn new(backend_id: &str, catalog: Arc<CatalogStore>, relay: Arc<Relay>) -> Self {
        Sink {
            backend_id: backend_id.to_string(),
            catalog,
            relay,
        }
    }

    /// Routes an upstream notification that belongs to no call.
    pub fn deliver(&self, delivery: &rules::Delivery, params: &Value) {
        match delivery {
            rules::Delivery::ListChanged => {
                tracing::info!(backend = %self.backend_id, "the server's catalog changed; discovering it again");
                self.catalog.mark_due(&self.backend_id);
            }
            rules::Delivery::ResourceUpdated(uri) => {
                let told = self.relay.resource_updated(&self.backend_id, uri, params);
                tracing::debug!(backend = %self.backend_id, %uri, subscribers = told, "resource updated");
            }
            _ => {}
        }
    }
}

/// The process-lifetime parts a native backend is built with.
#[derive(Clone)]
pub struct NativeParts {
    /// The outbound HTTP client.
    pub client: Arc<HttpClient>,
    /// The live catalog (list changes make a backend due).
    pub catalog: Arc<CatalogStore>,
    /// The relay tables (resource subscriptions).
    pub relay: Arc<Relay>,
    /// The identity service (`identity: mint` / `exchange`).
    pub identity: Arc<IdentityService>,
}

enum Transport {
    Http(http::HttpTransport),
    Stdio(stdio::StdioTransport),
}

impl Transport {
    async fn peer(
        &self,
        user: &str,
        subject: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Arc<Peer>, LinkError> {
        match self {
            Transport::Http(t) => t.peer(user, subject, authorization).await,
            Transport::Stdio(t) => t.peer(user).await.map_err(LinkError::Failed),
        }
    }

    /// Whether calls are spoken in 2026-07-28 (input required comes back in results).
    fn modern(&self) -> bool {
        match self {
            Transport::Http(t) => t.modern(),
            Transport::Stdio(_) => false,
        }
    }

    fn forget(&self, user: &str, peer: &Arc<Peer>) {
        match self {
            Transport::Http(t) => t.forget(user, peer),
            Transport::Stdio(t) => t.forget(user, peer),
        }
    }
}

/// A native MCP server behind the gateway.
pub struct NativeBackend {
    id: String,
    kind: BackendKind,
    naming: NamingMode,
    timeout: Duration,
    location: String,
    scope: Option<String>,
    scopes: BTreeMap<String, String>,
    transport: Transport,
    auth: Option<Arc<dyn UpstreamAuth>>,
    /// `static_catalog`: published instead of discovering (nothing is asked of the server).
    static_catalog: Option<crate::config::StaticCatalogConfig>,
    next_call: AtomicU64,
}

impl NativeBackend {
    /// Builds a `kind: mcp` or `kind: stdio` backend. Nothing is connected or started here:
    /// the first discovery or call does it (so `check-config` starts no process).
    pub fn from_config(cfg: &BackendConfig, parts: &NativeParts) -> Result<Self, String> {
        let sink = Arc::new(Sink::new(
            &cfg.id,
            parts.catalog.clone(),
            parts.relay.clone(),
        ));
        let (kind, transport, location) = match cfg.kind {
            BackendKindConfig::Mcp => {
                let t = http::HttpTransport::new(
                    cfg,
                    parts.client.clone(),
                    sink,
                    parts.relay.sessions().clone(),
                )?;
                let location = t.location();
                (BackendKind::Mcp, Transport::Http(t), location)
            }
            BackendKindConfig::Stdio => {
                let t = stdio::StdioTransport::new(cfg, sink)?;
                let location = t.location();
                (BackendKind::Stdio, Transport::Stdio(t), location)
            }
            BackendKindConfig::Contract => {
                return Err("a contract backend is not a native MCP backend".into())
            }
        };
        let auth: Option<Arc<dyn UpstreamAuth>> = match cfg.identity_mode() {
            // `passthrough` only when written (a warning says so at start).
            IdentityMode::Mint | IdentityMode::Exchange | IdentityMode::Passthrough => {
                Some(Arc::new(IdentityAuth(parts.identity.clone())))
            }
            // Refused until the vault's handle replaces it (`with_auth`): never sent without
            // the user's own credential.
            IdentityMode::Vault => Some(Arc::new(super::vault_auth::NoVault {
                provider: cfg.vault_provider.clone().unwrap_or_default(),
            })),
            // Never the caller's own token to another server (the MCP spec forbids token
            // passthrough): the default gives a native backend only its static credential.
            IdentityMode::None => None,
        };
        Ok(NativeBackend {
            id: cfg.id.clone(),
            kind,
            naming: match cfg.naming {
                Naming::Prefix => NamingMode::Prefix,
                Naming::None => NamingMode::None,
            },
            timeout: cfg.timeout,
            location,
            scope: cfg.scope.clone(),
            scopes: cfg.scopes.clone(),
            transport,
            auth,
            static_catalog: cfg.static_catalog.clone(),
            next_call: AtomicU64::new(1),
        })
    }

    /// Replaces the per-call credential source (the vault plugs in here).
    pub fn with_auth(mut self, auth: Arc<dyn UpstreamAuth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// One request answered whole, for discovery: notifications are dropped, server requests
    /// answered with an error (nobody is there to answer them).
    async fn request_final(
        &self,
        peer: &Peer,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let key = self.next_call.fetch_add(1, Ordering::Relaxed);
        let call = Outgoing {
            key,
            progress_token: None,
            authorization: None,
            client_caps: 0,
            headers: Vec::new(),
        };
        let (_, mut exchange) = peer
            .link
            .request(method, params, call)
            .await
            .map_err(|e| e.to_string())?;
        let wait = async {
            while let Some(item) = exchange.recv().await {
                match item {
                    Exchanged::Message(Upstream::Response { outcome, .. }) => {
                        return outcome.map_err(|e| describe_error(&e));
                    }
                    Exchanged::Message(Upstream::Request { id, method, .. }) => {
                        let error = rules::error_object(
                            codes::METHOD_NOT_FOUND,
                            &format!("{method} is not available during discovery"),
                        );
                        peer.link.respond(id, Err(error), None).await;
                    }
                    Exchanged::Message(Upstream::Notification { .. }) => {}
                    Exchanged::Failed(why) => return Err(why),
                }
            }
            Err("the server ended the exchange without an answer".to_string())
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer to {method} within {} ms",
                self.timeout.as_millis()
            )),
        }
    }

    /// Every page of one list, as one array.
    async fn list_all(&self, peer: &Peer, method: &str, key: &str) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..rules::MAX_PAGES {
            let page = self
                .request_final(peer, method, rules::page_params(cursor.as_deref()))
                .await?;
            match page.get(key) {
                Some(Value::Array(a)) => items.extend(a.iter().cloned()),
                _ => return Err(format!("{method}: the result has no \"{key}\" array")),
            }
            cursor = rules::next_cursor(&page);
            if cursor.is_none() {
                return Ok(items);
            }
        }
        Err(format!(
            "{method}: more than {} pages (a cursor that never ends?)",
            rules::MAX_PAGES
        ))
    }

    /// One list as the catalog's entries, scopes from configuration.
    async fn entries<T: Clone>(
        &self,
        peer: &Peer,
        (method, key, key_field): (&str, &str, &str),
        parse: fn(&Value) -> Result<contract::Parsed<T>, contract::ContractError>,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<T>, String> {
        let mut items = self.list_all(peer, method, key).await?;
        rules::apply_scopes(&mut items, key_field, self.scope.as_deref(), &self.scopes);
        let parsed = parse(&json!({ key: items })).map_err(|e| format!("{method}: {e}"))?;
        warnings.extend(
            parsed
                .warnings
                .into_iter()
                .map(|w| format!("{method}: {w}")),
        );
        Ok(parsed.items)
    }

    /// An optional list: a failure keeps the previous entries.
    async fn optional<T: Clone>(
        &self,
        peer: &Peer,
        offered: bool,
        list: (&str, &str, &str),
        parse: fn(&Value) -> Result<contract::Parsed<T>, contract::ContractError>,
        previous: Option<&Vec<T>>,
        warnings: &mut Vec<String>,
    ) -> Vec<T> {
        if !offered {
            return Vec::new();
        }
        match self.entries(peer, list, parse, warnings).await {
            Ok(items) => items,
            Err(why) => {
                warnings.push(format!("{why} (keeping the previous entries)"));
                previous.cloned().unwrap_or_default()
            }
        }
    }

    /// The user an upstream session is kept for.
    fn user_key(call: &Call<'_>) -> String {
        format!("u:{}", call.caller.sub)
    }
}

/// The upstream session discovery uses: "" without a credential of its own, else one per
/// credential (a fingerprint, never the token itself).
fn discovery_session_key(authorization: Option<&str>) -> String {
    use std::hash::{Hash, Hasher};
    match authorization {
        None => String::new(),
        Some(a) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            a.hash(&mut h);
            format!("d:{:016x}", h.finish())
        }
    }
}

impl NativeBackend {
    /// The snapshot of a `static_catalog` (scopes from configuration, as discovered ones).
    fn static_discovery(&self, c: &crate::config::StaticCatalogConfig) -> Discovery {
        let lists = cortex_filters::vault::StaticLists {
            tools: &c.tools,
            prompts: &c.prompts,
            resources: &c.resources,
            templates: &c.resource_templates,
        };
        match cortex_filters::vault::static_snapshot(
            &self.id,
            self.naming,
            lists,
            self.scope.as_deref(),
            &self.scopes,
        ) {
            Ok((snapshot, warnings)) => Discovery::Ok { snapshot, warnings },
            Err(why) => Discovery::Failed(why),
        }
    }
}

/// An upstream error object in words.
fn describe_error(e: &Value) -> String {
    let code = e.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = e.get("message").and_then(Value::as_str).unwrap_or("error");
    format!("{message} ({code})")
}

/// An upstream error object as the caller's outcome (code, message and data kept).
fn outcome_of(outcome: Result<Value, Value>) -> Outcome {
    match outcome {
        Ok(v) => Outcome::Result(v),
        Err(e) => Outcome::Error {
            code: e
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(codes::INTERNAL_ERROR),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the server answered with an error")
                .to_string(),
            data: e.get("data").cloned().unwrap_or(Value::Null),
        },
    }
}

fn failed(backend: &str, why: impl std::fmt::Display) -> Outcome {
    Outcome::from(RpcError::internal(format!("backend {backend}: {why}")))
}

#[async_trait]
impl Backend for NativeBackend {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn naming(&self) -> NamingMode {
        self.naming
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    async fn discover(&self, previous: Option<&BackendSnapshot>) -> Discovery {
        if let Some(c) = &self.static_catalog {
            return self.static_discovery(c);
        }
        // A per-user credential source may have one for discovery (a vault provider's
        // catalog subject). The session is kept per credential: a renewed token opens a
        // fresh one, so a server that binds sessions to tokens never sees the old one again.
        let authorization = match &self.auth {
            Some(a) => a.discovery_authorization(&self.id).await,
            None => None,
        };
        let discovery_key = discovery_session_key(authorization.as_deref());
        let peer = match self
            .transport
            .peer(&discovery_key, None, authorization.as_deref())
            .await
        {
            Ok(p) => p,
            Err(why) => return Discovery::Failed(why.to_string()),
        };
        let mut warnings = Vec::new();
        let tools = match self
            .entries(
                &peer,
                ("tools/list", "tools", "name"),
                contract::parse_list_tools,
                &mut warnings,
            )
            .await
        {
            Ok(t) => t,
            Err(why) => {
                if !peer.link.alive() {
                    self.transport.forget(&discovery_key, &peer);
                }
                return Discovery::Failed(why);
            }
        };
        let prompts = self
            .optional(
                &peer,
                peer.init.prompts,
                ("prompts/list", "prompts", "name"),
                contract::parse_list_prompts,
                previous.map(|p| &p.prompts),
                &mut warnings,
            )
            .await;
        let resources = self
            .optional(
                &peer,
                peer.init.resources,
                ("resources/list", "resources", "uri"),
                contract::parse_list_resources,
                previous.map(|p| &p.resources),
                &mut warnings,
            )
            .await;
        let templates = self
            .optional(
                &peer,
                peer.init.resources,
                (
                    "resources/templates/list",
                    "resourceTemplates",
                    "uriTemplate",
                ),
                contract::parse_list_resource_templates,
                previous.map(|p| &p.templates),
                &mut warnings,
            )
            .await;
        Discovery::Ok {
            snapshot: BackendSnapshot {
                backend_id: self.id.clone(),
                naming: self.naming,
                tools,
                prompts,
                templates,
                resources,
            },
            warnings,
        }
    }

    async fn call(&self, call: Call<'_>) -> Replies {
        let (method, mut params) = match call.op {
            Operation::CallTool { name, arguments } => (
                "tools/call",
                rules::call_tool_params(name, arguments, call.meta),
            ),
            Operation::GetPrompt { name, arguments } => {
                ("prompts/get", json!({"name": name, "arguments": arguments}))
            }
            Operation::ReadResource { uri } => ("resources/read", json!({ "uri": uri })),
            Operation::Complete { params } => ("completion/complete", params.clone()),
            Operation::Subscribe { uri } => ("resources/subscribe", json!({ "uri": uri })),
            Operation::Unsubscribe { uri } => ("resources/unsubscribe", json!({ "uri": uri })),
            Operation::ContractMethod { method, .. } => {
                return Replies::Final(Outcome::from(RpcError::new(
                    codes::METHOD_NOT_FOUND,
                    format!(
                        "{method} is a contract method; backend {} is an MCP server",
                        self.id
                    ),
                )))
            }
        };
        let mut param_headers = Vec::new();
        if self.transport.modern() {
            modern_rules::carry_caller_fields(&mut params, call.meta, call.input_responses);
            if let Operation::CallTool { name, arguments } = call.op {
                // The tool's `x-mcp-header` arguments, mirrored as the spec asks of a client.
                let listed = call
                    .catalog
                    .tools()
                    .iter()
                    .find(|e| e.backend_id == self.id && e.target == name);
                if let Some(schema) = listed.and_then(|e| e.entry.get("inputSchema")) {
                    param_headers = modern_rules::param_headers_for(schema, arguments);
                }
            }
        }
        let key = self.next_call.fetch_add(1, Ordering::Relaxed);
        let caller_token = call.meta.and_then(rules::progress_token).cloned();
        let progress_token = caller_token
            .as_ref()
            .map(|_| rules::upstream_progress_token(key));
        if let Some(t) = &progress_token {
            rules::set_progress_token(&mut params, t);
        }
        let mut authorization = match &self.auth {
            Some(a) => match a.authorization(&self.id, &call).await {
                Ok(v) => v,
                Err(refused) => return Replies::Final(refused),
            },
            None => None,
        };
        let user = Self::user_key(&call);
        let mut outgoing = Outgoing {
            key,
            progress_token,
            authorization: authorization.clone(),
            client_caps: call.client_caps,
            headers: param_headers,
        };
        // One fresh session on a 404 (the server forgot ours), one renewed credential on a
        // 401 (the credential source decides), then the failure stands.
        let mut sent = None;
        let mut renewals = 0u8;
        for _ in 0..4 {
            let (peer, outcome) = match self
                .transport
                .peer(&user, Some(&call.caller.sub), authorization.as_deref())
                .await
            {
                Ok(p) => {
                    let r = p
                        .link
                        .request(method, params.clone(), outgoing.clone())
                        .await;
                    (Some(p), r)
                }
                Err(e) => (None, Err(e)),
            };
            match outcome {
                Ok((upstream_id, exchange)) => {
                    if let Some(peer) = peer {
                        sent = Some((peer, upstream_id, exchange));
                    }
                    break;
                }
                Err(LinkError::SessionGone) => {
                    tracing::info!(backend = %self.id, "upstream session expired; initializing again");
                    if let Some(peer) = &peer {
                        self.transport.forget(&user, peer);
                    }
                }
                Err(LinkError::Unauthorized(why)) => {
                    // The session opened with the refused credential is not reused.
                    if let Some(peer) = &peer {
                        self.transport.forget(&user, peer);
                    }
                    let renewed = match (&self.auth, authorization.as_deref()) {
                        (Some(a), Some(sent)) if renewals < 2 => {
                            a.rejected(&self.id, &call, sent, renewals > 0).await
                        }
                        _ => None,
                    };
                    match renewed {
                        Some(Ok(fresh)) => {
                            tracing::info!(backend = %self.id, "the server refused the call's credential; trying once more with a renewed one");
                            renewals += 1;
                            authorization = Some(fresh);
                            outgoing.authorization = authorization.clone();
                        }
                        Some(Err(answer)) => return Replies::Final(answer),
                        None => return Replies::Final(failed(&self.id, why)),
                    }
                }
                Err(LinkError::Failed(why)) => {
                    if let Some(peer) = peer.filter(|p| !p.link.alive()) {
                        self.transport.forget(&user, &peer);
                    }
                    return Replies::Final(failed(&self.id, why));
                }
            }
        }
        let Some((peer, upstream_id, exchange)) = sent else {
            return Replies::Final(failed(
                &self.id,
                "the upstream session expired, or refused the credential, too many times",
            ));
        };
        let retry = self.transport.modern().then(|| Retry {
            method,
            params,
            outgoing,
            rounds: 0,
        });
        let (tx, rx) = mpsc::channel(REPLY_QUEUE);
        tokio::spawn(drive(Drive {
            backend: self.id.clone(),
            link: peer.link.clone(),
            exchange,
            replies: tx,
            upstream_id,
            caller_token,
            timeout: self.timeout,
            request_bound: SERVER_REQUEST_TIMEOUT,
            authorization,
            retry,
        }));
        Replies::Stream(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|r| (r, rx))
        })))
    }
}

/// One call in flight, driven by its own task.
struct Drive {
    backend: String,
    link: Arc<dyn link::Link>,
    exchange: Exchange,
    replies: mpsc::Sender<Reply>,
    upstream_id: Value,
    caller_token: Option<Value>,
    timeout: Duration,
    /// How long the caller may take to answer a server request ([`SERVER_REQUEST_TIMEOUT`]).
    request_bound: Duration,
    authorization: Option<String>,
    /// A 2026-07-28 upstream: the request as sent, to retry it with the caller's answers
    /// when the upstream needs input (None for a session-based upstream, which asks with
    /// requests of its own mid-call).
    retry: Option<Retry>,
}

/// What retrying a 2026-07-28 upstream request takes.
struct Retry {
    method: &'static str,
    params: Value,
    outgoing: Outgoing,
    /// Input-required rounds so far (bounded by [`modern_rules::MAX_INPUT_ROUNDS`]).
    rounds: u32,
}

/// One input-required round of a 2026-07-28 upstream, while the caller answers.
struct Round {
    request_state: Option<String>,
    asked: Vec<(String, InputMethod)>,
    answered: serde_json::Map<String, Value>,
}

/// What a 2026-07-28 upstream's response leads to.
enum Step {
    /// The call's outcome.
    Done(Outcome),
    /// The caller was sent the upstream's input requests; their answers are awaited.
    Asked(Round),
    /// The request went upstream again (a round with a state and no requests).
    Retried,
    /// The caller went away.
    Gone,
}

type Answered = (Value, Result<Result<Value, Value>, String>);

/// Relays one call until its response, its failure, its timeout or the caller leaving.
async fn drive(mut d: Drive) {
    let mut answers: AnswerFutures = FuturesUnordered::new();
    let mut deadline = tokio::time::Instant::now() + d.timeout;
    let mut round: Option<Round> = None;
    let outcome = loop {
        let waiting_for_caller = !answers.is_empty();
        tokio::select! {
            _ = d.replies.closed() => {
                cancel(&d, "the caller went away").await;
                return;
            }
            _ = tokio::time::sleep_until(deadline), if !waiting_for_caller => {
                cancel(&d, "the gateway's timeout for this call elapsed").await;
                break failed(&d.backend, format!("no answer within {} ms", d.timeout.as_millis()));
            }
            Some((id, answer)) = answers.next(), if waiting_for_caller => {
                if let Some(r) = round.as_mut() {
                    if let Err(o) = collect(&d.backend, r, &id, answer) {
                        break o;
                    }
                    if r.answered.len() < r.asked.len() {
                        continue;
                    }
                    let Some(r) = round.take() else { continue };
                    if let Err(o) = retry_upstream(&mut d, r.answered, r.request_state).await {
                        break o;
                    }
                } else {
                    let outcome = answer.unwrap_or_else(|why| {
                        Err(rules::error_object(codes::INTERNAL_ERROR, &why))
                    });
                    d.link.respond(id, outcome, d.authorization.clone()).await;
                }
                deadline = tokio::time::Instant::now() + d.timeout;
            }
            item = d.exchange.recv(), if round.is_none() => match item {
                None => break failed(&d.backend, "the server ended the call without an answer"),
                Some(Exchanged::Failed(why)) => break failed(&d.backend, why),
                Some(Exchanged::Message(Upstream::Response { outcome, .. })) => {
                    if d.retry.is_none() {
                        break outcome_of(outcome);
                    }
                    match modern_response(&mut d, &mut answers, outcome).await {
                        Step::Done(o) => break o,
                        Step::Asked(r) => round = Some(r),
                        Step::Retried => {}
                        Step::Gone => {
                            cancel(&d, "the caller went away").await;
                            return;
                        }
                    }
                    deadline = tokio::time::Instant::now() + d.timeout;
                }
                Some(Exchanged::Message(Upstream::Notification { method, mut params })) => {
                    if method == "notifications/progress" {
                        match &d.caller_token {
                            Some(t) => rules::restore_progress_token(&mut params, t),
                            None => continue,
                        }
                    }
                    let bytes = Bytes::from(rules::relayed_notification(&method, &params));
                    if d.replies.send(Reply::Notification(bytes)).await.is_err() {
                        cancel(&d, "the caller went away").await;
                        return;
                    }
                }
                Some(Exchanged::Message(Upstream::Request { id, method, params })) => {
                    if method == "ping" {
                        d.link.respond(id, Ok(json!({})), d.authorization.clone()).await;
                        continue;
                    }
                    let (respond, answer) = oneshot::channel();
                    let request = Reply::ServerRequest {
                        method,
                        params,
                        respond,
                        key: None,
                        more: false,
                    };
                    if d.replies.send(request).await.is_err() {
                        cancel(&d, "the caller went away").await;
                        return;
                    }
                    answers.push(await_answer(id, answer, d.request_bound));
                }
            }
        }
    };
    let _ = d.replies.send(Reply::Final(outcome)).await;
}

type AnswerFutures =
    FuturesUnordered<std::pin::Pin<Box<dyn std::future::Future<Output = Answered> + Send>>>;

/// A caller's answer, waited for at most `bound`, keyed by `id`.
fn await_answer(
    id: Value,
    answer: oneshot::Receiver<Result<Value, Value>>,
    bound: Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Answered> + Send>> {
    Box::pin(async move {
        let answer = match tokio::time::timeout(bound, answer).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(_)) => Err("the caller cannot answer this request".to_string()),
            Err(_) => Err(format!("the caller did not answer within {bound:?}")),
        };
        (id, answer)
    })
}

/// A 2026-07-28 upstream's response: complete (the outcome), or input required: each
/// input request goes to the caller as a server request (refused at once, failing the call,
/// when the caller did not declare the capability it needs), and the caller's answers are
/// awaited; a round with only a state is retried at once. Rounds are bounded.
async fn modern_response(
    d: &mut Drive,
    answers: &mut AnswerFutures,
    outcome: Result<Value, Value>,
) -> Step {
    let result = match outcome {
        Ok(v) => v,
        Err(e) => return Step::Done(outcome_of(Err(e))),
    };
    let asked = match modern_rules::classify_result(result) {
        Ok(UpstreamResult::Complete(v)) => return Step::Done(Outcome::Result(v)),
        Ok(UpstreamResult::InputRequired(asked)) => asked,
        Err(why) => return Step::Done(failed(&d.backend, why)),
    };
    let Some(retry) = d.retry.as_mut() else {
        return Step::Done(failed(
            &d.backend,
            "input required from a session-based server",
        ));
    };
    retry.rounds += 1;
    if retry.rounds > modern_rules::MAX_INPUT_ROUNDS {
        return Step::Done(failed(
            &d.backend,
            format!(
                "the server still asks for input after {} rounds",
                modern_rules::MAX_INPUT_ROUNDS
            ),
        ));
    }
    let caps = retry.outgoing.client_caps;
    let mut relayed = Vec::with_capacity(asked.requests.len());
    for request in &asked.requests {
        match modern_rules::server_request_for(request, caps) {
            Ok((method, params)) => {
                relayed.push((request.key.clone(), request.method, method, params))
            }
            Err(refusal) => {
                return Step::Done(Outcome::Error {
                    code: refusal.code,
                    message: format!("backend {}: {}", d.backend, refusal.message),
                    data: refusal.data.unwrap_or(Value::Null),
                })
            }
        }
    }
    if relayed.is_empty() {
        return match retry_upstream(d, serde_json::Map::new(), asked.request_state).await {
            Ok(()) => Step::Retried,
            Err(o) => Step::Done(o),
        };
    }
    let mut round = Round {
        request_state: asked.request_state,
        asked: Vec::with_capacity(relayed.len()),
        answered: serde_json::Map::new(),
    };
    let last = relayed.len() - 1;
    for (at, (key, input, method, params)) in relayed.into_iter().enumerate() {
        let (respond, answer) = oneshot::channel();
        let request = Reply::ServerRequest {
            method: method.to_string(),
            params,
            respond,
            key: Some(key.clone()),
            more: at < last,
        };
        if d.replies.send(request).await.is_err() {
            return Step::Gone;
        }
        answers.push(await_answer(
            Value::String(key.clone()),
            answer,
            d.request_bound,
        ));
        round.asked.push((key, input));
    }
    Step::Asked(round)
}

/// Keeps the caller's answer to the input request keyed `id` of this round; an error, a
/// malformed answer or no answer in time fails the call (2026-07-28 has no error answer to
/// give the upstream).
fn collect(
    backend: &str,
    round: &mut Round,
    id: &Value,
    answer: Result<Result<Value, Value>, String>,
) -> Result<(), Outcome> {
    let key = id.as_str().unwrap_or_default();
    let Some((_, method)) = round.asked.iter().find(|(k, _)| k == key) else {
        return Ok(());
    };
    let answer = answer.map_err(|why| {
        failed(
            backend,
            format!("the server asked for {} ({key}) and {why}", method.as_str()),
        )
    })?;
    let value = modern_rules::input_response(*method, answer).map_err(|e| {
        Outcome::from(RpcError::new(
            codes::INVALID_PARAMS,
            format!(
                "backend {backend}: the answer to its {} request ({key}) cannot be passed on: {e}",
                method.as_str()
            ),
        ))
    })?;
    round.answered.insert(key.to_string(), value);
    Ok(())
}

/// Sends the request again with the caller's answers and the upstream's state; the call
/// goes on with the new exchange.
async fn retry_upstream(
    d: &mut Drive,
    responses: serde_json::Map<String, Value>,
    request_state: Option<String>,
) -> Result<(), Outcome> {
    let Some(retry) = d.retry.as_ref() else {
        return Err(failed(&d.backend, "no request to retry"));
    };
    let params = mrtr::retry_params(&retry.params, responses, request_state.as_deref());
    match d
        .link
        .request(retry.method, params, retry.outgoing.clone())
        .await
    {
        Ok((id, exchange)) => {
            d.upstream_id = id;
            d.exchange = exchange;
            Ok(())
        }
        Err(e) => Err(failed(&d.backend, e)),
    }
}

/// Tells the server the gateway no longer waits for the call.
async fn cancel(d: &Drive, reason: &str) {
    let params = json!({"requestId": d.upstream_id, "reason": reason});
    let notify = d
        .link
        .notify("notifications/cancelled", params, d.authorization.clone());
    let _ = tokio::time::timeout(Duration::from_secs(5), notify).await;
}

/// Sends one handshake request (`initialize`, `server/discover`) and waits for its result.
/// Errors are prefixed with the method; a 401 stays [`LinkError::Unauthorized`] (the
/// credential may be renewed).
async fn handshake(
    link: &Arc<dyn link::Link>,
    method: &str,
    params: Value,
    authorization: Option<String>,
    timeout: Duration,
) -> Result<Value, LinkError> {
    let call = Outgoing {
        key: 0,
        progress_token: None,
        authorization,
        client_caps: 0,
        headers: Vec::new(),
    };
    let (_, mut exchange) = link
        .request(method, params, call)
        .await
        .map_err(|e| match e {
            LinkError::Unauthorized(_) => e,
            other => LinkError::Failed(format!("{method}: {other}")),
        })?;
    let wait = async {
        while let Some(item) = exchange.recv().await {
            match item {
                Exchanged::Message(Upstream::Response { outcome, .. }) => {
                    return outcome.map_err(|e| describe_error(&e));
                }
                Exchanged::Failed(why) => return Err(why),
                Exchanged::Message(_) => {}
            }
        }
        Err("the server ended the exchange without an answer".to_string())
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r.map_err(|e| LinkError::Failed(format!("{method}: {e}"))),
        Err(_) => Err(LinkError::Failed(format!(
            "{method}: no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// `initialize`, checked, then `notifications/initialized`: what both transports do on a
/// fresh link. A 401 stays [`LinkError::Unauthorized`] (the credential may be renewed).
pub(crate) async fn initialize(
    link: Arc<dyn link::Link>,
    authorization: Option<String>,
    timeout: Duration,
) -> Result<Peer, LinkError> {
    let params = rules::initialize_params(crate::GATEWAY_VERSION);
    let result = handshake(&link, "initialize", params, authorization.clone(), timeout).await?;
    let init =
        rules::initialized(&result).map_err(|e| LinkError::Failed(format!("initialize: {e}")))?;
    link.notify("notifications/initialized", json!({}), authorization)
        .await;
    Ok(Peer { link, init })
}

/// `server/discover`, checked: what a 2026-07-28 link does instead of `initialize` (no
/// session follows; the server's capabilities say which optional lists it has).
pub(crate) async fn discover_modern(
    link: Arc<dyn link::Link>,
    authorization: Option<String>,
    timeout: Duration,
) -> Result<Peer, LinkError> {
    let params = modern_rules::discover_params();
    let result = handshake(&link, "server/discover", params, authorization, timeout).await?;
    let init = modern_rules::discovered(&result)
        .map_err(|e| LinkError::Failed(format!("server/discover: {e}")))?;
    Ok(Peer { link, init })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A link that records what the gateway sends the server.
    #[derive(Default)]
    struct Recorder {
        answers: Mutex<Vec<(Value, Result<Value, Value>)>>,
        notified: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl link::Link for Recorder {
        async fn request(
            &self,
            _method: &str,
            _params: Value,
            _call: Outgoing,
        ) -> Result<(Value, Exchange), LinkError> {
            Err(LinkError::Failed("not used".into()))
        }
        async fn notify(&self, method: &str, _params: Value, _authorization: Option<String>) {
            self.notified.lock().expect("lock").push(method.to_string());
        }
        async fn respond(&self, id: Value, outcome: Result<Value, Value>, _: Option<String>) {
            self.answers.lock().expect("lock").push((id, outcome));
        }
        fn alive(&self) -> bool {
            true
        }
    }

    /// A server request the caller holds without ever answering ends after the bound: the
    /// server gets an error answer, and the call then ends at its own timeout, cancelled.
    #[tokio::test]
    async fn an_unanswered_server_request_ends_the_call_after_the_bound() {
        let recorder = Arc::new(Recorder::default());
        let (server, exchange) = mpsc::channel(8);
        let (replies, mut caller) = mpsc::channel(8);
        let task = tokio::spawn(drive(Drive {
            backend: "b".into(),
            link: recorder.clone(),
            exchange,
            replies,
            upstream_id: json!(1),
            caller_token: None,
            timeout: Duration::from_millis(100),
            request_bound: Duration::from_millis(200),
            authorization: None,
            retry: None,
        }));
        server
            .send(Exchanged::Message(Upstream::Request {
                id: json!("srv-1"),
                method: "elicitation/create".into(),
                params: json!({}),
            }))
            .await
            .expect("send");
        // The caller receives the request and keeps it, unanswered.
        let held = match caller.recv().await {
            Some(Reply::ServerRequest {
                respond, method, ..
            }) => {
                assert_eq!(method, "elicitation/create");
                respond
            }
            _ => panic!("the request reaches the caller"),
        };
        let last = tokio::time::timeout(Duration::from_secs(10), caller.recv())
            .await
            .expect("the call ends within its bounds");
        match last {
            Some(Reply::Final(Outcome::Error { message, .. })) => {
                assert!(message.contains("no answer within 100 ms"), "{message}")
            }
            _ => panic!("a final error"),
        }
        task.await.expect("drive ends");
        drop(held);
        let answers = recorder.answers.lock().expect("lock").clone();
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(answers[0].0, json!("srv-1"));
        let error = answers[0].1.clone().expect_err("an error answer");
        assert!(
            error.to_string().contains("did not answer within 200ms"),
            "{error}"
        );
        assert_eq!(
            *recorder.notified.lock().expect("lock"),
            vec!["notifications/cancelled".to_string()]
        );
    }

    /// A 2026-07-28 server that answers every request with the same result, and counts
    /// the requests and the `inputResponses` it was sent.
    struct AlwaysAnswers {
        result: Value,
        sent: Mutex<Vec<Value>>,
    }

    #[async_trait]
    impl link::Link for AlwaysAnswers {
        async fn request(
            &self,
            _method: &str,
            params: Value,
            _call: Outgoing,
        ) -> Result<(Value, Exchange), LinkError> {
            self.sent.lock().expect("lock").push(params);
            let (tx, rx) = mpsc::channel(1);
            let response = Upstream::Response {
                id: json!(1),
                outcome: Ok(self.result.clone()),
            };
            tx.send(Exchanged::Message(response)).await.expect("send");
            Ok((json!(1), rx))
        }
        async fn notify(&self, _: &str, _: Value, _: Option<String>) {}
        async fn respond(&self, _: Value, _: Result<Value, Value>, _: Option<String>) {}
        fn alive(&self) -> bool {
            true
        }
    }

    /// Drives one call of `server` for a caller with `caps`, answering every input request
    /// with `answer`; returns the final outcome and how many requests the caller was asked.
    async fn modern_call(server: Arc<AlwaysAnswers>, caps: u8, answer: Value) -> (Outcome, usize) {
        let params = json!({"name": "t", "arguments": {}});
        let outgoing = Outgoing {
            key: 1,
            progress_token: None,
            authorization: None,
            client_caps: caps,
            headers: Vec::new(),
        };
        let (upstream_id, exchange) = link::Link::request(
            server.as_ref(),
            "tools/call",
            params.clone(),
            outgoing.clone(),
        )
        .await
        .expect("first request");
        let (replies, mut caller) = mpsc::channel(8);
        tokio::spawn(drive(Drive {
            backend: "m".into(),
            link: server,
            exchange,
            replies,
            upstream_id,
            caller_token: None,
            timeout: Duration::from_secs(10),
            request_bound: Duration::from_secs(10),
            authorization: None,
            retry: Some(Retry {
                method: "tools/call",
                params,
                outgoing,
                rounds: 0,
            }),
        }));
        let mut asked = 0;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), caller.recv())
                .await
                .expect("the call goes on");
            match next {
                Some(Reply::ServerRequest { respond, key, .. }) => {
                    assert_eq!(key.as_deref(), Some("name"));
                    asked += 1;
                    let _ = respond.send(Ok(answer.clone()));
                }
                Some(Reply::Final(outcome)) => return (outcome, asked),
                Some(Reply::Notification(_)) => {}
                None => panic!("the call ended without an outcome"),
            }
        }
    }

    fn asks_a_name() -> Value {
        json!({"resultType": "input_required", "requestState": "s",
            "inputRequests": {"name": {"method": "elicitation/create",
                "params": {"message": "Name?", "requestedSchema": {"type": "object"}}}}})
    }

    /// A 2026-07-28 server that never stops asking is given up after the bound, each round
    /// retried with the caller's answer and the server's state.
    #[tokio::test]
    async fn input_rounds_with_a_modern_server_are_bounded() {
        let server = Arc::new(AlwaysAnswers {
            result: asks_a_name(),
            sent: Mutex::new(Vec::new()),
        });
        let caps = cortex_filters::session::caps::ELICITATION
            | cortex_filters::session::caps::ELICITATION_FORM;
        let answer = json!({"action": "accept", "content": {"n": "Ann"}});
        let (outcome, asked) = modern_call(server.clone(), caps, answer.clone()).await;
        match outcome {
            Outcome::Error { message, .. } => {
                assert!(message.contains("after 8 rounds"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(asked, modern_rules::MAX_INPUT_ROUNDS as usize);
        let sent = server.sent.lock().expect("lock").clone();
        assert_eq!(sent.len(), modern_rules::MAX_INPUT_ROUNDS as usize + 1);
        assert!(sent[0].get("inputResponses").is_none());
        for retry in &sent[1..] {
            assert_eq!(retry["inputResponses"]["name"], answer);
            assert_eq!(retry["requestState"], "s");
        }
    }

    /// A caller that did not declare the capability is never asked: the call fails with
    /// -32021 naming what is missing, and nothing more goes upstream.
    #[tokio::test]
    async fn a_modern_servers_request_the_caller_cannot_answer_fails_the_call() {
        let server = Arc::new(AlwaysAnswers {
            result: asks_a_name(),
            sent: Mutex::new(Vec::new()),
        });
        let (outcome, asked) = modern_call(
            server.clone(),
            cortex_filters::session::caps::SAMPLING,
            json!({}),
        )
        .await;
        match outcome {
            Outcome::Error { code, data, .. } => {
                assert_eq!(code, -32021);
                assert_eq!(
                    data["requiredCapabilities"],
                    json!({"elicitation": {"form": {}}})
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(asked, 0);
        assert_eq!(server.sent.lock().expect("lock").len(), 1);
    }

    /// A complete result ends the call at once, without the modern-only members.
    #[tokio::test]
    async fn a_modern_servers_complete_result_is_the_outcome() {
        let server = Arc::new(AlwaysAnswers {
            result: json!({"resultType": "complete", "content": [], "ttlMs": 0}),
            sent: Mutex::new(Vec::new()),
        });
        let (outcome, asked) = modern_call(server, 0, json!({})).await;
        assert_eq!(asked, 0);
        match outcome {
            Outcome::Result(v) => assert_eq!(v, json!({"content": []})),
            other => panic!("{other:?}"),
        }
    }
}
