//! Sessions: sealed ids, revocation, idle tracking, and each session's notification stream
//! (event ids, bounded replay buffer, delivery to the newest open GET stream).
//!
//! In a fleet, what replicas must share goes through one narrow seam, [`SessionBus`]
//! (implemented over Redis by the fleet bus, docs/fleet.md; absent, everything stays on this replica):
//! revocations, the sessions used recently (shared idle tracking), and notification events
//! (logged per session fleet-wide and delivered on the replica holding the open stream).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cortex_filters::catalog::CatalogDiff;
use cortex_filters::jsonrpc;
use cortex_filters::scope::GrantedScopes;
use cortex_filters::session::{SessionClaims, SessionError, SessionSealer};
use cortex_filters::sse;
use cortex_filters::version::ProtocolVersion;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};

use crate::clock::unix_now;
use crate::config::SessionsConfig;
use crate::store::SessionStore;

/// Capacity of one stream's outgoing channel; a client that does not read is dropped from
/// delivery (its events stay in the replay buffer).
const STREAM_CHANNEL: usize = 64;

/// Most sessions whose state is kept in memory on this replica.
const MAX_TRACKED_SESSIONS: u64 = 200_000;

/// Why a session id was refused (all answered 404, except `Missing` → 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefusal {
    /// Malformed, tampered, expired, revoked, idle too long, or another caller's.
    #[error("session not found or expired")]
    NotFound,
}

/// What a fleet shares of sessions (the fleet bus implements it over Redis). Every method
/// returns at once: the work happens on the bus's own task.
pub trait SessionBus: Send + Sync {
    /// This replica ended session `nonce` (a DELETE); its id stays refused until
    /// `expires_at` (Unix seconds).
    fn revoked(&self, nonce: [u8; 16], expires_at: u64);
    /// This replica served session `nonce` (called at most every [`TOUCH_EVERY`] per
    /// session and replica).
    fn touched(&self, nonce: [u8; 16]);
    /// A notification for session `nonce` (expiring at `expires_at`): log it fleet-wide and
    /// deliver it where its stream is open. `dedup`: events with the same value for one
    /// session are sent once across the fleet (every replica sees one catalog change).
    /// `false` when the bus cannot take it now (then this replica delivers it itself).
    fn event(&self, nonce: [u8; 16], expires_at: u64, message: Bytes, dedup: Option<u64>) -> bool;
    /// The events of session `nonce` logged after `after`, in order, with their ids; `None`
    /// when the shared log cannot be read (then this replica's own buffer replays).
    fn replay(
        &self,
        nonce: [u8; 16],
        after: Option<u64>,
    ) -> futures::future::BoxFuture<'static, Option<Vec<(u64, Bytes)>>>;
}

/// How often a replica tells the fleet that it serves a session (at most).
pub const TOUCH_EVERY: Duration = Duration::from_secs(5);

/// Per-session state held by this replica.
pub struct SessionState {
    /// The session's claims.
    pub claims: SessionClaims,
    inner: Mutex<StreamState>,
    /// When this replica last told the fleet it serves this session (Unix seconds).
    touched_at: std::sync::atomic::AtomicU64,
}

struct StreamState {
    grants: Option<Arc<GrantedScopes>>,
    next_event_id: u64,
    buffer: VecDeque<(u64, Bytes)>,
    streams: Vec<mpsc::Sender<Bytes>>,
}

/// An open GET stream's receiving side plus what to send first.
pub struct StreamHandle {
    /// Events to write first: the priming event, then any replayed events.
    pub preamble: Vec<Bytes>,
    /// Live events.
    pub rx: mpsc::Receiver<Bytes>,
}

