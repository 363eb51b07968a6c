//! The demo contract backend: a small notes app that speaks the Cortex backend contract
//! (`POST /api/cortex/backend`, body `{"method","params"}`, plain JSON replies, HTTP statuses
//! for errors). `cortex-gateway demo` serves it over loopback in the same process; the
//! integration tests use it as a real backend; backend authors can read it as a worked example
//! of docs/backend-contract.md.
//!
//! Rules it enforces, as a well-behaved contract backend should:
//! - a missing or empty `Authorization: Bearer` → 401 `{"error"}`;
//! - the technical token (discovery) may call only `list_tools`, `list_prompts`,
//!   `list_resource_templates` and `get_snapshot`; anything else → 403 `{"error"}` *without*
//!   `required` (an ACL denial, not a missing scope);
//! - a user call is granted the scopes in `X-Cortex-Scopes` (space separated; `*` or a prefix
//!   wildcard such as `mcp:demo:*` grants everything it covers); a missing scope → 403
//!   `{"error":"Scope mcp:demo:write required","required":"mcp:demo:write"}` (with
//!   `required`, unlike the TypeScript demo, so the gateway can tell the model which scope);
//! - unknown method → 400 `{"error":"Unknown method: x"}`; invalid JSON or params → 400;
//!   other paths → 404; other HTTP methods on the contract path → 405; bodies over 1 MiB → 413.
//!
//! State (the notes) lives in memory and is bounded (at most [`MAX_NOTES`] notes of at most
//! [`MAX_NOTE_BYTES`] bytes each) so that a demo left running cannot be grown without limit.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The path of the contract endpoint (the Cortex default).
pub const CONTRACT_PATH: &str = "/api/cortex/backend";
/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most notes kept at once.
pub const MAX_NOTES: usize = 1000;
/// Largest note text, in bytes.
pub const MAX_NOTE_BYTES: usize = 4 * 1024;
/// Scope of the read-only tools, the prompt and the notes resource.
pub const SCOPE_READ: &str = "mcp:demo:read";
/// Scope of the tools that change notes.
pub const SCOPE_WRITE: &str = "mcp:demo:write";

/// Serves the demo backend on `listener` until `shutdown` completes.
///
/// `technical_token` is the token the gateway uses for discovery; calls made with it are
/// limited to the catalog methods. Every other non-empty Bearer token is accepted as a user
/// token (the demo trusts the gateway's `X-Cortex-*` headers; a real backend would also
/// validate the JWT). On shutdown, accepting stops and open connections finish their
/// in-flight request, then close.
pub async fn serve(
    listener: TcpListener,
    technical_token: String,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let state = Arc::new(DemoState::new(technical_token));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, path = CONTRACT_PATH, "demo backend listening");
    }
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    tokio::spawn(serve_connection(stream, Arc::clone(&state), stop_rx.clone()));
                }
                Err(err) => {
                    // Transient (e.g. EMFILE): keep serving, but do not spin.
                    tracing::warn!(error = %err, "demo backend: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    // Receivers may all be gone already; that only means no connection is open.
    let _ = stop_tx.send(true);
    tracing::info!("demo backend stopped");
    Ok(())
}

/// Serves one HTTP/1.1 connection, ending it gracefully when `stop` flips.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    state: Arc<DemoState>,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(&state, req).await) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stopped = async move {
        // Drop the borrow guard at once so the future stays `Send`.
        let _ = stop.wait_for(|stopped| *stopped).await.map(|_| ());
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, "demo backend: connection ended with an error");
    }
}

/// An HTTP reply: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    status: StatusCode,
    body: Value,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body,
        }
    }

    fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Reply {
            status,
            body: json!({ "error": message.into() }),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Reply::error(StatusCode::BAD_REQUEST, message)
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body.to_string())));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// Routes one HTTP request: path, method, auth, body, then the contract method.
async fn handle(state: &DemoState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != CONTRACT_PATH {
        return Reply::error(StatusCode::NOT_FOUND, "Not found").into_response();
    }
    if req.method() != Method::POST {
        let mut response = Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {} not allowed; use POST", req.method()),
        )
        .into_response();
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let caller = match Caller::from_headers(req.headers(), &state.technical_token) {
        Ok(caller) => caller,
        Err(reply) => return reply.into_response(),
    };
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(reply) => return reply.into_response(),
    };
    let reply = match parse_call(&body) {
        Ok((method, params)) => {
            tracing::debug!(%method, technical = caller.technical, "demo backend call");
            dispatch(state, &caller, &method, &params)
        }
        Err(reply) => reply,
    };
    reply.into_response()
}

/// Reads the body, refusing more than [`MAX_BODY_BYTES`] (413) before or while reading.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    let too_large = || {
        Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body exceeds {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(err) => Err(Reply::bad_request(format!(
            "Could not read request body: {err}"
        ))),
    }
}

