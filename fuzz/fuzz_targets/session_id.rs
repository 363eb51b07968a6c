//! Opening what clients hand back sealed: the legacy `Mcp-Session-Id` and the modern
//! `requestState`.
//!
//! Input: the first byte picks a mode. 0: the rest is a presented id/state, opened as is.
//! 1: the rest is a plaintext, sealed under the gateway's key and format (as if the key had
//! leaked or a future format had been written), then opened: this reaches the parsing that
//! only runs after authentication. 2: the rest is claims; their id is sealed, one character
//! changed, and the changed id must not open. Checked: no panic, and those properties.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cortex_filters::modern::state::{request_digest, RequestState, RequestStateSealer};
use cortex_filters::seal::Sealer;
use cortex_filters::session::{SessionClaims, SessionSealer};
use cortex_filters::version;
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [7; 32];
const NOW: u64 = 1_800_000_000;
/// The AAD of a session id (its format version) and of a request state.
const SESSION_AAD: &[u8] = &[1];
const STATE_AAD: &[u8] = b"cortex/request-state\x01";

fn take<const N: usize>(rest: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = rest.len().min(N);
    out[..n].copy_from_slice(&rest[..n]);
    *rest = &rest[n..];
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let sessions = SessionSealer::new(&KEY);
    let states = RequestStateSealer::new(&KEY);
    let digest = request_digest("tools/call", None);
    match mode % 3 {
        0 => {
            let id = String::from_utf8_lossy(rest);
            assert!(
                sessions.open(&id, NOW).is_err(),
                "a forged session id opened"
            );
            assert!(
                states.open(&id, "alice", &digest, NOW).is_err(),
                "a forged request state opened"
            );
        }
        1 => {
            let sealer = Sealer::new(&KEY);
            let sealed = sealer.seal(SESSION_AAD, rest).expect("small");
            let id = URL_SAFE_NO_PAD.encode(&sealed);
            if let Ok(claims) = sessions.open(&id, NOW) {
                assert!(claims.expires_at > NOW);
                assert_eq!(claims.version.era(), version::Era::Legacy);
                let again = sessions.seal(&claims);
                assert_eq!(sessions.open(&again, NOW), Ok(claims));
            }
            let sealed = sealer.seal(STATE_AAD, rest).expect("small");
            let token = URL_SAFE_NO_PAD.encode(&sealed);
            if let Ok(state) = states.open(&token, "alice", &digest, NOW) {
                assert!(state.expires_at > NOW);
                assert_eq!(state.request, digest);
            }
        }
        _ => {
            let mut r = rest;
            let nonce = take::<16>(&mut r);
            let [v, caps, at, with] = take::<4>(&mut r);
            let ttl = u64::from_be_bytes(take::<8>(&mut r)) % 1_000_000 + 1;
            let claims = SessionClaims {
                nonce,
                subject: SessionClaims::bind_subject("alice"),
                version: version::LEGACY[usize::from(v) % version::LEGACY.len()],
                client_caps: caps,
                issued_at: NOW,
                expires_at: NOW + ttl,
            };
            let id = sessions.seal(&claims);
            assert_eq!(sessions.open(&id, NOW).as_ref(), Ok(&claims));
            assert!(
                sessions.open(&id, NOW + ttl).is_err(),
                "opened after expiry"
            );
            let mut changed = id.clone().into_bytes();
            let i = usize::from(at) % changed.len();
            changed[i] = with;
            if changed != id.as_bytes() {
                let changed = String::from_utf8_lossy(&changed);
                assert!(sessions.open(&changed, NOW).is_err(), "a changed id opened");
            }

            let state = RequestState::new("alice", digest, NOW, ttl, r.to_vec());
            if let Ok(token) = states.seal(&state) {
                assert!(states.open(&token, "alice", &digest, NOW).is_ok());
                assert!(states.open(&token, "bob", &digest, NOW).is_err());
                let other = request_digest("tools/call", Some(&serde_json::json!({"a": 1})));
                assert!(states.open(&token, "alice", &other, NOW).is_err());
            }
        }
    }
});
