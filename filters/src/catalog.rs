//! The merged catalog: per-backend snapshots → one namespaced catalog, filtered per caller.
//!
//! Design (see ARCHITECTURE.md "Catalog caching that stays correct per caller"):
//! - [`merge`] builds one [`MergedCatalog`] from the last good [`BackendSnapshot`] of every
//!   backend. Entries are sorted by exposed name, so listing order and cursors are stable.
//! - Collisions (two entries with one exposed name, or a backend entry named like a reserved
//!   builtin) are never silently shadowed: the entry of the backend that comes first in
//!   configuration order is kept (a reserved name always belongs to the gateway), every other
//!   one is dropped, and a [`CatalogProblem::Collision`] names all of them.
//! - [`visible_tools`] (and friends) filter by [`GrantedScopes`]; pages come from [`page`] with
//!   an opaque cursor that encodes the sort key of the last entry returned, so a cursor stays
//!   valid when entries are added or removed between pages.
//! - [`diff`] compares two catalogs and says which scopes saw a change, so list_changed
//!   notifications go exactly to the sessions whose visible catalog changed.
//! - Resource URIs are not rewritten: `resources/read` is routed by exact URI for static
//!   resources, then by the matching template with the longest literal prefix.

use std::collections::HashMap;

use serde_json::Value;

use crate::naming::NamingMode;
use crate::scope::GrantedScopes;

/// `deprecated` of a contract tool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deprecation {
    /// Date of removal, free text as the backend sent it.
    pub removed_at: Option<String>,
    /// Name of the replacement tool.
    pub replaced_by: Option<String>,
    /// Why it is deprecated.
    pub reason: Option<String>,
}

/// One tool as a backend declared it (already validated by `contract::parse_list_tools`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    /// The backend's own name (sent back to it on tools/call).
    pub name: String,
    /// Optional human title (MCP 2025-06-18+).
    pub title: Option<String>,
    /// Description as the backend wrote it.
    pub description: String,
    /// The one scope this tool requires (`None`: visible to every authenticated caller).
    pub scope: Option<String>,
    /// JSON Schema of the arguments (`inputSchema`, or converted from `params`).
    pub input_schema: Value,
    /// Optional `outputSchema`, passed through.
    pub output_schema: Option<Value>,
    /// Optional `annotations`, passed through.
    pub annotations: Option<Value>,
    /// Tool version (default `1.0.0`).
    pub version: String,
    /// Deprecation notice, if any.
    pub deprecated: Option<Deprecation>,
}

/// One prompt as a backend declared it.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptDef {
    /// The backend's own name.
    pub name: String,
    /// Optional title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// MCP `arguments` array (`[{name, description?, required?}]`), passed through.
    pub arguments: Option<Value>,
    /// Required scope.
    pub scope: Option<String>,
}

/// One resource template as a backend declared it.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateDef {
    /// RFC 6570 template, e.g. `crm://accounts/{id}`.
    pub uri_template: String,
    /// The backend's own name.
    pub name: String,
    /// Optional title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// MIME type of what the template resolves to.
    pub mime_type: Option<String>,
    /// Required scope.
    pub scope: Option<String>,
}

/// One static resource (contract extension `list_resources`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    /// The exact URI.
    pub uri: String,
    /// The backend's own name.
    pub name: String,
    /// Optional title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// MIME type.
    pub mime_type: Option<String>,
    /// Required scope.
    pub scope: Option<String>,
}

/// The last good discovery result of one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSnapshot {
    /// Backend id (lowercase).
    pub backend_id: String,
    /// How its names are exposed.
    pub naming: NamingMode,
    /// Its tools.
    pub tools: Vec<ToolDef>,
    /// Its prompts.
    pub prompts: Vec<PromptDef>,
    /// Its resource templates.
    pub templates: Vec<TemplateDef>,
    /// Its static resources.
    pub resources: Vec<ResourceDef>,
}

