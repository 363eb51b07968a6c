//! The Cortex backend contract, as pure functions: discovery replies → definitions, calls →
//! request bodies, backend replies → MCP results or JSON-RPC errors.
//!
//! Wire format (reference: docs/backend-contract.md): `POST {url}{path}` with body
//! `{"method":"<name>","params":{…}}` (`params` always sent); the reply is the method's return
//! value as plain JSON, errors are HTTP statuses with `{"error":"…"}` bodies.
//!
//! Mapping of a `tools/call` reply (the full table is in docs/backend-contract.md):
//! - 2xx, JSON object → `{content:[{type:text,text:<json>}], structuredContent:<object>}`;
//!   other JSON → text only; non-JSON → the body as text.
//! - 2xx with response header `X-Cortex-Reply: call-tool-result` → the body is already an MCP
//!   `CallToolResult` (`content` array required) and is passed through as is (contract
//!   extension for rich content: images, audio, embedded resources, `isError`).
//! - 400, 404, 409, 422 and any other 4xx except 401/403 → `isError: true` result whose text is
//!   `Backend <status>: <error>` (the model can read it and retry differently).
//! - 403 with `required` → `isError: true`, text `Backend refused scope: <required> is
//!   required`, `structuredContent {error:"backend_scope_required", required, method}`.
//! - 403 without `required` → `isError: true`, text `Backend ACL denied: <error>`,
//!   `structuredContent {error:"backend_acl_denied", reason}`.
//! - 401 → JSON-RPC -32603 `Backend auth failed — token may have expired`.
//! - 5xx and any other status → JSON-RPC -32603 `Backend <status>: <error>`, data
//!   `{status, backendError, backend}`.
//! - timeout → JSON-RPC -32603 `Backend timed out after <ms>ms`; unreachable → JSON-RPC -32603
//!   `Backend <id> unreachable: <reason>`.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::catalog::{Deprecation, PromptDef, ResourceDef, TemplateDef, ToolDef};
use crate::jsonrpc::codes;

/// The default path of the contract endpoint.
pub const DEFAULT_PATH: &str = "/api/cortex/backend";

/// Response header by which a backend says its 2xx body is an MCP `CallToolResult`.
pub const REPLY_KIND_HEADER: &str = "x-cortex-reply";

/// Value of [`REPLY_KIND_HEADER`] for a pass-through `CallToolResult`.
pub const REPLY_KIND_CALL_TOOL_RESULT: &str = "call-tool-result";

/// A discovery reply that cannot be used at all (an unusable single entry is a warning).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContractError(pub String);

/// Parsed discovery result plus per-entry warnings (entries skipped and why).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<T> {
    /// Usable entries, in the backend's order.
    pub items: Vec<T>,
    /// One line per skipped or repaired entry, e.g. `tool #3: missing "name"`.
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Discovery parsers
// ---------------------------------------------------------------------------------------------

/// `"a string"`, `"an array"`…: how a JSON value is named in messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `key` array of a discovery reply, or why the reply is unusable.
fn list_of<'a>(reply: &'a Value, method: &str, key: &str) -> Result<&'a [Value], ContractError> {
    let Value::Object(obj) = reply else {
        return Err(ContractError(format!(
            "{method} reply must be a JSON object with a \"{key}\" array, got {}",
            json_kind(reply)
        )));
    };
    match obj.get(key) {
        Some(Value::Array(items)) => Ok(items),
        None => Err(ContractError(format!(
            "{method} reply must be a JSON object with a \"{key}\" array, but it has no \"{key}\""
        ))),
        Some(other) => Err(ContractError(format!(
            "{method} reply: \"{key}\" must be an array, got {}",
            json_kind(other)
        ))),
    }
}

/// Names one entry in warnings: `tool #3` or `tool #3 ("search")`.
struct Label {
    kind: &'static str,
    index: usize,
    name: Option<String>,
}

impl Label {
    fn warn(&self, warnings: &mut Vec<String>, reason: impl std::fmt::Display) {
        match &self.name {
            Some(n) => warnings.push(format!("{} #{} ({n:?}): {reason}", self.kind, self.index)),
            None => warnings.push(format!("{} #{}: {reason}", self.kind, self.index)),
        }
    }
}

/// A required non-empty string field.
fn required_str(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(format!("missing \"{key}\"")),
        Some(Value::String(s)) if s.is_empty() => Err(format!("\"{key}\" is empty")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "\"{key}\" must be a string, got {}",
            json_kind(other)
        )),
    }
}

/// An optional string field; a value of another type is dropped with a warning.
fn optional_str(
    obj: &Map<String, Value>,
    key: &str,
    label: &Label,
    warnings: &mut Vec<String>,
) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            label.warn(
                warnings,
                format_args!(
                    "\"{key}\" must be a string, got {}; ignored",
                    json_kind(other)
                ),
            );
            None
        }
    }
}

/// The entry's `scope`. Absent or null: no scope (visible to every authenticated caller).
/// An empty scope or one with whitespace in it can never be granted as one scope, and
/// treating it as "no scope" would silently widen access, so such an entry is rejected.
fn entry_scope(obj: &Map<String, Value>) -> Result<Option<String>, String> {
    match obj.get("scope") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(
            "\"scope\" is empty (omit \"scope\" to make the entry visible to every caller)".into(),
        ),
        Some(Value::String(s)) if s.chars().any(char::is_whitespace) => {
            Err(format!("\"scope\" must be exactly one scope, got {s:?}"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "\"scope\" must be a string, got {}",
            json_kind(other)
        )),
    }
}

/// An object-typed JSON Schema as MCP requires for `inputSchema` / `outputSchema`. A schema
/// without `type` gets `"type":"object"` (with a warning); another `type` is an error,
/// because strict MCP clients reject the whole list for one such tool.
fn object_schema(
    schema: &Map<String, Value>,
    key: &str,
    label: &Label,
    warnings: &mut Vec<String>,
) -> Result<Value, String> {
    match schema.get("type") {
        Some(Value::String(t)) if t == "object" => Ok(Value::Object(schema.clone())),
        None => {
            label.warn(
                warnings,
                format_args!("\"{key}\" has no \"type\"; \"type\":\"object\" added"),
            );
            let mut fixed = schema.clone();
            fixed.insert("type".into(), Value::from("object"));
            Ok(Value::Object(fixed))
        }
        Some(other) => Err(format!(
            "\"{key}\" must be an object schema (\"type\":\"object\"), got \"type\":{other}"
        )),
    }
}

/// `inputSchema` wins over `params`; neither gives `{"type":"object"}`.
fn tool_input_schema(
    obj: &Map<String, Value>,
    label: &Label,
    warnings: &mut Vec<String>,
) -> Result<Value, String> {
    match obj.get("inputSchema") {
        Some(Value::Object(schema)) => {
            return object_schema(schema, "inputSchema", label, warnings)
        }
        None | Some(Value::Null) => {}
        Some(other) => label.warn(
            warnings,
            format_args!(
                "\"inputSchema\" must be an object, got {}; ignored",
                json_kind(other)
            ),
        ),
    }
    match obj.get("params") {
        Some(Value::Object(params)) => Ok(shorthand_to_schema(params)),
        None | Some(Value::Null) => Ok(serde_json::json!({"type": "object"})),
        Some(other) => {
            label.warn(
                warnings,
                format_args!(
                    "\"params\" must be an object, got {}; the tool takes any arguments",
                    json_kind(other)
                ),
            );
            Ok(serde_json::json!({"type": "object"}))
        }
    }
}

/// An optional object field (`annotations`); another type is dropped with a warning.
fn optional_object(
    obj: &Map<String, Value>,
    key: &str,
    label: &Label,
    warnings: &mut Vec<String>,
) -> Option<Value> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(other) => {
            label.warn(
                warnings,
                format_args!(
                    "\"{key}\" must be an object, got {}; ignored",
                    json_kind(other)
                ),
            );
            None
        }
    }
}

fn tool_output_schema(
    obj: &Map<String, Value>,
    label: &Label,
    warnings: &mut Vec<String>,
) -> Option<Value> {
    let Value::Object(schema) = optional_object(obj, "outputSchema", label, warnings)? else {
        return None;
    };
    match object_schema(&schema, "outputSchema", label, warnings) {
        Ok(s) => Some(s),
        Err(reason) => {
            label.warn(warnings, format_args!("{reason}; ignored"));
            None
        }
    }
}

