//! Sealed `requestState` for multi-round-trip requests.
//!
//! An `InputRequiredResult` may carry a `requestState` that the client echoes on the retry.
//! It passes through the client, so the spec treats it as attacker-controlled: when it
//! influences authorization or business logic the server must protect its integrity and
//! reject state that fails verification, and it should bind the state to the principal, an
//! expiry and the originating request.
//!
//! The state is AES-256-GCM over a binary payload, encoded base64url without padding (the
//! same construction as the sealed session ids of [`crate::session`], under a distinct AAD so
//! neither can be presented as the other even under one key):
//!
//! ```text
//! state     = base64url-no-pad( gcm_nonce[12] || ciphertext || tag[16] )
//! plaintext = format(1) || nonce[16] || subject[16] || request[16]
//!             || issued_at(u64 BE) || expires_at(u64 BE) || payload[0..=MAX_PAYLOAD]
//! AAD       = "cortex/request-state" || format(1)
//! ```
//!
//! - `subject` is the first 16 bytes of SHA-256 of the caller's `sub`
//!   ([`crate::session::SessionClaims::bind_subject`]): a state presented by someone else is
//!   refused;
//! - `request` is a digest of the method and its salient parameters ([`request_digest`]): a
//!   state presented on a different call is refused;
//! - `nonce` is random per seal and returned by [`RequestStateSealer::open`], so the gateway
//!   can keep it in a replay set until `expires_at` and refuse a second use;
//! - `payload` is the gateway's own continuation data (e.g. which held upstream call the
//!   answer belongs to), opaque here and bounded.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Refusal;
use crate::seal::{self, Sealer};
use crate::session::{ct_eq, SessionClaims};

/// The payload format written by this build.
const FORMAT_VERSION: u8 = 1;
/// Domain separation from session ids and anything else sealed with the same key.
const AAD: &[u8] = b"cortex/request-state\x01";
/// The largest continuation payload a state may carry.
pub const MAX_PAYLOAD: usize = 2048;
/// Fixed plaintext header: format + nonce + subject + request + issued_at + expires_at.
const HEADER_LEN: usize = 1 + 16 + 16 + 16 + 8 + 8;
/// The longest state string accepted: anything longer is refused before decoding.
pub const MAX_STATE_LEN: usize = (seal::OVERHEAD + HEADER_LEN + MAX_PAYLOAD).div_ceil(3) * 4;

const OFF_NONCE: usize = 1;
const OFF_SUBJECT: usize = OFF_NONCE + 16;
const OFF_REQUEST: usize = OFF_SUBJECT + 16;
const OFF_ISSUED: usize = OFF_REQUEST + 16;
const OFF_EXPIRES: usize = OFF_ISSUED + 8;

/// What a sealed state carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestState {
    /// Random per seal: the key of the replay set.
    pub nonce: [u8; 16],
    /// [`SessionClaims::bind_subject`] of the caller.
    pub subject: [u8; 16],
    /// [`request_digest`] of the call the state belongs to.
    pub request: [u8; 16],
    /// Issued at, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Absolute expiry, seconds since the Unix epoch (exclusive).
    pub expires_at: u64,
    /// The gateway's continuation data.
    pub payload: Vec<u8>,
}

impl RequestState {
    /// A fresh state for `sub` and `request`, valid for `ttl_secs` from `now`, with a random
    /// nonce.
    pub fn new(sub: &str, request: [u8; 16], now: u64, ttl_secs: u64, payload: Vec<u8>) -> Self {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        RequestState {
            nonce,
            subject: SessionClaims::bind_subject(sub),
            request,
            issued_at: now,
            expires_at: now.saturating_add(ttl_secs),
            payload,
        }
    }

    /// The nonce as 32 lowercase hex characters (a replay-set key).
    pub fn replay_key(&self) -> String {
        seal::hex16(&self.nonce)
    }
}

/// Why a presented `requestState` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestStateError {
    /// Not base64url, too short or too long, or an unknown format.
    #[error("requestState is malformed")]
    Malformed,
    /// Authentication failed: altered, forged, or sealed under another key.
    #[error("requestState failed its integrity check")]
    Tampered,
    /// Past its expiry.
    #[error("requestState has expired")]
    Expired,
    /// Sealed for another caller.
    #[error("requestState belongs to another caller")]
    ForeignSubject,
    /// Sealed for another request (method or parameters differ).
    #[error("requestState does not belong to this request")]
    RequestMismatch,
    /// Already used (the caller found its nonce in the replay set).
    #[error("requestState was already used")]
    Replayed,
    /// The payload to seal exceeds [`MAX_PAYLOAD`].
    #[error("requestState payload exceeds {MAX_PAYLOAD} bytes")]
    TooLarge,
}

