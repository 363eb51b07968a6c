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

use serde_json::{Map, Value};

use crate::catalog::{PromptDef, ResourceDef, TemplateDef, ToolDef};

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

/// Parses a `list_tools` reply `{tools:[…]}`. Per tool: `name` required (string); `scope`
/// string (optional); `description` (default ""); `inputSchema` object wins over `params`
/// shorthand (converted by [`shorthand_to_schema`]); neither → `{"type":"object"}`;
/// `version` default `1.0.0`; `deprecated {removedAt?, replacedBy?, reason?}`; `title`,
/// `outputSchema`, `annotations` passed through. Duplicate names within one backend: the
/// first is kept, later ones are warned about.
pub fn parse_list_tools(reply: &Value) -> Result<Parsed<ToolDef>, ContractError> {
    todo!("{reply}")
}

/// Parses a `list_prompts` reply `{prompts:[{name, description?, arguments?, scope?}]}`.
pub fn parse_list_prompts(reply: &Value) -> Result<Parsed<PromptDef>, ContractError> {
    todo!("{reply}")
}

/// Parses a `list_resource_templates` reply
/// `{resourceTemplates:[{uriTemplate, name, description?, mimeType?, scope?}]}`.
pub fn parse_list_resource_templates(reply: &Value) -> Result<Parsed<TemplateDef>, ContractError> {
    todo!("{reply}")
}

/// Parses a `list_resources` reply (contract extension)
/// `{resources:[{uri, name, description?, mimeType?, scope?}]}`.
pub fn parse_list_resources(reply: &Value) -> Result<Parsed<ResourceDef>, ContractError> {
    todo!("{reply}")
}

/// Converts the Cortex `params` shorthand to a JSON Schema object.
/// `{"q":"string","tags":"string[]?","n":"number"}` →
/// `{"type":"object","properties":{"q":{"type":"string"},"tags":{"type":"array","items":{"type":"string"}},"n":{"type":"number"}},"required":["n","q"]}`.
/// A trailing `?` marks the field optional, `[]` an array of the type; unknown type names
/// become `{}` (any) with a description naming the original; a value that is already an
/// object is taken as that property's schema. `required` is sorted.
pub fn shorthand_to_schema(params: &Map<String, Value>) -> Value {
    todo!("{params:?}")
}

/// The contract request body `{"method":<method>,"params":<params or {}>}`.
pub fn request_body(method: &str, params: Option<&Value>) -> Vec<u8> {
    todo!("{method} {params:?}")
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

/// Maps a `tools/call` reply per the module table.
pub fn map_tool_reply(reply: Reply<'_>, ctx: ReplyContext<'_>) -> Outcome {
    todo!("{reply:?} {ctx:?}")
}

/// Maps a `get_prompt` reply: 2xx `{description?, messages:[…]}` → the result as is
/// (`messages` must be an array, else -32603 naming the backend); 404 → -32602 `Unknown
/// prompt`; 400 → -32602 with the backend's error; other failures as for tools but always as
/// JSON-RPC errors (prompts have no `isError`).
pub fn map_prompt_reply(reply: Reply<'_>, ctx: ReplyContext<'_>) -> Outcome {
    todo!("{reply:?} {ctx:?}")
}

/// Maps a `read_resource` reply: 2xx `{contents:[…]}` → the result as is (`contents` must be
/// an array); 404 → -32002 `Resource not found` with data `{uri}`; other failures as JSON-RPC
/// errors like [`map_prompt_reply`].
pub fn map_resource_reply(reply: Reply<'_>, ctx: ReplyContext<'_>, uri: &str) -> Outcome {
    todo!("{reply:?} {ctx:?} {uri}")
}

/// Maps a `complete` reply (contract extension for `completion/complete`): 2xx
/// `{completion:{values,total?,hasMore?}}` passed through; 404 or 400 `Unknown method` →
/// an empty completion `{completion:{values:[],hasMore:false}}`; other failures as JSON-RPC
/// errors.
pub fn map_completion_reply(reply: Reply<'_>, ctx: ReplyContext<'_>) -> Outcome {
    todo!("{reply:?} {ctx:?}")
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
    todo!("{failure:?} {ctx:?}")
}
