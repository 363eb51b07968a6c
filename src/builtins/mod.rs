//! The gateway's own tools (builtins) and its own resource, `cortex://architecture`.
//!
//! Builtins have unprefixed names reserved by the gateway ([`reserved_names`]):
//! the catalog merge drops any backend entry exposed under one of them, so a backend can
//! never shadow a builtin. Each builtin declares the scope it requires (configurable in
//! `builtins.scopes`); a builtin the caller may not use is neither listed nor callable, and
//! calling it answers "Unknown tool" exactly like a tool that does not exist.
//!
//! | builtin | default scope | module |
//! | --- | --- | --- |
//! | `whoami` | any caller | [`whoami`] |
//! | `find_tools` | any caller | [`find_tools`] |
//! | `report_missing_capability`, `list_cortex_tickets` | any caller | [`tickets`] |
//! | `triage_cortex_ticket` | `builtins.admin_scope` | [`tickets`] |
//! | `list_cortex_resources`, `read_cortex_resource` | any caller | [`resources`] |
//!
//! `tools/list` lists the builtins first (the list itself, with Cortex's search mode and
//! backend filter, is built by the MCP endpoint). Results use the same shape as backend tools:
//! `{content:[{type:"text",text:<JSON>}], structuredContent:<object>}`; bad arguments give a
//! result with `isError: true` so the model can correct itself (MCP 2025-11-25 convention).

pub mod find_tools;
pub mod resources;
pub mod tickets;
pub mod webhook;
pub mod whoami;

use std::sync::Arc;

use cortex_filters::jsonrpc::RpcError;
use cortex_filters::version::ProtocolVersion;
use serde_json::{json, Map, Value};

use crate::auth::Principal;
use crate::config::{BuiltinScopes, Config};
use crate::store::Store;
use crate::upstream::{CatalogStore, Upstreams};
use crate::GATEWAY_VERSION;

/// `whoami`.
pub const WHOAMI: &str = "whoami";
/// `find_tools`.
pub const FIND_TOOLS: &str = "find_tools";
/// `report_missing_capability`.
pub const REPORT_MISSING_CAPABILITY: &str = "report_missing_capability";
/// `list_cortex_tickets`.
pub const LIST_CORTEX_TICKETS: &str = "list_cortex_tickets";
/// `triage_cortex_ticket`.
pub const TRIAGE_CORTEX_TICKET: &str = "triage_cortex_ticket";
/// `list_cortex_resources`.
pub const LIST_CORTEX_RESOURCES: &str = "list_cortex_resources";
/// `read_cortex_resource`.
pub const READ_CORTEX_RESOURCE: &str = "read_cortex_resource";
/// The URI of the gateway's own resource.
pub const ARCHITECTURE_URI: &str = "cortex://architecture";
/// The `_meta.app` of builtins (and the `contextApp` meaning "the gateway itself").
pub const GATEWAY_APP: &str = "cortex";

/// Appended to the `instructions` of `initialize`: what the builtins are for.
pub const INSTRUCTIONS: &str = " The gateway's own tools: `whoami` says who you are, what each \
     app thinks of you and which scopes would reveal the tools you cannot see; `find_tools` \
     finds tools by words and returns their full definitions (the list may be shortened with \
     X-Cortex-Tool-Mode: search, or narrowed with X-Cortex-Backends); when no tool can do what \
     the user needs, `report_missing_capability` files a ticket for the people running these \
     apps. The resource cortex://architecture describes this setup.";

/// When a builtin appears in `tools/list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// In every mode.
    Always,
    /// Only in search mode (Cortex lists `find_tools` there only); callable in every mode.
    SearchMode,
}

/// Which setting of `builtins.scopes` gives a builtin its scope, and the scope it has
/// when that setting is absent.
#[derive(Clone, Copy)]
struct ScopeSetting {
    configured: fn(&BuiltinScopes) -> &Option<String>,
    admin_by_default: bool,
}