/// A tool of the merged catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogTool {
    /// The name clients see and call.
    pub exposed: String,
    /// The owning backend.
    pub backend_id: String,
    /// The backend's own name (sent on tools/call).
    pub original: String,
    /// Required scope.
    pub scope: Option<String>,
    /// The full MCP `Tool` object as listed: `name`, `title?`, `description` (prefixed
    /// `[<backend id>] ` under prefix naming, with the Cortex deprecation prefix
    /// `[DEPRECATED — removal <date>, use <x>] ` when deprecated), `inputSchema`,
    /// `outputSchema?`, `annotations?`, `_meta: {version, app, deprecated?}`.
    pub entry: Value,
    /// Hash of `entry` and `scope`: equal fingerprints mean an unchanged definition.
    pub fingerprint: u64,
}

/// A prompt of the merged catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogPrompt {
    /// The name clients see.
    pub exposed: String,
    /// The owning backend.
    pub backend_id: String,
    /// The backend's own name (sent on get_prompt).
    pub original: String,
    /// Required scope.
    pub scope: Option<String>,
    /// The MCP `Prompt` object as listed (`name` = exposed).
    pub entry: Value,
    /// Hash of `entry` and `scope`.
    pub fingerprint: u64,
}

/// A resource template of the merged catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogTemplate {
    /// The name clients see.
    pub exposed: String,
    /// The owning backend.
    pub backend_id: String,
    /// The template (unchanged).
    pub uri_template: String,
    /// Required scope.
    pub scope: Option<String>,
    /// The MCP `ResourceTemplate` object as listed.
    pub entry: Value,
    /// Hash of `entry` and `scope`.
    pub fingerprint: u64,
}

/// A static resource of the merged catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogResource {
    /// The name clients see.
    pub exposed: String,
    /// The owning backend.
    pub backend_id: String,
    /// The URI (unchanged).
    pub uri: String,
    /// Required scope.
    pub scope: Option<String>,
    /// The MCP `Resource` object as listed.
    pub entry: Value,
    /// Hash of `entry` and `scope`.
    pub fingerprint: u64,
}

/// Something wrong with the catalog that an operator must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogProblem {
    /// Several entries wanted one exposed name; `kept` got it (None: a reserved builtin).
    Collision {
        /// `tool`, `prompt`, `resource template` or `resource`.
        kind: &'static str,
        /// The contested exposed name (or URI for resources / templates).
        name: String,
        /// The backend whose entry was kept, `None` when the name is reserved by the gateway.
        kept: Option<String>,
        /// The backends whose entries were dropped.
        dropped: Vec<String>,
    },
    /// An entry whose name cannot be exposed (empty after the naming rules).
    InvalidName {
        /// The backend.
        backend_id: String,
        /// The entry's original name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Where a resource URI is routed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResourceRoute<'a> {
    /// An exact static resource.
    Static(&'a CatalogResource),
    /// A matching template.
    Template(&'a CatalogTemplate),
}

/// The merged catalog of every backend. Cheap to share behind an `Arc`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergedCatalog {
    tools: Vec<CatalogTool>,
    tool_index: HashMap<String, usize>,
    prompts: Vec<CatalogPrompt>,
    prompt_index: HashMap<String, usize>,
    templates: Vec<CatalogTemplate>,
    resources: Vec<CatalogResource>,
    resource_index: HashMap<String, usize>,
    problems: Vec<CatalogProblem>,
}

/// Merges snapshots given in configuration order. `reserved` are names owned by the gateway
/// (builtins): a backend entry exposed under one of them is dropped and reported.
pub fn merge(snapshots: &[BackendSnapshot], reserved: &[&str]) -> MergedCatalog {
    todo!("{} {}", snapshots.len(), reserved.len())
}

impl MergedCatalog {
    /// All tools, sorted by exposed name.
    pub fn tools(&self) -> &[CatalogTool] {
        &self.tools
    }
    /// A tool by exposed name.
    pub fn tool(&self, exposed: &str) -> Option<&CatalogTool> {
        self.tool_index.get(exposed).map(|&i| &self.tools[i])
    }
    /// All prompts, sorted by exposed name.
    pub fn prompts(&self) -> &[CatalogPrompt] {
        &self.prompts
    }
    /// A prompt by exposed name.
    pub fn prompt(&self, exposed: &str) -> Option<&CatalogPrompt> {
        self.prompt_index.get(exposed).map(|&i| &self.prompts[i])
    }
    /// All resource templates, sorted by exposed name.
    pub fn templates(&self) -> &[CatalogTemplate] {
        &self.templates
    }
    /// All static resources, sorted by exposed name.
    pub fn resources(&self) -> &[CatalogResource] {
        &self.resources
    }
    /// Problems found while merging.
    pub fn problems(&self) -> &[CatalogProblem] {
        &self.problems
    }
    /// Routes a resource URI: exact static resource first, then the matching template with
    /// the longest literal prefix (RFC 6570 simple `{var}` expressions match one or more
    /// characters other than `/`; `{+var}` and `{/var*}` style operators match anything).
    pub fn route_resource(&self, uri: &str) -> Option<ResourceRoute<'_>> {
        todo!("{uri}")
    }
    /// Every distinct scope any entry declares (for `scopes_supported`), sorted.
    pub fn scopes(&self) -> Vec<String> {
        todo!()
    }
}

