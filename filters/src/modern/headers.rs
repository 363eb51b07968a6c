//! The HTTP headers a modern request mirrors from its body, and their checks.
//!
//! 2026-07-28 copies the protocol version, the method and the target name into
//! `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name`, and tool arguments annotated with
//! `x-mcp-header` into `Mcp-Param-{Name}`, so that intermediaries can route without parsing
//! the body. A server that reads the body must reject any disagreement (HTTP 400, -32020), or
//! a load balancer and the server could act on different values.
//!
//! Values that are not plain header text travel as `=?base64?{standard base64}?=`. The
//! decoding here is strict: canonical padding, standard alphabet, no trailing bits, UTF-8,
//! bounded length; anything else is a malformed header, never a literal.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use super::Refusal;

/// Header name of the protocol version.
pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// Header name mirroring the JSON-RPC method.
pub const METHOD: &str = "mcp-method";
/// Header name mirroring `params.name` or `params.uri`.
pub const NAME: &str = "mcp-name";
/// Header name of a legacy session.
pub const SESSION_ID: &str = "mcp-session-id";
/// Prefix of the headers mirroring annotated tool arguments.
pub const PARAM_PREFIX: &str = "mcp-param-";

/// The sentinel opening an encoded value.
const B64_OPEN: &str = "=?base64?";
/// The sentinel closing an encoded value.
const B64_CLOSE: &str = "?=";
/// The longest encoded payload accepted (base64 characters); bounds the work a header causes.
pub const MAX_ENCODED_LEN: usize = 8 * 1024;
/// How many `Mcp-Param-*` headers are kept; more is refused as malformed.
pub const MAX_PARAM_HEADERS: usize = 64;
/// How many `x-mcp-header` annotations a tool schema may carry.
pub const MAX_ANNOTATIONS: usize = 64;

/// One routing header as received: absent, present once, or present more than once (which
/// is refused: first-value and last-value readers would disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderSlot<'h> {
    /// Not sent.
    #[default]
    Absent,
    /// Sent once, raw bytes.
    One(&'h [u8]),
    /// Sent more than once.
    Repeated,
}

impl<'h> HeaderSlot<'h> {
    /// The value when the header was sent exactly once.
    pub fn single(&self) -> Option<&'h [u8]> {
        match self {
            HeaderSlot::One(v) => Some(v),
            _ => None,
        }
    }

    fn push(&mut self, value: &'h [u8]) {
        *self = match self {
            HeaderSlot::Absent => HeaderSlot::One(value),
            _ => HeaderSlot::Repeated,
        };
    }
}

/// The headers of one request that the modern era reads, borrowed from the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders<'h> {
    /// `MCP-Protocol-Version`.
    pub protocol_version: HeaderSlot<'h>,
    /// `Mcp-Method`.
    pub method: HeaderSlot<'h>,
    /// `Mcp-Name`.
    pub name: HeaderSlot<'h>,
    /// Whether an `Mcp-Session-Id` was sent (a legacy marker).
    pub session_id: bool,
    /// `Mcp-Param-*` headers: the name after the prefix, and the raw value.
    params: Vec<(&'h str, &'h [u8])>,
    /// More than [`MAX_PARAM_HEADERS`] `Mcp-Param-*` headers were sent.
    params_overflow: bool,
}