/// `version`, default `1.0.0`; a number is taken as its text.
fn tool_version(obj: &Map<String, Value>, label: &Label, warnings: &mut Vec<String>) -> String {
    match obj.get("version") {
        Some(Value::String(v)) if !v.is_empty() => v.clone(),
        Some(Value::Number(n)) => n.to_string(),
        None | Some(Value::Null) => DEFAULT_TOOL_VERSION.to_owned(),
        Some(other) => {
            label.warn(
                warnings,
                format_args!(
                    "\"version\" must be a non-empty string, got {}; {DEFAULT_TOOL_VERSION} used",
                    json_kind(other)
                ),
            );
            DEFAULT_TOOL_VERSION.to_owned()
        }
    }
}

/// The version of a tool that declares none.
pub const DEFAULT_TOOL_VERSION: &str = "1.0.0";

/// `deprecated`: an object `{removedAt?, replacedBy?, reason?}`, `true` (deprecated, nothing
/// more known) or a string (taken as the reason); `false`/null: not deprecated.
fn tool_deprecation(
    obj: &Map<String, Value>,
    label: &Label,
    warnings: &mut Vec<String>,
) -> Option<Deprecation> {
    match obj.get("deprecated") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(Deprecation::default()),
        Some(Value::String(reason)) => Some(Deprecation {
            reason: Some(reason.clone()),
            ..Deprecation::default()
        }),
        Some(Value::Object(d)) => Some(Deprecation {
            removed_at: optional_str(d, "removedAt", label, warnings),
            replaced_by: optional_str(d, "replacedBy", label, warnings),
            reason: optional_str(d, "reason", label, warnings),
        }),
        Some(other) => {
            label.warn(
                warnings,
                format_args!(
                    "\"deprecated\" must be an object, got {}; ignored",
                    json_kind(other)
                ),
            );
            None
        }
    }
}

/// Parses one tool, or says why it is skipped.
fn parse_tool(
    obj: &Map<String, Value>,
    label: &mut Label,
    warnings: &mut Vec<String>,
) -> Result<ToolDef, String> {
    let name = required_str(obj, "name")?;
    label.name = Some(name.clone());
    let scope = entry_scope(obj)?;
    let input_schema = tool_input_schema(obj, label, warnings)?;
    Ok(ToolDef {
        title: optional_str(obj, "title", label, warnings),
        description: optional_str(obj, "description", label, warnings).unwrap_or_default(),
        scope,
        input_schema,
        output_schema: tool_output_schema(obj, label, warnings),
        annotations: optional_object(obj, "annotations", label, warnings),
        version: tool_version(obj, label, warnings),
        deprecated: tool_deprecation(obj, label, warnings),
        name,
    })
}

/// Runs `parse_one` over every entry of a discovery list, collecting warnings and skipping
/// entries that are not objects, fail to parse, or repeat a unique key of an earlier entry.
fn parse_entries<T>(
    items: &[Value],
    kind: &'static str,
    parse_one: impl Fn(&Map<String, Value>, &mut Label, &mut Vec<String>) -> Result<T, String>,
    unique_keys: impl Fn(&T) -> Vec<(&'static str, String)>,
) -> Parsed<T> {
    let mut out = Vec::with_capacity(items.len());
    let mut warnings = Vec::new();
    let mut seen: HashSet<(&'static str, String)> = HashSet::new();
    for (index, item) in items.iter().enumerate() {
        let mut label = Label {
            kind,
            index,
            name: None,
        };
        let Value::Object(obj) = item else {
            label.warn(
                &mut warnings,
                format_args!("must be an object, got {}; skipped", json_kind(item)),
            );
            continue;
        };
        let parsed = match parse_one(obj, &mut label, &mut warnings) {
            Ok(p) => p,
            Err(reason) => {
                label.warn(&mut warnings, format_args!("{reason}; skipped"));
                continue;
            }
        };
        let keys = unique_keys(&parsed);
        if let Some((field, _)) = keys.iter().find(|k| seen.contains(*k)) {
            label.warn(
                &mut warnings,
                format_args!("duplicate \"{field}\"; the first entry is kept, this one skipped"),
            );
            continue;
        }
        seen.extend(keys);
        out.push(parsed);
    }
    Parsed {
        items: out,
        warnings,
    }
}

/// Parses a `list_tools` reply `{tools:[…]}`. Per tool: `name` required (string); `scope`
/// string (optional); `description` (default ""); `inputSchema` object wins over `params`
/// shorthand (converted by [`shorthand_to_schema`]); neither → `{"type":"object"}`;
/// `version` default `1.0.0`; `deprecated {removedAt?, replacedBy?, reason?}`; `title`,
/// `outputSchema`, `annotations` passed through. Duplicate names within one backend: the
/// first is kept, later ones are warned about.
pub fn parse_list_tools(reply: &Value) -> Result<Parsed<ToolDef>, ContractError> {
    let items = list_of(reply, "list_tools", "tools")?;
    Ok(parse_entries(items, "tool", parse_tool, |t| {
        vec![("name", t.name.clone())]
    }))
}

/// Parses a `list_prompts` reply `{prompts:[{name, description?, arguments?, scope?}]}`.
pub fn parse_list_prompts(reply: &Value) -> Result<Parsed<PromptDef>, ContractError> {
    let items = list_of(reply, "list_prompts", "prompts")?;
    Ok(parse_entries(
        items,
        "prompt",
        |obj, label, warnings| {
            let name = required_str(obj, "name")?;
            label.name = Some(name.clone());
            let scope = entry_scope(obj)?;
            let arguments = match obj.get("arguments") {
                None | Some(Value::Null) => None,
                Some(a @ Value::Array(_)) => Some(a.clone()),
                Some(other) => {
                    label.warn(
                        warnings,
                        format_args!(
                            "\"arguments\" must be an array, got {}; ignored",
                            json_kind(other)
                        ),
                    );
                    None
                }
            };
            Ok(PromptDef {
                title: optional_str(obj, "title", label, warnings),
                description: optional_str(obj, "description", label, warnings),
                arguments,
                scope,
                name,
            })
        },
        |p| vec![("name", p.name.clone())],
    ))
}

/// Parses a `list_resource_templates` reply
/// `{resourceTemplates:[{uriTemplate, name, description?, mimeType?, scope?}]}`.
pub fn parse_list_resource_templates(reply: &Value) -> Result<Parsed<TemplateDef>, ContractError> {
    let items = list_of(reply, "list_resource_templates", "resourceTemplates")?;
    Ok(parse_entries(
        items,
        "resource template",
        |obj, label, warnings| {
            let name = required_str(obj, "name")?;
            label.name = Some(name.clone());
            let uri_template = required_str(obj, "uriTemplate")?;
            let scope = entry_scope(obj)?;
            Ok(TemplateDef {
                title: optional_str(obj, "title", label, warnings),
                description: optional_str(obj, "description", label, warnings),
                mime_type: optional_str(obj, "mimeType", label, warnings),
                uri_template,
                scope,
                name,
            })
        },
        |t| {
            vec![
                ("name", t.name.clone()),
                ("uriTemplate", t.uri_template.clone()),
            ]
        },
    ))
}

/// Parses a `list_resources` reply (contract extension)
/// `{resources:[{uri, name, description?, mimeType?, scope?}]}`.
pub fn parse_list_resources(reply: &Value) -> Result<Parsed<ResourceDef>, ContractError> {
    let items = list_of(reply, "list_resources", "resources")?;
    Ok(parse_entries(
        items,
        "resource",
        |obj, label, warnings| {
            let name = required_str(obj, "name")?;
            label.name = Some(name.clone());
            let uri = required_str(obj, "uri")?;
            let scope = entry_scope(obj)?;
            Ok(ResourceDef {
                title: optional_str(obj, "title", label, warnings),
                description: optional_str(obj, "description", label, warnings),
                mime_type: optional_str(obj, "mimeType", label, warnings),
                uri,
                scope,
                name,
            })
        },
        |r| vec![("name", r.name.clone()), ("uri", r.uri.clone())],
    ))
}

/// Converts the Cortex `params` shorthand to a JSON Schema object.
/// `{"q":"string","tags":"string[]?","n":"number"}` →
/// `{"type":"object","properties":{"q":{"type":"string"},"tags":{"type":"array","items":{"type":"string"}},"n":{"type":"number"}},"required":["n","q"]}`.
/// A trailing `?` marks the field optional, `[]` an array of the type; unknown type names
/// become `{}` (any) with a description naming the original; a value that is already an
/// object is taken as that property's schema. `required` is sorted.
///
/// Known type names: `string`, `number`, `integer`, `boolean`, `object`, `array` and `any`
/// (matched case-insensitively). `required` is left out when no field is required (as
/// Cortex does). A value that is neither a string nor an object is treated like an unknown
/// type name.
pub fn shorthand_to_schema(params: &Map<String, Value>) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (key, spec) in params {
        let (schema, optional) = match spec {
            Value::String(s) => shorthand_field(s),
            Value::Object(_) => (spec.clone(), false),
            other => (unknown_type(&other.to_string()), false),
        };
        properties.insert(key.clone(), schema);
        if !optional {
            required.push(key.clone());
        }
    }
    required.sort();
    let mut schema = Map::new();
    schema.insert("type".into(), Value::from("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert(
            "required".into(),
            Value::Array(required.into_iter().map(Value::from).collect()),
        );
    }
    Value::Object(schema)
}

/// One shorthand type spec → (schema, optional).
fn shorthand_field(spec: &str) -> (Value, bool) {
    let trimmed = spec.trim();
    let (rest, optional) = match trimmed.strip_suffix('?') {
        Some(r) => (r.trim_end(), true),
        None => (trimmed, false),
    };
    let (base, is_array) = match rest.strip_suffix("[]") {
        Some(b) => (b.trim_end(), true),
        None => (rest, false),
    };
    let item = match base.to_ascii_lowercase().as_str() {
        t @ ("string" | "number" | "integer" | "boolean" | "object" | "array") => {
            serde_json::json!({ "type": t })
        }
        "any" => Value::Object(Map::new()),
        _ => unknown_type(spec),
    };
    let schema = if is_array {
        serde_json::json!({ "type": "array", "items": item })
    } else {
        item
    };
    (schema, optional)
}

/// The schema of an unrecognised shorthand: anything, with a note naming the original.
fn unknown_type(original: &str) -> Value {
    serde_json::json!({
        "description": format!("unrecognised shorthand type {original:?}; any value accepted")
    })
}

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

/// The contract request body `{"method":<method>,"params":<params or {}>}`.
/// A JSON `null` is sent as `{}` too: Cortex backends expect `params` to be an object.
pub fn request_body(method: &str, params: Option<&Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + method.len());
    out.extend_from_slice(b"{\"method\":");
    write_json(&mut out, method);
    out.extend_from_slice(b",\"params\":");
    match params {
        None | Some(Value::Null) => out.extend_from_slice(b"{}"),
        Some(p) => write_json(&mut out, p),
    }
    out.push(b'}');
    out
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Serializing plain JSON data into a Vec cannot fail (no I/O, string keys only).
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// What the gateway answers for a backend reply or failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A JSON-RPC `result`.
    Result(Value),
    /// A JSON-RPC `error`.
    Error {
        /// JSON-RPC code.
        code: i64,
        /// Message for the agent.
        message: String,
        /// Structured details.
        data: Value,
    },
}

