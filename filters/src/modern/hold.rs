//! Held calls: what the gateway decides when a modern (2026-07-28) client calls a tool of a
//! legacy native upstream that asks the user something mid-call.
//!
//! A legacy upstream sends a server-to-client request (elicitation, sampling, roots) and
//! waits for its answer on the same call; a modern client can only be answered with an
//! `InputRequiredResult` and retries later. The gateway bridges the two by *holding* the
//! upstream call: it stays open in the gateway's memory while the client gathers the answer,
//! and the retry (with `inputResponses` and the sealed `requestState` naming the held call)
//! delivers the answer to the upstream and continues the same call.
//!
//! This module holds the pure parts:
//!
//! - the continuation a sealed `requestState` carries ([`Continuation`]): which held call the
//!   retry resumes, or that the call is simply run again (the vault's linking consent);
//! - the admission of a new held call against its bounds ([`HoldLimits`], [`admit`]), with
//!   the error a client gets over a bound ([`HoldRefusal`]);
//! - the key an upstream request gets in `inputRequests` ([`input_key`]);
//! - which notifications of a native call reach a modern client, and how
//!   ([`modern_notification`]): progress only when the request carries a progress token (its
//!   own, also on a retry), log messages only when the request's `_meta` asks for a level and
//!   at or above it, nothing else.

use serde_json::{json, Value};

use super::envelope::LogLevel;
use super::mrtr::InputMethod;
use super::Refusal;
use crate::jsonrpc::codes;

/// The bounds on held calls, from configuration (`sessions.held_call_timeout`,
/// `sessions.max_held_calls_per_caller`, `sessions.max_held_calls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimits {
    /// How long a held call waits for the retry that brings its answer, in seconds.
    pub timeout_secs: u64,
    /// The most calls one caller may have held at once.
    pub per_caller: usize,
    /// The most calls held at once on this gateway.
    pub total: usize,
}

impl Default for HoldLimits {
    fn default() -> Self {
        HoldLimits {
            timeout_secs: 120,
            per_caller: 8,
            total: 1024,
        }
    }
}

/// Why a call cannot be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldRefusal {
    /// The caller already has `max` calls waiting for its input.
    Caller {
        /// The bound.
        max: usize,
    },
    /// The gateway already holds `max` calls.
    Gateway {
        /// The bound.
        max: usize,
    },
}

impl HoldRefusal {
    /// The JSON-RPC error a client gets: the call is refused (-32000) with a message that says
    /// which bound and what to do, and `data.limit` / `data.max` for programs.
    pub fn refusal(self) -> Refusal {
        let (message, limit, max) = match self {
            HoldRefusal::Caller { max } => (
                format!(
                    "Too many calls waiting for your input: at most {max} may wait at once; answer or abandon one of them, then call again"
                ),
                "held_calls_per_caller",
                max,
            ),
            HoldRefusal::Gateway { max } => (
                format!(
                    "The gateway holds too many calls waiting for input ({max}); try again shortly"
                ),
                "held_calls",
                max,
            ),
        };
        Refusal::new(200, codes::REQUEST_REFUSED, message)
            .with_data(json!({"limit": limit, "max": max}))
    }
}

/// Whether one more call may be held, given how many the caller (`caller_held`) and the
/// gateway (`total_held`) hold now.
pub fn admit(
    caller_held: usize,
    total_held: usize,
    limits: &HoldLimits,
) -> Result<(), HoldRefusal> {
    if caller_held >= limits.per_caller {
        return Err(HoldRefusal::Caller {
            max: limits.per_caller,
        });
    }
    if total_held >= limits.total {
        return Err(HoldRefusal::Gateway { max: limits.total });
    }
    Ok(())
}

/// The refusal of a retry whose held call is gone: it waited longer than the hold timeout,
/// the upstream ended it, or the retry reached another gateway instance (held calls live in
/// the memory of the instance that holds them).
pub fn held_call_gone(timeout_secs: u64) -> Refusal {
    Refusal::invalid_params(format!(
        "Invalid params: the call waiting for this input is no longer held (a call waits at most {timeout_secs} s for its answer, on the gateway instance that holds it); call again without requestState"
    ))
}

/// What the gateway's sealed `requestState` says the retry continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Continuation {
    /// The held upstream call with this id.
    Held(String),
    /// Nothing is held: the call runs again from the start (the vault's linking consent: once
    /// the account is linked, the same call succeeds).
    Again,
}

const HELD_PREFIX: &[u8] = b"held:";
const AGAIN: &[u8] = b"again";

impl Continuation {
    /// The payload to seal.
    pub fn payload(&self) -> Vec<u8> {
        match self {
            Continuation::Held(id) => [HELD_PREFIX, id.as_bytes()].concat(),
            Continuation::Again => AGAIN.to_vec(),
        }
    }

    /// Reads an opened payload; anything unknown (a state sealed by another build) is
    /// [`Continuation::Again`]: running the call again is always safe.
    pub fn parse(payload: &[u8]) -> Self {
        match payload.strip_prefix(HELD_PREFIX) {
            Some(id) if !id.is_empty() => std::str::from_utf8(id)
                .map(|s| Continuation::Held(s.to_owned()))
                .unwrap_or(Continuation::Again),
            _ => Continuation::Again,
        }
    }
}

/// The `inputRequests` key of the `n`th request an upstream made during one call: the
/// method's short name and the count (`elicitation-1`, `sampling-2`, `roots-3`).
pub fn input_key(method: InputMethod, n: u32) -> String {
    let short = match method {
        InputMethod::Elicit => "elicitation",
        InputMethod::Sample => "sampling",
        InputMethod::ListRoots => "roots",
    };
    format!("{short}-{n}")
}

