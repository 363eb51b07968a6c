//! Result decoration: `resultType` on every modern result, caching hints where the spec
//! requires them, and the server's identity in `_meta`.
//!
//! The gateway keeps list pages and backend results as serialized bytes, so the fields are
//! spliced into the bytes instead of parsing and re-serializing the result:
//!
//! - [`prepend`] writes the fields right after the opening brace. It is the cheap path for
//!   bytes the gateway produced itself (it knows none of the fields is present): one copy,
//!   no scan.
//! - [`decorate`] scans the top-level members once (strings and nesting are skipped, nothing
//!   is allocated per member) and replaces any `resultType`, `ttlMs` or `cacheScope` already
//!   there, so a modern upstream's result cannot smuggle in its own cache scope. It merges
//!   the server identity into an existing `_meta`.
//!
//! Cache scope: `private` whenever the answer depends on who asks (in the gateway almost
//! always: lists and reads are filtered by the caller's scopes); `public` only when it
//! cannot. Decide it per list, never per page, so every page of one list carries the same
//! scope.

use serde_json::{Map, Value};

use super::META_SERVER_INFO;

/// The methods whose complete results must carry `ttlMs` and `cacheScope`.
pub const CACHEABLE: [&str; 6] = [
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Whether a complete result of `method` carries caching hints.
pub fn is_cacheable(method: &str) -> bool {
    CACHEABLE.contains(&method)
}

/// The kind of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultType {
    /// The request is done; the result holds its content.
    Complete,
    /// The client must supply input and retry (an `InputRequiredResult`).
    InputRequired,
}

impl ResultType {
    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResultType::Complete => "complete",
            ResultType::InputRequired => "input_required",
        }
    }
}

/// Who may reuse a cached result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// Any client or shared cache may reuse it across callers.
    Public,
    /// Reusable only within the same authorization context.
    Private,
}

impl CacheScope {
    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheScope::Public => "public",
            CacheScope::Private => "private",
        }
    }

    /// `private` when the answer depends on the caller (their scopes, their identity),
    /// `public` only when it cannot.
    pub const fn for_answer(depends_on_caller: bool) -> Self {
        if depends_on_caller {
            CacheScope::Private
        } else {
            CacheScope::Public
        }
    }
}

/// A caching hint: how long the result stays fresh, and who may reuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheHint {
    /// Freshness in milliseconds (0 = immediately stale).
    pub ttl_ms: u64,
    /// Who may reuse it.
    pub scope: CacheScope,
}

/// What to splice into a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoration<'a> {
    /// `resultType`.
    pub result_type: ResultType,
    /// `ttlMs` and `cacheScope`; ignored for an input-required result, which is never
    /// cacheable.
    pub cache: Option<CacheHint>,
    /// The serialized `Implementation` object for `_meta["io.modelcontextprotocol/serverInfo"]`
    /// (see [`super::discover::ServerInfo::to_json_bytes`]).
    pub server_info: Option<&'a [u8]>,
}

impl<'a> Decoration<'a> {
    /// The decoration of a complete result of `method`: caching hints exactly when the method
    /// is cacheable. A multi-round-trip retry (carrying `inputResponses` or `requestState`)
    /// depends on inputs outside any cache key and must not be cached, yet the spec still
    /// requires the hints on every complete result of these methods: it gets `ttlMs: 0`
    /// (immediately stale) with the same scope.
    pub fn complete(
        method: &str,
        is_retry: bool,
        hint: CacheHint,
        server_info: Option<&'a [u8]>,
    ) -> Self {
        let cache = is_cacheable(method).then_some(if is_retry {
            CacheHint { ttl_ms: 0, ..hint }
        } else {
            hint
        });
        Decoration {
            result_type: ResultType::Complete,
            cache,
            server_info,
        }
    }
}

/// Why a result could not be decorated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpliceError {
    /// The bytes are not a JSON object.
    #[error("result is not a JSON object")]
    NotAnObject,
    /// The object is not well-formed JSON at this offset.
    #[error("result is not well-formed JSON at byte {0}")]
    Malformed(usize),
    /// The result's `_meta` is not an object.
    #[error("result _meta is not an object")]
    MetaNotObject,
}

