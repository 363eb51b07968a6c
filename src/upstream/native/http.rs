//! `kind: mcp`: an MCP server over streamable HTTP. The gateway keeps one upstream session
//! per user (and one for discovery, without a user), initialized on first use and ended with
//! `DELETE` when it idles out (`idle_timeout`), when the user's last downstream session ends
//! (the client's `DELETE /mcp` or its idle expiry), or when the backend is replaced. Each request is a POST answered with
//! JSON or with a stream of server-sent events; what the server sends on a request's stream
//! belongs to that request's call.
//!
//! With `protocol: 2026-07-28` there is no session: the per-user link only remembers that the
//! server answered `server/discover` and the user's last credential; every request carries
//! `_meta` and the mirrored headers, and nothing is notified (closing a call's stream cancels
//! it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cortex_filters::contract::{describe_transport_failure, TransportFailure};
use cortex_filters::native::{self as rules, Delivery, SseDecoder, Upstream};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{BackendConfig, UpstreamProtocol};
use crate::sessions::SessionManager;
use crate::upstream::http_client::{HttpClient, OpenReply, Target};
use cortex_filters::modern::upstream as modern;
use cortex_filters::session::SessionClaims;

use super::link::{Exchange, Exchanged, Link, LinkError, Outgoing, Peer, SinkRef, EXCHANGE_QUEUE};
use super::MAX_MESSAGE_BYTES;

/// The most upstream sessions one backend keeps (one per active user).
pub const MAX_SESSIONS: u64 = 10_000;

/// The sessions of one `kind: mcp` backend.
pub struct HttpTransport {
    id: String,
    target: Arc<Target>,
    client: Arc<HttpClient>,
    headers: Arc<Vec<(String, String)>>,
    timeout: Duration,
    sink: SinkRef,
    sessions: moka::sync::Cache<String, Arc<Peer>>,
    opening: tokio::sync::Mutex<()>,
    /// The user key of each user's upstream session, by subject binding: a downstream
    /// session's end names its subject only by this binding.
    users: Arc<Mutex<HashMap<[u8; 16], String>>>,
    follower: std::sync::Once,
    downstream: Arc<SessionManager>,
    /// `protocol: 2026-07-28`: `server/discover` instead of `initialize`, `_meta` and the
    /// mirrored headers on every request, no session (the "session" kept per user is only
    /// the discovered server and the user's last credential).
    modern: bool,
}

impl HttpTransport {
    /// From configuration: `url`, static `headers` and `bearer`.
    pub fn new(
        cfg: &BackendConfig,
        client: Arc<HttpClient>,
        sink: SinkRef,
        downstream: Arc<SessionManager>,
    ) -> Result<Self, String> {
        let target = Target::from_url(&cfg.url, "").map_err(|e| e.to_string())?;
        if let Err(e) = target.resolve_blocking() {
            tracing::warn!(backend = %cfg.id, "{e}; retrying at every discovery");
        }
        let mut headers: Vec<(String, String)> = cfg
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        if let Some(b) = &cfg.bearer {
            headers.retain(|(k, _)| k != "authorization");
            headers.push(("authorization".into(), format!("Bearer {b}")));
        }
        Ok(HttpTransport {
            id: cfg.id.clone(),
            target: Arc::new(target),
            client,
            headers: Arc::new(headers),
            timeout: cfg.timeout,
            sink,
            sessions: moka::sync::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_idle(cfg.idle_timeout)
                .build(),
            opening: tokio::sync::Mutex::new(()),
            users: Arc::new(Mutex::new(HashMap::new())),
            follower: std::sync::Once::new(),
            downstream,
            modern: cfg.protocol == Some(UpstreamProtocol::V2026_07_28),
        })
    }

    /// Whether the server is spoken to in 2026-07-28 (`protocol: 2026-07-28`).
    pub fn modern(&self) -> bool {
        self.modern
    }

    /// The URL, for administrators.
    pub fn location(&self) -> String {
        self.target.url()
    }

