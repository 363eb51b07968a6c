//! `Mcp-Name` / `Mcp-Param-*` values (`=?base64?…?=`) and the check of `Mcp-Param-*`
//! headers against a tool's `x-mcp-header` annotations.
//!
//! Input: the request form of `cortex_fuzz` (headers, then a JSON body
//! `{"inputSchema": …, "arguments": …}`). Checked: no panic; what the gateway encodes decodes
//! back to the same text; a decoded value re-encodes to something that decodes the same; and
//! headers built from the arguments the way a client builds them always pass the check.
#![no_main]

use cortex_filters::modern::headers::{self, ParamKind, RequestHeaders, MAX_ENCODED_LEN};
use cortex_fuzz::Request;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The safe-integer bound of the spec (JavaScript's).
const MAX_SAFE: i64 = (1 << 53) - 1;

fn round_trip(s: &str) {
    let encoded = headers::encode_value(s);
    if encoded.len() > MAX_ENCODED_LEN {
        return;
    }
    let back = headers::decode_value(encoded.as_bytes())
        .unwrap_or_else(|e| panic!("{s:?} encoded as {encoded:?} does not decode: {e}"));
    assert_eq!(back, s, "encoded as {encoded:?}");
}

/// The header text a client sends for an argument, or `None` when the argument cannot be
/// mirrored (then no header is expected to pass).
fn header_text(v: &Value, kind: ParamKind) -> Option<String> {
    match (v, kind) {
        (Value::String(s), ParamKind::String) => Some(s.clone()),
        (Value::Bool(b), ParamKind::Boolean) => Some(b.to_string()),
        (Value::Number(n), ParamKind::Integer) => n
            .as_i64()
            .filter(|i| (-MAX_SAFE..=MAX_SAFE).contains(i))
            .map(|i| i.to_string()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let req = Request::parse(data);
    for (_, raw) in &req.headers {
        let _ = headers::plain_value(raw);
        if let Ok(decoded) = headers::decode_value(raw) {
            round_trip(&decoded);
        }
        round_trip(&String::from_utf8_lossy(raw));
    }
    let received = RequestHeaders::from_pairs(req.pairs());

    let Ok(body) = serde_json::from_slice::<Value>(req.body) else {
        return;
    };
    let schema = body.get("inputSchema").unwrap_or(&Value::Null);
    let arguments = body.get("arguments");
    let Ok(annotations) = headers::param_headers(schema) else {
        return;
    };
    let _ = headers::check_param_headers(&received, &annotations, arguments);

    // The headers a well-behaved client sends for these arguments must pass.
    let mut sent: Vec<(String, String)> = Vec::new();
    for a in &annotations {
        let value = arguments
            .and_then(|args| a.path.iter().try_fold(args, |v, k| v.get(k)))
            .filter(|v| !v.is_null());
        let Some(value) = value else { continue };
        let Some(text) = header_text(value, a.kind) else {
            return;
        };
        let encoded = headers::encode_value(&text).into_owned();
        if encoded.len() > MAX_ENCODED_LEN {
            return;
        }
        sent.push((format!("Mcp-Param-{}", a.header), encoded));
    }
    let built = RequestHeaders::from_pairs(sent.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    if let Err(r) = headers::check_param_headers(&built, &annotations, arguments) {
        panic!(
            "headers built from the arguments are refused: {}",
            r.message
        );
    }
});