/// One builtin as defined: its name, when it is listed, where its scope comes from, and its
/// `Tool` object. [`definitions`] is the one list of builtins; the reserved names and the
/// scope of each builtin are derived from it.
struct Definition {
    name: &'static str,
    listing: Listing,
    scope: ScopeSetting,
    entry: Value,
}

/// One builtin as configured.
#[derive(Debug, Clone)]
pub struct BuiltinDef {
    /// Its reserved name.
    pub name: &'static str,
    /// The scope it requires (`None`: any authenticated caller).
    pub scope: Option<String>,
    /// The MCP `Tool` object listed and returned by `find_tools`.
    pub entry: Value,
    /// When it is listed.
    pub listing: Listing,
}

/// The builtins' process-lifetime parts: the `find_tools` index (rebuilt per catalog
/// generation), the webhook service's wake-up and its counters.
#[derive(Default)]
pub struct BuiltinRuntime {
    index: find_tools::IndexCache,
    webhook_wake: Arc<tokio::sync::Notify>,
    webhook_stats: Arc<webhook::OutboxStats>,
}

impl BuiltinRuntime {
    /// Wakes the webhook delivery service (a delivery was just enqueued).
    pub fn wake_webhook(&self) {
        self.webhook_wake.notify_one();
    }

    /// The notifier the webhook delivery service waits on.
    pub fn webhook_wake(&self) -> Arc<tokio::sync::Notify> {
        self.webhook_wake.clone()
    }

    /// The webhook outbox's counters (the delivery service counts, the metrics read).
    pub fn webhook_stats(&self) -> Arc<webhook::OutboxStats> {
        self.webhook_stats.clone()
    }
}

/// The builtins of one gateway, built from configuration (a reload rebuilds them).
pub struct Builtins {
    defs: Vec<BuiltinDef>,
    admin_scope: String,
    architecture_scope: Option<String>,
}

/// Every name the gateway keeps for itself: its tools and its resource's URI. A backend
/// entry exposed under one of them is dropped at merge.
pub fn reserved_names() -> Vec<&'static str> {
    definitions()
        .iter()
        .map(|d| d.name)
        .chain([ARCHITECTURE_URI])
        .collect()
}

impl Builtins {
    /// Builds the builtin table from configuration.
    pub fn new(config: &Config) -> Self {
        let admin = config.builtins.admin_scope.trim().to_string();
        let s = &config.builtins.scopes;
        let scope = |set: &Option<String>, default: Option<&str>| -> Option<String> {
            match set {
                Some(v) if v.trim().is_empty() => None,
                Some(v) => Some(v.trim().to_string()),
                None => default.map(str::to_string),
            }
        };
        let defs = definitions()
            .into_iter()
            .map(|d| BuiltinDef {
                name: d.name,
                scope: scope(
                    (d.scope.configured)(s),
                    d.scope.admin_by_default.then_some(admin.as_str()),
                ),
                entry: d.entry,
                listing: d.listing,
            })
            .collect();
        Builtins {
            defs,
            architecture_scope: scope(&s.read_cortex_resource, None),
            admin_scope: admin,
        }
    }

    /// Every builtin, in listing order.
    pub fn all(&self) -> &[BuiltinDef] {
        &self.defs
    }

    /// A builtin by name, whether or not the caller may use it.
    pub fn get(&self, name: &str) -> Option<&BuiltinDef> {
        self.defs.iter().find(|d| d.name == name)
    }

    /// A builtin the caller may use.
    pub fn usable(&self, name: &str, principal: &Principal) -> Option<&BuiltinDef> {
        self.get(name)
            .filter(|d| principal.grants.allows(d.scope.as_deref()))
    }

    /// The admin scope.
    pub fn admin_scope(&self) -> &str {
        &self.admin_scope
    }

    /// Whether the caller holds the admin scope.
    pub fn is_admin(&self, principal: &Principal) -> bool {
        principal.grants.allows(Some(&self.admin_scope))
    }