impl<'h> RequestHeaders<'h> {
    /// Collects the routing headers from `(name, value)` pairs: every header of the request,
    /// in any case (names compare case-insensitively). Allocates only when `Mcp-Param-*`
    /// headers are present.
    pub fn from_pairs<I>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'h str, &'h [u8])>,
    {
        let mut out = RequestHeaders::default();
        for (name, value) in pairs {
            if name.len() < 8 || !name.as_bytes()[..4].eq_ignore_ascii_case(b"mcp-") {
                continue;
            }
            if name.eq_ignore_ascii_case(PROTOCOL_VERSION) {
                out.protocol_version.push(value);
            } else if name.eq_ignore_ascii_case(METHOD) {
                out.method.push(value);
            } else if name.eq_ignore_ascii_case(NAME) {
                out.name.push(value);
            } else if name.eq_ignore_ascii_case(SESSION_ID) {
                out.session_id = true;
            } else if name.len() > PARAM_PREFIX.len()
                && name.as_bytes()[..PARAM_PREFIX.len()]
                    .eq_ignore_ascii_case(PARAM_PREFIX.as_bytes())
            {
                if out.params.len() < MAX_PARAM_HEADERS {
                    out.params.push((&name[PARAM_PREFIX.len()..], value));
                } else {
                    out.params_overflow = true;
                }
            }
        }
        out
    }

    /// The `Mcp-Param-{name}` header (name compared case-insensitively).
    pub fn param(&self, name: &str) -> HeaderSlot<'h> {
        let mut slot = HeaderSlot::Absent;
        for (n, v) in &self.params {
            if n.eq_ignore_ascii_case(name) {
                slot.push(v);
            }
        }
        slot
    }

    /// The `Mcp-Param-*` headers sent, as `(name after the prefix, raw value)`.
    pub fn params(&self) -> &[(&'h str, &'h [u8])] {
        &self.params
    }
}

/// Why a header value cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderValueError {
    /// A byte outside visible ASCII, space and tab.
    #[error("contains a character not allowed in a header value")]
    InvalidCharacter,
    /// The `=?base64?…?=` payload is not canonical standard base64.
    #[error("has an invalid base64 payload")]
    BadBase64,
    /// The decoded bytes are not UTF-8.
    #[error("decodes to bytes that are not UTF-8")]
    NotUtf8,
    /// The encoded payload exceeds [`MAX_ENCODED_LEN`].
    #[error("is longer than {MAX_ENCODED_LEN} characters")]
    TooLong,
}

/// Removes optional whitespace (space, tab) around a field value (RFC 9110 §5.5).
pub fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    match start {
        None => &[],
        Some(s) => {
            let end = v
                .iter()
                .rposition(|b| !matches!(b, b' ' | b'\t'))
                .map_or(s, |e| e + 1);
            &v[s..end]
        }
    }
}

/// The value of a plain (never encoded) header such as `Mcp-Method`: whitespace trimmed,
/// visible ASCII only.
pub fn plain_value(raw: &[u8]) -> Result<&str, HeaderValueError> {
    let v = trim_ows(raw);
    if !v.iter().all(|&b| is_field_char(b)) {
        return Err(HeaderValueError::InvalidCharacter);
    }
    std::str::from_utf8(v).map_err(|_| HeaderValueError::InvalidCharacter)
}

/// Visible ASCII, space or tab: what a field value may contain (RFC 9110 §5.5, without
/// obs-text).
fn is_field_char(b: u8) -> bool {
    matches!(b, 0x20..=0x7e | b'\t')
}

/// Decodes an `Mcp-Name` or `Mcp-Param-*` value: trimmed; a value in the base64 sentinel
/// (`=?base64?…?=`) is decoded strictly, anything else is taken literally.
pub fn decode_value(raw: &[u8]) -> Result<Cow<'_, str>, HeaderValueError> {
    let v = plain_value(raw)?;
    let Some(payload) = v
        .strip_prefix(B64_OPEN)
        .and_then(|rest| rest.strip_suffix(B64_CLOSE))
    else {
        return Ok(Cow::Borrowed(v));
    };
    if payload.len() > MAX_ENCODED_LEN {
        return Err(HeaderValueError::TooLong);
    }
    // The STANDARD engine requires canonical padding and rejects non-zero trailing bits, so
    // a value has exactly one encoded form.
    let bytes = STANDARD
        .decode(payload)
        .map_err(|_| HeaderValueError::BadBase64)?;
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| HeaderValueError::NotUtf8)
}

/// Encodes a value for an `Mcp-Name` or `Mcp-Param-*` header (when the gateway calls a
/// modern upstream): plain when it is visible ASCII without surrounding whitespace and does
/// not look like the sentinel, else the base64 sentinel form.
pub fn encode_value(value: &str) -> Cow<'_, str> {
    let looks_encoded = value.starts_with(B64_OPEN) && value.ends_with(B64_CLOSE);
    let plain = value.bytes().all(|b| matches!(b, 0x20..=0x7e))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !looks_encoded;
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("{B64_OPEN}{}{B64_CLOSE}", STANDARD.encode(value)))
    }
}