impl Outcome {
    /// The JSON-RPC response to request `id` carrying this outcome.
    pub fn to_response(&self, id: &crate::jsonrpc::Id) -> Vec<u8> {
        match self {
            Outcome::Result(v) => crate::jsonrpc::success(id, v),
            Outcome::Error {
                code,
                message,
                data,
            } => crate::jsonrpc::error(Some(id), *code, message, Some(data)),
        }
    }

    /// The result, or the error as an [`RpcError`](crate::jsonrpc::RpcError).
    pub fn into_result(self) -> Result<Value, crate::jsonrpc::RpcError> {
        match self {
            Outcome::Result(v) => Ok(v),
            Outcome::Error {
                code,
                message,
                data,
            } => Err(crate::jsonrpc::RpcError::new(code, message).with_data(data)),
        }
    }

    /// The JSON-RPC error code, for an error.
    pub fn error_code(&self) -> Option<i64> {
        match self {
            Outcome::Result(_) => None,
            Outcome::Error { code, .. } => Some(*code),
        }
    }
}

impl From<crate::jsonrpc::RpcError> for Outcome {
    fn from(e: crate::jsonrpc::RpcError) -> Self {
        Outcome::Error {
            code: e.code,
            message: e.message,
            data: e.data.unwrap_or(Value::Null),
        }
    }
}

/// Context for mapping a reply: who was called for what.
#[derive(Debug, Clone, Copy)]
pub struct ReplyContext<'a> {
    /// Backend id.
    pub backend_id: &'a str,
    /// The contract method that was called (the backend's own tool name, `get_prompt`, …).
    pub method: &'a str,
}

/// A backend reply as seen on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: Option<&'a str>,
    /// `X-Cortex-Reply` header value.
    pub reply_kind: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

/// The message Cortex gives agents when a backend answers 401.
pub const AUTH_FAILED_MESSAGE: &str = "Backend auth failed — token may have expired";

/// Longest excerpt of a non-JSON error body quoted in a message, in characters.
const EXCERPT_CHARS: usize = 200;

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Whether a `Content-Type` says JSON (`application/json`, `text/json`, `…+json`).
fn is_json_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Whether the backend marked its 2xx body as an MCP `CallToolResult`.
fn is_call_tool_result(reply_kind: Option<&str>) -> bool {
    reply_kind.is_some_and(|k| k.trim().eq_ignore_ascii_case(REPLY_KIND_CALL_TOOL_RESULT))
}

/// What went wrong, as the backend told it.
struct BackendError {
    /// `error` of a JSON body, else an excerpt of the body, else the status reason.
    text: String,
    /// The body parsed as JSON, when it is JSON.
    body: Option<Value>,
}

impl BackendError {
    fn of(reply: &Reply<'_>) -> Self {
        let body: Option<Value> = serde_json::from_slice(reply.body).ok();
        // A JSON body with nothing in it (`{}`, `null`…) says no more than an empty one.
        let says_nothing = body.as_ref().is_some_and(is_empty_json);
        let text = body
            .as_ref()
            .and_then(error_field)
            .or_else(|| (!says_nothing).then(|| excerpt(reply.body)).flatten())
            .unwrap_or_else(|| status_reason(reply.status).to_owned());
        BackendError { text, body }
    }

    /// `required` of a 403 body: the scope the backend wants.
    fn required_scope(&self) -> Option<String> {
        match self.body.as_ref()?.get("required")? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Array(items) => {
                let scopes: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                (!scopes.is_empty()).then(|| scopes.join(" "))
            }
            _ => None,
        }
    }
}

fn is_empty_json(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// `error` (a string, or an object with a string `message`), else a top-level `message`.
fn error_field(body: &Value) -> Option<String> {
    let obj = body.as_object()?;
    match obj.get("error") {
        Some(Value::String(s)) if !s.trim().is_empty() => return Some(s.clone()),
        Some(Value::Object(e)) => {
            if let Some(Value::String(m)) = e.get("message") {
                return Some(m.clone());
            }
        }
        _ => {}
    }
    match obj.get("message") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// At most [`EXCERPT_CHARS`] characters of the body as lossy UTF-8, control characters
/// flattened to spaces so the message stays on one line; `None` when the body is blank.
fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let flat = |c: char| if c.is_control() { ' ' } else { c };
    let mut out: String = text.chars().take(EXCERPT_CHARS).map(flat).collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out = out.chars().take(EXCERPT_CHARS - 1).collect();
        out.push('…');
    }
    Some(out)
}

/// The standard reason phrase of a status (a class description for unusual ones).
fn status_reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        423 => "Locked",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => status_class(status),
    }
}

/// A description of a status's class, for statuses without a well-known reason.
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "Informational response",
        3 => "Redirect (not followed)",
        4 => "Client Error",
        5 => "Server Error",
        _ => "Unknown status",
    }
}

/// `{content:[{type:"text",text}]}` plus `isError: true` when `is_error`.
fn text_result(text: impl Into<String>, is_error: bool) -> Map<String, Value> {
    let mut result = Map::new();
    result.insert(
        "content".into(),
        serde_json::json!([{ "type": "text", "text": text.into() }]),
    );
    if is_error {
        result.insert("isError".into(), Value::Bool(true));
    }
    result
}

fn internal_error(message: String, data: Value) -> Outcome {
    Outcome::Error {
        code: codes::INTERNAL_ERROR,
        message,
        data,
    }
}

/// `{status, backendError, backend}`: the data of an error the backend reported.
fn backend_error_data(status: u16, err: &BackendError, ctx: &ReplyContext<'_>) -> Value {
    serde_json::json!({
        "status": status,
        "backendError": err.text,
        "backend": ctx.backend_id,
    })
}

fn auth_failed(ctx: &ReplyContext<'_>) -> Outcome {
    internal_error(
        AUTH_FAILED_MESSAGE.into(),
        serde_json::json!({ "status": 401, "backend": ctx.backend_id }),
    )
}