    /// Whether the caller may read `cortex://architecture`.
    pub fn architecture_visible(&self, principal: &Principal) -> bool {
        principal.grants.allows(self.architecture_scope.as_deref())
    }
}

/// What a builtin may use: the caller and the few parts of the gateway builtins need, never
/// the whole state.
pub struct BuiltinCx<'a> {
    /// The caller.
    pub principal: &'a Principal,
    /// Whether the caller speaks within an MCP session.
    pub session_present: bool,
    /// The protocol version in force.
    pub version: ProtocolVersion,
    /// The configuration in force (read only).
    pub config: &'a Config,
    /// The canonical URI of the MCP endpoint.
    pub canonical_uri: &'a str,
    /// The builtin table.
    pub builtins: &'a Builtins,
    /// The builtins' process-lifetime parts.
    pub runtime: &'a BuiltinRuntime,
    /// The live catalog.
    pub catalog: &'a CatalogStore,
    /// The backends.
    pub upstreams: &'a Upstreams,
    /// Tickets and the webhook outbox, when the gateway has a store.
    pub store: Option<&'a Arc<dyn Store>>,
    /// The per-user token vault, when configured (`whoami` lists the caller's links).
    pub vault: Option<&'a Arc<crate::vault::Vault>>,
    /// The caller's client capabilities (bits of `cortex_filters::session::caps`): what a
    /// backend reached from a builtin path (`resources/read`) may ask the caller for.
    pub client_caps: u8,
}

/// An MCP `Tool` object for a builtin.
fn entry(
    name: &str,
    title: &str,
    description: &str,
    input_schema: Value,
    read_only: bool,
) -> Value {
    json!({
        "name": name,
        "title": title,
        "description": description,
        "inputSchema": input_schema,
        "annotations": {
            "title": title,
            "readOnlyHint": read_only,
            "destructiveHint": false,
            "idempotentHint": read_only,
            "openWorldHint": false,
        },
        "_meta": {"version": GATEWAY_VERSION, "app": GATEWAY_APP},
    })
}