/// The JSON type an `x-mcp-header` annotation may sit on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// `"type": "string"`.
    String,
    /// `"type": "integer"` (safe-integer range).
    Integer,
    /// `"type": "boolean"`.
    Boolean,
}

/// One argument a tool asks clients to mirror into `Mcp-Param-{header}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// The header name after `Mcp-Param-` (the `x-mcp-header` value).
    pub header: String,
    /// The chain of `properties` keys from the schema root to the argument.
    pub path: Vec<String>,
    /// The declared type.
    pub kind: ParamKind,
}

/// Why a tool's `x-mcp-header` annotations are invalid (the spec has clients drop such a
/// tool from `tools/list`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamSchemaError {
    /// The annotation is not a non-empty HTTP token.
    #[error("x-mcp-header {0:?} is not a valid header name token")]
    BadName(String),
    /// Two annotations differ only in case.
    #[error("x-mcp-header {0:?} is used more than once (names compare case-insensitively)")]
    Duplicate(String),
    /// The annotated property is not a string, integer or boolean.
    #[error("x-mcp-header {0:?} is on a property whose type is not string, integer or boolean")]
    BadType(String),
    /// The annotation is not reachable from the root through `properties` alone.
    #[error("x-mcp-header found outside a chain of \"properties\" from the schema root")]
    NotStatic,
    /// More than [`MAX_ANNOTATIONS`] annotations.
    #[error("more than {MAX_ANNOTATIONS} x-mcp-header annotations")]
    TooMany,
}

/// The `x-mcp-header` annotations of a tool's `inputSchema`, validated as the spec requires:
/// a non-empty token, unique ignoring case, on a string/integer/boolean property reached from
/// the root through `properties` keys only. Compute once per catalog, not per request.
pub fn param_headers(input_schema: &Value) -> Result<Vec<ParamHeader>, ParamSchemaError> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk_static(input_schema, &mut path, &mut out)?;
    for (i, a) in out.iter().enumerate() {
        if out[..i]
            .iter()
            .any(|b| b.header.eq_ignore_ascii_case(&a.header))
        {
            return Err(ParamSchemaError::Duplicate(a.header.clone()));
        }
    }
    Ok(out)
}

/// Walks a schema reached by `properties` keys only; `path` is the chain so far.
fn walk_static(
    schema: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<ParamHeader>,
) -> Result<(), ParamSchemaError> {
    let Value::Object(obj) = schema else {
        return Ok(());
    };
    if let Some(annotation) = obj.get("x-mcp-header") {
        if path.is_empty() {
            // The root is the arguments object itself, never a primitive.
            return Err(ParamSchemaError::NotStatic);
        }
        let name = annotation.as_str().unwrap_or_default();
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(ParamSchemaError::BadName(annotation.to_string()));
        }
        let kind = match obj.get("type").and_then(Value::as_str) {
            Some("string") => ParamKind::String,
            Some("integer") => ParamKind::Integer,
            Some("boolean") => ParamKind::Boolean,
            _ => return Err(ParamSchemaError::BadType(name.to_owned())),
        };
        if out.len() >= MAX_ANNOTATIONS {
            return Err(ParamSchemaError::TooMany);
        }
        out.push(ParamHeader {
            header: name.to_owned(),
            path: path.clone(),
            kind,
        });
    }
    for (key, value) in obj {
        if key == "properties" {
            if let Value::Object(props) = value {
                for (prop, sub) in props {
                    path.push(prop.clone());
                    let r = walk_static(sub, path, out);
                    path.pop();
                    r?;
                }
            } else {
                reject_annotations(value)?;
            }
        } else if key != "x-mcp-header" {
            reject_annotations(value)?;
        }
    }
    Ok(())
}

/// Fails when an annotation appears anywhere under `v` (a position not reached through
/// `properties`: `items`, `oneOf`, `$defs`, …). A string-valued `x-mcp-header` member marks an
/// annotation; a property *named* `x-mcp-header` has a schema object as its value.
fn reject_annotations(v: &Value) -> Result<(), ParamSchemaError> {
    match v {
        Value::Object(obj) => {
            if obj.get("x-mcp-header").is_some_and(Value::is_string) {
                return Err(ParamSchemaError::NotStatic);
            }
            obj.values().try_for_each(reject_annotations)
        }
        Value::Array(items) => items.iter().try_for_each(reject_annotations),
        _ => Ok(()),
    }
}