/// Parses `{"method":"<name>","params":{…}}`; absent or null `params` means `{}`.
fn parse_call(body: &[u8]) -> Result<(String, Map<String, Value>), Reply> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| Reply::bad_request(format!("Invalid JSON body: {err}")))?;
    let Value::Object(mut call) = value else {
        return Err(Reply::bad_request(
            "Body must be a JSON object {\"method\", \"params\"}",
        ));
    };
    let method = match call.remove("method") {
        Some(Value::String(method)) if !method.is_empty() => method,
        _ => return Err(Reply::bad_request("\"method\" must be a non-empty string")),
    };
    let params = match call.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params,
        Some(_) => return Err(Reply::bad_request("\"params\" must be an object")),
    };
    Ok((method, params))
}

/// Who is calling, from the Bearer token and the gateway's `X-Cortex-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Caller {
    /// The call was made with the technical (discovery) token.
    technical: bool,
    user_id: String,
    email: String,
    role: String,
    pool: String,
    scopes: Vec<String>,
}

impl Caller {
    /// 401 when the Bearer token is missing or empty.
    fn from_headers(headers: &HeaderMap, technical_token: &str) -> Result<Caller, Reply> {
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .unwrap_or("");
        if token.is_empty() {
            return Err(Reply::error(
                StatusCode::UNAUTHORIZED,
                "Missing Bearer token (Authorization: Bearer <token>)",
            ));
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        Ok(Caller {
            technical: !technical_token.is_empty() && token == technical_token,
            user_id: header("x-cortex-user-id"),
            email: header("x-cortex-user-email"),
            role: header("x-cortex-user-role"),
            pool: header("x-cortex-user-pool"),
            scopes: header("x-cortex-scopes")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }

    /// Whether the caller's scopes cover `needed` (exact, `*`, or a `prefix*` wildcard).
    fn has_scope(&self, needed: &str) -> bool {
        self.scopes.iter().any(|granted| {
            granted == needed
                || granted
                    .strip_suffix('*')
                    .is_some_and(|prefix| needed.starts_with(prefix))
        })
    }
}

/// What a contract method requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Catalog methods: the technical token or any user.
    Catalog,
    /// Any user, no scope (whoami).
    User,
    /// A user holding this scope.
    Scoped(&'static str),
}

/// The access rule of each method this backend knows; `None` for an unknown method.
fn access_of(method: &str) -> Option<Access> {
    Some(match method {
        "list_tools" | "list_prompts" | "list_resource_templates" | "get_snapshot" => {
            Access::Catalog
        }
        "whoami" => Access::User,
        "get_help" | "echo" | "get_time" | "list_notes" | "get_prompt" | "read_resource" => {
            Access::Scoped(SCOPE_READ)
        }
        "save_note" | "delete_note" => Access::Scoped(SCOPE_WRITE),
        _ => return None,
    })
}

/// Checks access, then runs the method.
fn dispatch(
    state: &DemoState,
    caller: &Caller,
    method: &str,
    params: &Map<String, Value>,
) -> Reply {
    let Some(access) = access_of(method) else {
        return Reply::bad_request(format!("Unknown method: {method}"));
    };
    if caller.technical && access != Access::Catalog {
        return Reply::error(
            StatusCode::FORBIDDEN,
            format!("The technical token may only call catalog methods, not {method}"),
        );
    }
    if let Access::Scoped(scope) = access {
        if !caller.has_scope(scope) {
            return Reply {
                status: StatusCode::FORBIDDEN,
                body: json!({ "error": format!("Scope {scope} required"), "required": scope }),
            };
        }
    }
    let result = match method {
        "list_tools" => Ok(json!({ "tools": tool_definitions() })),
        "list_prompts" => Ok(json!({ "prompts": prompt_definitions() })),
        "list_resource_templates" => Ok(json!({ "resourceTemplates": template_definitions() })),
        "get_snapshot" => Ok(state.snapshot()),
        "whoami" => Ok(whoami(caller)),
        "get_help" => get_help(params),
        "echo" => echo(params),
        "get_time" => get_time(params),
        "list_notes" => Ok(state.list_notes()),
        "save_note" => state.save_note(params),
        "delete_note" => state.delete_note(params),
        "get_prompt" => state.get_prompt(params),
        "read_resource" => state.read_resource(params),
        _ => Err(Reply::bad_request(format!("Unknown method: {method}"))),
    };
    result.map_or_else(|reply| reply, Reply::ok)
}

/// The `list_tools` reply entries. `get_time` uses `inputSchema` (for its enum); the others
/// use the contract's `params` shorthand, as most Cortex backends do.
fn tool_definitions() -> Value {
    json!([
        {
            "name": "get_help",
            "scope": SCOPE_READ,
            "description": "Returns the structured documentation of the demo backend: what each tool does, \
                typical workflows, conventions (ids, limits, scopes) and worked examples. Call it first \
                when unsure how to use the demo tools; pass `topic` (overview, notes, time, echo, scopes, \
                prompts, resources) for one section only.",
            "params": { "topic": "string?" },
            "version": "1.0.0",
            "annotations": { "readOnlyHint": true, "idempotentHint": true, "openWorldHint": false }
        },
        {
            "name": "echo",
            "scope": SCOPE_READ,
            "description": "Returns `message` unchanged as {\"echoed\": message}. Useful to check that the \
                gateway, your credentials and the backend work end to end.",
            "params": { "message": "string" },
            "version": "1.0.0",
            "annotations": { "readOnlyHint": true, "idempotentHint": true, "openWorldHint": false }
        },
        {
            "name": "get_time",
            "scope": SCOPE_READ,
            "description": "Returns the current time of the demo backend as RFC 3339 text and Unix seconds, \
                in UTC (default) or in the server's local time zone.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "timezone": {
                        "type": "string",
                        "enum": ["utc", "local"],
                        "default": "utc",
                        "description": "utc (default) or local (the server's time zone)"
                    }
                },
                "additionalProperties": false
            },
            "version": "1.0.0",
            "annotations": { "readOnlyHint": true, "openWorldHint": false }
        },
        {
            "name": "list_notes",
            "scope": SCOPE_READ,
            "description": "Lists every saved note, oldest first, as {\"notes\":[{id,text,at}],\"count\"}. \
                Notes live in memory and disappear when the demo stops.",
            "params": {},
            "version": "1.0.0",
            "annotations": { "readOnlyHint": true, "openWorldHint": false }
        },
        {
            "name": "save_note",
            "scope": SCOPE_WRITE,
            "description": format!("Saves a short text note and returns it with its new id (\"n1\", \"n2\", …) \
                and timestamp. At most {MAX_NOTE_BYTES} bytes of text and {MAX_NOTES} notes in all; \
                delete notes to make room."),
            "params": { "text": "string" },
            "version": "1.0.0",
            "annotations": { "readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false }
        },
        {
            "name": "delete_note",
            "scope": SCOPE_WRITE,
            "description": "Deletes the note with the given id (as returned by save_note or list_notes). \
                Deleting an unknown id is an error, so a typo is never silent.",
            "params": { "id": "string" },
            "version": "1.0.0",
            "annotations": { "readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false }
        }
    ])
}

/// The `list_prompts` reply entries.
fn prompt_definitions() -> Value {
    json!([{
        "name": "summarize_notes",
        "description": "Asks the model to summarize every saved note.",
        "arguments": [{
            "name": "style",
            "description": "bullets (default) or paragraph",
            "required": false
        }],
        "scope": SCOPE_READ
    }])
}

/// The `list_resource_templates` reply entries.
fn template_definitions() -> Value {
    json!([{
        "uriTemplate": "demo://notes/{id}",
        "name": "note",
        "description": "One saved note, by id (e.g. demo://notes/n1), as plain text.",
        "mimeType": "text/plain",
        "scope": SCOPE_READ
    }])
}

/// The identity the gateway forwarded, echoed back.
fn whoami(caller: &Caller) -> Value {
    json!({
        "userId": caller.user_id,
        "email": caller.email,
        "role": caller.role,
        "pool": caller.pool,
        "scopes": caller.scopes,
    })
}

/// A string parameter: required (400 when absent or not a string) or optional.
fn string_param<'a>(
    params: &'a Map<String, Value>,
    name: &str,
    required: bool,
) -> Result<Option<&'a str>, Reply> {
    match params.get(name) {
        Some(Value::String(s)) => Ok(Some(s)),
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(Reply::bad_request(format!(
            "Missing required parameter \"{name}\" (string)"
        ))),
        Some(_) => Err(Reply::bad_request(format!(
            "Parameter \"{name}\" must be a string"
        ))),
    }
}