/// The builtin definitions in listing order: the one list of builtins.
fn definitions() -> Vec<Definition> {
    let any = |configured: fn(&BuiltinScopes) -> &Option<String>| ScopeSetting {
        configured,
        admin_by_default: false,
    };
    let severity = json!({
        "type": "string",
        "enum": tickets::SEVERITIES,
        "description": "blocking: you cannot finish the user's task; inconvenient: you can, with a workaround; nice_to_have: an improvement.",
    });
    let status = json!({"type": "string", "enum": tickets::STATUSES});
    vec![
        Definition {
            name: WHOAMI,
            listing: Listing::Always,
            scope: any(|s| &s.whoami),
            entry: entry(
                WHOAMI,
                "Who am I",
                "Shows who you are to this gateway: identity, granted scopes, session, each app's health and its own view of you, and how many tools are hidden from you and which scopes would reveal them.",
                json!({"type": "object", "properties": {}, "additionalProperties": false}),
                true,
            ),
        },
        Definition {
            name: FIND_TOOLS,
            listing: Listing::SearchMode,
            scope: any(|s| &s.find_tools),
            entry: entry(
                FIND_TOOLS,
                "Find tools",
                "Finds tools by exact names, or by a ranked text query over tool names and descriptions, and returns their full definitions (descriptions and input schemas). Use it when the tool list shows shortened entries.",
                json!({
                    "type": "object",
                    "properties": {
                        "names": {"type": "array", "items": {"type": "string"}, "description": "Exact tool names (as listed); takes precedence over query."},
                        "query": {"type": "string", "description": "What you want to do, in words, e.g. \"send an invoice reminder\"."},
                        "limit": {"type": "integer", "minimum": 1, "maximum": find_tools::MAX_LIMIT, "description": "Most results for a query (default 10)."}
                    },
                    "additionalProperties": false
                }),
                true,
            ),
        },
        Definition {
            name: REPORT_MISSING_CAPABILITY,
            listing: Listing::Always,
            scope: any(|s| &s.report_missing_capability),
            entry: entry(
                REPORT_MISSING_CAPABILITY,
                "Report a missing capability",
                "Files a missing-capability ticket: something you needed to do for the user that no tool allows (or a tool that fell short), so the people running these apps can add it. The same report within 24 h is merged; blocking reports alert an administrator.",
                json!({
                    "type": "object",
                    "properties": {
                        "whatIWanted": {"type": "string", "description": "The capability you were missing, concretely."},
                        "userIntent": {"type": "string", "description": "What the user was trying to achieve."},
                        "severity": severity,
                        "contextTool": {"type": "string", "description": "The tool you tried or that came closest, if any."},
                        "contextApp": {"type": "string", "description": "The app (tool prefix) this is about, if any."},
                        "suggestedShape": {"description": "How the tool could look (name, parameters), if you have an idea."}
                    },
                    "required": ["whatIWanted", "userIntent", "severity"],
                    "additionalProperties": false
                }),
                false,
            ),
        },
        Definition {
            name: LIST_CORTEX_TICKETS,
            listing: Listing::Always,
            scope: any(|s| &s.list_cortex_tickets),
            entry: entry(
                LIST_CORTEX_TICKETS,
                "List capability tickets",
                "Lists missing-capability tickets, newest first: your own (every ticket for administrators), merged with the tickets of apps that keep their own.",
                json!({
                    "type": "object",
                    "properties": {
                        "status": status,
                        "severity": {"type": "string", "enum": tickets::SEVERITIES},
                        "contextApp": {"type": "string", "description": "Only tickets about this app; \"cortex\" = tickets kept by the gateway."},
                        "limit": {"type": "integer", "minimum": 1, "maximum": tickets::MAX_LIST_LIMIT, "description": "Default 20."}
                    },
                    "additionalProperties": false
                }),
                true,
            ),
        },
        Definition {
            name: TRIAGE_CORTEX_TICKET,
            listing: Listing::Always,
            scope: ScopeSetting {
                configured: |s| &s.triage_cortex_ticket,
                admin_by_default: true,
            },
            entry: entry(
                TRIAGE_CORTEX_TICKET,
                "Triage a capability ticket",
                "Administrators: changes the status or severity of a ticket kept by the gateway and adds a note.",
                json!({
                    "type": "object",
                    "properties": {
                        "ticketId": {"type": "string"},
                        "status": status,
                        "severity": {"type": "string", "enum": tickets::SEVERITIES},
                        "note": {"type": "string", "description": "Appended to the ticket's notes."}
                    },
                    "required": ["ticketId"],
                    "additionalProperties": false
                }),
                false,
            ),
        },
        Definition {
            name: LIST_CORTEX_RESOURCES,
            listing: Listing::Always,
            scope: any(|s| &s.list_cortex_resources),
            entry: entry(
                LIST_CORTEX_RESOURCES,
                "List resources",
                "Lists the resources you can read: the gateway's own cortex://architecture and the apps' resources and templates.",
                json!({"type": "object", "properties": {}, "additionalProperties": false}),
                true,
            ),
        },
        Definition {
            name: READ_CORTEX_RESOURCE,
            listing: Listing::Always,
            scope: any(|s| &s.read_cortex_resource),
            entry: entry(
                READ_CORTEX_RESOURCE,
                "Read a resource",
                "Reads a resource by URI. cortex://architecture explains how this gateway is set up for you: your scopes, the apps and their health, and the naming rule.",
                json!({
                    "type": "object",
                    "properties": {"uri": {"type": "string"}},
                    "required": ["uri"],
                    "additionalProperties": false
                }),
                true,
            ),
        },
    ]
}