impl RequestStateError {
    /// The refusal to answer with: HTTP 400, -32602 (the state is an invalid parameter; the
    /// client should start the call afresh without it).
    pub fn refusal(self) -> Refusal {
        Refusal::invalid_params(format!(
            "Invalid params: {self}; retry the original request without requestState"
        ))
    }
}

/// Seals and opens request states under one 32-byte key.
#[derive(Clone)]
pub struct RequestStateSealer {
    sealer: Sealer,
}

impl std::fmt::Debug for RequestStateSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestStateSealer(..)")
    }
}

impl RequestStateSealer {
    /// A sealer for `key` (the caller derives it from configuration).
    pub fn new(key: &[u8; 32]) -> Self {
        RequestStateSealer {
            sealer: Sealer::new(key),
        }
    }

    /// Seals `state` into the opaque string for `requestState`.
    pub fn seal(&self, state: &RequestState) -> Result<String, RequestStateError> {
        if state.payload.len() > MAX_PAYLOAD {
            return Err(RequestStateError::TooLarge);
        }
        let mut plain = vec![0u8; HEADER_LEN + state.payload.len()];
        plain[0] = FORMAT_VERSION;
        plain[OFF_NONCE..OFF_SUBJECT].copy_from_slice(&state.nonce);
        plain[OFF_SUBJECT..OFF_REQUEST].copy_from_slice(&state.subject);
        plain[OFF_REQUEST..OFF_ISSUED].copy_from_slice(&state.request);
        plain[OFF_ISSUED..OFF_EXPIRES].copy_from_slice(&state.issued_at.to_be_bytes());
        plain[OFF_EXPIRES..HEADER_LEN].copy_from_slice(&state.expires_at.to_be_bytes());
        plain[HEADER_LEN..].copy_from_slice(&state.payload);
        let sealed = self
            .sealer
            .seal(AAD, &plain)
            .map_err(|_| RequestStateError::TooLarge)?;
        Ok(URL_SAFE_NO_PAD.encode(&sealed))
    }

    /// Opens a presented state for the caller `sub` on the request whose digest is
    /// `request`, at `now` (seconds since the Unix epoch). Checks, in order: shape,
    /// integrity, subject, request, expiry. The caller then checks
    /// [`RequestState::replay_key`] against its replay set.
    pub fn open(
        &self,
        token: &str,
        sub: &str,
        request: &[u8; 16],
        now: u64,
    ) -> Result<RequestState, RequestStateError> {
        if token.len() > MAX_STATE_LEN {
            return Err(RequestStateError::Malformed);
        }
        let mut buf = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| RequestStateError::Malformed)?;
        if buf.len() < seal::OVERHEAD + HEADER_LEN {
            return Err(RequestStateError::Malformed);
        }
        let body = self
            .sealer
            .open_in_place(AAD, &mut buf)
            .map_err(|_| RequestStateError::Tampered)?;
        if body[0] != FORMAT_VERSION {
            return Err(RequestStateError::Malformed);
        }
        let state = RequestState {
            nonce: take16(body, OFF_NONCE),
            subject: take16(body, OFF_SUBJECT),
            request: take16(body, OFF_REQUEST),
            issued_at: u64::from_be_bytes(take8(body, OFF_ISSUED)),
            expires_at: u64::from_be_bytes(take8(body, OFF_EXPIRES)),
            payload: body[HEADER_LEN..].to_vec(),
        };
        if !ct_eq(&state.subject, &SessionClaims::bind_subject(sub)) {
            return Err(RequestStateError::ForeignSubject);
        }
        if !ct_eq(&state.request, request) {
            return Err(RequestStateError::RequestMismatch);
        }
        if now >= state.expires_at {
            return Err(RequestStateError::Expired);
        }
        Ok(state)
    }
}

fn take16(b: &[u8], at: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&b[at..at + 16]);
    out
}

fn take8(b: &[u8], at: usize) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[at..at + 8]);
    out
}