/// All sessions of this replica.
pub struct SessionManager {
    sealer: SessionSealer,
    idle: Duration,
    absolute: Duration,
    replay: usize,
    max_streams: usize,
    states: moka::sync::Cache<[u8; 16], Arc<SessionState>>,
    revoked: moka::sync::Cache<[u8; 16], ()>,
    /// Catalog changes for the 2026-07-28 listen streams (which have no session): each
    /// stream filters by its caller's scopes and its subscription.
    catalog_changes: broadcast::Sender<Arc<CatalogDiff>>,
    /// Sealed `requestState` of multi-round-trip requests, and the nonces already used.
    request_states: RequestStates,
    /// Where ends (DELETE) are shared with the other replicas, when there is a store.
    shared_ends: std::sync::OnceLock<Arc<dyn SessionStore>>,
    /// Ends the store could not record yet (it was down), retried by [`RevocationSync`].
    unshared_ends: Arc<UnsharedEnds>,
    /// Sessions tracked per subject, and who is told when a subject's last one ends.
    ends: Arc<SubjectEnds>,
    /// Sessions other replicas served recently (shared idle tracking), from the bus.
    seen_elsewhere: moka::sync::Cache<[u8; 16], ()>,
    /// What the fleet shares (set once at start; absent for a lone gateway).
    bus: std::sync::OnceLock<Arc<dyn SessionBus>>,
    /// Whether `sessions.secret` is configured (the key is the same on every start).
    key_fingerprint: Option<String>,
}

/// Capacity of the subject-end broadcast; a listener that lags past it misses ends (its
/// upstream sessions then only idle out).
const SUBJECT_ENDS: usize = 1024;

/// How many tracked sessions each subject has; when the last one ends (DELETE, idle expiry,
/// eviction), the subject's binding ([`SessionClaims::bind_subject`]) is broadcast, so that
/// what was kept for that user alone (a native backend's upstream session) can end too.
struct SubjectEnds {
    live: Mutex<std::collections::HashMap<[u8; 16], usize>>,
    ended: broadcast::Sender<[u8; 16]>,
}

impl SubjectEnds {
    fn began(&self, subject: [u8; 16]) {
        let mut live = match self.live.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *live.entry(subject).or_insert(0) += 1;
    }

    fn ended(&self, subject: [u8; 16]) {
        let last = {
            let mut live = match self.live.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            match live.get_mut(&subject) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    live.remove(&subject);
                    true
                }
                None => false,
            }
        };
        if last && self.ended.receiver_count() > 0 {
            let _ = self.ended.send(subject);
        }
    }
}

/// Capacity of the catalog-change broadcast; a listen stream that lags past it is told its
/// lists may have changed (every list it subscribed to), which is always safe.
const CATALOG_CHANGES: usize = 64;

/// Most used request-state nonces remembered on this replica (each until its state expires).
const MAX_USED_STATES: u64 = 100_000;

/// The sealer of multi-round-trip `requestState` (2026-07-28) and its replay set: a state is
/// accepted once. Keyed apart from session ids (its own key and associated data), so neither
/// can be presented as the other.
pub struct RequestStates {
    sealer: cortex_filters::modern::state::RequestStateSealer,
    used: moka::sync::Cache<String, Duration>,
}

impl RequestStates {
    fn new(session_key: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"cortex/request-state-key/v1");
        h.update(session_key);
        let key: [u8; 32] = h.finalize().into();
        RequestStates {
            sealer: cortex_filters::modern::state::RequestStateSealer::new(&key),
            used: moka::sync::Cache::builder()
                .max_capacity(MAX_USED_STATES)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    /// The sealer (seal on an input-required answer, open on the retry).
    pub fn sealer(&self) -> &cortex_filters::modern::state::RequestStateSealer {
        &self.sealer
    }

    /// Marks an opened state as used; `false` when it was used before (a replay). The nonce
    /// is remembered until the state expires (the sealer refuses it after that anyway).
    pub fn first_use(&self, state: &cortex_filters::modern::state::RequestState) -> bool {
        let ttl = Duration::from_secs(state.expires_at.saturating_sub(unix_now()).clamp(1, 3600));
        self.used
            .entry(state.replay_key())
            .or_insert(ttl)
            .is_fresh()
    }
}

/// Keeps a used nonce for the time stored with it: until its state would have expired.
struct UntilExpiry;

impl moka::Expiry<String, Duration> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        ttl: &Duration,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(*ttl)
    }
}