/// An RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The largest integer both sides represent exactly (JavaScript's safe range).
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Checks the `Mcp-Param-*` headers of a `tools/call` against the routed tool's
/// annotations and the call's `arguments`: an argument that is present (and not `null`) needs
/// its header, with a value equal after decoding (integers compared numerically); a header
/// without its argument is a mismatch too. Headers the tool does not annotate are ignored
/// (they are forwarded untouched). Every failure is HTTP 400 with -32020.
pub fn check_param_headers(
    headers: &RequestHeaders<'_>,
    annotations: &[ParamHeader],
    arguments: Option<&Value>,
) -> Result<(), Refusal> {
    if headers.params_overflow {
        return Err(Refusal::header_mismatch(format!(
            "Header mismatch: more than {MAX_PARAM_HEADERS} Mcp-Param headers"
        )));
    }
    for a in annotations {
        let value = arguments
            .and_then(|args| lookup(args, &a.path))
            .filter(|v| !v.is_null());
        let header = headers.param(&a.header);
        let label = format!("Mcp-Param-{}", a.header);
        match (value, header) {
            (None, HeaderSlot::Absent) => {}
            (_, HeaderSlot::Repeated) => {
                return Err(Refusal::header_mismatch(format!(
                    "Header mismatch: {label} is sent more than once"
                )))
            }
            (None, HeaderSlot::One(_)) => {
                return Err(Refusal::header_mismatch(format!(
                    "Header mismatch: {label} is sent but the argument {} is absent",
                    a.path.join(".")
                )))
            }
            (Some(_), HeaderSlot::Absent) => {
                return Err(Refusal::header_mismatch(format!(
                    "Header mismatch: {label} is required because the argument {} is present",
                    a.path.join(".")
                )))
            }
            (Some(body), HeaderSlot::One(raw)) => {
                let decoded = decode_value(raw).map_err(|e| {
                    Refusal::header_mismatch(format!("Header mismatch: {label} {e}"))
                })?;
                if !param_matches(&decoded, body) {
                    return Err(Refusal::header_mismatch(format!(
                        "Header mismatch: {label} does not match the argument {}",
                        a.path.join(".")
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The value at a chain of object keys.
fn lookup<'v>(root: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(root, |v, key| v.get(key))
}

/// Whether a decoded header value stands for the body value: strings exactly, booleans as
/// `true`/`false`, integers numerically within the safe range (`42.0` equals `42`).
fn param_matches(header: &str, body: &Value) -> bool {
    match body {
        Value::String(s) => header == s,
        Value::Bool(b) => header == if *b { "true" } else { "false" },
        Value::Number(n) => {
            // The body value as an integer within the safe range: an integer, or a float
            // with no fractional part (`42.0` in the body equals `42` in the header).
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let want = n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64)
                    .map(|f| f as i64)
            });
            // `unsigned_abs`: `i64::MIN.abs()` overflows (a panic in debug builds, and in
            // release it stays negative, so the minimum passed as "safe").
            let Some(want) = want.filter(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER.unsigned_abs())
            else {
                return false;
            };
            if let Ok(got) = header.parse::<i64>() {
                return got == want;
            }
            // `want` is within 2^53, so it converts to f64 exactly.
            #[allow(clippy::cast_precision_loss)]
            let want = want as f64;
            header
                .parse::<f64>()
                .is_ok_and(|got| got.is_finite() && got == want)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> RequestHeaders<'a> {
        RequestHeaders::from_pairs(pairs.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    #[test]
    fn the_smallest_integer_is_outside_the_safe_range() {
        // Found while writing the `param_headers` fuzz target: `i64::MIN.abs()` overflowed.
        for (n, header) in [
            (i64::MIN, "-9223372036854775808"),
            (i64::MAX, "9223372036854775807"),
        ] {
            assert!(!param_matches(header, &serde_json::json!(n)), "{n}");
        }
        let max = (1i64 << 53) - 1;
        assert!(param_matches(&(-max).to_string(), &serde_json::json!(-max)));
    }

    #[test]
    fn collects_routing_headers_case_insensitively_and_flags_repeats() {
        let h = headers(&[
            ("MCP-PROTOCOL-VERSION", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("Mcp-Name", "a"),
            ("Mcp-Name", "b"),
            ("mcp-param-Region", "us"),
            ("MCP-PARAM-region", "eu"),
            ("Mcp-Param-Other", "x"),
            ("content-type", "application/json"),
            ("Mcp-Param-", "ignored: no name"),
            ("mcp", "short"),
        ]);
        assert_eq!(h.protocol_version, HeaderSlot::One(b"2026-07-28"));
        assert_eq!(h.method.single(), Some(&b"tools/call"[..]));
        assert_eq!(h.name, HeaderSlot::Repeated);
        assert!(!h.session_id);
        assert_eq!(h.param("region"), HeaderSlot::Repeated);
        assert_eq!(h.param("OTHER"), HeaderSlot::One(b"x"));
        assert_eq!(h.param("missing"), HeaderSlot::Absent);
        assert_eq!(h.params().len(), 3);
        assert!(headers(&[("mcp-session-id", "s")]).session_id);
        assert_eq!(RequestHeaders::default(), headers(&[]));
    }

    #[test]
    fn param_headers_beyond_the_bound_are_refused() {
        let names: Vec<String> = (0..=MAX_PARAM_HEADERS)
            .map(|i| format!("Mcp-Param-P{i}"))
            .collect();
        let pairs: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
        let h = RequestHeaders::from_pairs(pairs);
        assert_eq!(h.params().len(), MAX_PARAM_HEADERS);
        let e = check_param_headers(&h, &[], None).unwrap_err();
        assert_eq!(e.code, -32020);
    }

    #[test]
    fn trimming_and_plain_values() {
        assert_eq!(trim_ows(b"  a b\t "), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(plain_value(b" tools/list ").unwrap(), "tools/list");
        assert_eq!(
            plain_value(b"a\nb"),
            Err(HeaderValueError::InvalidCharacter)
        );
        assert_eq!(
            plain_value("é".as_bytes()),
            Err(HeaderValueError::InvalidCharacter)
        );
        assert_eq!(
            plain_value(b"a\x7fb"),
            Err(HeaderValueError::InvalidCharacter)
        );
    }

    #[test]
    fn decodes_the_spec_examples() {
        assert_eq!(decode_value(b"us-west1").unwrap(), "us-west1");
        assert_eq!(
            decode_value(b"=?base64?SGVsbG8sIOS4lueVjA==?=").unwrap(),
            "Hello, 世界"
        );
        assert_eq!(
            decode_value(b"=?base64?IHBhZGRlZCA=?=").unwrap(),
            " padded "
        );
        assert_eq!(
            decode_value(b"=?base64?bGluZTEKbGluZTI=?=").unwrap(),
            "line1\nline2"
        );
        assert_eq!(
            decode_value(b"=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=").unwrap(),
            "=?base64?literal?="
        );
        // Whitespace around the field value is not part of it.
        assert_eq!(decode_value(b"  =?base64?SGVsbG8=?=  ").unwrap(), "Hello");
        assert_eq!(decode_value(b"=?base64??=").unwrap(), "");
    }

    #[test]
    fn decoding_is_strict() {
        // Missing padding, foreign characters, URL-safe alphabet, trailing bits.
        for bad in [
            &b"=?base64?SGVsbG8?="[..],
            b"=?base64?SGVs!!!bG8=?=",
            b"=?base64?_-8=?=",
            b"=?base64?SGVsbG9=?=",
            b"=?base64?SGVs bG8=?=",
            b"=?base64?SGVsbG8==?=",
        ] {
            assert_eq!(
                decode_value(bad),
                Err(HeaderValueError::BadBase64),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            decode_value(b"=?base64?/w==?="),
            Err(HeaderValueError::NotUtf8)
        );
        let long = format!("=?base64?{}?=", "A".repeat(MAX_ENCODED_LEN + 4));
        assert_eq!(
            decode_value(long.as_bytes()),
            Err(HeaderValueError::TooLong)
        );
        assert_eq!(
            decode_value(b"=?base64?\x01?="),
            Err(HeaderValueError::InvalidCharacter)
        );
        // Without both sentinels the value is literal.
        assert_eq!(decode_value(b"SGVsbG8=").unwrap(), "SGVsbG8=");
        assert_eq!(
            decode_value(b"=?base64?SGVsbG8=").unwrap(),
            "=?base64?SGVsbG8="
        );
        assert_eq!(decode_value(b"SGVsbG8=?=").unwrap(), "SGVsbG8=?=");
        assert_eq!(
            decode_value(b"=?BASE64?SGVsbG8=?=").unwrap(),
            "=?BASE64?SGVsbG8=?="
        );
    }

    #[test]
    fn encoding_round_trips_and_stays_plain_when_it_can() {
        for (v, plain) in [
            ("us-west1", true),
            ("get_weather", true),
            ("file:///a b.txt", true),
            ("Hello, 世界", false),
            (" padded ", false),
            ("line1\nline2", false),
            ("=?base64?literal?=", false),
            ("tab\there", false),
            ("", true),
        ] {
            let e = encode_value(v);
            assert_eq!(matches!(e, Cow::Borrowed(_)), plain, "{v:?}");
            if !v.is_empty() {
                assert_eq!(decode_value(e.as_bytes()).unwrap(), v, "{v:?}");
            }
        }
        assert_eq!(
            encode_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
    }

    #[test]
    fn annotations_are_read_from_static_properties_only() {
        let schema = json!({
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "query": {"type": "string"},
                "opts": {"type": "object", "properties": {
                    "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"},
                    "limit": {"type": "integer", "x-mcp-header": "Limit"}
                }},
                "x-mcp-header": {"type": "string", "description": "a property with that name"}
            }
        });
        let mut got = param_headers(&schema).unwrap();
        got.sort_by(|a, b| a.header.cmp(&b.header));
        assert_eq!(
            got,
            vec![
                ParamHeader {
                    header: "Dry-Run".into(),
                    path: vec!["opts".into(), "dry".into()],
                    kind: ParamKind::Boolean
                },
                ParamHeader {
                    header: "Limit".into(),
                    path: vec!["opts".into(), "limit".into()],
                    kind: ParamKind::Integer
                },
                ParamHeader {
                    header: "Region".into(),
                    path: vec!["region".into()],
                    kind: ParamKind::String
                },
            ]
        );
        assert_eq!(param_headers(&json!({"type": "object"})).unwrap(), vec![]);
        assert_eq!(param_headers(&json!(null)).unwrap(), vec![]);
    }

    #[test]
    fn invalid_annotations_invalidate_the_tool() {
        let cases = [
            (
                json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
                "BadType",
            ),
            (
                json!({"properties": {"a": {"x-mcp-header": "A"}}}),
                "BadType",
            ),
            (
                json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}),
                "BadName",
            ),
            (
                json!({"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}),
                "BadName",
            ),
            (
                json!({"properties": {"a": {"type": "string", "x-mcp-header": "A\r\n"}}}),
                "BadName",
            ),
            (
                json!({"properties": {"a": {"type": "string", "x-mcp-header": 5}}}),
                "BadName",
            ),
            (
                json!({"properties": {
                "a": {"type": "string", "x-mcp-header": "Dup"},
                "b": {"type": "string", "x-mcp-header": "dup"}}}),
                "Duplicate",
            ),
            (
                json!({"properties": {"a": {"type": "array", "items": {"type": "string", "x-mcp-header": "I"}}}}),
                "NotStatic",
            ),
            (
                json!({"oneOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "O"}}}]}),
                "NotStatic",
            ),
            (
                json!({"$defs": {"d": {"type": "string", "x-mcp-header": "D"}}}),
                "NotStatic",
            ),
            (
                json!({"properties": {"a": {"$ref": "#/$defs/d"}}, "$defs": {"d": {"type": "string", "x-mcp-header": "D"}}}),
                "NotStatic",
            ),
            (
                json!({"type": "object", "x-mcp-header": "Root"}),
                "NotStatic",
            ),
        ];
        for (schema, kind) in cases {
            let e = param_headers(&schema).unwrap_err();
            assert!(format!("{e:?}").starts_with(kind), "{schema}: {e:?}");
        }
        let many: serde_json::Map<String, Value> = (0..=MAX_ANNOTATIONS)
            .map(|i| {
                (
                    format!("p{i}"),
                    json!({"type": "string", "x-mcp-header": format!("P{i}")}),
                )
            })
            .collect();
        assert_eq!(
            param_headers(&json!({"properties": many})),
            Err(ParamSchemaError::TooMany)
        );
    }

    fn region() -> Vec<ParamHeader> {
        param_headers(&json!({"properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "n": {"type": "integer", "x-mcp-header": "N"},
            "flag": {"type": "boolean", "x-mcp-header": "Flag"}
        }}))
        .unwrap()
    }

    #[test]
    fn param_headers_must_mirror_the_arguments() {
        let ann = region();
        let ok = |pairs: &[(&str, &str)], args: Value| {
            check_param_headers(&headers(pairs), &ann, Some(&args))
        };
        assert!(ok(
            &[("Mcp-Param-Region", "us-west1")],
            json!({"region": "us-west1"})
        )
        .is_ok());
        assert!(ok(
            &[("mcp-param-region", " us-west1 ")],
            json!({"region": "us-west1"})
        )
        .is_ok());
        assert!(ok(
            &[("Mcp-Param-Region", "=?base64?SGVsbG8=?=")],
            json!({"region": "Hello"})
        )
        .is_ok());
        assert!(ok(&[], json!({})).is_ok());
        assert!(ok(&[], json!({"region": null})).is_ok());
        assert!(check_param_headers(&headers(&[]), &ann, None).is_ok());
        assert!(ok(&[("Mcp-Param-N", "42")], json!({"n": 42})).is_ok());
        assert!(ok(&[("Mcp-Param-N", "42.0")], json!({"n": 42})).is_ok());
        assert!(ok(&[("Mcp-Param-N", "-7")], json!({"n": -7})).is_ok());
        assert!(ok(&[("Mcp-Param-N", "42")], json!({"n": 42.0})).is_ok());
        assert!(ok(&[("Mcp-Param-N", "42")], json!({"n": 42.5})).is_err());
        assert!(ok(&[("Mcp-Param-Flag", "false")], json!({"flag": false})).is_ok());
        // The header mirrors the body value as sent; a body of the wrong type is the tool's
        // input validation to reject, not a header mismatch.
        assert!(ok(&[("Mcp-Param-N", "42")], json!({"n": "42"})).is_ok());
        // Unknown Mcp-Param headers are not this check's business.
        assert!(ok(&[("Mcp-Param-Other", "x")], json!({})).is_ok());

        for (pairs, args) in [
            (vec![], json!({"region": "us"})),
            (vec![("Mcp-Param-Region", "us")], json!({})),
            (vec![("Mcp-Param-Region", "eu")], json!({"region": "us"})),
            (vec![("Mcp-Param-Region", "US")], json!({"region": "us"})),
            (
                vec![("Mcp-Param-Region", "=?base64?SGVsbG8?=")],
                json!({"region": "Hello"}),
            ),
            (
                vec![("Mcp-Param-Region", "=?base64?SGVs!!!bG8=?=")],
                json!({"region": "Hello"}),
            ),
            (
                vec![("Mcp-Param-Region", "us"), ("Mcp-Param-REGION", "us")],
                json!({"region": "us"}),
            ),
            (vec![("Mcp-Param-N", "43")], json!({"n": 42})),
            (vec![("Mcp-Param-N", "0x2A")], json!({"n": 42})),
            (vec![("Mcp-Param-N", "inf")], json!({"n": 42})),
            (
                vec![("Mcp-Param-N", "9007199254740993")],
                json!({"n": 9_007_199_254_740_993_i64}),
            ),
            (vec![("Mcp-Param-Flag", "True")], json!({"flag": true})),
            (vec![("Mcp-Param-Flag", "1")], json!({"flag": true})),
            (vec![("Mcp-Param-Region", "x")], json!({"region": {"a": 1}})),
        ] {
            let e = ok(&pairs, args.clone()).expect_err(&format!("{pairs:?} {args}"));
            assert_eq!((e.http_status, e.code), (400, -32020), "{pairs:?} {args}");
        }
    }
}