/// A builtin's failure, shown to the model as an `isError` result (or, for `Rpc`, as a
/// JSON-RPC error).
#[derive(Debug, Clone, PartialEq)]
pub enum BuiltinError {
    /// Bad arguments: `isError` result with `error: "invalid_arguments"`.
    Invalid(String),
    /// Something the caller cannot fix (store down, backend failed): `isError` result.
    Failed {
        /// Short machine-readable code.
        code: &'static str,
        /// For the model.
        message: String,
    },
    /// A JSON-RPC error (e.g. -32602 for a resource that does not exist).
    Rpc(RpcError),
}

impl BuiltinError {
    /// A bad-arguments error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        BuiltinError::Invalid(msg.into())
    }
}

/// What a builtin returns: its structured result, or why it failed.
pub type BuiltinResult = Result<Value, BuiltinError>;

/// A successful tools/call result: the JSON as text plus `structuredContent`.
pub fn tool_result(value: &Value) -> Value {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    json!({"content": [{"type": "text", "text": text}], "structuredContent": value})
}

/// A `read_cortex_resource` result: a single text content is given as the tool's text (the
/// model reads Markdown as Markdown, not as an escaped JSON string).
fn resource_result(value: &Value) -> Value {
    let texts: Vec<&str> = value["contents"]
        .as_array()
        .map(|c| c.iter().filter_map(|e| e["text"].as_str()).collect())
        .unwrap_or_default();
    match texts.as_slice() {
        [one] => json!({"content": [{"type": "text", "text": one}], "structuredContent": value}),
        _ => tool_result(value),
    }
}

/// An `isError` tools/call result.
pub fn tool_error(code: &str, message: &str) -> Value {
    json!({
        "content": [{"type": "text", "text": message}],
        "structuredContent": {"error": code, "message": message},
        "isError": true,
    })
}

/// Calls the builtin `name` with `args` for the caller: the tools/call result (the JSON as
/// text plus `structuredContent`, or an `isError` result the model can correct itself
/// from), or a JSON-RPC error. A builtin the caller may not use answers exactly like a tool
/// that does not exist.
pub async fn call(
    cx: &BuiltinCx<'_>,
    name: &str,
    args: &Map<String, Value>,
) -> Result<Value, RpcError> {
    let Some(def) = cx.builtins.usable(name, cx.principal) else {
        return Err(RpcError::invalid_params(format!("Unknown tool: {name}")));
    };
    let outcome = match def.name {
        WHOAMI => Ok(whoami::whoami(cx).await),
        FIND_TOOLS => find_tools::find_tools(cx, args),
        REPORT_MISSING_CAPABILITY => tickets::report(cx, args).await,
        LIST_CORTEX_TICKETS => tickets::list(cx, args).await,
        TRIAGE_CORTEX_TICKET => tickets::triage(cx, args).await,
        LIST_CORTEX_RESOURCES => Ok(resources::list_all(cx)),
        READ_CORTEX_RESOURCE => resources::read_tool(cx, args).await,
        other => Err(BuiltinError::Rpc(RpcError::invalid_params(format!(
            "Unknown tool: {other}"
        )))),
    };
    match outcome {
        Ok(v) if def.name == READ_CORTEX_RESOURCE => Ok(resource_result(&v)),
        Ok(v) => Ok(tool_result(&v)),
        Err(BuiltinError::Invalid(m)) => Ok(tool_error("invalid_arguments", &m)),
        Err(BuiltinError::Failed { code, message }) => Ok(tool_error(code, &message)),
        Err(BuiltinError::Rpc(e)) => Err(e),
    }
}

/// A string argument: `Ok(None)` when absent or null, an error when of another type.
pub(crate) fn opt_str<'a>(
    args: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, BuiltinError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(BuiltinError::invalid(format!("`{key}` must be a string"))),
    }
}

/// An integer argument within `1..=max`, or `default` when absent.
pub(crate) fn opt_limit(
    args: &Map<String, Value>,
    key: &str,
    default: usize,
    max: usize,
) -> Result<usize, BuiltinError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
            _ => Err(BuiltinError::invalid(format!(
                "`{key}` must be an integer from 1 to {max}"
            ))),
        },
    }
}