impl SessionManager {
    /// Builds the manager; the sealing key comes from `sessions.secret` or is random.
    pub fn new(cfg: &SessionsConfig) -> Self {
        let key_fingerprint = cfg.secret.as_ref().map(|secret| {
            let mut h = Sha256::new();
            h.update(b"cortex-gateway fleet key fingerprint v1\0sessions\0");
            h.update(derive_key(secret));
            hex16(&h.finalize())
        });
        let key = match &cfg.secret {
            Some(secret) => derive_key(secret),
            None => {
                let mut k = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut k);
                k
            }
        };
        let ends = Arc::new(SubjectEnds {
            live: Mutex::new(std::collections::HashMap::new()),
            ended: broadcast::channel(SUBJECT_ENDS).0,
        });
        let on_removal = ends.clone();
        SessionManager {
            sealer: SessionSealer::new(&key),
            idle: cfg.idle_timeout,
            absolute: cfg.absolute_timeout,
            replay: cfg.replay_buffer.max(1),
            max_streams: cfg.max_streams_per_session.max(1),
            states: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_SESSIONS)
                .time_to_idle(cfg.idle_timeout)
                .eviction_listener(move |_, state: Arc<SessionState>, _| {
                    on_removal.ended(state.claims.subject)
                })
                .build(),
            revoked: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_SESSIONS)
                .time_to_live(cfg.absolute_timeout)
                .build(),
            catalog_changes: broadcast::channel(CATALOG_CHANGES).0,
            request_states: RequestStates::new(&key),
            shared_ends: std::sync::OnceLock::new(),
            unshared_ends: Arc::default(),
            ends,
            seen_elsewhere: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_SESSIONS)
                .time_to_live(cfg.idle_timeout + TOUCH_EVERY)
                .build(),
            bus: std::sync::OnceLock::new(),
            key_fingerprint,
        }
    }

    /// Attaches the fleet's bus (once, at start, before serving).
    pub fn attach_bus(&self, bus: Arc<dyn SessionBus>) {
        let _ = self.bus.set(bus);
    }

    /// A fingerprint of the session key (never the key), when it comes from
    /// `sessions.secret`; `None` for a random per-process key.
    pub fn key_fingerprint(&self) -> Option<&str> {
        self.key_fingerprint.as_deref()
    }

    /// Another replica ended session `nonce` (from the bus).
    pub fn revoked_elsewhere(&self, nonce: [u8; 16]) {
        self.end_locally(nonce);
    }

    /// Other replicas served these sessions recently (from the bus).
    pub fn seen_elsewhere(&self, nonces: &[[u8; 16]]) {
        for n in nonces {
            self.seen_elsewhere.insert(*n, ());
        }
    }

    /// Delivers an event the fleet logged with id `id` to this replica's stream of session
    /// `nonce`, if it has one (from the bus).
    pub fn deliver(&self, nonce: [u8; 16], id: u64, message: &[u8]) {
        if let Some(state) = self.states.get(&nonce) {
            state.record_and_send(id, message, self.replay);
        }
    }

    /// Delivers a notification the bus could not log (Redis down): this replica's own ids.
    pub fn deliver_local(&self, nonce: [u8; 16], message: &[u8]) {
        if let Some(state) = self.states.get(&nonce) {
            state.push(message, self.replay);
        }
    }

    /// The subjects whose last session on this replica ended (DELETE, idle expiry), as
    /// [`SessionClaims::bind_subject`] bindings.
    pub fn subject_ends(&self) -> broadcast::Receiver<[u8; 16]> {
        self.ends.ended.subscribe()
    }

    /// Applies pending expiries now (an idle session ends when this runs, not only when the
    /// next request touches the table).
    pub fn sweep(&self) {
        self.states.run_pending_tasks();
    }

    fn track(&self, nonce: [u8; 16], state: Arc<SessionState>) {
        self.ends.began(state.claims.subject);
        self.states.insert(nonce, state);
    }

    /// Subscribes to catalog changes (a 2026-07-28 listen stream).
    pub fn catalog_changes(&self) -> broadcast::Receiver<Arc<CatalogDiff>> {
        self.catalog_changes.subscribe()
    }

    /// Sealed request states of multi-round-trip requests.
    pub fn request_states(&self) -> &RequestStates {
        &self.request_states
    }

    /// Creates a session for `sub` and returns its id.
    pub fn create(
        &self,
        sub: &str,
        version: ProtocolVersion,
        client_caps: u8,
        grants: Arc<GrantedScopes>,
    ) -> String {
        let now = unix_now();
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let claims = SessionClaims {
            nonce,
            subject: SessionClaims::bind_subject(sub),
            version,
            client_caps,
            issued_at: now,
            expires_at: now.saturating_add(self.absolute.as_secs().max(1)),
        };
        let id = self.sealer.seal(&claims);
        self.track(nonce, Arc::new(SessionState::new(claims, Some(grants))));
        id
    }

    /// Validates a presented id for `sub` and refreshes its idle timer.
    pub fn validate(
        &self,
        id: &str,
        sub: &str,
        grants: &Arc<GrantedScopes>,
    ) -> Result<Arc<SessionState>, SessionRefusal> {
        let claims = self
            .sealer
            .open(id, unix_now())
            .map_err(|_: SessionError| SessionRefusal::NotFound)?;
        if !claims.belongs_to(sub) || self.revoked.contains_key(&claims.nonce) {
            return Err(SessionRefusal::NotFound);
        }
        if let Some(state) = self.states.get(&claims.nonce) {
            state.set_grants(grants.clone());
            self.touch(&state);
            return Ok(state);
        }
        // Not tracked here: evicted after idling, or created by another replica / before a
        // restart. Accept it only while it could not have idled out yet: issued within the
        // idle timeout, or served by another replica of the fleet within it.
        let now = unix_now();
        if now.saturating_sub(claims.issued_at) > self.idle.as_secs()
            && !self.seen_elsewhere.contains_key(&claims.nonce)
        {
            return Err(SessionRefusal::NotFound);
        }
        let nonce = claims.nonce;
        let state = Arc::new(SessionState::new(claims, Some(grants.clone())));
        self.track(nonce, state.clone());
        self.touch(&state);
        Ok(state)
    }

    /// Tells the fleet this replica serves `state`, at most every [`TOUCH_EVERY`].
    fn touch(&self, state: &SessionState) {
        let Some(bus) = self.bus.get() else { return };
        let now = unix_now();
        let last = state.touched_at.load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(last) >= TOUCH_EVERY.as_secs() {
            state
                .touched_at
                .store(now, std::sync::atomic::Ordering::Relaxed);
            bus.touched(state.claims.nonce);
        }
    }

    /// Ends a session (DELETE): its id is refused from now on, on this replica at once, on
    /// the others of a fleet as soon as its bus tells them, and through the store within a
    /// second ([`RevocationSync`]). The store owns ends: its record outlives restarts and
    /// Redis, and an end it could not take (down) is retried until it can; the bus only
    /// makes them arrive sooner, and carries them while the store is down.
    pub fn revoke(&self, state: &SessionState) {
        if let Some(bus) = self.bus.get() {
            bus.revoked(state.claims.nonce, state.claims.expires_at);
        }
        self.end_locally(state.claims.nonce);
        if let Ok(mut s) = state.inner.lock() {
            s.streams.clear();
        }
        let Some(store) = self.shared_ends.get().cloned() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let nonce = state.claims.nonce;
        let expires_at = state.claims.expires_at;
        let unshared = self.unshared_ends.clone();
        runtime.spawn(async move {
            if let Err(e) = record_end(store.as_ref(), nonce, expires_at).await {
                tracing::warn!(error = %e, "a session end could not be recorded in the store yet (unavailable); retried every second");
                unshared.push(nonce, expires_at);
            }
        });
    }

    /// Shares session ends (DELETE) through `store` (set once, when the store exists).
    pub fn share_ends(&self, store: Arc<dyn SessionStore>) {
        let _ = self.shared_ends.set(store);
    }

    /// Refuses the session `nonce` from now on and drops its state on this replica (its open
    /// streams close).
    fn end_locally(&self, nonce: [u8; 16]) {
        self.revoked.insert(nonce, ());
        if let Some(state) = self.states.get(&nonce) {
            if let Ok(mut s) = state.inner.lock() {
                s.streams.clear();
            }
        }
        self.states.invalidate(&nonce);
    }

    /// A session ended on another replica (hex nonce, as stored); false when malformed.
    pub fn ended_elsewhere(&self, nonce_hex: &str) -> bool {
        match unhex(nonce_hex) {
            Some(nonce) => {
                self.end_locally(nonce);
                true
            }
            None => false,
        }
    }

    /// Opens a notification stream, replaying the events after `last_event_id`: from the
    /// fleet's shared log when there is one (the client may have been on another replica),
    /// else from this replica's buffer.
    pub async fn open_stream_shared(
        &self,
        state: &SessionState,
        last_event_id: Option<u64>,
    ) -> StreamHandle {
        let shared = match self.bus.get() {
            Some(bus) => bus.replay(state.claims.nonce, last_event_id).await,
            None => None,
        };
        self.open_stream_with(state, last_event_id, shared)
    }

    /// Opens a notification stream, replaying buffered events after `last_event_id`.
    pub fn open_stream(&self, state: &SessionState, last_event_id: Option<u64>) -> StreamHandle {
        self.open_stream_with(state, last_event_id, None)
    }

    fn open_stream_with(
        &self,
        state: &SessionState,
        last_event_id: Option<u64>,
        shared: Option<Vec<(u64, Bytes)>>,
    ) -> StreamHandle {
        let (tx, rx) = mpsc::channel(STREAM_CHANNEL);
        let mut s = match state.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut last_sent = s.next_event_id.saturating_sub(1);
        let mut replayed = Vec::new();
        match shared {
            Some(events) => {
                for (id, message) in events {
                    last_sent = last_sent.max(id);
                    if last_event_id.is_some() {
                        replayed.push(Bytes::from(sse::message_event(
                            Some(&id.to_string()),
                            &message,
                        )));
                    }
                }
            }
            None => {
                if let Some(after) = last_event_id {
                    for (id, event) in s.buffer.iter() {
                        if *id > after {
                            replayed.push(event.clone());
                        }
                    }
                }
            }
        }
        let mut preamble = vec![Bytes::from(sse::priming_event(&last_sent.to_string()))];
        preamble.extend(replayed);
        s.streams.retain(|t| !t.is_closed());
        s.streams.push(tx);
        while s.streams.len() > self.max_streams {
            s.streams.remove(0);
        }
        StreamHandle { preamble, rx }
    }

    /// Sends list_changed notifications to every tracked session whose visible catalog
    /// changed.
    pub fn notify_catalog_change(&self, diff: &CatalogDiff) {
        self.notify_catalog_change_of(diff, None);
    }

    /// The same, for the catalog whose content digest is `digest`: in a fleet every replica
    /// sees one change, and each session is told once per catalog state.
    pub fn notify_catalog_change_of(&self, diff: &CatalogDiff, digest: Option<u64>) {
        if self.catalog_changes.receiver_count() > 0 {
            // No listen stream open: nothing to tell (a send error only means that).
            let _ = self.catalog_changes.send(Arc::new(diff.clone()));
        }
        for (_, state) in self.states.iter() {
            let Some(grants) = state.grants() else {
                continue;
            };
            let lists = [
                (
                    diff.tools_changed_for(&grants),
                    "notifications/tools/list_changed",
                ),
                (
                    diff.prompts_changed_for(&grants),
                    "notifications/prompts/list_changed",
                ),
                (
                    diff.resources_changed_for(&grants),
                    "notifications/resources/list_changed",
                ),
            ];
            for (i, (changed, method)) in lists.into_iter().enumerate() {
                if changed {
                    let dedup = digest.map(|d| d.rotate_left(i as u32 * 8) ^ i as u64);
                    self.send(&state, &jsonrpc::notification(method, None), dedup);
                }
            }
        }
    }

    /// Sends one notification to a session's streams (and its replay buffer): how a native
    /// backend's `notifications/resources/updated` reaches a subscribed session.
    pub fn notify(&self, state: &SessionState, message: &[u8]) {
        self.send(state, message, None);
    }

    /// One notification: through the fleet's bus when there is one (logged fleet-wide,
    /// delivered where the stream is open), else into this replica's buffer and stream.
    fn send(&self, state: &SessionState, message: &[u8], dedup: Option<u64>) {
        if let Some(bus) = self.bus.get() {
            let claims = &state.claims;
            if bus.event(
                claims.nonce,
                claims.expires_at,
                Bytes::copy_from_slice(message),
                dedup,
            ) {
                return;
            }
        }
        state.push(message, self.replay);
    }

    /// Number of sessions tracked on this replica.
    pub fn tracked(&self) -> u64 {
        self.states.run_pending_tasks();
        self.states.entry_count()
    }

    /// Notification streams open on this replica (a walk over the sessions: for a scrape,
    /// not for the request path).
    pub fn open_streams(&self) -> u64 {
        self.states
            .iter()
            .map(|(_, s)| {
                let inner = match s.inner.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                inner.streams.iter().filter(|t| !t.is_closed()).count() as u64
            })
            .sum()
    }
}