/// Writes the decoration's fields (with a trailing comma when `more` follows).
fn write_fields(out: &mut Vec<u8>, d: &Decoration<'_>) {
    out.extend_from_slice(b"\"resultType\":\"");
    out.extend_from_slice(d.result_type.as_str().as_bytes());
    out.push(b'"');
    if let (ResultType::Complete, Some(hint)) = (d.result_type, d.cache) {
        out.extend_from_slice(b",\"ttlMs\":");
        out.extend_from_slice(hint.ttl_ms.to_string().as_bytes());
        out.extend_from_slice(b",\"cacheScope\":\"");
        out.extend_from_slice(hint.scope.as_str().as_bytes());
        out.push(b'"');
    }
}

/// Writes `"_meta":{"io.modelcontextprotocol/serverInfo":<info>}`.
fn write_meta(out: &mut Vec<u8>, info: &[u8]) {
    out.extend_from_slice(b"\"_meta\":{\"");
    out.extend_from_slice(META_SERVER_INFO.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(info);
    out.push(b'}');
}

/// Splices the decoration right after the opening brace of `result`, without looking at the
/// rest: for results the gateway serialized itself, which it knows carry none of the fields
/// (and no `_meta` when `server_info` is set). Only the framing (`{` … `}`) is checked.
pub fn prepend(result: &[u8], d: &Decoration<'_>) -> Result<Vec<u8>, SpliceError> {
    let start = skip_ws(result, 0);
    let end = result
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .ok_or(SpliceError::NotAnObject)?;
    if result.get(start) != Some(&b'{') || result[end] != b'}' || end <= start {
        return Err(SpliceError::NotAnObject);
    }
    let body = &result[start + 1..end];
    let empty = body.iter().all(u8::is_ascii_whitespace);
    let mut out = Vec::with_capacity(result.len() + 96 + d.server_info.map_or(0, <[u8]>::len));
    out.push(b'{');
    write_fields(&mut out, d);
    if let Some(info) = d.server_info {
        out.push(b',');
        write_meta(&mut out, info);
    }
    if !empty {
        out.push(b',');
        out.extend_from_slice(body);
    }
    out.push(b'}');
    Ok(out)
}

/// Splices the decoration into any result object: members named `resultType`, `ttlMs` or
/// `cacheScope` are replaced (an input-required result loses any caching hint), the server
/// identity is merged into `_meta` (replacing a `serverInfo` already there), every other
/// member is kept byte for byte and in order.
pub fn decorate(result: &[u8], d: &Decoration<'_>) -> Result<Vec<u8>, SpliceError> {
    let members = top_level_members(result)?;
    let mut out = Vec::with_capacity(result.len() + 96 + d.server_info.map_or(0, <[u8]>::len));
    out.push(b'{');
    write_fields(&mut out, d);
    let mut meta_done = false;
    for m in &members {
        let key = &result[m.key.0..m.key.1];
        let value = &result[m.value.0..m.value.1];
        match key_name(key) {
            KeyName::ResultType | KeyName::TtlMs | KeyName::CacheScope => continue,
            KeyName::Meta if d.server_info.is_some() && !meta_done => {
                let info = d.server_info.unwrap_or_default();
                let merged = merge_server_info(value, info)?;
                out.push(b',');
                out.extend_from_slice(b"\"_meta\":");
                out.extend_from_slice(&merged);
                meta_done = true;
            }
            _ => {
                out.push(b',');
                out.extend_from_slice(&result[m.key.0..m.value.1]);
            }
        }
    }
    if let (Some(info), false) = (d.server_info, meta_done) {
        out.push(b',');
        write_meta(&mut out, info);
    }
    out.push(b'}');
    Ok(out)
}

/// `_meta` with the server identity set.
fn merge_server_info(meta: &[u8], info: &[u8]) -> Result<Vec<u8>, SpliceError> {
    let mut map: Map<String, Value> = match serde_json::from_slice(meta) {
        Ok(Value::Object(m)) => m,
        _ => return Err(SpliceError::MetaNotObject),
    };
    let info: Value = serde_json::from_slice(info).map_err(|_| SpliceError::MetaNotObject)?;
    map.insert(META_SERVER_INFO.to_owned(), info);
    serde_json::to_vec(&Value::Object(map)).map_err(|_| SpliceError::MetaNotObject)
}

/// The keys decoration cares about.
#[derive(Debug, PartialEq, Eq)]
enum KeyName {
    ResultType,
    TtlMs,
    CacheScope,
    Meta,
    Other,
}

/// Classifies a raw key token (quotes included); an escaped key is decoded first so
/// `"result\u0054ype"` cannot slip past.
fn key_name(raw: &[u8]) -> KeyName {
    let inner = &raw[1..raw.len() - 1];
    let decoded;
    let name: &[u8] = if inner.contains(&b'\\') {
        decoded = serde_json::from_slice::<String>(raw).unwrap_or_default();
        decoded.as_bytes()
    } else {
        inner
    };
    match name {
        b"resultType" => KeyName::ResultType,
        b"ttlMs" => KeyName::TtlMs,
        b"cacheScope" => KeyName::CacheScope,
        b"_meta" => KeyName::Meta,
        _ => KeyName::Other,
    }
}

/// One top-level member: the byte ranges of its key (with quotes) and of its value.
struct Member {
    key: (usize, usize),
    value: (usize, usize),
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end of the string starting at `i` (which is a quote): the index after the closing
/// quote.
fn skip_string(b: &[u8], i: usize) -> Result<usize, SpliceError> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'"' => return Ok(j + 1),
            b'\\' => j += 2,
            c if c < 0x20 => return Err(SpliceError::Malformed(j)),
            _ => j += 1,
        }
    }
    Err(SpliceError::Malformed(b.len()))
}