/// -32603 `Backend <id> sent invalid JSON`.
fn invalid_json(reply: &Reply<'_>, ctx: &ReplyContext<'_>, e: &serde_json::Error) -> Outcome {
    internal_error(
        format!("Backend {} sent invalid JSON", ctx.backend_id),
        serde_json::json!({
            "status": reply.status,
            "backend": ctx.backend_id,
            "detail": e.to_string(),
        }),
    )
}

/// -32603 for a 2xx body that is JSON but not the shape the method returns.
fn invalid_shape(reply: &Reply<'_>, ctx: &ReplyContext<'_>, what: &str, why: String) -> Outcome {
    internal_error(
        format!("Backend {} sent an invalid {what}: {why}", ctx.backend_id),
        serde_json::json!({ "status": reply.status, "backend": ctx.backend_id }),
    )
}

/// A 2xx body that must be a JSON object whose `key` is an array (`messages`, `contents`,
/// `content`): the object passed through, or the -32603 error naming the backend.
fn object_with_array(reply: &Reply<'_>, ctx: &ReplyContext<'_>, what: &str, key: &str) -> Outcome {
    let value: Value = match serde_json::from_slice(reply.body) {
        Ok(v) => v,
        Err(e) => return invalid_json(reply, ctx, &e),
    };
    let Value::Object(obj) = &value else {
        let why = format!("expected a JSON object, got {}", json_kind(&value));
        return invalid_shape(reply, ctx, what, why);
    };
    match obj.get(key) {
        Some(Value::Array(_)) => Outcome::Result(value),
        None => invalid_shape(reply, ctx, what, format!("\"{key}\" is missing")),
        Some(other) => {
            let why = format!("\"{key}\" must be an array, got {}", json_kind(other));
            invalid_shape(reply, ctx, what, why)
        }
    }
}

/// Maps a `tools/call` reply per the module table.
pub fn map_tool_reply(reply: Reply<'_>, ctx: ReplyContext<'_>) -> Outcome {
    if is_success(reply.status) {
        return tool_success(&reply, &ctx);
    }
    let err = BackendError::of(&reply);
    match reply.status {
        401 => auth_failed(&ctx),
        403 => match err.required_scope() {
            Some(required) => {
                let mut result = text_result(
                    format!("Backend refused scope: {required} is required"),
                    true,
                );
                result.insert(
                    "structuredContent".into(),
                    serde_json::json!({
                        "error": "backend_scope_required",
                        "required": required,
                        "method": ctx.method,
                    }),
                );
                Outcome::Result(Value::Object(result))
            }
            None => {
                let mut result = text_result(format!("Backend ACL denied: {}", err.text), true);
                result.insert(
                    "structuredContent".into(),
                    serde_json::json!({ "error": "backend_acl_denied", "reason": err.text }),
                );
                Outcome::Result(Value::Object(result))
            }
        },
        400..=499 => Outcome::Result(Value::Object(text_result(
            format!("Backend {}: {}", reply.status, err.text),
            true,
        ))),
        status => internal_error(
            format!("Backend {status}: {}", err.text),
            backend_error_data(status, &err, &ctx),
        ),
    }
}

/// A 2xx `tools/call` reply → `CallToolResult`.
fn tool_success(reply: &Reply<'_>, ctx: &ReplyContext<'_>) -> Outcome {
    if is_call_tool_result(reply.reply_kind) {
        return object_with_array(reply, ctx, "CallToolResult", "content");
    }
    if !is_json_type(reply.content_type) {
        let text = String::from_utf8_lossy(reply.body);
        return Outcome::Result(Value::Object(text_result(text, false)));
    }
    if reply.body.iter().all(u8::is_ascii_whitespace) {
        // A 2xx with an empty body (e.g. 204) succeeded with nothing to say.
        return Outcome::Result(Value::Object(text_result("", false)));
    }
    let value: Value = match serde_json::from_slice(reply.body) {
        Ok(v) => v,
        Err(e) => return invalid_json(reply, ctx, &e),
    };
    let result = match value {
        Value::String(s) => text_result(s, false),
        Value::Object(_) => {
            let mut r = text_result(value.to_string(), false);
            r.insert("structuredContent".into(), value);
            r
        }
        other => text_result(other.to_string(), false),
    };
    Outcome::Result(Value::Object(result))
}

/// A failed non-tool call as a JSON-RPC error (prompts, resources and completions have no
/// `isError`): 401 auth, 403 scope or ACL, 400 → -32602, anything else → -32603.
fn failure_as_error(reply: &Reply<'_>, ctx: &ReplyContext<'_>) -> Outcome {
    let err = BackendError::of(reply);
    match reply.status {
        401 => auth_failed(ctx),
        403 => match err.required_scope() {
            Some(required) => internal_error(
                format!("Backend refused scope: {required} is required"),
                serde_json::json!({
                    "error": "backend_scope_required",
                    "required": required,
                    "method": ctx.method,
                    "backend": ctx.backend_id,
                }),
            ),
            None => internal_error(
                format!("Backend ACL denied: {}", err.text),
                serde_json::json!({
                    "error": "backend_acl_denied",
                    "reason": err.text,
                    "backend": ctx.backend_id,
                }),
            ),
        },
        400 => Outcome::Error {
            code: codes::INVALID_PARAMS,
            message: format!("Backend 400: {}", err.text),
            data: backend_error_data(400, &err, ctx),
        },
        status => internal_error(
            format!("Backend {status}: {}", err.text),
            backend_error_data(status, &err, ctx),
        ),
    }
}

/// Maps a `get_prompt` reply: 2xx `{description?, messages:[…]}` → the result as is
/// (`messages` must be an array, else -32603 naming the backend); 404 → -32602 `Unknown
/// prompt`; 400 → -32602 with the backend's error; other failures as for tools but always as
/// JSON-RPC errors (prompts have no `isError`).
pub fn map_prompt_reply(reply: Reply<'_>, ctx: ReplyContext<'_>) -> Outcome {
    if is_success(reply.status) {
        return object_with_array(&reply, &ctx, "get_prompt reply", "messages");
    }
    if reply.status == 404 {
        let err = BackendError::of(&reply);
        return Outcome::Error {
            code: codes::INVALID_PARAMS,
            message: "Unknown prompt".into(),
            data: backend_error_data(404, &err, &ctx),
        };
    }
    failure_as_error(&reply, &ctx)
}

/// Maps a `read_resource` reply: 2xx `{contents:[…]}` → the result as is (`contents` must be
/// an array); 404 → -32002 `Resource not found` with data `{uri}`; other failures as JSON-RPC
/// errors like [`map_prompt_reply`].
pub fn map_resource_reply(reply: Reply<'_>, ctx: ReplyContext<'_>, uri: &str) -> Outcome {
    if is_success(reply.status) {
        return object_with_array(&reply, &ctx, "read_resource reply", "contents");
    }
    if reply.status == 404 {
        return Outcome::Error {
            code: codes::RESOURCE_NOT_FOUND,
            message: "Resource not found".into(),
            data: serde_json::json!({ "uri": uri }),
        };
    }
    failure_as_error(&reply, &ctx)
}

/// Maps a `complete` reply (contract extension for `completion/complete`): 2xx
/// `{completion:{values,total?,hasMore?}}` passed through; 404 or 400 `Unknown method` →
/// an empty completion `{completion:{values:[],hasMore:false}}`; other failures as JSON-RPC
/// errors.
pub fn map_completion_reply(reply: Reply<'_>, ctx: ReplyContext<'_>) -> Outcome {
    if is_success(reply.status) {
        let value: Value = match serde_json::from_slice(reply.body) {
            Ok(v) => v,
            Err(e) => return invalid_json(&reply, &ctx, &e),
        };
        let values_ok = value
            .get("completion")
            .and_then(|c| c.get("values"))
            .is_some_and(Value::is_array);
        if !values_ok {
            let why = "expected {\"completion\":{\"values\":[…]}}".to_owned();
            return invalid_shape(&reply, &ctx, "complete reply", why);
        }
        return Outcome::Result(value);
    }
    let unknown_method = reply.status == 400
        && BackendError::of(&reply)
            .text
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("unknown method");
    if reply.status == 404 || unknown_method {
        return Outcome::Result(empty_completion());
    }
    failure_as_error(&reply, &ctx)
}

/// `{completion:{values:[],hasMore:false}}`: what a backend without completions offers.
pub fn empty_completion() -> Value {
    serde_json::json!({ "completion": { "values": [], "hasMore": false } })
}

