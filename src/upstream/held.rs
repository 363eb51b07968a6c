//! Native calls held for a modern (2026-07-28) caller's input.
//!
//! A legacy native upstream asks the caller something mid-call (elicitation, sampling,
//! roots) and waits on the same call; a modern caller is answered with an
//! `InputRequiredResult` and retries later. Between the two, the upstream call is kept here:
//! its reply stream (the native driver keeps the upstream call open while the stream lives),
//! the upstream requests waiting for an answer, and what the stream already yielded. The retry
//! takes it back by the id sealed into its `requestState`.
//!
//! Bounded three ways (`cortex_filters::modern::hold::HoldLimits`): per caller, in total, and
//! in time. A call not taken back within the timeout is dropped, which ends the upstream call
//! (the driver tells the server `notifications/cancelled`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cortex_filters::modern::hold::{self, HoldLimits, HoldRefusal};
use cortex_filters::modern::mrtr::InputRequest;
use rand::RngCore;
use serde_json::Value;
use tokio::sync::oneshot;

use super::backend::{Reply, ReplyStream};

/// An upstream request waiting for the caller's answer.
pub struct Waiting {
    /// It, as the caller is asked (its key in `inputRequests`, its method: the answer's
    /// shape is checked against it).
    pub request: InputRequest,
    /// Where the answer goes (dropping it tells the upstream nobody will answer).
    pub respond: oneshot::Sender<Result<Value, Value>>,
}

/// One held call.
pub struct HeldCall {
    /// Who may take it back (the relay owner of the caller).
    pub owner: String,
    /// The rest of the call.
    pub replies: ReplyStream,
    /// What the upstream asked and waits for.
    pub waiting: Vec<Waiting>,
    /// Items the stream yielded that were not handled yet.
    pub peeked: VecDeque<Reply>,
    /// How many upstream requests the call made so far (keys stay unique across rounds).
    pub asked: u32,
}

struct Entry {
    call: HeldCall,
}

/// The held calls of one process.
#[derive(Default)]
pub struct HeldCalls {
    calls: Arc<Mutex<HashMap<String, Entry>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl HeldCalls {
    /// Holds `call` within `limits`; returns its id (random, unguessable), or why it cannot
    /// be held (the call is then dropped by the caller, ending it upstream).
    pub fn hold(&self, call: HeldCall, limits: &HoldLimits) -> Result<String, HoldRefusal> {
        let mut random = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut random);
        let id = format!("{:032x}", u128::from_be_bytes(random));
        {
            let mut calls = lock(&self.calls);
            let mine = calls
                .values()
                .filter(|e| e.call.owner == call.owner)
                .count();
            hold::admit(mine, calls.len(), limits)?;
            calls.insert(id.clone(), Entry { call });
        }
        let weak = Arc::downgrade(&self.calls);
        let expired = id.clone();
        let timeout = Duration::from_secs(limits.timeout_secs);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(calls) = weak.upgrade() {
                let dropped = lock(&calls).remove(&expired);
                if dropped.is_some() {
                    tracing::info!(
                        held = %expired,
                        "a call waiting for its caller's input timed out; ending it upstream"
                    );
                }
            }
        });
        Ok(id)
    }

    /// Takes back the held call `id` of `owner` (`None` when it is gone or someone else's;
    /// someone else's stays held).
    pub fn take(&self, owner: &str, id: &str) -> Option<HeldCall> {
        let mut calls = lock(&self.calls);
        if calls.get(id).is_some_and(|e| e.call.owner == owner) {
            calls.remove(id).map(|e| e.call)
        } else {
            None
        }
    }

    /// How many calls are held (for tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.calls).len()
    }

    /// Whether no call is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(owner: &str) -> HeldCall {
        HeldCall {
            owner: owner.to_string(),
            replies: Box::pin(futures::stream::empty()),
            waiting: Vec::new(),
            peeked: VecDeque::new(),
            asked: 1,
        }
    }

    #[tokio::test]
    async fn held_calls_are_bounded_per_caller_and_in_total_and_taken_by_their_owner_only() {
        let held = HeldCalls::default();
        let limits = HoldLimits {
            timeout_secs: 600,
            per_caller: 2,
            total: 3,
        };
        let a1 = held.hold(call("alice"), &limits).unwrap();
        let _a2 = held.hold(call("alice"), &limits).unwrap();
        assert_eq!(
            held.hold(call("alice"), &limits).err(),
            Some(HoldRefusal::Caller { max: 2 })
        );
        let _b1 = held.hold(call("bob"), &limits).unwrap();
        assert_eq!(
            held.hold(call("carol"), &limits).err(),
            Some(HoldRefusal::Gateway { max: 3 })
        );
        assert!(held.take("bob", &a1).is_none(), "not bob's");
        assert!(held.take("alice", &a1).is_some());
        assert!(held.take("alice", &a1).is_none(), "taken once");
        assert_eq!(held.len(), 2);
    }

    #[tokio::test]
    async fn a_call_not_taken_back_in_time_is_dropped() {
        let held = HeldCalls::default();
        let limits = HoldLimits {
            timeout_secs: 0,
            per_caller: 2,
            total: 3,
        };
        let id = held.hold(call("alice"), &limits).unwrap();
        // The expiry runs on its own task: wait until it did (bounded, whatever the timing).
        for _ in 0..500 {
            if held.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(held.take("alice", &id).is_none());
        assert!(held.is_empty());
    }
}