fn echo(params: &Map<String, Value>) -> Result<Value, Reply> {
    let message = string_param(params, "message", true)?.unwrap_or_default();
    Ok(json!({ "echoed": message }))
}

fn get_time(params: &Map<String, Value>) -> Result<Value, Reply> {
    let zone = string_param(params, "timezone", false)?.unwrap_or("utc");
    let now = time::OffsetDateTime::now_utc();
    let shown = match zone {
        "utc" => now,
        "local" => {
            let offset = local_offset_seconds(now.unix_timestamp())
                .and_then(|secs| time::UtcOffset::from_whole_seconds(secs).ok())
                .unwrap_or(time::UtcOffset::UTC);
            now.to_offset(offset)
        }
        other => {
            return Err(Reply::bad_request(format!(
                "Parameter \"timezone\" must be \"utc\" or \"local\", not \"{other}\""
            )))
        }
    };
    Ok(json!({
        "timezone": zone,
        "iso": rfc3339(shown),
        "unix": now.unix_timestamp(),
        "utcOffsetSeconds": shown.offset().whole_seconds(),
    }))
}

/// The server's UTC offset at `unix` seconds, from the C library's time-zone database.
fn local_offset_seconds(unix: i64) -> Option<i32> {
    let t = libc::time_t::try_from(unix).ok()?;
    let mut tm = std::mem::MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: `localtime_r` is the reentrant variant; both pointers are valid for the call and
    // `tm` is fully written when it returns non-null.
    let filled = unsafe { libc::localtime_r(&t, tm.as_mut_ptr()) };
    if filled.is_null() {
        return None;
    }
    // SAFETY: non-null return means `tm` was initialised (and it was zeroed before anyway).
    let tm = unsafe { tm.assume_init() };
    i32::try_from(tm.tm_gmtoff).ok()
}