/// The identity of a request for binding a state: SHA-256 (first 16 bytes) over the method
/// and a canonical form of `params` without the members that legitimately change between the
/// original request and its retry (`_meta`, `inputResponses`, `requestState`). Object keys
/// are sorted, so member order does not matter; anything else that differs (tool name,
/// arguments, URI) makes a different digest.
pub fn request_digest(method: &str, params: Option<&Value>) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"cortex/request\x00");
    h.update(method.as_bytes());
    h.update(b"\x00");
    match params {
        Some(Value::Object(m)) => {
            let mut keys: Vec<&String> = m
                .keys()
                .filter(|k| !matches!(k.as_str(), "_meta" | "inputResponses" | "requestState"))
                .collect();
            keys.sort();
            h.update(b"{");
            for k in keys {
                canonical_string(&mut h, k);
                h.update(b":");
                canonical(&mut h, &m[k.as_str()]);
                h.update(b",");
            }
            h.update(b"}");
        }
        Some(other) => canonical(&mut h, other),
        None => h.update(b"null"),
    }
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Feeds a canonical JSON form of `v` (sorted keys, serde's number and string forms).
fn canonical(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update(b"null"),
        Value::Bool(b) => h.update(if *b { &b"true"[..] } else { b"false" }),
        Value::Number(n) => h.update(n.to_string().as_bytes()),
        Value::String(s) => canonical_string(h, s),
        Value::Array(items) => {
            h.update(b"[");
            for i in items {
                canonical(h, i);
                h.update(b",");
            }
            h.update(b"]");
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            h.update(b"{");
            for k in keys {
                canonical_string(h, k);
                h.update(b":");
                canonical(h, &m[k.as_str()]);
                h.update(b",");
            }
            h.update(b"}");
        }
    }
}