/// Tools `grants` may see, in catalog order.
pub fn visible_tools<'a>(cat: &'a MergedCatalog, grants: &GrantedScopes) -> Vec<&'a CatalogTool> {
    todo!("{} {:?}", cat.tools.len(), grants)
}
/// Prompts `grants` may see, in catalog order.
pub fn visible_prompts<'a>(
    cat: &'a MergedCatalog,
    grants: &GrantedScopes,
) -> Vec<&'a CatalogPrompt> {
    todo!("{} {:?}", cat.prompts.len(), grants)
}
/// Templates `grants` may see, in catalog order.
pub fn visible_templates<'a>(
    cat: &'a MergedCatalog,
    grants: &GrantedScopes,
) -> Vec<&'a CatalogTemplate> {
    todo!("{} {:?}", cat.templates.len(), grants)
}
/// Static resources `grants` may see, in catalog order.
pub fn visible_resources<'a>(
    cat: &'a MergedCatalog,
    grants: &GrantedScopes,
) -> Vec<&'a CatalogResource> {
    todo!("{} {:?}", cat.resources.len(), grants)
}

/// A cursor that did not come from us (or from an incompatible version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: {0}")]
pub struct BadCursor(pub String);

/// One page of `items` (sorted by `key`), starting after the entry the cursor names.
/// Returns the index range to list and the `nextCursor` (None on the last page).
/// `page_size` 0 is treated as 1. A cursor naming an entry that has since disappeared
/// continues from the next greater key.
pub fn page<T>(
    items: &[T],
    key: impl Fn(&T) -> &str,
    cursor: Option<&str>,
    page_size: usize,
) -> Result<(std::ops::Range<usize>, Option<String>), BadCursor> {
    let _ = (items, key, cursor, page_size);
    todo!()
}

/// What changed between two catalogs, per kind, as the scopes of the changed entries (an
/// entry whose scope changed contributes both). `None` in a list = an unscoped entry changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogDiff {
    /// Scopes of tools added, removed or whose definition changed.
    pub tools: Vec<Option<String>>,
    /// Same for prompts.
    pub prompts: Vec<Option<String>>,
    /// Same for resources and resource templates.
    pub resources: Vec<Option<String>>,
}

impl CatalogDiff {
    /// Whether nothing changed at all.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty() && self.prompts.is_empty() && self.resources.is_empty()
    }
    /// Whether a caller with `grants` sees a change in its tool list.
    pub fn tools_changed_for(&self, grants: &GrantedScopes) -> bool {
        self.tools.iter().any(|s| grants.allows(s.as_deref()))
    }
    /// Whether a caller with `grants` sees a change in its prompt list.
    pub fn prompts_changed_for(&self, grants: &GrantedScopes) -> bool {
        self.prompts.iter().any(|s| grants.allows(s.as_deref()))
    }
    /// Whether a caller with `grants` sees a change in its resource lists.
    pub fn resources_changed_for(&self, grants: &GrantedScopes) -> bool {
        self.resources.iter().any(|s| grants.allows(s.as_deref()))
    }
}

/// Compares two catalogs entry by entry (by exposed name and fingerprint).
pub fn diff(old: &MergedCatalog, new: &MergedCatalog) -> CatalogDiff {
    todo!("{} {}", old.tools.len(), new.tools.len())
}

/// Serializes a `tools/list` result: `{"tools":[entries…],"nextCursor":"…"?}`.
pub fn tools_list_result(tools: &[&CatalogTool], next_cursor: Option<&str>) -> Vec<u8> {
    todo!("{} {next_cursor:?}", tools.len())
}