/// Maps the reply of a contract method outside MCP (`whoami`, `report_missing_capability`,
/// `list_tickets`): a 2xx JSON body is the result as is; anything else is an error whose
/// message names the backend, the method and, when the backend gave one, its `error`.
pub fn map_method_reply(reply: Reply<'_>, ctx: ReplyContext<'_>) -> Outcome {
    let parsed: Option<Value> = serde_json::from_slice(reply.body).ok();
    if is_success(reply.status) {
        return match parsed {
            Some(v) => Outcome::Result(v),
            None => internal_error(
                format!(
                    "{} answered {} with a body that is not JSON",
                    ctx.backend_id, ctx.method
                ),
                serde_json::json!({ "backend": ctx.backend_id, "status": reply.status }),
            ),
        };
    }
    let reason: String = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(300)
        .collect();
    let message = format!(
        "{} answered {} with HTTP {}: {reason}",
        ctx.backend_id, ctx.method, reply.status
    );
    internal_error(
        message.trim_end().trim_end_matches(':').to_string(),
        serde_json::json!({ "backend": ctx.backend_id, "status": reply.status }),
    )
}

/// Why a call never got a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportFailure {
    /// No reply within the backend's timeout.
    Timeout {
        /// The timeout that elapsed.
        timeout_ms: u64,
    },
    /// Could not connect, or the connection broke before a reply.
    Unreachable {
        /// A short reason.
        reason: String,
    },
}

/// Maps a transport failure to a JSON-RPC error (module table).
pub fn map_transport_failure(failure: &TransportFailure, ctx: ReplyContext<'_>) -> Outcome {
    match failure {
        TransportFailure::Timeout { timeout_ms } => internal_error(
            format!("Backend timed out after {timeout_ms}ms"),
            serde_json::json!({ "backend": ctx.backend_id, "timeoutMs": timeout_ms }),
        ),
        TransportFailure::Unreachable { reason } => internal_error(
            format!("Backend {} unreachable: {reason}", ctx.backend_id),
            serde_json::json!({ "backend": ctx.backend_id }),
        ),
    }
}

/// How a discovery call (`list_tools`, `list_prompts`, …) was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum DiscoveryReply {
    /// 2xx with a JSON body.
    Value(Value),
    /// A 4xx other than 401/403: the backend does not offer this method (Cortex backends answer
    /// unknown methods with 400); an optional list is then empty.
    NotOffered(String),
    /// Anything else: the call failed (an optional list keeps its previous entries).
    Failed(String),
}

/// Classifies a discovery reply. 401/403 are failures, not "not offered": they almost always
/// mean a wrong technical token, and the message says so.
pub fn classify_discovery_reply(reply: Reply<'_>) -> DiscoveryReply {
    let excerpt = || String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)]).into_owned();
    match reply.status {
        200..=299 => match serde_json::from_slice::<Value>(reply.body) {
            Ok(v) => DiscoveryReply::Value(v),
            Err(e) => DiscoveryReply::Failed(format!("reply is not JSON ({e})")),
        },
        401 | 403 => DiscoveryReply::Failed(format!(
            "HTTP {} (is the technical token right?): {}",
            reply.status,
            excerpt()
        )),
        400..=499 => DiscoveryReply::NotOffered(format!("HTTP {}: {}", reply.status, excerpt())),
        s => DiscoveryReply::Failed(format!("HTTP {s}: {}", excerpt())),
    }
}