/// A string as its JSON form (quotes and escapes make the encoding unambiguous).
fn canonical_string(h: &mut Sha256, s: &str) {
    h.update(Value::from(s).to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: [u8; 32] = [9u8; 32];
    const NOW: u64 = 1_800_000_000;

    fn digest() -> [u8; 16] {
        request_digest(
            "tools/call",
            Some(&json!({"name": "link", "arguments": {"a": 1}})),
        )
    }

    fn state() -> RequestState {
        RequestState::new("alice", digest(), NOW, 600, b"call-17".to_vec())
    }

    #[test]
    fn round_trip_with_all_bindings() {
        let sealer = RequestStateSealer::new(&KEY);
        let s = state();
        let token = sealer.seal(&s).unwrap();
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let opened = sealer.open(&token, "alice", &digest(), NOW + 599).unwrap();
        assert_eq!(opened, s);
        assert_eq!(opened.payload, b"call-17");
        assert_eq!(opened.replay_key().len(), 32);
        // A replica with the same key opens it; two seals of one state differ.
        assert_eq!(
            RequestStateSealer::new(&KEY)
                .open(&token, "alice", &digest(), NOW)
                .unwrap(),
            s
        );
        assert_ne!(sealer.seal(&s).unwrap(), token);
        // Two fresh states get different nonces.
        assert_ne!(state().nonce, state().nonce);
    }

    #[test]
    fn refuses_foreign_mismatched_and_expired_states() {
        let sealer = RequestStateSealer::new(&KEY);
        let token = sealer.seal(&state()).unwrap();
        assert_eq!(
            sealer.open(&token, "bob", &digest(), NOW),
            Err(RequestStateError::ForeignSubject)
        );
        let other = request_digest(
            "tools/call",
            Some(&json!({"name": "link", "arguments": {"a": 2}})),
        );
        assert_eq!(
            sealer.open(&token, "alice", &other, NOW),
            Err(RequestStateError::RequestMismatch)
        );
        assert_eq!(
            sealer.open(&token, "alice", &digest(), NOW + 600),
            Err(RequestStateError::Expired)
        );
        assert_eq!(
            sealer.open(&token, "alice", &digest(), u64::MAX),
            Err(RequestStateError::Expired)
        );
    }

    #[test]
    fn tampering_is_detected() {
        let sealer = RequestStateSealer::new(&KEY);
        let token = sealer.seal(&state()).unwrap();
        // The conformance suite's tamper: append text.
        assert!(sealer
            .open(&format!("{token}-TAMPERED"), "alice", &digest(), NOW)
            .is_err());
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                sealer.open(&URL_SAFE_NO_PAD.encode(&bad), "alice", &digest(), NOW),
                Err(RequestStateError::Tampered),
                "byte {i}"
            );
        }
        let mut other = KEY;
        other[0] ^= 1;
        assert_eq!(
            RequestStateSealer::new(&other).open(&token, "alice", &digest(), NOW),
            Err(RequestStateError::Tampered)
        );
        // Truncation or extension changes the tag position: tampered or malformed.
        let short = URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]);
        assert!(sealer.open(&short, "alice", &digest(), NOW).is_err());
    }

    #[test]
    fn malformed_states_are_refused_before_cryptography() {
        let sealer = RequestStateSealer::new(&KEY);
        for bad in [
            String::new(),
            "!!!".into(),
            "a".repeat(10),
            "A".repeat(MAX_STATE_LEN + 1),
            "+/+/".repeat(30),
            "é".repeat(40),
        ] {
            assert_eq!(
                sealer.open(&bad, "alice", &digest(), NOW),
                Err(RequestStateError::Malformed),
                "{bad:?}"
            );
        }
        // Right shape, random bytes: fails authentication.
        let garbage = URL_SAFE_NO_PAD.encode([7u8; 12 + 65 + 16]);
        assert_eq!(
            sealer.open(&garbage, "alice", &digest(), NOW),
            Err(RequestStateError::Tampered)
        );
    }

    #[test]
    fn a_session_id_is_not_a_request_state_under_the_same_key() {
        use crate::session::{SessionClaims, SessionSealer};
        use crate::version::ProtocolVersion;
        let sid = SessionSealer::new(&KEY).seal(&SessionClaims {
            nonce: [1; 16],
            subject: SessionClaims::bind_subject("alice"),
            version: ProtocolVersion::V2025_11_25,
            client_caps: 0,
            issued_at: NOW,
            expires_at: NOW + 10,
        });
        assert!(RequestStateSealer::new(&KEY)
            .open(&sid, "alice", &digest(), NOW)
            .is_err());
    }

    #[test]
    fn payload_bounds() {
        let sealer = RequestStateSealer::new(&KEY);
        let big = RequestState {
            payload: vec![1; MAX_PAYLOAD],
            ..state()
        };
        let token = sealer.seal(&big).unwrap();
        assert!(token.len() <= MAX_STATE_LEN);
        assert_eq!(
            sealer
                .open(&token, "alice", &digest(), NOW)
                .unwrap()
                .payload
                .len(),
            MAX_PAYLOAD
        );
        let too_big = RequestState {
            payload: vec![1; MAX_PAYLOAD + 1],
            ..state()
        };
        assert_eq!(sealer.seal(&too_big), Err(RequestStateError::TooLarge));
        let empty = RequestState {
            payload: vec![],
            ..state()
        };
        assert_eq!(
            sealer
                .open(&sealer.seal(&empty).unwrap(), "alice", &digest(), NOW)
                .unwrap()
                .payload,
            b""
        );
    }

    #[test]
    fn unknown_format_inside_a_valid_seal_is_malformed() {
        let sealer = RequestStateSealer::new(&KEY);
        let token = sealer.seal(&state()).unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        // Re-seal a plaintext with format 2 by hand.
        let mut plain = sealer.sealer.open(AAD, &raw).unwrap();
        plain[0] = 2;
        let resealed = sealer.sealer.seal(AAD, &plain).unwrap();
        assert_eq!(
            sealer.open(&URL_SAFE_NO_PAD.encode(&resealed), "alice", &digest(), NOW),
            Err(RequestStateError::Malformed)
        );
    }

    #[test]
    fn digest_ignores_retry_fields_and_key_order_only() {
        let base = json!({"name": "t", "arguments": {"b": [1, {"y": 2, "x": 1}], "a": "s"}});
        let retry = json!({"arguments": {"a": "s", "b": [1, {"x": 1, "y": 2}]}, "name": "t",
            "_meta": {"progressToken": 9}, "inputResponses": {"k": {}}, "requestState": "zzz"});
        assert_eq!(
            request_digest("tools/call", Some(&base)),
            request_digest("tools/call", Some(&retry))
        );
        assert_ne!(
            request_digest("tools/call", Some(&base)),
            request_digest("prompts/get", Some(&base))
        );
        for changed in [
            json!({"name": "u", "arguments": {"b": [1, {"y": 2, "x": 1}], "a": "s"}}),
            json!({"name": "t", "arguments": {"b": [{"y": 2, "x": 1}, 1], "a": "s"}}),
            json!({"name": "t", "arguments": {"b": [1, {"y": 2, "x": 1}], "a": "s", "c": null}}),
            json!({"name": "t", "arguments": {"b": [1, {"y": 2, "x": 1}], "a": "S"}}),
            json!({"name": "t"}),
        ] {
            assert_ne!(
                request_digest("tools/call", Some(&base)),
                request_digest("tools/call", Some(&changed)),
                "{changed}"
            );
        }
        assert_ne!(
            request_digest("m", None),
            request_digest("m", Some(&json!({})))
        );
        // String contents cannot collide with structure.
        assert_ne!(
            request_digest("m", Some(&json!({"a": "b\",\"c"}))),
            request_digest("m", Some(&json!({"a": "b", "c": null})))
        );
    }

    #[test]
    fn errors_map_to_invalid_params() {
        for e in [
            RequestStateError::Tampered,
            RequestStateError::Replayed,
            RequestStateError::Expired,
        ] {
            let r = e.refusal();
            assert_eq!((r.http_status, r.code), (400, -32602));
            assert!(r.message.contains("requestState"));
        }
        assert_eq!(
            format!("{:?}", RequestStateSealer::new(&KEY)),
            "RequestStateSealer(..)"
        );
    }
}
