//! What the gateway keeps to relay messages between callers and native MCP backends, bound
//! to the caller (its session, or its subject when it has none):
//!
//! - server requests relayed to a caller, waiting for its answer (the caller POSTs a JSON-RPC
//!   response with the gateway's id; only the caller the request was sent to can answer it);
//! - calls in flight, so that a caller's `notifications/cancelled` stops its own call;
//! - each caller's `logging/setLevel`;
//! - resource subscriptions, so that `notifications/resources/updated` reaches the sessions
//!   subscribed to that resource;
//! - calls held for a modern caller's input ([`super::held`]).
//!
//! Every table is bounded; an entry that cannot be added is refused, never grown past its cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rand::RngCore;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::sessions::{SessionManager, SessionState};

/// The most server requests waiting for callers' answers at once.
pub const MAX_PENDING_REQUESTS: usize = 4096;
/// The most calls tracked for cancellation at once.
pub const MAX_IN_FLIGHT: usize = 16384;
/// The most subscriptions at once.
pub const MAX_SUBSCRIPTIONS: usize = 16384;

type Answer = Result<Value, Value>;

struct Pending {
    owner: String,
    respond: oneshot::Sender<Answer>,
}

struct Subscriber {
    owner: String,
    backend: String,
    session: Weak<SessionState>,
}

/// The relay tables of one process.
pub struct Relay {
    pending: Mutex<HashMap<String, Pending>>,
    in_flight: Mutex<HashMap<(String, String), oneshot::Sender<()>>>,
    levels: moka::sync::Cache<String, String>,
    subscriptions: Mutex<HashMap<String, Vec<Subscriber>>>,
    sessions: Arc<SessionManager>,
    held: super::held::HeldCalls,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A call registered for cancellation; unregisters itself when dropped.
pub struct InFlightCall {
    relay: Arc<Relay>,
    key: Option<(String, String)>,
    /// The sender of a call that could not be registered, held so that `cancelled` stays
    /// pending: a dropped sender would read as a cancellation.
    _unregistered: Option<oneshot::Sender<()>>,
    /// Fires when the caller cancels the call.
    pub cancelled: oneshot::Receiver<()>,
}

impl Drop for InFlightCall {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            lock(&self.relay.in_flight).remove(&k);
        }
    }
}