impl SessionState {
    fn new(claims: SessionClaims, grants: Option<Arc<GrantedScopes>>) -> Self {
        SessionState {
            claims,
            inner: Mutex::new(StreamState {
                grants,
                next_event_id: 1,
                buffer: VecDeque::new(),
                streams: Vec::new(),
            }),
            touched_at: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.claims.version
    }

    /// The client's declared capabilities (`cortex_filters::session::caps` bits).
    pub fn client_caps(&self) -> u8 {
        self.claims.client_caps
    }

    fn grants(&self) -> Option<Arc<GrantedScopes>> {
        self.inner.lock().ok().and_then(|s| s.grants.clone())
    }

    fn set_grants(&self, grants: Arc<GrantedScopes>) {
        if let Ok(mut s) = self.inner.lock() {
            // Callers of one principal share one `Arc`: compare pointers first, values only
            // when they differ, so the common case costs nothing.
            let same = s
                .grants
                .as_ref()
                .is_some_and(|g| Arc::ptr_eq(g, &grants) || **g == *grants);
            if !same {
                s.grants = Some(grants);
            }
        }
    }

    /// Buffers one message as an event and delivers it to the newest live stream.
    fn push(&self, message: &[u8], replay: usize) {
        let mut s = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let id = s.next_event_id;
        s.buffer_and_send(id, message, replay);
    }

    /// Buffers one message as the fleet's event `id` and delivers it to the newest live
    /// stream; an id not above the last one sent here (a duplicate) is skipped.
    fn record_and_send(&self, id: u64, message: &[u8], replay: usize) {
        let mut s = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if id >= s.next_event_id {
            s.buffer_and_send(id, message, replay);
        }
    }
}

impl StreamState {
    fn buffer_and_send(&mut self, id: u64, message: &[u8], replay: usize) {
        self.next_event_id = id + 1;
        let event = Bytes::from(sse::message_event(Some(&id.to_string()), message));
        self.buffer.push_back((id, event.clone()));
        while self.buffer.len() > replay {
            self.buffer.pop_front();
        }
        self.streams.retain(|t| !t.is_closed());
        if let Some(newest) = self.streams.last() {
            // A full channel means the client is not reading: it can resume with
            // Last-Event-ID from the replay buffer.
            let _ = newest.try_send(event);
        }
    }
}

/// The first 16 hex characters of a digest (a fingerprint, never a key).
fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Derives the 32-byte sealing key from the configured secret (once, at start).
fn derive_key(secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"cortex-gateway session key v1\0");
    h.update(secret.as_bytes());
    h.finalize().into()
}