/// The most nesting a value may have (serde_json's own parse limit).
const MAX_DEPTH: u32 = 128;

/// The end of the value starting at `i`: strings and nested containers are skipped as a
/// whole (brackets must pair up, strings must close, at most [`MAX_DEPTH`] levels), scalars
/// run to the next delimiter. The check is structural: the bytes come from a JSON serializer
/// or from a backend reply that was already parsed as JSON.
fn skip_value(b: &[u8], i: usize) -> Result<usize, SpliceError> {
    match b.get(i) {
        None => Err(SpliceError::Malformed(i)),
        Some(b'"') => skip_string(b, i),
        Some(b'{' | b'[') => {
            // One bit per open container: 1 for an object, 0 for an array.
            let mut stack: u128 = 0;
            let mut depth = 0u32;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    open @ (b'{' | b'[') => {
                        if depth == MAX_DEPTH {
                            return Err(SpliceError::Malformed(j));
                        }
                        stack = (stack << 1) | u128::from(open == b'{');
                        depth += 1;
                    }
                    close @ (b'}' | b']') => {
                        let is_object = stack & 1 == 1;
                        if is_object != (close == b'}') {
                            return Err(SpliceError::Malformed(j));
                        }
                        stack >>= 1;
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err(SpliceError::Malformed(b.len()))
        }
        Some(_) => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            if j == i {
                Err(SpliceError::Malformed(i))
            } else {
                Ok(j)
            }
        }
    }
}