/// RFC 3339 text; formatting a valid date cannot fail, but the fallback keeps it panic-free.
fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Help topics, in the order `get_help` without a topic lists them.
const HELP_TOPICS: [&str; 7] = [
    "overview",
    "notes",
    "time",
    "echo",
    "scopes",
    "prompts",
    "resources",
];

fn get_help(params: &Map<String, Value>) -> Result<Value, Reply> {
    let topic = string_param(params, "topic", false)?.map(|t| t.trim().to_ascii_lowercase());
    let mut doc = help_document();
    match topic.as_deref() {
        None | Some("") => Ok(doc),
        Some(topic) => match doc.get_mut("sections").and_then(|s| s.get_mut(topic)) {
            Some(section) => Ok(json!({
                "backend": "demo",
                "topic": topic,
                "section": section.take(),
            })),
            None => Err(Reply::bad_request(format!(
                "Unknown help topic \"{topic}\"; known topics: {}",
                HELP_TOPICS.join(", ")
            ))),
        },
    }
}

/// The whole structured documentation returned by `get_help`.
fn help_document() -> Value {
    json!({
        "backend": "demo",
        "summary": "A tiny notes app behind Cortex Gateway, to try MCP clients and the gateway end to end.",
        "naming": "Through the gateway, tools are named <backend id>_<tool>, e.g. demo_save_note.",
        "topics": HELP_TOPICS,
        "tools": [
            { "name": "get_help", "scope": SCOPE_READ, "does": "this documentation (optionally one topic)" },
            { "name": "echo", "scope": SCOPE_READ, "does": "returns {echoed: message}" },
            { "name": "get_time", "scope": SCOPE_READ, "does": "current time, timezone utc|local" },
            { "name": "list_notes", "scope": SCOPE_READ, "does": "every note, oldest first" },
            { "name": "save_note", "scope": SCOPE_WRITE, "does": "saves {text}, returns {saved:{id,text,at}}" },
            { "name": "delete_note", "scope": SCOPE_WRITE, "does": "deletes {id}, returns {deleted:id}" }
        ],
        "workflows": [
            {
                "name": "Keep a note and read it back",
                "steps": [
                    "save_note {\"text\": \"buy milk\"} → {\"saved\": {\"id\": \"n1\", …}}",
                    "list_notes {} → {\"notes\": [{\"id\": \"n1\", \"text\": \"buy milk\", …}], \"count\": 1}",
                    "or read the resource demo://notes/n1"
                ]
            },
            {
                "name": "Clean up",
                "steps": ["list_notes {}", "delete_note {\"id\": \"n1\"} for each note to remove"]
            },
            {
                "name": "Check the connection",
                "steps": ["echo {\"message\": \"ping\"} → {\"echoed\": \"ping\"}"]
            }
        ],
        "conventions": [
            "Note ids are \"n\" followed by a number, assigned in order and never reused while the demo runs.",
            format!("A note holds at most {MAX_NOTE_BYTES} bytes of text; at most {MAX_NOTES} notes are kept."),
            "Timestamps are RFC 3339 in UTC.",
            "Errors come back as tool results with isError: true and a sentence saying what to fix.",
            "Notes live in memory only: restarting the demo forgets them."
        ],
        "examples": [
            { "tool": "echo", "arguments": { "message": "hello" }, "result": { "echoed": "hello" } },
            { "tool": "get_time", "arguments": { "timezone": "utc" }, "result": { "timezone": "utc", "iso": "2026-01-01T12:00:00Z", "unix": 1767268800, "utcOffsetSeconds": 0 } },
            { "tool": "save_note", "arguments": { "text": "hi" }, "result": { "saved": { "id": "n1", "text": "hi", "at": "2026-01-01T12:00:00Z" } } },
            { "tool": "delete_note", "arguments": { "id": "n1" }, "result": { "deleted": "n1" } }
        ],
        "sections": {
            "overview": "Six tools over an in-memory list of notes, plus a prompt and a resource template. Start with echo, then save_note and list_notes.",
            "notes": format!("save_note {{text}} adds a note (≤ {MAX_NOTE_BYTES} bytes, ≤ {MAX_NOTES} notes); list_notes {{}} lists them; delete_note {{id}} removes one (unknown id → error)."),
            "time": "get_time {timezone?: \"utc\"|\"local\"} returns {timezone, iso, unix, utcOffsetSeconds}. utc is the default.",
            "echo": "echo {message} returns {echoed: message}; any string, up to the 1 MiB request limit.",
            "scopes": format!("{SCOPE_READ}: get_help, echo, get_time, list_notes, the summarize_notes prompt and demo://notes/{{id}}. {SCOPE_WRITE}: save_note, delete_note. A call without the scope fails with the scope it needs."),
            "prompts": "summarize_notes {style?: bullets|paragraph} builds a user message asking to summarize every saved note.",
            "resources": "demo://notes/{id} reads one note as text/plain (e.g. demo://notes/n1)."
        }
    })
}

/// One saved note.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Note {
    text: String,
    at: String,
}

/// The notes, keyed by their number (`n<number>` is the id), oldest first.
#[derive(Debug, Default)]
struct Notes {
    next: u64,
    by_number: BTreeMap<u64, Note>,
}