fn hex(bytes: &[u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Most session ends kept for a retry while the store is down; past it the oldest are
/// dropped (logged): those ids are then refused only where the bus carried the end.
const MAX_UNSHARED_ENDS: usize = 10_000;

/// Session ends (nonce, expiry in Unix seconds) not recorded in the store yet.
#[derive(Default)]
struct UnsharedEnds(Mutex<VecDeque<([u8; 16], u64)>>);

impl UnsharedEnds {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<([u8; 16], u64)>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn push(&self, nonce: [u8; 16], expires_at: u64) {
        let mut q = self.lock();
        if q.len() >= MAX_UNSHARED_ENDS {
            q.pop_front();
            tracing::warn!("too many session ends wait for the store; the oldest is dropped");
        }
        q.push_back((nonce, expires_at));
    }
}

/// Records the end of session `nonce` now. The end time is when it is written, not when the
/// DELETE was answered, so that replicas reading ends after their last read see a retried one.
async fn record_end(
    store: &dyn SessionStore,
    nonce: [u8; 16],
    expires_at: u64,
) -> Result<(), crate::store::StoreError> {
    let expires_ms = i64::try_from(expires_at.saturating_mul(1000)).unwrap_or(i64::MAX);
    store
        .revoke_session(&hex(&nonce), crate::clock::now_ms(), expires_ms)
        .await
}

/// How often the session ends of the other replicas are read from the store.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Ends recorded this long before the newest one seen are read again, so that replicas whose
/// clocks differ a little miss none.
const SYNC_OVERLAP_MS: i64 = 10_000;

/// Reads the session ends (DELETE) recorded by every replica sharing the store, every
/// second, and refuses those ids here too. At start it reads every end not yet expired, so
/// an id deleted before a restart stays refused.
pub struct RevocationSync {
    sessions: Arc<SessionManager>,
    store: Arc<dyn SessionStore>,
}

impl RevocationSync {
    /// Syncs `sessions` with the ends in `store`.
    pub fn new(sessions: Arc<SessionManager>, store: Arc<dyn SessionStore>) -> Self {
        RevocationSync { sessions, store }
    }

    /// Records the ends the store could not take when they happened (it was down), oldest
    /// first, until one fails again; drops those whose session has expired meanwhile.
    pub async fn retry_unshared(&self) {
        let waiting: Vec<([u8; 16], u64)> = self.sessions.unshared_ends.lock().drain(..).collect();
        let now = unix_now();
        let mut rest = waiting.into_iter().filter(|(_, exp)| *exp > now);
        while let Some((nonce, expires_at)) = rest.next() {
            if record_end(self.store.as_ref(), nonce, expires_at)
                .await
                .is_err()
            {
                let mut q = self.sessions.unshared_ends.lock();
                for (i, item) in std::iter::once((nonce, expires_at)).chain(rest).enumerate() {
                    q.insert(i, item);
                }
                while q.len() > MAX_UNSHARED_ENDS {
                    q.pop_front();
                }
                return;
            }
        }
    }

    /// Records the ends waiting for the store, then reads the ends after `after_ms`;
    /// returns the newest end time seen.
    pub async fn run_once(&self, after_ms: i64) -> i64 {
        self.retry_unshared().await;
        let mut newest = after_ms;
        let mut since = after_ms.saturating_sub(SYNC_OVERLAP_MS).max(0);
        loop {
            let rows = match self
                .store
                .session_revocations_since(since, crate::clock::now_ms())
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::debug!(error = %e, "session ends not read (store unavailable)");
                    return newest;
                }
            };
            let full = rows.len() >= 10_000;
            for (nonce, at) in rows {
                self.sessions.ended_elsewhere(&nonce);
                newest = newest.max(at);
            }
            if !full {
                return newest;
            }
            since = newest;
        }
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for RevocationSync {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut newest = 0;
        loop {
            newest = self.run_once(newest).await;
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(SYNC_EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nonces_round_trip_through_hex_and_malformed_ones_are_refused() {
        let nonce = [0xa5u8; 16];
        assert_eq!(super::unhex(&super::hex(&nonce)), Some(nonce));
        assert_eq!(super::unhex("zz"), None);
        assert_eq!(super::unhex(&"g".repeat(32)), None);
        assert_eq!(super::unhex(&"é".repeat(16)), None);
    }

    use super::*;
    use cortex_filters::modern::state::{request_digest, RequestState};
    use serde_json::json;

    #[test]
    fn a_subjects_end_is_told_when_its_last_session_ends() {
        let manager = SessionManager::new(&SessionsConfig::default());
        let mut ends = manager.subject_ends();
        let grants = Arc::new(GrantedScopes::new(
            ["mcp:x"],
            &cortex_filters::scope::ScopeRules::default(),
        ));
        let caps = 0;
        let v = ProtocolVersion::V2025_11_25;
        let a1 = manager.create("alice", v, caps, grants.clone());
        let a2 = manager.create("alice", v, caps, grants.clone());
        let b = manager.create("bob", v, caps, grants.clone());
        let first = manager.validate(&a1, "alice", &grants).expect("a1");
        manager.revoke(&first);
        manager.sweep();
        assert!(ends.try_recv().is_err(), "alice still has a session");
        let second = manager.validate(&a2, "alice", &grants).expect("a2");
        manager.revoke(&second);
        manager.sweep();
        assert_eq!(
            ends.try_recv().ok(),
            Some(SessionClaims::bind_subject("alice"))
        );
        let bob = manager.validate(&b, "bob", &grants).expect("b");
        manager.revoke(&bob);
        manager.sweep();
        assert_eq!(
            ends.try_recv().ok(),
            Some(SessionClaims::bind_subject("bob"))
        );
        assert!(ends.try_recv().is_err());
    }

    #[test]
    fn a_request_state_opens_once_for_its_caller_and_request() {
        let manager = SessionManager::new(&SessionsConfig::default());
        let states = manager.request_states();
        let params = json!({"name": "echo", "arguments": {"a": 1}});
        let digest = request_digest("tools/call", Some(&params));
        let now = unix_now();
        let sealed = states
            .sealer()
            .seal(&RequestState::new(
                "alice",
                digest,
                now,
                300,
                b"held call 7".to_vec(),
            ))
            .expect("seal");
        let opened = states
            .sealer()
            .open(&sealed, "alice", &digest, now)
            .expect("open");
        assert_eq!(opened.payload, b"held call 7");
        assert!(states.first_use(&opened), "first use");
        let again = states
            .sealer()
            .open(&sealed, "alice", &digest, now)
            .expect("still authentic");
        assert!(!states.first_use(&again), "a replay is refused");
        // Another caller, another call, or a state sealed under another gateway key.
        assert!(states.sealer().open(&sealed, "bob", &digest, now).is_err());
        let other = request_digest("tools/call", Some(&json!({"name": "echo"})));
        assert!(states.sealer().open(&sealed, "alice", &other, now).is_err());
        let foreign = SessionManager::new(&SessionsConfig::default());
        assert!(foreign
            .request_states()
            .sealer()
            .open(&sealed, "alice", &digest, now)
            .is_err());
    }
}