    /// The session of `user` ("" for discovery), initialized on first use.
    pub async fn peer(
        &self,
        user: &str,
        subject: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Arc<Peer>, LinkError> {
        self.follower.call_once(|| {
            tokio::spawn(follow_ends(
                self.id.clone(),
                self.downstream.clone(),
                self.sessions.clone(),
                Arc::downgrade(&self.users),
            ));
        });
        if let Some(p) = self.sessions.get(user) {
            return Ok(p);
        }
        let _one_at_a_time = self.opening.lock().await;
        if let Some(p) = self.sessions.get(user) {
            return Ok(p);
        }
        if let Err(e) = self.target.resolve().await {
            return Err(LinkError::Failed(e.to_string()));
        }
        let link = Arc::new(HttpLink {
            backend: self.id.clone(),
            target: self.target.clone(),
            client: self.client.clone(),
            headers: self.headers.clone(),
            timeout: self.timeout,
            sink: self.sink.clone(),
            session_id: Mutex::new(None),
            version: Mutex::new(None),
            authorization: Mutex::new(None),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            modern: self.modern,
        });
        let peer = if self.modern {
            // No standalone stream either: a 2026-07-28 server's catalog changes are found
            // by the periodic discovery.
            super::discover_modern(
                link.clone(),
                authorization.map(str::to_string),
                self.timeout,
            )
            .await?
        } else {
            let peer = super::initialize(
                link.clone(),
                authorization.map(str::to_string),
                self.timeout,
            )
            .await?;
            if let Ok(mut v) = link.version.lock() {
                *v = Some(peer.init.version.clone());
            }
            tokio::spawn(listen(Arc::downgrade(&link)));
            peer
        };
        let peer = Arc::new(peer);
        self.sessions.insert(user.to_string(), peer.clone());
        if let Some(sub) = subject {
            let mut users = lock(&self.users);
            if users.len() as u64 >= MAX_SESSIONS {
                users.retain(|_, u| self.sessions.contains_key(u));
            }
            users.insert(SessionClaims::bind_subject(sub), user.to_string());
        }
        Ok(peer)
    }

    /// Drops the session of `user` if it is still `peer` (expired upstream).
    pub fn forget(&self, user: &str, peer: &Arc<Peer>) {
        if self
            .sessions
            .get(user)
            .is_some_and(|p| Arc::ptr_eq(&p, peer))
        {
            self.sessions.invalidate(user);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// How often idle expiries (downstream and upstream sessions) are applied.
const SWEEP: Duration = Duration::from_secs(1);

/// Ends the upstream session of a user whose last downstream session ended, and applies
/// idle expiries on time (dropping an upstream session sends its `DELETE`), while the
/// transport lives.
async fn follow_ends(
    backend: String,
    downstream: Arc<SessionManager>,
    sessions: moka::sync::Cache<String, Arc<Peer>>,
    users: std::sync::Weak<Mutex<HashMap<[u8; 16], String>>>,
) {
    let mut ends = downstream.subject_ends();
    let mut sweep = tokio::time::interval(SWEEP);
    loop {
        let ended = tokio::select! {
            e = ends.recv() => match e {
                Ok(subject) => Some(subject),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(%backend, missed = n, "missed the end of downstream sessions; their upstream sessions will idle out");
                    None
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = sweep.tick() => None,
        };
        let Some(users) = users.upgrade() else { return };
        if let Some(subject) = ended {
            let user = lock(&users).remove(&subject);
            if let Some(user) = user {
                if sessions.contains_key(&user) {
                    tracing::debug!(%backend, "the user's last downstream session ended; ending its upstream session");
                    sessions.invalidate(&user);
                }
            }
        } else {
            downstream.sweep();
            sessions.run_pending_tasks();
        }
    }
}

/// One upstream session.
struct HttpLink {
    backend: String,
    target: Arc<Target>,
    client: Arc<HttpClient>,
    headers: Arc<Vec<(String, String)>>,
    timeout: Duration,
    sink: SinkRef,
    session_id: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    /// The per-call credential this session last sent (`UpstreamAuth`): what its requests
    /// without one of their own carry (the standalone stream, `DELETE`, discovery's lists).
    authorization: Mutex<Option<String>>,
    next_id: AtomicU64,
    alive: AtomicBool,
    /// Speaks 2026-07-28 (see [`HttpTransport`]).
    modern: bool,
}

impl HttpLink {
    fn session_id(&self) -> Option<String> {
        self.session_id.lock().ok().and_then(|s| s.clone())
    }

    fn headers(&self, authorization: Option<&str>) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = self.headers.as_ref().clone();
        h.push((
            "accept".into(),
            "application/json, text/event-stream".into(),
        ));
        let authorization = match authorization {
            Some(a) => {
                if let Ok(mut last) = self.authorization.lock() {
                    if last.as_deref() != Some(a) {
                        *last = Some(a.to_string());
                    }
                }
                Some(a.to_string())
            }
            None => self.authorization.lock().ok().and_then(|a| a.clone()),
        };
        if let Some(a) = authorization {
            h.retain(|(k, _)| k != "authorization");
            h.push(("authorization".into(), a));
        }
        if let Some(s) = self.session_id() {
            h.push(("mcp-session-id".into(), s));
        }
        if let Some(v) = self.version.lock().ok().and_then(|v| v.clone()) {
            h.push(("mcp-protocol-version".into(), v));
        }
        h
    }

    async fn post(
        &self,
        body: Vec<u8>,
        authorization: Option<&str>,
        mirrored: Vec<(String, String)>,
    ) -> Result<OpenReply, String> {
        let mut headers = self.headers(authorization);
        headers.extend(mirrored);
        self.client
            .send(
                &self.target,
                "POST",
                &headers,
                Some(Bytes::from(body)),
                self.timeout,
            )
            .await
            .map_err(|f| describe(&f))
    }

    /// A one-way message (notification, answer): the server answers 202.
    async fn send_one_way(&self, body: Vec<u8>, authorization: Option<&str>, what: &str) {
        match self.post(body, authorization, Vec::new()).await {
            Ok(r) if (200..300).contains(&r.status) => {
                let _ = self.client.read_whole(r, 64 * 1024).await;
            }
            Ok(r) => {
                tracing::warn!(backend = %self.backend, status = r.status, "the server refused {what}")
            }
            Err(why) => tracing::warn!(backend = %self.backend, "sending {what} failed: {why}"),
        }
    }
}

fn describe(f: &TransportFailure) -> String {
    describe_transport_failure(f)
}

#[async_trait]
impl Link for HttpLink {
    async fn request(
        &self,
        method: &str,
        params: Value,
        call: Outgoing,
    ) -> Result<(Value, Exchange), LinkError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (params, mirrored) = if self.modern {
            let params = modern::with_request_meta(params, call.client_caps);
            let mut mirrored: Vec<(String, String)> = modern::mirrored_headers(method, &params)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            mirrored.extend(call.headers.iter().cloned());
            (params, mirrored)
        } else {
            (params, Vec::new())
        };
        let body = rules::request(id, method, &params);
        let had_session = self.session_id().is_some();
        let mut reply = self
            .post(body, call.authorization.as_deref(), mirrored)
            .await
            .map_err(LinkError::Failed)?;
        if reply.status == 404 && had_session {
            self.alive.store(false, Ordering::Relaxed);
            return Err(LinkError::SessionGone);
        }
        if method == "initialize" {
            if let (Some(s), Ok(mut slot)) = (reply.session_id.clone(), self.session_id.lock()) {
                *slot = Some(s);
            }
        }
        if !(200..300).contains(&reply.status) {
            let body = reply.body(4096).await.unwrap_or_default();
            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            let why = format!(
                "the server answered {method} with HTTP {}{}{}",
                reply.status,
                if text.is_empty() { "" } else { ": " },
                text.trim()
            );
            return Err(if reply.status == 401 {
                LinkError::Unauthorized(why)
            } else {
                LinkError::Failed(why)
            });
        }
        let (tx, rx) = mpsc::channel(EXCHANGE_QUEUE);
        let id = Value::from(id);
        let content_type = reply
            .content_type
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            let sink = self.sink.clone();
            let backend = self.backend.clone();
            tokio::spawn(read_events(reply, tx, id.clone(), call.key, sink, backend));
        } else if content_type.starts_with("application/json") {
            let item = match self.client.read_whole(reply, MAX_MESSAGE_BYTES).await {
                Ok(body) => match serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(rules::classify)
                {
                    Some(m) => Exchanged::Message(m),
                    None => Exchanged::Failed(format!(
                        "the server answered {method} with something that is not a JSON-RPC message"
                    )),
                },
                Err(f) => Exchanged::Failed(describe(&f)),
            };
            let _ = tx.send(item).await;
        } else {
            return Err(LinkError::Failed(format!(
                "the server answered {method} with HTTP {} and content type {:?} (expected JSON or an event stream)",
                reply.status, reply.content_type
            )));
        }
        Ok((id, rx))
    }

    async fn notify(&self, method: &str, params: Value, authorization: Option<String>) {
        if self.modern {
            // 2026-07-28: a call is cancelled by closing its stream (dropping the exchange
            // does), and nothing else is notified.
            tracing::debug!(backend = %self.backend, %method, "not sent to a 2026-07-28 server");
            return;
        }
        let body = rules::notification(method, &params);
        self.send_one_way(body, authorization.as_deref(), method)
            .await;
    }

    async fn respond(
        &self,
        id: Value,
        outcome: Result<Value, Value>,
        authorization: Option<String>,
    ) {
        if self.modern {
            // A 2026-07-28 server sends no requests to answer (its input requests come in
            // results, and the call is retried instead).
            tracing::warn!(backend = %self.backend, "a 2026-07-28 server sent a request mid-call; not answered");
            return;
        }
        let body = rules::response(&id, &outcome);
        self.send_one_way(body, authorization.as_deref(), "an answer")
            .await;
    }

    fn alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

impl Drop for HttpLink {
    /// Ends the upstream session (`DELETE`), in the background.
    fn drop(&mut self) {
        if self.session_id().is_none() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let target = self.target.clone();
        let backend = self.backend.clone();
        // With the session id, its protocol version and the credential it last used.
        let headers = self.headers(None);
        rt.spawn(async move {
            match client
                .send(&target, "DELETE", &headers, None, Duration::from_secs(5))
                .await
            {
                Ok(r) => tracing::debug!(%backend, status = r.status, "upstream session ended"),
                Err(f) => tracing::debug!(%backend, "ending the upstream session failed: {}", describe(&f)),
            }
        });
    }
}

/// How long the session's standalone stream may stay silent before it is opened again.
const LISTEN_IDLE: Duration = Duration::from_secs(300);
/// The longest wait before opening the standalone stream again after a failure.
const LISTEN_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The session's standalone stream (GET): what the server sends outside any call
/// (`list_changed`, `resources/updated` of a subscription) goes to the sink. Opened again
/// with backoff while the session lives; given up when the server does not offer one (405).
async fn listen(link: std::sync::Weak<HttpLink>) {
    let mut failures: u32 = 0;
    loop {
        let Some((client, target, headers, sink, backend)) = link.upgrade().and_then(|l| {
            l.alive().then(|| {
                (
                    l.client.clone(),
                    l.target.clone(),
                    l.headers(None),
                    l.sink.clone(),
                    l.backend.clone(),
                )
            })
        }) else {
            return;
        };
        let mut headers = headers;
        headers.retain(|(k, _)| k != "accept");
        headers.push(("accept".into(), "text/event-stream".into()));
        let opened = client
            .send(&target, "GET", &headers, None, LISTEN_IDLE)
            .await;
        match opened {
            Ok(r) if r.status == 405 || r.status == 404 => return,
            Ok(mut r) if r.status == 200 => {
                failures = 0;
                let mut decoder = SseDecoder::new(MAX_MESSAGE_BYTES);
                while let Ok(Some(chunk)) = r.chunk().await {
                    if link.strong_count() == 0 {
                        return;
                    }
                    let Ok(events) = decoder.feed(&chunk) else {
                        break;
                    };
                    for data in events {
                        let Some(Upstream::Notification { method, params }) =
                            serde_json::from_slice::<Value>(&data)
                                .ok()
                                .and_then(rules::classify)
                        else {
                            continue;
                        };
                        let delivery = rules::route(&method, &params, &[], None);
                        sink.deliver(&delivery, &params);
                    }
                }
            }
            Ok(r) => {
                tracing::debug!(%backend, status = r.status, "the server refused its standalone stream")
            }
            Err(f) => tracing::debug!(%backend, "the standalone stream failed: {}", describe(&f)),
        }
        failures = failures.saturating_add(1);
        let wait = Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)))
            .min(LISTEN_MAX_BACKOFF);
        tokio::time::sleep(wait).await;
    }
}

