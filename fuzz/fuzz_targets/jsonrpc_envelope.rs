//! A POST as the MCP endpoint reads it: the body through JSON-RPC parsing, then the era
//! choice, the legacy checks (version header, negotiation, method table) and the modern
//! `_meta`/mirrored-header checks of every message. Never a panic; every refusal is a valid
//! JSON-RPC error with a 4xx status; an accepted modern request agrees with its headers.
#![no_main]

use cortex_filters::jsonrpc::{self, Incoming, Message};
use cortex_filters::modern::envelope::{self, Policy};
use cortex_filters::modern::headers::{self, HeaderSlot, RequestHeaders};
use cortex_filters::modern::select_era;
use cortex_filters::version::{self, Era};
use cortex_fuzz::{assert_jsonrpc, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let req = Request::parse(data);
    let headers = RequestHeaders::from_pairs(req.pairs());
    let incoming = match jsonrpc::parse_body(req.body) {
        Ok(i) => i,
        Err(e) => {
            assert_jsonrpc(&e.to_response(None));
            return;
        }
    };
    let era = select_era(&req.method, &headers, &incoming);
    let messages: Vec<&Message> = match &incoming {
        Incoming::Single(m) => vec![m],
        Incoming::Batch(ms) => {
            assert!(!ms.is_empty() && ms.len() <= jsonrpc::MAX_BATCH);
            assert_eq!(era, Era::Legacy, "a batch is legacy");
            ms.iter().collect()
        }
    };

    // Legacy: the version header and the handshake.
    if let Ok(v) = version::from_header(headers.protocol_version.single()) {
        assert_eq!(v.era(), Era::Legacy);
    }
    for m in &messages {
        let Some(method) = m.method() else { continue };
        assert!(!method.is_empty());
        for v in version::ALL {
            let _ = version::method_status(v, method);
        }
        if method == "initialize" {
            let requested = match m {
                Message::Request {
                    params: Some(p), ..
                } => p.get("protocolVersion").and_then(|v| v.as_str()),
                _ => None,
            };
            assert_eq!(version::negotiate(requested).era(), Era::Legacy);
        }
    }

    // Modern: `_meta` and the mirrored headers.
    for m in &messages {
        let id = match m {
            Message::Request { id, .. } => Some(id),
            _ => None,
        };
        match envelope::validate(&req.method, &headers, m, &Policy::default()) {
            Err(refusal) => {
                assert!(
                    (400..500).contains(&refusal.http_status),
                    "status {}",
                    refusal.http_status
                );
                assert_jsonrpc(&refusal.body(id));
            }
            Ok(r) => {
                assert_eq!(r.version.era(), Era::Modern);
                assert_eq!(Some(r.method), m.method());
                if r.id.is_some() {
                    // Accepted requests agree with their mirrored headers.
                    let HeaderSlot::One(raw) = headers.method else {
                        panic!("accepted without one Mcp-Method header")
                    };
                    assert_eq!(headers::plain_value(raw).ok(), Some(r.method));
                    if let Some(name) = r.name {
                        let HeaderSlot::One(raw) = headers.name else {
                            panic!("accepted without one Mcp-Name header")
                        };
                        assert_eq!(headers::decode_value(raw).ok().as_deref(), Some(name));
                    }
                }
            }
        }
    }
});