/// Shared state of one running demo backend.
#[derive(Debug)]
struct DemoState {
    technical_token: String,
    started: Instant,
    notes: Mutex<Notes>,
}

impl DemoState {
    fn new(technical_token: String) -> Self {
        DemoState {
            technical_token,
            started: Instant::now(),
            notes: Mutex::new(Notes::default()),
        }
    }

    /// The notes; a poisoned lock is recovered (the map is always left consistent).
    fn notes(&self) -> MutexGuard<'_, Notes> {
        self.notes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note_json(number: u64, note: &Note) -> Value {
        json!({ "id": format!("n{number}"), "text": note.text, "at": note.at })
    }

    fn list_notes(&self) -> Value {
        let notes = self.notes();
        let list: Vec<Value> = notes
            .by_number
            .iter()
            .map(|(number, note)| Self::note_json(*number, note))
            .collect();
        json!({ "count": list.len(), "notes": list })
    }

    fn save_note(&self, params: &Map<String, Value>) -> Result<Value, Reply> {
        let text = string_param(params, "text", true)?.unwrap_or_default();
        if text.trim().is_empty() {
            return Err(Reply::bad_request("Parameter \"text\" must not be empty"));
        }
        if text.len() > MAX_NOTE_BYTES {
            return Err(Reply::bad_request(format!(
                "Note text is {} bytes; at most {MAX_NOTE_BYTES} bytes are allowed",
                text.len()
            )));
        }
        let mut notes = self.notes();
        if notes.by_number.len() >= MAX_NOTES {
            return Err(Reply::bad_request(format!(
                "Note limit reached: at most {MAX_NOTES} notes are kept; delete some first"
            )));
        }
        notes.next += 1;
        let number = notes.next;
        let note = Note {
            text: text.to_owned(),
            at: rfc3339(time::OffsetDateTime::now_utc()),
        };
        let saved = Self::note_json(number, &note);
        notes.by_number.insert(number, note);
        Ok(json!({ "saved": saved }))
    }

    fn delete_note(&self, params: &Map<String, Value>) -> Result<Value, Reply> {
        let id = string_param(params, "id", true)?.unwrap_or_default();
        let removed = parse_note_id(id).and_then(|number| self.notes().by_number.remove(&number));
        match removed {
            Some(_) => Ok(json!({ "deleted": id })),
            None => Err(Reply::error(
                StatusCode::NOT_FOUND,
                format!("Note {id} not found; list_notes shows the existing ids"),
            )),
        }
    }