/// Reads one request's event stream until its response (or the stream's end), handing the
/// call its messages and the sink what belongs to no call.
async fn read_events(
    mut reply: OpenReply,
    tx: mpsc::Sender<Exchanged>,
    id: Value,
    key: u64,
    sink: SinkRef,
    backend: String,
) {
    let mut decoder = SseDecoder::new(MAX_MESSAGE_BYTES);
    loop {
        let chunk = tokio::select! {
            _ = tx.closed() => return,
            c = reply.chunk() => c,
        };
        let chunk = match chunk {
            Ok(Some(c)) => c,
            Ok(None) => {
                let _ = tx
                    .send(Exchanged::Failed(
                        "the server closed the event stream before answering".into(),
                    ))
                    .await;
                return;
            }
            Err(f) => {
                let _ = tx.send(Exchanged::Failed(describe(&f))).await;
                return;
            }
        };
        let events = match decoder.feed(&chunk) {
            Ok(e) => e,
            Err(why) => {
                let _ = tx.send(Exchanged::Failed(why)).await;
                return;
            }
        };
        for data in events {
            if data.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Some(message) = serde_json::from_slice::<Value>(&data)
                .ok()
                .and_then(rules::classify)
            else {
                tracing::warn!(%backend, "skipping an event that is not a JSON-RPC message");
                continue;
            };
            let done = matches!(&message, Upstream::Response { id: rid, .. } if *rid == id);
            let delivery = match &message {
                Upstream::Notification { method, params } => {
                    rules::route(method, params, &[], Some(key))
                }
                Upstream::Request { method, params, .. } => {
                    rules::route(method, params, &[], Some(key))
                }
                Upstream::Response { .. } => Delivery::Call(key),
            };
            match delivery {
                Delivery::Call(_) | Delivery::Gateway => {
                    if tx.send(Exchanged::Message(message)).await.is_err() {
                        return;
                    }
                }
                other => {
                    if let Upstream::Notification { params, .. } = &message {
                        sink.deliver(&other, params);
                    }
                }
            }
            if done {
                return;
            }
        }
    }
}