/// The members of the top-level object, in order.
fn top_level_members(b: &[u8]) -> Result<Vec<Member>, SpliceError> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(SpliceError::NotAnObject);
    }
    i = skip_ws(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return Err(SpliceError::Malformed(i));
            }
            let key_end = skip_string(b, i)?;
            let key = (i, key_end);
            i = skip_ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return Err(SpliceError::Malformed(i));
            }
            i = skip_ws(b, i + 1);
            let value_end = skip_value(b, i)?;
            out.push(Member {
                key,
                value: (i, value_end),
            });
            i = skip_ws(b, value_end);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(SpliceError::Malformed(i)),
            }
        }
    }
    if skip_ws(b, i) != b.len() {
        return Err(SpliceError::Malformed(i));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PRIVATE: CacheHint = CacheHint {
        ttl_ms: 60_000,
        scope: CacheScope::Private,
    };

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    fn complete(cache: Option<CacheHint>) -> Decoration<'static> {
        Decoration {
            result_type: ResultType::Complete,
            cache,
            server_info: None,
        }
    }

    #[test]
    fn prepend_adds_the_fields_to_gateway_bytes() {
        let page = br#"{"tools":[{"name":"a"}],"nextCursor":"x"}"#;
        let out = prepend(page, &complete(Some(PRIVATE))).unwrap();
        assert!(out.starts_with(
            br#"{"resultType":"complete","ttlMs":60000,"cacheScope":"private","tools""#
        ));
        assert_eq!(
            parse(&out),
            json!({"resultType":"complete","ttlMs":60000,"cacheScope":"private",
                   "tools":[{"name":"a"}],"nextCursor":"x"})
        );
        assert_eq!(
            parse(&prepend(b" { } ", &complete(None)).unwrap()),
            json!({"resultType":"complete"})
        );
        let info = br#"{"name":"cortex","version":"1"}"#;
        let d = Decoration {
            server_info: Some(info),
            ..complete(None)
        };
        assert_eq!(
            parse(&prepend(br#"{"content":[]}"#, &d).unwrap()),
            json!({"resultType":"complete","content":[],
                   "_meta":{"io.modelcontextprotocol/serverInfo":{"name":"cortex","version":"1"}}})
        );
        for bad in [&b""[..], b"[]", b"{", b"}", b"  ", b"{}x", b"\"s\""] {
            assert_eq!(
                prepend(bad, &complete(None)),
                Err(SpliceError::NotAnObject),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn decorate_replaces_fields_already_present() {
        let upstream = br#"{"resultType":"complete","contents":[{"uri":"a","text":"}{\"x"}],"cacheScope":"public","ttlMs":999999,"extra":{"resultType":"nested stays"}}"#;
        let out = decorate(upstream, &complete(Some(PRIVATE))).unwrap();
        let v = parse(&out);
        assert_eq!(v["cacheScope"], json!("private"));
        assert_eq!(v["ttlMs"], json!(60000));
        assert_eq!(v["contents"][0]["text"], json!("}{\"x"));
        assert_eq!(v["extra"]["resultType"], json!("nested stays"));
        // No duplicate keys survive: each field appears once at the top level.
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.matches("\"cacheScope\"").count(), 1);
        assert_eq!(s.matches("\"ttlMs\"").count(), 1);
        assert_eq!(s.matches("\"resultType\"").count(), 2);
    }

    #[test]
    fn decorate_keeps_members_verbatim_and_in_order() {
        let src = br#"{ "b" : 1.50 , "a":[1, 2 ,{"k":null}], "c":"\u00e9", "d":true, "e":false, "f":null, "g":-0.5e3 }"#;
        let out = decorate(src, &complete(None)).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"resultType":"complete","b" : 1.50,"a":[1, 2 ,{"k":null}],"c":"\u00e9","d":true,"e":false,"f":null,"g":-0.5e3}"#
        );
        assert_eq!(
            decorate(b"{}", &complete(None)).unwrap(),
            br#"{"resultType":"complete"}"#
        );
    }

    #[test]
    fn escaped_keys_cannot_smuggle_a_field() {
        let src = br#"{"cache\u0053cope":"public","x":1}"#;
        let v = parse(&decorate(src, &complete(Some(PRIVATE))).unwrap());
        assert_eq!(v["cacheScope"], json!("private"));
        assert_eq!(v.as_object().unwrap().len(), 4);
    }

    #[test]
    fn input_required_results_carry_no_cache_hints() {
        let src = br#"{"inputRequests":{},"ttlMs":5,"cacheScope":"public"}"#;
        let d = Decoration {
            result_type: ResultType::InputRequired,
            cache: Some(PRIVATE),
            server_info: None,
        };
        assert_eq!(
            parse(&decorate(src, &d).unwrap()),
            json!({"resultType":"input_required","inputRequests":{}})
        );
        assert_eq!(
            parse(&prepend(br#"{"requestState":"s"}"#, &d).unwrap()),
            json!({"resultType":"input_required","requestState":"s"})
        );
    }

    #[test]
    fn server_info_merges_into_meta() {
        let info = br#"{"name":"cortex","version":"2"}"#;
        let d = Decoration {
            server_info: Some(info),
            ..complete(None)
        };
        let src = br#"{"_meta":{"k":1,"io.modelcontextprotocol/serverInfo":{"name":"upstream"}},"content":[]}"#;
        let v = parse(&decorate(src, &d).unwrap());
        assert_eq!(
            v["_meta"],
            json!({"k":1,"io.modelcontextprotocol/serverInfo":{"name":"cortex","version":"2"}})
        );
        let v = parse(&decorate(br#"{"content":[]}"#, &d).unwrap());
        assert_eq!(
            v["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            json!("cortex")
        );
        assert_eq!(
            decorate(br#"{"_meta":3}"#, &d),
            Err(SpliceError::MetaNotObject)
        );
        // Without server info, `_meta` is left alone.
        let src = br#"{"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"upstream"}}}"#;
        assert_eq!(
            parse(&decorate(src, &complete(None)).unwrap())["_meta"]
                ["io.modelcontextprotocol/serverInfo"]["name"],
            json!("upstream")
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &b"[1]"[..],
            b"",
            b"x",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\":1",
            b"{\"a\":\"x}",
            b"{\"a\":[1,2}",
            b"{a:1}",
            b"{\"a\":1}}",
            b"{\"a\":1} x",
            b"{\"a\":\"\x01\"}",
            b"{\"a\"\"b\"}",
            b"{\"a\":1 \"b\":2}",
            b"{\"a\":{\"b\":[}}",
            b"{\"a\":\"\\",
            b"{\"a\":[}]}",
            b"{\"a\":{]}",
        ] {
            assert!(
                decorate(bad, &complete(None)).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n));
        assert!(decorate(deep(128).as_bytes(), &complete(None)).is_ok());
        assert_eq!(
            decorate(deep(129).as_bytes(), &complete(None)),
            Err(SpliceError::Malformed(133))
        );
    }

    #[test]
    fn decorate_agrees_with_a_parse_on_generated_results() {
        // Every decorated result parses, keeps every other member's value, and carries the
        // fields once.
        let samples = [
            json!({"tools": [{"name": "t", "inputSchema": {"type": "object"}}], "nextCursor": "abc"}),
            json!({"content": [{"type": "text", "text": "a \"quoted\" {brace} [bracket] \\ back"}], "isError": false}),
            json!({"contents": [], "ttlMs": 1, "resultType": "weird"}),
            json!({"nested": {"deep": [[[{"x": [1, {"y": "}"}]}]]]}, "n": 1e300, "neg": -1}),
            json!({}),
        ];
        for s in samples {
            let bytes = serde_json::to_vec(&s).unwrap();
            for d in [complete(None), complete(Some(PRIVATE))] {
                let out = decorate(&bytes, &d).unwrap();
                let v = parse(&out);
                for (k, val) in s.as_object().unwrap() {
                    if !["resultType", "ttlMs", "cacheScope"].contains(&k.as_str()) {
                        assert_eq!(&v[k], val, "{k}");
                    }
                }
                assert_eq!(v["resultType"], json!("complete"));
                assert_eq!(v.get("ttlMs").is_some(), d.cache.is_some());
            }
        }
    }

    #[test]
    fn cacheability_and_scope_choice() {
        for m in CACHEABLE {
            assert!(is_cacheable(m));
        }
        assert!(!is_cacheable("tools/call"));
        assert!(!is_cacheable("prompts/get"));
        assert_eq!(CacheScope::for_answer(true), CacheScope::Private);
        assert_eq!(CacheScope::for_answer(false), CacheScope::Public);
        let d = Decoration::complete("tools/list", false, PRIVATE, None);
        assert_eq!(d.cache, Some(PRIVATE));
        assert_eq!(
            Decoration::complete("tools/call", false, PRIVATE, None).cache,
            None
        );
        assert_eq!(
            Decoration::complete("resources/read", true, PRIVATE, None).cache,
            Some(CacheHint {
                ttl_ms: 0,
                scope: CacheScope::Private
            }),
            "a retry carries hints but is immediately stale"
        );
        assert_eq!(ResultType::InputRequired.as_str(), "input_required");
    }
}