    fn get_prompt(&self, params: &Map<String, Value>) -> Result<Value, Reply> {
        let name = string_param(params, "name", true)?.unwrap_or_default();
        if name != "summarize_notes" {
            return Err(Reply::error(
                StatusCode::NOT_FOUND,
                format!("Unknown prompt: {name}"),
            ));
        }
        let style = match params.get("arguments").and_then(|a| a.get("style")) {
            None | Some(Value::Null) => "bullets",
            Some(Value::String(s)) if s == "bullets" || s == "paragraph" => s.as_str(),
            Some(_) => {
                return Err(Reply::bad_request(
                    "Argument \"style\" must be \"bullets\" or \"paragraph\"",
                ))
            }
        };
        let notes = self.notes();
        let listing = if notes.by_number.is_empty() {
            "(there are no notes yet)".to_owned()
        } else {
            notes
                .by_number
                .iter()
                .map(|(number, note)| format!("- n{number}: {}", note.text))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let form = if style == "paragraph" {
            "one short paragraph"
        } else {
            "a few bullet points"
        };
        Ok(json!({
            "description": "Summarize the saved notes",
            "messages": [{
                "role": "user",
                "content": {
                    "type": "text",
                    "text": format!("Summarize these notes in {form}:\n{listing}")
                }
            }]
        }))
    }

    fn read_resource(&self, params: &Map<String, Value>) -> Result<Value, Reply> {
        let uri = string_param(params, "uri", true)?.unwrap_or_default();
        let Some(id) = uri.strip_prefix("demo://notes/") else {
            return Err(Reply::bad_request(format!(
                "Unknown resource URI {uri}; expected demo://notes/{{id}}"
            )));
        };
        let notes = self.notes();
        match parse_note_id(id).and_then(|number| notes.by_number.get(&number)) {
            Some(note) => Ok(json!({
                "contents": [{ "uri": uri, "mimeType": "text/plain", "text": note.text }]
            })),
            None => Err(Reply::error(
                StatusCode::NOT_FOUND,
                format!("Note {id} not found"),
            )),
        }
    }

    fn snapshot(&self) -> Value {
        let count = self.notes().by_number.len();
        let status = if count >= MAX_NOTES {
            "red"
        } else if count * 10 >= MAX_NOTES * 9 {
            "amber"
        } else {
            "green"
        };
        json!({
            "backend": "demo",
            "generatedAt": rfc3339(time::OffsetDateTime::now_utc()),
            "title": "Demo backend",
            "headline": [
                { "key": "uptime_s", "label": "Uptime", "value": self.started.elapsed().as_secs(), "unit": "s", "status": "green" },
                { "key": "notes", "label": "Notes", "value": count, "status": status }
            ],
            "hint": "Call demo_get_help for the documentation."
        })
    }
}

/// `n<digits>` → the number; anything else → `None`.
fn parse_note_id(id: &str) -> Option<u64> {
    id.strip_prefix('n')
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    const TECH: &str = "tech-token";

    /// A running demo backend on an ephemeral loopback port, stopped on drop.
    struct Running {
        addr: std::net::SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    async fn start() -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, TECH.into(), async move {
            let _ = rx.await;
        }));
        Running {
            addr,
            stop: Some(tx),
            task,
        }
    }

    /// Sends one raw HTTP/1.1 request (connection closed after it) and returns status and
    /// parsed JSON body.
    async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, HeaderMap, Value) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Likewise a write may fail once the server has answered early.
        let _ = stream.write_all(request).await;
        let mut out = Vec::new();
        // A server that answers before reading the whole body may reset the connection after
        // its reply; keep what arrived.
        let _ = stream.read_to_end(&mut out).await;
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&out[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        for line in lines {
            let (k, v) = line.split_once(':').unwrap();
            headers.insert(
                http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                HeaderValue::from_str(v.trim()).unwrap(),
            );
        }
        let body = &out[split + 4..];
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap()
        };
        (status, headers, json)
    }

    fn request(path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }

    /// A user call with the given scopes.
    async fn call(running: &Running, scopes: &str, method: &str, params: Value) -> (u16, Value) {
        let body = json!({ "method": method, "params": params }).to_string();
        let (status, _, json) = raw(
            running.addr,
            &request(
                CONTRACT_PATH,
                &[
                    ("Authorization", "Bearer user-jwt"),
                    ("X-Cortex-User-Id", "u-1"),
                    ("X-Cortex-User-Email", "u1@example.com"),
                    ("X-Cortex-User-Role", "editor"),
                    ("X-Cortex-User-Pool", "staff"),
                    ("X-Cortex-Scopes", scopes),
                ],
                &body,
            ),
        )
        .await;
        (status, json)
    }

    async fn technical(running: &Running, method: &str) -> (u16, Value) {
        let body = json!({ "method": method, "params": {} }).to_string();
        let (status, _, json) = raw(
            running.addr,
            &request(
                CONTRACT_PATH,
                &[("Authorization", &format!("Bearer {TECH}"))],
                &body,
            ),
        )
        .await;
        (status, json)
    }

    #[tokio::test]
    async fn discovery_with_the_technical_token_lists_tools_prompts_and_templates() {
        let demo = start().await;
        let (status, tools) = technical(&demo, "list_tools").await;
        assert_eq!(status, 200);
        let names: Vec<&str> = tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "get_help",
                "echo",
                "get_time",
                "list_notes",
                "save_note",
                "delete_note"
            ]
        );
        for tool in tools["tools"].as_array().unwrap() {
            assert!(tool["description"].as_str().unwrap().len() > 40, "{tool}");
            assert!(tool["scope"].as_str().unwrap().starts_with("mcp:demo:"));
        }
        let get_time = &tools["tools"][2];
        assert_eq!(
            get_time["inputSchema"]["properties"]["timezone"]["enum"],
            json!(["utc", "local"])
        );
        assert_eq!(tools["tools"][4]["scope"], SCOPE_WRITE);
        assert_eq!(tools["tools"][5]["scope"], SCOPE_WRITE);

        let (status, prompts) = technical(&demo, "list_prompts").await;
        assert_eq!(status, 200);
        assert_eq!(prompts["prompts"][0]["name"], "summarize_notes");
        assert_eq!(prompts["prompts"][0]["scope"], SCOPE_READ);

        let (status, templates) = technical(&demo, "list_resource_templates").await;
        assert_eq!(status, 200);
        assert_eq!(
            templates["resourceTemplates"][0]["uriTemplate"],
            "demo://notes/{id}"
        );

        let (status, snapshot) = technical(&demo, "get_snapshot").await;
        assert_eq!(status, 200);
        assert_eq!(snapshot["backend"], "demo");
        assert_eq!(snapshot["headline"][0]["key"], "uptime_s");
    }

    #[tokio::test]
    async fn the_technical_token_cannot_call_tools() {
        let demo = start().await;
        for method in ["echo", "save_note", "whoami", "get_prompt"] {
            let (status, body) = technical(&demo, method).await;
            assert_eq!(status, 403, "{method}");
            assert!(body["error"].as_str().unwrap().contains("technical token"));
            assert!(
                body.get("required").is_none(),
                "ACL denial carries no `required`"
            );
        }
    }

    #[tokio::test]
    async fn missing_or_empty_bearer_is_401() {
        let demo = start().await;
        let body = r#"{"method":"list_tools","params":{}}"#;
        for headers in [
            vec![],
            vec![("Authorization", "Bearer ")],
            vec![("Authorization", "Basic abc")],
        ] {
            let (status, _, json) = raw(demo.addr, &request(CONTRACT_PATH, &headers, body)).await;
            assert_eq!(status, 401);
            assert!(json["error"].is_string());
        }
    }

    #[tokio::test]
    async fn read_scope_allows_reads_but_write_needs_its_scope_with_required() {
        let demo = start().await;
        let (status, body) = call(&demo, SCOPE_READ, "echo", json!({"message":"hello"})).await;
        assert_eq!((status, body), (200, json!({"echoed":"hello"})));

        let (status, body) = call(&demo, SCOPE_READ, "save_note", json!({"text":"hi"})).await;
        assert_eq!(status, 403);
        assert_eq!(
            body,
            json!({"error":"Scope mcp:demo:write required","required":"mcp:demo:write"})
        );

        let (status, body) = call(&demo, "", "echo", json!({"message":"x"})).await;
        assert_eq!(status, 403);
        assert_eq!(body["required"], SCOPE_READ);
    }

    #[tokio::test]
    async fn wildcards_grant_everything_they_cover() {
        let demo = start().await;
        for scopes in ["*", "mcp:demo:*", "other mcp:*"] {
            let (status, body) = call(&demo, scopes, "save_note", json!({"text":"w"})).await;
            assert_eq!(status, 200, "{scopes}: {body}");
        }
        let (status, _) = call(&demo, "mcp:other:*", "save_note", json!({"text":"w"})).await;
        assert_eq!(status, 403);
    }

    #[tokio::test]
    async fn notes_can_be_saved_listed_read_and_deleted() {
        let demo = start().await;
        let rw = "mcp:demo:read mcp:demo:write";
        let (status, saved) = call(&demo, rw, "save_note", json!({"text":"first"})).await;
        assert_eq!(status, 200);
        assert_eq!(saved["saved"]["id"], "n1");
        assert_eq!(saved["saved"]["text"], "first");
        assert!(saved["saved"]["at"].as_str().unwrap().ends_with('Z'));
        let (_, saved) = call(&demo, rw, "save_note", json!({"text":"second"})).await;
        assert_eq!(saved["saved"]["id"], "n2");

        let (status, list) = call(&demo, SCOPE_READ, "list_notes", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(list["count"], 2);
        assert_eq!(list["notes"][1]["text"], "second");

        let (status, res) = call(
            &demo,
            SCOPE_READ,
            "read_resource",
            json!({"uri":"demo://notes/n2"}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(res["contents"][0]["text"], "second");
        assert_eq!(res["contents"][0]["uri"], "demo://notes/n2");

        let (status, del) = call(&demo, rw, "delete_note", json!({"id":"n1"})).await;
        assert_eq!((status, del), (200, json!({"deleted":"n1"})));
        let (status, del) = call(&demo, rw, "delete_note", json!({"id":"n1"})).await;
        assert_eq!(status, 404);
        assert!(del["error"].as_str().unwrap().contains("n1"));
        let (status, _) = call(
            &demo,
            SCOPE_READ,
            "read_resource",
            json!({"uri":"demo://notes/n1"}),
        )
        .await;
        assert_eq!(status, 404);
        let (status, _) = call(
            &demo,
            SCOPE_READ,
            "read_resource",
            json!({"uri":"file:///etc/passwd"}),
        )
        .await;
        assert_eq!(status, 400);

        let (_, list) = call(&demo, SCOPE_READ, "list_notes", json!({})).await;
        assert_eq!(list["count"], 1);
        assert_eq!(list["notes"][0]["id"], "n2");
    }

    #[tokio::test]
    async fn notes_are_bounded_in_size_and_number() {
        let demo = start().await;
        let big = "x".repeat(MAX_NOTE_BYTES + 1);
        let (status, body) = call(&demo, "*", "save_note", json!({ "text": big })).await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("4096"), "{body}");
        let (status, _) = call(&demo, "*", "save_note", json!({ "text": "  " })).await;
        assert_eq!(status, 400);
        let (status, _) = call(&demo, "*", "save_note", json!({ "text": 5 })).await;
        assert_eq!(status, 400);

        // Fill the store directly (1000 HTTP round trips would only slow the test down).
        let state = DemoState::new(TECH.into());
        let text = json!({"text": "x".repeat(MAX_NOTE_BYTES)});
        for _ in 0..MAX_NOTES {
            state.save_note(text.as_object().unwrap()).unwrap();
        }
        let err = state.save_note(text.as_object().unwrap()).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.body["error"].as_str().unwrap().contains("1000"));
        state
            .delete_note(json!({"id":"n5"}).as_object().unwrap())
            .unwrap();
        assert_eq!(
            state.save_note(text.as_object().unwrap()).unwrap()["saved"]["id"],
            format!("n{}", MAX_NOTES + 1)
        );
    }

    #[tokio::test]
    async fn get_time_validates_its_enum() {
        let demo = start().await;
        let (status, utc) = call(&demo, SCOPE_READ, "get_time", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(utc["timezone"], "utc");
        assert!(utc["iso"].as_str().unwrap().ends_with('Z'));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((utc["unix"].as_i64().unwrap() - now).abs() < 5);
        let (status, local) =
            call(&demo, SCOPE_READ, "get_time", json!({"timezone":"local"})).await;
        assert_eq!(status, 200);
        assert_eq!(local["timezone"], "local");
        let (status, bad) = call(&demo, SCOPE_READ, "get_time", json!({"timezone":"mars"})).await;
        assert_eq!(status, 400);
        assert!(bad["error"].as_str().unwrap().contains("utc"));
    }

    #[tokio::test]
    async fn get_help_is_structured_and_has_topics() {
        let demo = start().await;
        let (status, help) = call(&demo, SCOPE_READ, "get_help", json!({})).await;
        assert_eq!(status, 200);
        for key in ["workflows", "conventions", "examples", "tools", "topics"] {
            assert!(!help[key].as_array().unwrap().is_empty(), "{key}");
        }
        let (status, notes) = call(&demo, SCOPE_READ, "get_help", json!({"topic":"notes"})).await;
        assert_eq!(status, 200);
        assert_eq!(notes["topic"], "notes");
        assert!(notes["section"].as_str().unwrap().contains("save_note"));
        let (status, bad) = call(&demo, SCOPE_READ, "get_help", json!({"topic":"nope"})).await;
        assert_eq!(status, 400);
        assert!(bad["error"].as_str().unwrap().contains("overview"));
    }

    #[tokio::test]
    async fn whoami_echoes_the_forwarded_identity() {
        let demo = start().await;
        let (status, me) = call(&demo, "mcp:demo:read extra", "whoami", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(
            me,
            json!({"userId":"u-1","email":"u1@example.com","role":"editor","pool":"staff",
                   "scopes":["mcp:demo:read","extra"]})
        );
    }

    #[tokio::test]
    async fn prompt_lists_the_notes() {
        let demo = start().await;
        call(&demo, "*", "save_note", json!({"text":"alpha"})).await;
        let (status, prompt) = call(
            &demo,
            SCOPE_READ,
            "get_prompt",
            json!({"name":"summarize_notes","arguments":{"style":"paragraph"}}),
        )
        .await;
        assert_eq!(status, 200);
        let text = prompt["messages"][0]["content"]["text"].as_str().unwrap();
        assert!(
            text.contains("n1: alpha") && text.contains("paragraph"),
            "{text}"
        );
        assert_eq!(prompt["messages"][0]["role"], "user");
        let (status, _) = call(&demo, SCOPE_READ, "get_prompt", json!({"name":"other"})).await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn protocol_errors() {
        let demo = start().await;
        let auth = [("Authorization", "Bearer u")];
        let (status, _, body) = raw(
            demo.addr,
            &request(CONTRACT_PATH, &auth, r#"{"method":"nope","params":{}}"#),
        )
        .await;
        assert_eq!(
            (status, body),
            (400, json!({"error":"Unknown method: nope"}))
        );
        let (status, _, body) = raw(demo.addr, &request(CONTRACT_PATH, &auth, "{not json")).await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().starts_with("Invalid JSON"));
        let (status, _, _) = raw(
            demo.addr,
            &request(CONTRACT_PATH, &auth, r#"{"method":"echo","params":[1]}"#),
        )
        .await;
        assert_eq!(status, 400);
        let (status, _, _) = raw(demo.addr, &request(CONTRACT_PATH, &auth, r#"[1,2]"#)).await;
        assert_eq!(status, 400);
        let (status, _, body) =
            raw(demo.addr, &request("/other", &auth, r#"{"method":"echo"}"#)).await;
        assert_eq!(status, 404);
        assert!(body["error"].is_string());
        let (status, headers, _) = raw(
            demo.addr,
            format!("GET {CONTRACT_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(status, 405);
        assert_eq!(headers[ALLOW], "POST");
    }

    #[tokio::test]
    async fn bodies_over_one_mib_are_413_declared_or_chunked() {
        let demo = start().await;
        // Declared too large: refused from the header alone, before any body byte is read.
        let head = format!(
            "POST {CONTRACT_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer u\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        let (status, _, json) = raw(demo.addr, head.as_bytes()).await;
        assert_eq!(status, 413);
        assert!(json["error"].as_str().unwrap().contains("1048576"));

        let message = "y".repeat(MAX_BODY_BYTES);
        let body = json!({"method":"echo","params":{"message": message}}).to_string();
        // Chunked: no Content-Length, so the limit is enforced while reading.
        let mut req = format!(
            "POST {CONTRACT_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer u\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for chunk in body.as_bytes().chunks(64 * 1024) {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let (status, _, _) = raw(demo.addr, &req).await;
        assert_eq!(status, 413);

        // Just under the limit is fine.
        let message = "z".repeat(MAX_BODY_BYTES - 100);
        let body = json!({"method":"echo","params":{"message": message}}).to_string();
        let (status, _, json) = raw(
            demo.addr,
            &request(
                CONTRACT_PATH,
                &[("Authorization", "Bearer u"), ("X-Cortex-Scopes", "*")],
                &body,
            ),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(json["echoed"].as_str().unwrap().len(), MAX_BODY_BYTES - 100);
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let mut demo = start().await;
        let addr = demo.addr;
        let _ = demo.stop.take().unwrap().send(());
        let task = std::mem::replace(&mut demo.task, tokio::spawn(async { Ok(()) }));
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn note_ids_parse_strictly() {
        assert_eq!(parse_note_id("n12"), Some(12));
        for bad in ["n", "12", "n-1", "n1x", "N1", ""] {
            assert_eq!(parse_note_id(bad), None, "{bad}");
        }
    }
}