/// A modern client's answer (an `inputResponses` entry) as the result a legacy upstream
/// waits for: the same object without the `resultType` a modern client may add.
pub fn upstream_answer(response: &Value) -> Value {
    match response {
        Value::Object(m) if m.contains_key("resultType") => {
            let mut m = m.clone();
            m.remove("resultType");
            Value::Object(m)
        }
        other => other.clone(),
    }
}

/// A relayed upstream notification (a serialized JSON-RPC notification) as the modern
/// request with this `log_level` and `progress_token` may receive it on its own stream, or
/// `None` when it must not be sent:
///
/// - `notifications/progress`: only when the request carries a progress token, with that
///   token (a retry may carry another token than the call it continues);
/// - `notifications/message`: only when the request's `_meta` asked for a level, and at or
///   above it (an unknown level is not sent);
/// - anything else: never (2026-07-28 sends only notifications that relate to the request).
pub fn modern_notification(
    bytes: &[u8],
    log_level: Option<LogLevel>,
    progress_token: Option<&Value>,
) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(bytes).ok()?;
    match v.get("method").and_then(Value::as_str)? {
        "notifications/progress" => {
            let token = progress_token?;
            let params = v.get_mut("params")?.as_object_mut()?;
            params.insert("progressToken".into(), token.clone());
        }
        "notifications/message" => {
            let minimum = log_level?;
            let level = v
                .pointer("/params/level")
                .and_then(Value::as_str)
                .and_then(LogLevel::parse)?;
            if level < minimum {
                return None;
            }
        }
        _ => return None,
    }
    serde_json::to_vec(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_the_caller_first_then_the_gateway() {
        let l = HoldLimits {
            timeout_secs: 60,
            per_caller: 2,
            total: 3,
        };
        assert_eq!(admit(0, 0, &l), Ok(()));
        assert_eq!(admit(1, 2, &l), Ok(()));
        assert_eq!(admit(2, 2, &l), Err(HoldRefusal::Caller { max: 2 }));
        assert_eq!(admit(1, 3, &l), Err(HoldRefusal::Gateway { max: 3 }));
        let r = HoldRefusal::Caller { max: 2 }.refusal();
        assert_eq!((r.http_status, r.code), (200, -32000));
        assert!(r.message.contains("at most 2"), "{}", r.message);
        assert_eq!(
            r.data.unwrap(),
            json!({"limit": "held_calls_per_caller", "max": 2})
        );
        let r = HoldRefusal::Gateway { max: 3 }.refusal();
        assert_eq!(r.data.unwrap()["limit"], "held_calls");
        let gone = held_call_gone(120);
        assert_eq!((gone.http_status, gone.code), (400, -32602));
        assert!(gone.message.contains("120 s"));
    }

    #[test]
    fn continuations_round_trip_and_unknown_ones_run_again() {
        let held = Continuation::Held("h-0123".into());
        assert_eq!(Continuation::parse(&held.payload()), held);
        assert_eq!(
            Continuation::parse(&Continuation::Again.payload()),
            Continuation::Again
        );
        assert_eq!(Continuation::parse(b"held:"), Continuation::Again);
        assert_eq!(Continuation::parse(b"backend=crm"), Continuation::Again);
        assert_eq!(Continuation::parse(b"held:\xff"), Continuation::Again);
    }

    #[test]
    fn answers_lose_their_result_type_on_the_way_upstream() {
        assert_eq!(
            upstream_answer(&json!({"action": "accept", "resultType": "complete"})),
            json!({"action": "accept"})
        );
        assert_eq!(upstream_answer(&json!({"roots": []})), json!({"roots": []}));
    }

    #[test]
    fn input_keys_name_the_method() {
        assert_eq!(input_key(InputMethod::Elicit, 1), "elicitation-1");
        assert_eq!(input_key(InputMethod::Sample, 2), "sampling-2");
        assert_eq!(input_key(InputMethod::ListRoots, 3), "roots-3");
    }

    fn note(method: &str, params: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": method, "params": params})).unwrap()
    }

    #[test]
    fn progress_reaches_only_a_request_with_a_token_and_carries_its_own() {
        let p = note(
            "notifications/progress",
            json!({"progressToken": "orig", "progress": 50, "total": 100}),
        );
        assert_eq!(modern_notification(&p, None, None), None);
        let out = modern_notification(&p, None, Some(&json!(7))).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["params"]["progressToken"], 7);
        assert_eq!(v["params"]["progress"], 50);
    }

    #[test]
    fn log_messages_only_when_asked_and_at_or_above_the_level() {
        let info = note(
            "notifications/message",
            json!({"level": "info", "data": "x"}),
        );
        assert_eq!(modern_notification(&info, None, Some(&json!(1))), None);
        assert!(modern_notification(&info, Some(LogLevel::Debug), None).is_some());
        assert!(modern_notification(&info, Some(LogLevel::Info), None).is_some());
        assert_eq!(
            modern_notification(&info, Some(LogLevel::Warning), None),
            None
        );
        let odd = note(
            "notifications/message",
            json!({"level": "loud", "data": "x"}),
        );
        assert_eq!(modern_notification(&odd, Some(LogLevel::Debug), None), None);
    }

    #[test]
    fn other_notifications_never_reach_a_modern_request() {
        for m in [
            "notifications/resources/updated",
            "notifications/tools/list_changed",
            "notifications/cancelled",
        ] {
            let n = note(m, json!({}));
            assert_eq!(
                modern_notification(&n, Some(LogLevel::Debug), Some(&json!(1))),
                None
            );
        }
        assert_eq!(modern_notification(b"not json", None, None), None);
    }
}