/// The one-line reason of a transport failure during discovery.
pub fn describe_transport_failure(failure: &TransportFailure) -> String {
    match failure {
        TransportFailure::Timeout { timeout_ms } => format!("timed out after {timeout_ms}ms"),
        TransportFailure::Unreachable { reason } => format!("unreachable: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn discovery_replies_are_classified() {
        let r = |status: u16, body: &'static [u8]| Reply {
            status,
            content_type: Some("application/json"),
            reply_kind: None,
            body,
        };
        assert!(matches!(
            classify_discovery_reply(r(200, b"{\"tools\":[]}")),
            DiscoveryReply::Value(_)
        ));
        assert!(matches!(
            classify_discovery_reply(r(200, b"nope")),
            DiscoveryReply::Failed(_)
        ));
        assert!(matches!(
            classify_discovery_reply(r(400, b"{\"error\":\"Unknown method\"}")),
            DiscoveryReply::NotOffered(_)
        ));
        match classify_discovery_reply(r(403, b"{}")) {
            DiscoveryReply::Failed(m) => assert!(m.contains("technical token"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify_discovery_reply(r(503, b"")),
            DiscoveryReply::Failed(_)
        ));
        assert_eq!(
            describe_transport_failure(&TransportFailure::Timeout { timeout_ms: 5 }),
            "timed out after 5ms"
        );
    }
    use serde_json::json;

    const CTX: ReplyContext<'static> = ReplyContext {
        backend_id: "crm",
        method: "save_note",
    };

    fn reply<'a>(status: u16, content_type: Option<&'a str>, body: &'a [u8]) -> Reply<'a> {
        Reply {
            status,
            content_type,
            reply_kind: None,
            body,
        }
    }

    fn json_reply(status: u16, body: &str) -> Reply<'_> {
        reply(
            status,
            Some("application/json; charset=utf-8"),
            body.as_bytes(),
        )
    }

    fn result(o: Outcome) -> Value {
        match o {
            Outcome::Result(v) => v,
            other => panic!("expected a result, got {other:?}"),
        }
    }

    fn error(o: Outcome) -> (i64, String, Value) {
        match o {
            Outcome::Error {
                code,
                message,
                data,
            } => (code, message, data),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    // ---- discovery ---------------------------------------------------------------------

    #[test]
    fn parses_a_full_tool() {
        let reply = json!({"tools": [{
            "name": "search",
            "title": "Search",
            "scope": "mcp:crm:read",
            "description": "Finds accounts.",
            "inputSchema": {"type": "object", "properties": {"q": {"type": "string", "enum": ["a"]}}},
            "outputSchema": {"type": "object"},
            "annotations": {"readOnlyHint": true},
            "version": "2.0.0",
            "deprecated": {"removedAt": "2027-01-01", "replacedBy": "find", "reason": "renamed"}
        }]});
        let parsed = parse_list_tools(&reply).unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        assert_eq!(
            parsed.items,
            vec![ToolDef {
                name: "search".into(),
                title: Some("Search".into()),
                description: "Finds accounts.".into(),
                scope: Some("mcp:crm:read".into()),
                input_schema: json!({"type": "object", "properties": {"q": {"type": "string", "enum": ["a"]}}}),
                output_schema: Some(json!({"type": "object"})),
                annotations: Some(json!({"readOnlyHint": true})),
                version: "2.0.0".into(),
                deprecated: Some(Deprecation {
                    removed_at: Some("2027-01-01".into()),
                    replaced_by: Some("find".into()),
                    reason: Some("renamed".into()),
                }),
            }]
        );
    }

    #[test]
    fn tool_defaults() {
        let parsed = parse_list_tools(&json!({"tools": [{"name": "ping"}]})).unwrap();
        let t = &parsed.items[0];
        assert_eq!(t.description, "");
        assert_eq!(t.scope, None);
        assert_eq!(t.input_schema, json!({"type": "object"}));
        assert_eq!(t.version, "1.0.0");
        assert_eq!(t.deprecated, None);
        assert_eq!(t.title, None);
        assert!(parsed.warnings.is_empty());
    }

    #[test]
    fn input_schema_wins_over_params_and_params_are_converted() {
        let parsed = parse_list_tools(&json!({"tools": [
            {"name": "a", "inputSchema": {"type": "object", "properties": {}}, "params": {"q": "string"}},
            {"name": "b", "params": {"q": "string", "n": "number?"}}
        ]}))
        .unwrap();
        assert_eq!(
            parsed.items[0].input_schema,
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(
            parsed.items[1].input_schema,
            json!({"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "number"}}, "required": ["q"]})
        );
    }

    #[test]
    fn schemas_are_repaired_or_rejected() {
        let parsed = parse_list_tools(&json!({"tools": [
            {"name": "no_type", "inputSchema": {"properties": {}}},
            {"name": "bad_type", "inputSchema": {"type": "string"}},
            {"name": "not_object", "inputSchema": "x", "params": {"q": "string"}},
            {"name": "bad_out", "outputSchema": {"type": "array"}},
            {"name": "bad_params", "params": ["q"]}
        ]}))
        .unwrap();
        let names: Vec<_> = parsed.items.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["no_type", "not_object", "bad_out", "bad_params"]);
        assert_eq!(
            parsed.items[0].input_schema,
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(parsed.items[1].input_schema["required"], json!(["q"]));
        assert_eq!(parsed.items[2].output_schema, None);
        assert_eq!(parsed.items[3].input_schema, json!({"type": "object"}));
        let w = parsed.warnings.join("\n");
        assert!(
            w.contains(r#"tool #0 ("no_type"): "inputSchema" has no "type""#),
            "{w}"
        );
        assert!(
            w.contains(r#"tool #1 ("bad_type"): "inputSchema" must be an object schema"#),
            "{w}"
        );
        assert!(w.contains("skipped"), "{w}");
        assert!(
            w.contains(r#"tool #2 ("not_object"): "inputSchema" must be an object, got a string"#),
            "{w}"
        );
        assert!(w.contains(r#"tool #3 ("bad_out"): "outputSchema""#), "{w}");
        assert!(
            w.contains(r#"tool #4 ("bad_params"): "params" must be an object"#),
            "{w}"
        );
    }

    #[test]
    fn bad_tools_are_skipped_with_warnings() {
        let parsed = parse_list_tools(&json!({"tools": [
            "nope",
            {"description": "no name"},
            {"name": 5},
            {"name": ""},
            {"name": "dup", "description": "first"},
            {"name": "dup", "description": "second"},
            {"name": "empty_scope", "scope": ""},
            {"name": "two_scopes", "scope": "a b"},
            {"name": "num_scope", "scope": 3},
            {"name": "ok", "scope": "s"}
        ]}))
        .unwrap();
        let names: Vec<_> = parsed.items.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["dup", "ok"]);
        assert_eq!(parsed.items[0].description, "first");
        let w = &parsed.warnings;
        assert_eq!(w.len(), 8, "{w:?}");
        assert_eq!(w[0], "tool #0: must be an object, got a string; skipped");
        assert_eq!(w[1], "tool #1: missing \"name\"; skipped");
        assert_eq!(
            w[2],
            "tool #2: \"name\" must be a string, got a number; skipped"
        );
        assert_eq!(w[3], "tool #3: \"name\" is empty; skipped");
        assert!(
            w[4].starts_with("tool #5 (\"dup\"): duplicate \"name\""),
            "{}",
            w[4]
        );
        assert!(w[5].contains("\"scope\" is empty"), "{}", w[5]);
        assert!(w[6].contains("exactly one scope"), "{}", w[6]);
        assert!(w[7].contains("\"scope\" must be a string"), "{}", w[7]);
    }

    #[test]
    fn optional_tool_fields_of_the_wrong_type_are_dropped() {
        let parsed = parse_list_tools(&json!({"tools": [
            {"name": "t", "title": 1, "description": ["x"], "annotations": "y", "version": false, "deprecated": 3}
        ]}))
        .unwrap();
        let t = &parsed.items[0];
        assert_eq!(t.title, None);
        assert_eq!(t.description, "");
        assert_eq!(t.annotations, None);
        assert_eq!(t.version, "1.0.0");
        assert_eq!(t.deprecated, None);
        assert_eq!(parsed.warnings.len(), 5, "{:?}", parsed.warnings);
    }

    #[test]
    fn deprecation_forms() {
        let parsed = parse_list_tools(&json!({"tools": [
            {"name": "a", "deprecated": true},
            {"name": "b", "deprecated": false},
            {"name": "c", "deprecated": "use d"},
            {"name": "d", "deprecated": {"removedAt": "2027"}},
            {"name": "e", "version": 2}
        ]}))
        .unwrap();
        let d: Vec<_> = parsed.items.iter().map(|t| t.deprecated.clone()).collect();
        assert_eq!(d[0], Some(Deprecation::default()));
        assert_eq!(d[1], None);
        assert_eq!(d[2].as_ref().unwrap().reason.as_deref(), Some("use d"));
        assert_eq!(d[3].as_ref().unwrap().removed_at.as_deref(), Some("2027"));
        assert_eq!(d[3].as_ref().unwrap().replaced_by, None);
        assert_eq!(parsed.items[4].version, "2");
    }

    #[test]
    fn unusable_discovery_replies_are_errors_that_say_what_was_expected() {
        let e = parse_list_tools(&json!([1])).unwrap_err();
        assert_eq!(
            e.0,
            "list_tools reply must be a JSON object with a \"tools\" array, got an array"
        );
        let e = parse_list_tools(&json!({"tool": []})).unwrap_err();
        assert!(e.0.contains("has no \"tools\""), "{e}");
        let e = parse_list_tools(&json!({"tools": {}})).unwrap_err();
        assert_eq!(
            e.0,
            "list_tools reply: \"tools\" must be an array, got an object"
        );
        assert!(parse_list_prompts(&json!("x"))
            .unwrap_err()
            .0
            .contains("\"prompts\" array"));
        assert!(parse_list_resource_templates(&json!({}))
            .unwrap_err()
            .0
            .contains("\"resourceTemplates\""));
        assert!(parse_list_resources(&json!(null))
            .unwrap_err()
            .0
            .contains("got null"));
        assert!(parse_list_tools(&json!({"tools": []}))
            .unwrap()
            .items
            .is_empty());
    }

    #[test]
    fn parses_prompts() {
        let parsed = parse_list_prompts(&json!({"prompts": [
            {"name": "summarize", "title": "Sum", "description": "d", "arguments": [{"name": "id", "required": true}], "scope": "s"},
            {"name": "bare"},
            {"name": "bad_args", "arguments": {"id": 1}},
            {"name": "bare"},
            {"description": "nameless"}
        ]}))
        .unwrap();
        assert_eq!(
            parsed.items[0],
            PromptDef {
                name: "summarize".into(),
                title: Some("Sum".into()),
                description: Some("d".into()),
                arguments: Some(json!([{"name": "id", "required": true}])),
                scope: Some("s".into()),
            }
        );
        assert_eq!(
            parsed.items[1],
            PromptDef {
                name: "bare".into(),
                title: None,
                description: None,
                arguments: None,
                scope: None,
            }
        );
        assert_eq!(parsed.items[2].arguments, None);
        assert_eq!(parsed.items.len(), 3);
        assert_eq!(parsed.warnings.len(), 3, "{:?}", parsed.warnings);
        assert!(parsed.warnings[0]
            .starts_with("prompt #2 (\"bad_args\"): \"arguments\" must be an array"));
        assert!(parsed.warnings[1].starts_with("prompt #3 (\"bare\"): duplicate"));
        assert_eq!(parsed.warnings[2], "prompt #4: missing \"name\"; skipped");
    }

    #[test]
    fn parses_resource_templates() {
        let parsed = parse_list_resource_templates(&json!({"resourceTemplates": [
            {"uriTemplate": "docs://d/{id}", "name": "doc", "description": "d", "mimeType": "text/plain", "scope": "s"},
            {"uriTemplate": "docs://d/{id}", "name": "same_uri"},
            {"uriTemplate": "docs://o/{id}", "name": "doc"},
            {"name": "no_uri"},
            {"uriTemplate": "docs://x/{id}"}
        ]}))
        .unwrap();
        assert_eq!(
            parsed.items,
            vec![TemplateDef {
                uri_template: "docs://d/{id}".into(),
                name: "doc".into(),
                title: None,
                description: Some("d".into()),
                mime_type: Some("text/plain".into()),
                scope: Some("s".into()),
            }]
        );
        let w = &parsed.warnings;
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[0].contains("duplicate \"uriTemplate\""), "{}", w[0]);
        assert!(w[1].contains("duplicate \"name\""), "{}", w[1]);
        assert_eq!(
            w[2],
            "resource template #3 (\"no_uri\"): missing \"uriTemplate\"; skipped"
        );
        assert_eq!(w[3], "resource template #4: missing \"name\"; skipped");
    }

    #[test]
    fn parses_resources() {
        let parsed = parse_list_resources(&json!({"resources": [
            {"uri": "docs://index", "name": "index", "title": "Index", "mimeType": "application/json"},
            {"uri": "docs://index", "name": "again"},
            {"uri": 3, "name": "bad"}
        ]}))
        .unwrap();
        assert_eq!(
            parsed.items,
            vec![ResourceDef {
                uri: "docs://index".into(),
                name: "index".into(),
                title: Some("Index".into()),
                description: None,
                mime_type: Some("application/json".into()),
                scope: None,
            }]
        );
        assert_eq!(parsed.warnings.len(), 2);
        assert!(parsed.warnings[0].contains("duplicate \"uri\""));
        assert!(parsed.warnings[1].contains("\"uri\" must be a string"));
    }

    // ---- shorthand ---------------------------------------------------------------------

    fn shorthand(v: Value) -> Value {
        shorthand_to_schema(v.as_object().unwrap())
    }

    #[test]
    fn shorthand_doc_example() {
        assert_eq!(
            shorthand(json!({"q": "string", "tags": "string[]?", "n": "number"})),
            json!({
                "type": "object",
                "properties": {
                    "q": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "n": {"type": "number"}
                },
                "required": ["n", "q"]
            })
        );
    }

    #[test]
    fn shorthand_types() {
        let s = shorthand(json!({
            "a": "integer", "b": "boolean", "c": "object", "d": "array", "e": "any",
            "f": "any[]", "g": "integer[]", "h": "String", "i": " number ? ", "j": "boolean[]?"
        }));
        let p = &s["properties"];
        assert_eq!(p["a"], json!({"type": "integer"}));
        assert_eq!(p["b"], json!({"type": "boolean"}));
        assert_eq!(p["c"], json!({"type": "object"}));
        assert_eq!(p["d"], json!({"type": "array"}));
        assert_eq!(p["e"], json!({}));
        assert_eq!(p["f"], json!({"type": "array", "items": {}}));
        assert_eq!(
            p["g"],
            json!({"type": "array", "items": {"type": "integer"}})
        );
        assert_eq!(p["h"], json!({"type": "string"}));
        assert_eq!(p["i"], json!({"type": "number"}));
        assert_eq!(
            p["j"],
            json!({"type": "array", "items": {"type": "boolean"}})
        );
        assert_eq!(
            s["required"],
            json!(["a", "b", "c", "d", "e", "f", "g", "h"])
        );
    }

    #[test]
    fn shorthand_unknown_types_and_object_values() {
        let s = shorthand(json!({
            "when": "date?",
            "raw": {"type": "string", "format": "uri"},
            "odd": 5
        }));
        let p = &s["properties"];
        assert_eq!(p["when"].as_object().unwrap().len(), 1);
        assert!(p["when"]["description"]
            .as_str()
            .unwrap()
            .contains("\"date?\""));
        assert_eq!(p["raw"], json!({"type": "string", "format": "uri"}));
        assert!(p["odd"]["description"].as_str().unwrap().contains('5'));
        assert_eq!(s["required"], json!(["odd", "raw"]));
    }

    #[test]
    fn shorthand_without_required_fields_omits_required() {
        assert_eq!(
            shorthand(json!({"a": "string?"})),
            json!({"type": "object", "properties": {"a": {"type": "string"}}})
        );
        assert_eq!(
            shorthand(json!({})),
            json!({"type": "object", "properties": {}})
        );
    }

    // ---- request body ------------------------------------------------------------------

    #[test]
    fn request_bodies_are_exact() {
        assert_eq!(
            request_body("list_tools", None),
            br#"{"method":"list_tools","params":{}}"#
        );
        assert_eq!(
            request_body("echo", Some(&json!({"message": "hi"}))),
            br#"{"method":"echo","params":{"message":"hi"}}"#
        );
        assert_eq!(
            request_body("x", Some(&Value::Null)),
            br#"{"method":"x","params":{}}"#
        );
        assert_eq!(
            request_body("we\"ird", None),
            br#"{"method":"we\"ird","params":{}}"#
        );
    }

    // ---- tools/call replies: 2xx -------------------------------------------------------

    #[test]
    fn json_object_reply_becomes_text_and_structured_content() {
        let r = result(map_tool_reply(
            json_reply(200, r#"{ "echoed" : "hello" }"#),
            CTX,
        ));
        assert_eq!(
            r,
            json!({
                "content": [{"type": "text", "text": r#"{"echoed":"hello"}"#}],
                "structuredContent": {"echoed": "hello"}
            })
        );
    }

    #[test]
    fn json_string_reply_is_the_string_itself() {
        let r = result(map_tool_reply(json_reply(200, r#""plain \"text\"""#), CTX));
        assert_eq!(
            r,
            json!({"content": [{"type": "text", "text": "plain \"text\""}]})
        );
    }

    #[test]
    fn other_json_replies_are_text_only() {
        for (body, text) in [
            ("[1, 2]", "[1,2]"),
            ("42", "42"),
            ("true", "true"),
            ("null", "null"),
        ] {
            let r = result(map_tool_reply(json_reply(201, body), CTX));
            assert_eq!(
                r,
                json!({"content": [{"type": "text", "text": text}]}),
                "{body}"
            );
        }
    }

    #[test]
    fn non_json_replies_are_the_body_as_text() {
        let r = result(map_tool_reply(
            reply(200, Some("text/plain"), b"hello\n"),
            CTX,
        ));
        assert_eq!(r, json!({"content": [{"type": "text", "text": "hello\n"}]}));
        let r = result(map_tool_reply(reply(200, None, b"{\"a\":1}"), CTX));
        assert_eq!(r["content"][0]["text"], "{\"a\":1}");
        assert!(r.get("structuredContent").is_none());
        let r = result(map_tool_reply(
            reply(200, Some("text/plain"), b"caf\xff"),
            CTX,
        ));
        assert_eq!(r["content"][0]["text"], "caf\u{fffd}");
    }

    #[test]
    fn json_typed_variants_are_recognised() {
        for ct in [
            "application/json",
            "Application/JSON;charset=UTF-8",
            "application/problem+json",
            "text/json",
        ] {
            let r = result(map_tool_reply(reply(200, Some(ct), b"{\"a\":1}"), CTX));
            assert_eq!(r["structuredContent"], json!({"a": 1}), "{ct}");
        }
    }

    #[test]
    fn empty_success_bodies_are_empty_text() {
        let r = result(map_tool_reply(
            reply(204, Some("application/json"), b""),
            CTX,
        ));
        assert_eq!(r, json!({"content": [{"type": "text", "text": ""}]}));
    }

    #[test]
    fn invalid_json_in_a_json_typed_success_is_an_internal_error() {
        let (code, message, data) = error(map_tool_reply(json_reply(200, "{oops"), CTX));
        assert_eq!(code, -32603);
        assert_eq!(message, "Backend crm sent invalid JSON");
        assert_eq!(data["backend"], "crm");
        assert_eq!(data["status"], 200);
    }

    #[test]
    fn call_tool_result_replies_pass_through() {
        let body = r#"{"content":[{"type":"image","data":"AAA","mimeType":"image/png"}],"isError":true,"extra":1}"#;
        let mut r = json_reply(200, body);
        r.reply_kind = Some(" Call-Tool-Result ");
        assert_eq!(
            result(map_tool_reply(r, CTX)),
            serde_json::from_str::<Value>(body).unwrap()
        );
        // The header decides, not the content type.
        let mut r = reply(200, Some("text/plain"), br#"{"content":[]}"#);
        r.reply_kind = Some(REPLY_KIND_CALL_TOOL_RESULT);
        assert_eq!(result(map_tool_reply(r, CTX)), json!({"content": []}));
    }

    #[test]
    fn malformed_call_tool_results_are_internal_errors_naming_the_backend() {
        let cases = [
            (
                r#"{"content":"text"}"#,
                "\"content\" must be an array, got a string",
            ),
            (r#"{"structuredContent":{}}"#, "\"content\" is missing"),
            ("[]", "expected a JSON object, got an array"),
        ];
        for (body, why) in cases {
            let mut r = json_reply(200, body);
            r.reply_kind = Some(REPLY_KIND_CALL_TOOL_RESULT);
            let (code, message, data) = error(map_tool_reply(r, CTX));
            assert_eq!(code, -32603);
            assert_eq!(
                message,
                format!("Backend crm sent an invalid CallToolResult: {why}")
            );
            assert_eq!(data["backend"], "crm");
        }
        let mut r = json_reply(200, "nope");
        r.reply_kind = Some(REPLY_KIND_CALL_TOOL_RESULT);
        assert_eq!(
            error(map_tool_reply(r, CTX)).1,
            "Backend crm sent invalid JSON"
        );
    }

    // ---- tools/call replies: failures --------------------------------------------------

    #[test]
    fn client_errors_are_is_error_results() {
        for status in [400u16, 404, 409, 422, 418, 429] {
            let r = result(map_tool_reply(
                json_reply(status, r#"{"error":"bad input"}"#),
                CTX,
            ));
            assert_eq!(
                r,
                json!({
                    "content": [{"type": "text", "text": format!("Backend {status}: bad input")}],
                    "isError": true
                }),
                "{status}"
            );
        }
    }

    #[test]
    fn forbidden_with_required_is_a_scope_refusal() {
        let r = result(map_tool_reply(
            json_reply(403, r#"{"error":"no","required":"mcp:crm:write"}"#),
            CTX,
        ));
        assert_eq!(
            r,
            json!({
                "content": [{"type": "text", "text": "Backend refused scope: mcp:crm:write is required"}],
                "isError": true,
                "structuredContent": {"error": "backend_scope_required", "required": "mcp:crm:write", "method": "save_note"}
            })
        );
    }

    #[test]
    fn forbidden_without_required_is_an_acl_denial() {
        let r = result(map_tool_reply(
            json_reply(403, r#"{"error":"Scope mcp:demo:write required"}"#),
            CTX,
        ));
        assert_eq!(
            r,
            json!({
                "content": [{"type": "text", "text": "Backend ACL denied: Scope mcp:demo:write required"}],
                "isError": true,
                "structuredContent": {"error": "backend_acl_denied", "reason": "Scope mcp:demo:write required"}
            })
        );
        let r = result(map_tool_reply(reply(403, None, b""), CTX));
        assert_eq!(r["content"][0]["text"], "Backend ACL denied: Forbidden");
    }

    #[test]
    fn unauthorized_is_an_auth_error() {
        let (code, message, data) = error(map_tool_reply(
            json_reply(401, r#"{"error":"expired"}"#),
            CTX,
        ));
        assert_eq!(code, -32603);
        assert_eq!(message, "Backend auth failed — token may have expired");
        assert_eq!(data, json!({"status": 401, "backend": "crm"}));
    }

    #[test]
    fn server_errors_are_internal_errors_with_data() {
        let (code, message, data) =
            error(map_tool_reply(json_reply(500, r#"{"error":"boom"}"#), CTX));
        assert_eq!(code, -32603);
        assert_eq!(message, "Backend 500: boom");
        assert_eq!(
            data,
            json!({"status": 500, "backendError": "boom", "backend": "crm"})
        );
        let (_, message, _) = error(map_tool_reply(reply(503, None, b""), CTX));
        assert_eq!(message, "Backend 503: Service Unavailable");
        let (_, message, _) = error(map_tool_reply(reply(302, None, b""), CTX));
        assert_eq!(message, "Backend 302: Redirect (not followed)");
        let (_, message, _) = error(map_tool_reply(reply(599, None, b""), CTX));
        assert_eq!(message, "Backend 599: Server Error");
    }

    #[test]
    fn error_texts_come_from_error_then_body_then_reason() {
        let text = |body: &[u8]| {
            let (_, message, _) = error(map_tool_reply(reply(500, Some("text/html"), body), CTX));
            message
        };
        assert_eq!(
            text(br#"{"error":{"message":"nested"}}"#),
            "Backend 500: nested"
        );
        assert_eq!(
            text(br#"{"message":"framework"}"#),
            "Backend 500: framework"
        );
        assert_eq!(text(b"upstream\ncrashed"), "Backend 500: upstream crashed");
        assert_eq!(text(b"  "), "Backend 500: Internal Server Error");
        assert_eq!(text(b"{}"), "Backend 500: Internal Server Error");
        assert_eq!(text(b"null"), "Backend 500: Internal Server Error");
        assert_eq!(text(br#"{"detail":"x"}"#), r#"Backend 500: {"detail":"x"}"#);
        let long = format!("<html>{}</html>", "é".repeat(400));
        let message = text(long.as_bytes());
        let excerpt = message.strip_prefix("Backend 500: ").unwrap();
        assert_eq!(excerpt.chars().count(), 200);
        assert!(excerpt.starts_with("<html>é"));
        assert!(excerpt.ends_with('…'));
        let exact = "x".repeat(200);
        assert_eq!(text(exact.as_bytes()), format!("Backend 500: {exact}"));
        assert_eq!(text(b"bad \xff byte"), "Backend 500: bad \u{fffd} byte");
    }

    // ---- prompts, resources, completions -----------------------------------------------

    #[test]
    fn prompt_replies() {
        let ok = r#"{"description":"d","messages":[{"role":"user","content":{"type":"text","text":"hi"}}]}"#;
        assert_eq!(
            result(map_prompt_reply(json_reply(200, ok), CTX)),
            serde_json::from_str::<Value>(ok).unwrap()
        );
        let (code, message, _) =
            error(map_prompt_reply(json_reply(200, r#"{"messages":{}}"#), CTX));
        assert_eq!(code, -32603);
        assert_eq!(
            message,
            "Backend crm sent an invalid get_prompt reply: \"messages\" must be an array, got an object"
        );
        let (code, message, data) = error(map_prompt_reply(
            json_reply(404, r#"{"error":"no such prompt"}"#),
            CTX,
        ));
        assert_eq!((code, message.as_str()), (-32602, "Unknown prompt"));
        assert_eq!(data["backend"], "crm");
        let (code, message, _) = error(map_prompt_reply(
            json_reply(400, r#"{"error":"missing id"}"#),
            CTX,
        ));
        assert_eq!(
            (code, message.as_str()),
            (-32602, "Backend 400: missing id")
        );
        assert_eq!(
            error(map_prompt_reply(json_reply(401, "{}"), CTX)).0,
            -32603
        );
        let (code, message, data) = error(map_prompt_reply(
            json_reply(403, r#"{"required":"s:x"}"#),
            CTX,
        ));
        assert_eq!(
            (code, message.as_str()),
            (-32603, "Backend refused scope: s:x is required")
        );
        assert_eq!(data["error"], "backend_scope_required");
        let (code, message, data) =
            error(map_prompt_reply(json_reply(403, r#"{"error":"acl"}"#), CTX));
        assert_eq!(
            (code, message.as_str()),
            (-32603, "Backend ACL denied: acl")
        );
        assert_eq!(data["reason"], "acl");
        let (code, message, _) = error(map_prompt_reply(json_reply(409, r#"{"error":"c"}"#), CTX));
        assert_eq!((code, message.as_str()), (-32603, "Backend 409: c"));
        let (code, message, _) = error(map_prompt_reply(json_reply(502, ""), CTX));
        assert_eq!(
            (code, message.as_str()),
            (-32603, "Backend 502: Bad Gateway")
        );
    }

    #[test]
    fn resource_replies() {
        let ok = r#"{"contents":[{"uri":"x://1","mimeType":"text/plain","text":"t"}]}"#;
        assert_eq!(
            result(map_resource_reply(json_reply(200, ok), CTX, "x://1")),
            serde_json::from_str::<Value>(ok).unwrap()
        );
        let (code, message, _) = error(map_resource_reply(
            json_reply(200, r#"{"contents":"t"}"#),
            CTX,
            "x://1",
        ));
        assert_eq!(code, -32603);
        assert!(message.contains("Backend crm") && message.contains("\"contents\""));
        let (code, message, data) = error(map_resource_reply(json_reply(404, "{}"), CTX, "x://1"));
        assert_eq!((code, message.as_str()), (-32002, "Resource not found"));
        assert_eq!(data, json!({"uri": "x://1"}));
        assert_eq!(
            error(map_resource_reply(
                json_reply(400, r#"{"error":"bad uri"}"#),
                CTX,
                "x"
            ))
            .0,
            -32602
        );
        assert_eq!(
            error(map_resource_reply(json_reply(500, "{}"), CTX, "x")).1,
            "Backend 500: Internal Server Error"
        );
    }

    #[test]
    fn completion_replies() {
        let ok = r#"{"completion":{"values":["a","b"],"total":2,"hasMore":false}}"#;
        assert_eq!(
            result(map_completion_reply(json_reply(200, ok), CTX)),
            serde_json::from_str::<Value>(ok).unwrap()
        );
        let empty = json!({"completion": {"values": [], "hasMore": false}});
        assert_eq!(
            result(map_completion_reply(json_reply(404, ""), CTX)),
            empty
        );
        assert_eq!(
            result(map_completion_reply(
                json_reply(400, r#"{"error":"Unknown method: complete"}"#),
                CTX
            )),
            empty
        );
        let (code, _, _) = error(map_completion_reply(
            json_reply(400, r#"{"error":"bad ref"}"#),
            CTX,
        ));
        assert_eq!(code, -32602);
        let (code, message, _) = error(map_completion_reply(
            json_reply(200, r#"{"values":[]}"#),
            CTX,
        ));
        assert_eq!(code, -32603);
        assert!(message.starts_with("Backend crm sent an invalid complete reply"));
        assert_eq!(
            error(map_completion_reply(json_reply(500, "{}"), CTX)).0,
            -32603
        );
    }

    #[test]
    fn transport_failures() {
        let (code, message, data) = error(map_transport_failure(
            &TransportFailure::Timeout { timeout_ms: 10_000 },
            CTX,
        ));
        assert_eq!(code, -32603);
        assert_eq!(message, "Backend timed out after 10000ms");
        assert_eq!(data, json!({"backend": "crm", "timeoutMs": 10000}));
        let (code, message, _) = error(map_transport_failure(
            &TransportFailure::Unreachable {
                reason: "connection refused".into(),
            },
            CTX,
        ));
        assert_eq!(code, -32603);
        assert_eq!(message, "Backend crm unreachable: connection refused");
    }
}