impl Relay {
    /// Empty tables; `sessions` receives resource-update notifications.
    pub fn new(sessions: Arc<SessionManager>) -> Self {
        Relay {
            pending: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            levels: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(24 * 3600))
                .build(),
            subscriptions: Mutex::new(HashMap::new()),
            sessions,
            held: super::held::HeldCalls::default(),
        }
    }

    /// The sessions the relay delivers to (native backends follow their ends).
    pub fn sessions(&self) -> &Arc<SessionManager> {
        &self.sessions
    }

    /// The calls held for modern callers' input.
    pub fn held(&self) -> &super::held::HeldCalls {
        &self.held
    }

    /// Registers a server request relayed to `owner`; returns the id the caller sees, or
    /// `None` when too many are waiting (the backend is then answered with an error).
    pub fn register_request(
        &self,
        owner: &str,
        respond: oneshot::Sender<Answer>,
    ) -> Option<String> {
        let mut pending = lock(&self.pending);
        pending.retain(|_, p| !p.respond.is_closed());
        if pending.len() >= MAX_PENDING_REQUESTS {
            return None;
        }
        let mut random = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut random);
        let id = cortex_filters::native::relayed_request_id(u128::from_be_bytes(random));
        pending.insert(
            id.clone(),
            Pending {
                owner: owner.to_string(),
                respond,
            },
        );
        Some(id)
    }

    /// Routes a caller's answer to the server request `id`. Only the caller the request was
    /// relayed to can answer it: an answer from anyone else is ignored (and the request stays
    /// pending). Returns whether the answer was delivered.
    pub fn answer(&self, owner: &str, id: &Value, outcome: Answer) -> bool {
        let Some(id) = id.as_str() else {
            return false;
        };
        let mut pending = lock(&self.pending);
        match pending.get(id) {
            Some(p) if p.owner == owner => {}
            _ => return false,
        }
        match pending.remove(id) {
            Some(p) => p.respond.send(outcome).is_ok(),
            None => false,
        }
    }

    /// Forgets a relayed request nobody will answer any more.
    pub fn forget_request(&self, id: &str) {
        lock(&self.pending).remove(id);
    }

    /// Registers the call `id` of `owner` for cancellation.
    ///
    /// A call whose id is already in flight for the same owner is not registered (it runs,
    /// but `notifications/cancelled` for that id stops the first one only): stateless callers
    /// of one subject share an owner, and their ids collide (every client counts from 0 or
    /// 1), so replacing the entry would cancel the other client's call. Nor is a call over
    /// [`MAX_IN_FLIGHT`].
    pub fn begin_call(self: &Arc<Self>, owner: &str, id: &Value) -> InFlightCall {
        let (tx, rx) = oneshot::channel();
        let key = (owner.to_string(), id.to_string());
        let mut calls = lock(&self.in_flight);
        calls.retain(|_, t| !t.is_closed());
        let (key, unregistered) = if calls.len() < MAX_IN_FLIGHT && !calls.contains_key(&key) {
            calls.insert(key.clone(), tx);
            (Some(key), None)
        } else {
            (None, Some(tx))
        };
        InFlightCall {
            relay: self.clone(),
            key,
            _unregistered: unregistered,
            cancelled: rx,
        }
    }

    /// `notifications/cancelled` from `owner` for its request `id`: stops that call if it is
    /// still running. Returns whether one was.
    pub fn cancel(&self, owner: &str, id: &Value) -> bool {
        let key = (owner.to_string(), id.to_string());
        match lock(&self.in_flight).remove(&key) {
            Some(tx) => tx.send(()).is_ok(),
            None => false,
        }
    }

    /// `logging/setLevel` of `owner`.
    pub fn set_level(&self, owner: &str, level: &str) {
        self.levels.insert(owner.to_string(), level.to_string());
    }

    /// The minimum log level `owner` asked for, if any.
    pub fn level(&self, owner: &str) -> Option<String> {
        self.levels.get(owner)
    }

    /// Subscribes the session of `owner` to `uri` of `backend`. Returns false when the table
    /// is full.
    pub fn subscribe(
        &self,
        owner: &str,
        backend: &str,
        uri: &str,
        session: &Arc<SessionState>,
    ) -> bool {
        let mut subs = lock(&self.subscriptions);
        let total: usize = subs.values().map(Vec::len).sum();
        let list = subs.entry(uri.to_string()).or_default();
        list.retain(|s| s.session.strong_count() > 0);
        if list.iter().any(|s| s.owner == owner) {
            return true;
        }
        if total >= MAX_SUBSCRIPTIONS {
            return false;
        }
        list.push(Subscriber {
            owner: owner.to_string(),
            backend: backend.to_string(),
            session: Arc::downgrade(session),
        });
        true
    }

    /// Ends the subscription of `owner` to `uri`.
    pub fn unsubscribe(&self, owner: &str, uri: &str) {
        let mut subs = lock(&self.subscriptions);
        if let Some(list) = subs.get_mut(uri) {
            list.retain(|s| s.owner != owner && s.session.strong_count() > 0);
            if list.is_empty() {
                subs.remove(uri);
            }
        }
    }

    /// `backend` says `uri` changed: every live session subscribed to it through that backend
    /// gets `notifications/resources/updated` on its stream. Returns how many were told.
    pub fn resource_updated(&self, backend: &str, uri: &str, params: &Value) -> usize {
        let sessions: Vec<Arc<SessionState>> = {
            let mut subs = lock(&self.subscriptions);
            let Some(list) = subs.get_mut(uri) else {
                return 0;
            };
            list.retain(|s| s.session.strong_count() > 0);
            list.iter()
                .filter(|s| s.backend == backend)
                .filter_map(|s| s.session.upgrade())
                .collect()
        };
        let message =
            cortex_filters::native::relayed_notification("notifications/resources/updated", params);
        for s in &sessions {
            self.sessions.notify(s, &message);
        }
        sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn relay() -> Arc<Relay> {
        let cfg = crate::config::SessionsConfig::default();
        Arc::new(Relay::new(Arc::new(SessionManager::new(&cfg))))
    }

    #[test]
    fn only_the_caller_a_request_was_sent_to_can_answer_it() {
        let r = relay();
        let (tx, mut rx) = oneshot::channel();
        let id = r.register_request("alice", tx).unwrap();
        assert!(!r.answer("mallory", &json!(id), Ok(json!({"stolen": true}))));
        assert!(rx.try_recv().is_err());
        assert!(r.answer("alice", &json!(id), Ok(json!({"ok": true}))));
        assert_eq!(rx.try_recv().unwrap(), Ok(json!({"ok": true})));
        // Answered once only.
        assert!(!r.answer("alice", &json!(id), Ok(json!({}))));
        assert!(!r.answer("alice", &json!(7), Ok(json!({}))));
    }

    #[test]
    fn a_caller_cancels_only_its_own_calls() {
        let r = relay();
        let mut call = r.begin_call("alice", &json!(3));
        assert!(!r.cancel("bob", &json!(3)));
        assert!(call.cancelled.try_recv().is_err());
        assert!(r.cancel("alice", &json!(3)));
        assert!(call.cancelled.try_recv().is_ok());
        let done = r.begin_call("alice", &json!(4));
        drop(done);
        assert!(!r.cancel("alice", &json!(4)));
    }

    #[test]
    fn a_second_call_with_the_same_id_cancels_neither() {
        // Two stateless clients of one subject, both on id 1 (found by scripts/soak.sh: the
        // first call was answered with an empty 202 as if cancelled).
        let r = relay();
        let mut first = r.begin_call("p:alice", &json!(1));
        let mut second = r.begin_call("p:alice", &json!(1));
        assert_eq!(
            first.cancelled.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
        assert_eq!(
            second.cancelled.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
        // The second ending leaves the first cancellable; a cancel reaches the first.
        drop(second);
        assert!(r.cancel("p:alice", &json!(1)));
        assert!(first.cancelled.try_recv().is_ok());
    }

    #[test]
    fn levels_are_kept_per_caller() {
        let r = relay();
        r.set_level("alice", "error");
        assert_eq!(r.level("alice").as_deref(), Some("error"));
        assert_eq!(r.level("bob"), None);
    }
}
