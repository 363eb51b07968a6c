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

use std::collections::{BTreeSet, HashMap, HashSet};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::naming::{self, NamingMode};
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

/// The four kinds of catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A tool.
    Tool,
    /// A prompt.
    Prompt,
    /// A resource template.
    Template,
    /// A static resource.
    Resource,
}

impl EntryKind {
    /// Every kind, in list order.
    pub const ALL: [EntryKind; 4] = [
        EntryKind::Tool,
        EntryKind::Prompt,
        EntryKind::Template,
        EntryKind::Resource,
    ];

    /// The key of its list result: `tools`, `prompts`, `resourceTemplates`, `resources`.
    pub const fn list_key(self) -> &'static str {
        match self {
            EntryKind::Tool => "tools",
            EntryKind::Prompt => "prompts",
            EntryKind::Template => "resourceTemplates",
            EntryKind::Resource => "resources",
        }
    }

    /// Its name in messages: `tool`, `prompt`, `resource template`, `resource`.
    pub const fn noun(self) -> &'static str {
        match self {
            EntryKind::Tool => "tool",
            EntryKind::Prompt => "prompt",
            EntryKind::Template => "resource template",
            EntryKind::Resource => "resource",
        }
    }
}

/// One entry of the merged catalog, whatever its kind: the unit that is listed, filtered
/// by scope, diffed, pinned and routed.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Tool, prompt, resource template or resource.
    pub kind: EntryKind,
    /// The name clients see (and call, for tools).
    pub exposed: String,
    /// The owning backend.
    pub backend_id: String,
    /// What the backend is asked for: its own name (tools, prompts), the URI (resources) or
    /// the URI template (templates); URIs are kept unchanged across the gateway.
    pub target: String,
    /// Required scope.
    pub scope: Option<String>,
    /// The MCP object as listed. For a tool: `name`, `title?`, `description` (prefixed
    /// `[<backend id>] ` under prefix naming, with the Cortex deprecation prefix
    /// `[DEPRECATED — removal <date>, use <x>] ` when deprecated), `inputSchema`,
    /// `outputSchema?`, `annotations?`, `_meta: {version, app, deprecated?}`. For the others
    /// the MCP `Prompt`, `ResourceTemplate` or `Resource` with the exposed `name`.
    pub entry: Value,
    /// Hash of `entry` and `scope`: equal fingerprints mean an unchanged definition.
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
    Static(&'a Entry),
    /// A matching template.
    Template(&'a Entry),
}

impl<'a> ResourceRoute<'a> {
    /// The entry the URI is routed to.
    pub fn entry(self) -> &'a Entry {
        match self {
            ResourceRoute::Static(e) | ResourceRoute::Template(e) => e,
        }
    }
}

/// The merged catalog of every backend. Cheap to share behind an `Arc`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergedCatalog {
    tools: Vec<Entry>,
    tool_index: HashMap<String, usize>,
    prompts: Vec<Entry>,
    prompt_index: HashMap<String, usize>,
    templates: Vec<Entry>,
    resources: Vec<Entry>,
    resource_index: HashMap<String, usize>,
    problems: Vec<CatalogProblem>,
}

/// Merges snapshots given in configuration order. `reserved` are names owned by the gateway
/// (builtins): a backend entry exposed under one of them is dropped and reported.
///
/// Reserved names apply to tool exposed names and to resource URIs / template URI templates
/// (so a builtin resource such as `cortex://architecture` can be reserved too); prompts are
/// not checked against them because the gateway has no builtin prompts, and a tool name
/// cannot look like a URI.
pub fn merge(snapshots: &[BackendSnapshot], reserved: &[&str]) -> MergedCatalog {
    let mut problems = Vec::new();

    let mut tools = merge_tools(snapshots, reserved, &mut problems);
    tools.sort_by(|a, b| a.exposed.cmp(&b.exposed));
    let tool_index = index_by(&tools, |t| &t.exposed);

    let mut prompts = merge_prompts(snapshots, &mut problems);
    prompts.sort_by(|a, b| a.exposed.cmp(&b.exposed));
    let prompt_index = index_by(&prompts, |p| &p.exposed);

    let mut templates = merge_templates(snapshots, reserved, &mut problems);
    templates.sort_by(|a, b| a.exposed.cmp(&b.exposed));

    let mut resources = merge_resources(snapshots, reserved, &mut problems);
    resources.sort_by(|a, b| a.exposed.cmp(&b.exposed));
    let resource_index = index_by(&resources, |r| &r.target);

    MergedCatalog {
        tools,
        tool_index,
        prompts,
        prompt_index,
        templates,
        resources,
        resource_index,
        problems,
    }
}

/// Maps `key(item)` to the item's position.
fn index_by<T>(items: &[T], key: impl Fn(&T) -> &String) -> HashMap<String, usize> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| (key(item).clone(), i))
        .collect()
}

/// Who owns each contested key of one namespace, and the collisions seen so far.
struct Claims {
    kind: &'static str,
    /// key → owning backend (`None`: reserved by the gateway).
    owners: HashMap<String, Option<String>>,
    /// `(key, kept, dropped)` in the order the collisions were found.
    collisions: Vec<(String, Option<String>, Vec<String>)>,
    collision_index: HashMap<String, usize>,
}

impl Claims {
    fn new(kind: &'static str) -> Self {
        Claims {
            kind,
            owners: HashMap::new(),
            collisions: Vec::new(),
            collision_index: HashMap::new(),
        }
    }

    fn reserve(&mut self, reserved: &[&str]) {
        for name in reserved {
            self.owners.insert((*name).to_owned(), None);
        }
    }

    fn is_free(&self, key: &str) -> bool {
        !self.owners.contains_key(key)
    }

    fn take(&mut self, key: &str, backend: &str) {
        self.owners.insert(key.to_owned(), Some(backend.to_owned()));
    }

    /// Records that `backend` lost `key` to its current owner.
    fn lose(&mut self, key: &str, backend: &str) {
        let i = match self.collision_index.get(key) {
            Some(&i) => i,
            None => {
                let kept = self.owners.get(key).cloned().flatten();
                self.collisions.push((key.to_owned(), kept, Vec::new()));
                self.collision_index
                    .insert(key.to_owned(), self.collisions.len() - 1);
                self.collisions.len() - 1
            }
        };
        let dropped = &mut self.collisions[i].2;
        if !dropped.iter().any(|d| d == backend) {
            dropped.push(backend.to_owned());
        }
    }

    fn into_problems(self, out: &mut Vec<CatalogProblem>) {
        let kind = self.kind;
        out.extend(self.collisions.into_iter().map(|(name, kept, dropped)| {
            CatalogProblem::Collision {
                kind,
                name,
                kept,
                dropped,
            }
        }));
    }
}

/// The exposed name of an entry, or an [`CatalogProblem::InvalidName`] pushed to `problems`.
fn exposed_or_report(
    snap: &BackendSnapshot,
    name: &str,
    problems: &mut Vec<CatalogProblem>,
) -> Option<String> {
    let exposed = naming::exposed_name(&snap.backend_id, name, snap.naming);
    if exposed.is_none() {
        problems.push(CatalogProblem::InvalidName {
            backend_id: snap.backend_id.clone(),
            name: name.to_owned(),
            reason: "the name is empty".into(),
        });
    }
    exposed
}

fn merge_tools(
    snapshots: &[BackendSnapshot],
    reserved: &[&str],
    problems: &mut Vec<CatalogProblem>,
) -> Vec<Entry> {
    let mut names = Claims::new(EntryKind::Tool.noun());
    names.reserve(reserved);
    let mut out = Vec::new();
    for snap in snapshots {
        let own: HashSet<&str> = snap.tools.iter().map(|t| t.name.as_str()).collect();
        for def in &snap.tools {
            let Some(exposed) = exposed_or_report(snap, &def.name, problems) else {
                continue;
            };
            if !names.is_free(&exposed) {
                names.lose(&exposed, &snap.backend_id);
                continue;
            }
            names.take(&exposed, &snap.backend_id);
            let entry = tool_entry(snap, def, &exposed, &own);
            out.push(Entry {
                kind: EntryKind::Tool,
                fingerprint: fingerprint(&entry, def.scope.as_deref()),
                exposed,
                backend_id: snap.backend_id.clone(),
                target: def.name.clone(),
                scope: def.scope.clone(),
                entry,
            });
        }
    }
    names.into_problems(problems);
    out
}

fn merge_prompts(snapshots: &[BackendSnapshot], problems: &mut Vec<CatalogProblem>) -> Vec<Entry> {
    let mut names = Claims::new(EntryKind::Prompt.noun());
    let mut out = Vec::new();
    for snap in snapshots {
        for def in &snap.prompts {
            let Some(exposed) = exposed_or_report(snap, &def.name, problems) else {
                continue;
            };
            if !names.is_free(&exposed) {
                names.lose(&exposed, &snap.backend_id);
                continue;
            }
            names.take(&exposed, &snap.backend_id);
            let mut e = Map::new();
            e.insert("name".into(), Value::from(exposed.as_str()));
            insert_opt_str(&mut e, "title", def.title.as_deref());
            insert_opt_str(&mut e, "description", def.description.as_deref());
            if let Some(args) = &def.arguments {
                e.insert("arguments".into(), args.clone());
            }
            e.insert("_meta".into(), app_meta(&snap.backend_id));
            let entry = Value::Object(e);
            out.push(Entry {
                kind: EntryKind::Prompt,
                fingerprint: fingerprint(&entry, def.scope.as_deref()),
                exposed,
                backend_id: snap.backend_id.clone(),
                target: def.name.clone(),
                scope: def.scope.clone(),
                entry,
            });
        }
    }
    names.into_problems(problems);
    out
}

/// What merging needs of a resource or a resource template: both are addressed by a URI
/// (kept unchanged) and named like every other entry.
struct UriEntryDef<'a> {
    /// `uriTemplate` or `uri`: the key of the URI in the listed entry.
    uri_key: &'static str,
    uri: &'a str,
    name: &'a str,
    title: Option<&'a str>,
    description: Option<&'a str>,
    mime_type: Option<&'a str>,
    scope: Option<&'a str>,
}

/// Merges resources or templates: names and URIs are both claimed, first backend wins.
fn merge_uri_entries<'s>(
    snapshots: &'s [BackendSnapshot],
    reserved: &[&str],
    problems: &mut Vec<CatalogProblem>,
    kind: EntryKind,
    defs: impl Fn(&'s BackendSnapshot) -> Vec<UriEntryDef<'s>>,
) -> Vec<Entry> {
    let mut names = Claims::new(kind.noun());
    let mut uris = Claims::new(kind.noun());
    uris.reserve(reserved);
    let mut out = Vec::new();
    for snap in snapshots {
        for def in defs(snap) {
            let Some(exposed) = exposed_or_report(snap, def.name, problems) else {
                continue;
            };
            if !names.is_free(&exposed) {
                names.lose(&exposed, &snap.backend_id);
                continue;
            }
            if !uris.is_free(def.uri) {
                uris.lose(def.uri, &snap.backend_id);
                continue;
            }
            names.take(&exposed, &snap.backend_id);
            uris.take(def.uri, &snap.backend_id);
            let mut e = Map::new();
            e.insert(def.uri_key.into(), Value::from(def.uri));
            e.insert("name".into(), Value::from(exposed.as_str()));
            insert_opt_str(&mut e, "title", def.title);
            insert_opt_str(&mut e, "description", def.description);
            insert_opt_str(&mut e, "mimeType", def.mime_type);
            e.insert("_meta".into(), app_meta(&snap.backend_id));
            let entry = Value::Object(e);
            out.push(Entry {
                kind,
                fingerprint: fingerprint(&entry, def.scope),
                exposed,
                backend_id: snap.backend_id.clone(),
                target: def.uri.to_string(),
                scope: def.scope.map(str::to_string),
                entry,
            });
        }
    }
    names.into_problems(problems);
    uris.into_problems(problems);
    out
}

fn merge_templates(
    snapshots: &[BackendSnapshot],
    reserved: &[&str],
    problems: &mut Vec<CatalogProblem>,
) -> Vec<Entry> {
    merge_uri_entries(snapshots, reserved, problems, EntryKind::Template, |snap| {
        snap.templates
            .iter()
            .map(|d| UriEntryDef {
                uri_key: "uriTemplate",
                uri: &d.uri_template,
                name: &d.name,
                title: d.title.as_deref(),
                description: d.description.as_deref(),
                mime_type: d.mime_type.as_deref(),
                scope: d.scope.as_deref(),
            })
            .collect()
    })
}

fn merge_resources(
    snapshots: &[BackendSnapshot],
    reserved: &[&str],
    problems: &mut Vec<CatalogProblem>,
) -> Vec<Entry> {
    merge_uri_entries(snapshots, reserved, problems, EntryKind::Resource, |snap| {
        snap.resources
            .iter()
            .map(|d| UriEntryDef {
                uri_key: "uri",
                uri: &d.uri,
                name: &d.name,
                title: d.title.as_deref(),
                description: d.description.as_deref(),
                mime_type: d.mime_type.as_deref(),
                scope: d.scope.as_deref(),
            })
            .collect()
    })
}

fn insert_opt_str(e: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        e.insert(key.to_owned(), Value::from(v));
    }
}

/// `{"app": <backend id>}`.
fn app_meta(backend_id: &str) -> Value {
    let mut m = Map::new();
    m.insert("app".into(), Value::from(backend_id));
    Value::Object(m)
}

/// Builds the MCP `Tool` object of one backend tool (see [`Entry::entry`]).
/// `own` are the backend's own tool names: a `replacedBy` naming one of them is shown to the
/// agent under its exposed name, the name the agent can actually call.
fn tool_entry(snap: &BackendSnapshot, def: &ToolDef, exposed: &str, own: &HashSet<&str>) -> Value {
    let mut description = String::new();
    if snap.naming == NamingMode::Prefix {
        description.push_str(&format!("[{}] ", snap.backend_id));
    }
    if let Some(dep) = &def.deprecated {
        let replaced_by = dep.replaced_by.as_deref().map(|r| {
            if own.contains(r) {
                naming::exposed_name(&snap.backend_id, r, snap.naming)
                    .unwrap_or_else(|| r.to_owned())
            } else {
                r.to_owned()
            }
        });
        description.push_str(&deprecation_prefix(
            dep.removed_at.as_deref(),
            replaced_by.as_deref(),
        ));
    }
    description.push_str(&def.description);
    let description = description.trim_end().to_owned();

    let mut e = Map::new();
    e.insert("name".into(), Value::from(exposed));
    insert_opt_str(&mut e, "title", def.title.as_deref());
    e.insert("description".into(), Value::from(description));
    e.insert("inputSchema".into(), def.input_schema.clone());
    if let Some(s) = &def.output_schema {
        e.insert("outputSchema".into(), s.clone());
    }
    if let Some(a) = &def.annotations {
        e.insert("annotations".into(), a.clone());
    }
    let mut meta = Map::new();
    meta.insert("version".into(), Value::from(def.version.as_str()));
    meta.insert("app".into(), Value::from(snap.backend_id.as_str()));
    if let Some(dep) = &def.deprecated {
        let mut d = Map::new();
        insert_opt_str(&mut d, "removedAt", dep.removed_at.as_deref());
        insert_opt_str(&mut d, "replacedBy", dep.replaced_by.as_deref());
        insert_opt_str(&mut d, "reason", dep.reason.as_deref());
        meta.insert("deprecated".into(), Value::Object(d));
    }
    e.insert("_meta".into(), Value::Object(meta));
    Value::Object(e)
}

/// The Cortex deprecation prefix: `[DEPRECATED — removal <date>, use <x>] `, leaving out the
/// parts that are unknown (`[DEPRECATED] ` when nothing is).
pub fn deprecation_prefix(removed_at: Option<&str>, replaced_by: Option<&str>) -> String {
    let parts: Vec<String> = [
        removed_at.map(|d| format!("removal {d}")),
        replaced_by.map(|r| format!("use {r}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "[DEPRECATED] ".to_owned()
    } else {
        format!("[DEPRECATED — {}] ", parts.join(", "))
    }
}

/// A stable 64-bit fingerprint of `entry` and `scope`: the first 8 bytes of SHA-256 over the
/// canonical JSON ([`crate::canonical`]: keys sorted at every level, numbers normalised)
/// followed by the scope, so it survives restarts and is equal across replicas.
fn fingerprint(entry: &Value, scope: Option<&str>) -> u64 {
    let mut buf = Vec::with_capacity(256);
    crate::canonical::write(&mut buf, entry);
    match scope {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            buf.extend_from_slice(s.as_bytes());
        }
    }
    let digest = Sha256::digest(&buf);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Serializing plain JSON data into a Vec cannot fail (no I/O, string keys only).
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

impl MergedCatalog {
    /// The entries of `kind`, sorted by exposed name.
    pub fn entries(&self, kind: EntryKind) -> &[Entry] {
        match kind {
            EntryKind::Tool => &self.tools,
            EntryKind::Prompt => &self.prompts,
            EntryKind::Template => &self.templates,
            EntryKind::Resource => &self.resources,
        }
    }
    /// Every entry, kind by kind.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        EntryKind::ALL.into_iter().flat_map(|k| self.entries(k))
    }
    /// All tools, sorted by exposed name.
    pub fn tools(&self) -> &[Entry] {
        &self.tools
    }
    /// A tool by exposed name.
    pub fn tool(&self, exposed: &str) -> Option<&Entry> {
        self.tool_index.get(exposed).map(|&i| &self.tools[i])
    }
    /// All prompts, sorted by exposed name.
    pub fn prompts(&self) -> &[Entry] {
        &self.prompts
    }
    /// A prompt by exposed name.
    pub fn prompt(&self, exposed: &str) -> Option<&Entry> {
        self.prompt_index.get(exposed).map(|&i| &self.prompts[i])
    }
    /// All resource templates, sorted by exposed name.
    pub fn templates(&self) -> &[Entry] {
        &self.templates
    }
    /// All static resources, sorted by exposed name.
    pub fn resources(&self) -> &[Entry] {
        &self.resources
    }
    /// A static resource by its exact URI.
    pub fn resource_by_uri(&self, uri: &str) -> Option<&Entry> {
        self.resource_index.get(uri).map(|&i| &self.resources[i])
    }
    /// Problems found while merging.
    pub fn problems(&self) -> &[CatalogProblem] {
        &self.problems
    }
    /// Routes a resource URI: exact static resource first, then the matching template with
    /// the longest literal prefix (RFC 6570 simple `{var}` expressions match one or more
    /// characters other than `/`; `{+var}` and `{/var*}` style operators match anything).
    /// Ties between templates go to the first in catalog order.
    pub fn route_resource(&self, uri: &str) -> Option<ResourceRoute<'_>> {
        if let Some(r) = self.resource_by_uri(uri) {
            return Some(ResourceRoute::Static(r));
        }
        let mut best: Option<(usize, &Entry)> = None;
        for t in &self.templates {
            let Some(parts) = parse_template(&t.target) else {
                continue;
            };
            if !template_matches(&parts, uri) {
                continue;
            }
            let prefix = literal_prefix_len(&parts);
            if best.is_none_or(|(len, _)| prefix > len) {
                best = Some((prefix, t));
            }
        }
        best.map(|(_, t)| ResourceRoute::Template(t))
    }
    /// Every distinct scope any entry declares (for `scopes_supported`), sorted.
    pub fn scopes(&self) -> Vec<String> {
        self.iter()
            .flat_map(|e| &e.scope)
            .cloned()
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect()
    }
}

/// One piece of a parsed RFC 6570 template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TemplatePart<'a> {
    /// Text that must appear as is.
    Literal(&'a str),
    /// A level-1 `{var}`: one or more characters other than `/`.
    Simple,
    /// An expression with an operator (`{+var}`, `{#var}`, `{/var*}`, `{?q}`…): any
    /// characters, `/` included, possibly none (an undefined variable expands to nothing).
    Any,
}

/// Splits a template into literals and expressions; `None` when a `{` is never closed or an
/// expression is empty (such a template matches nothing).
fn parse_template(template: &str) -> Option<Vec<TemplatePart<'_>>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(&rest[..open]));
        }
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let expr = &after[..close];
        let first = expr.chars().next()?;
        parts.push(
            if first.is_ascii_alphanumeric() || first == '_' || first == '%' {
                TemplatePart::Simple
            } else {
                TemplatePart::Any
            },
        );
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest));
    }
    Some(parts)
}

/// Length in bytes of the literal text before the first expression.
fn literal_prefix_len(parts: &[TemplatePart<'_>]) -> usize {
    match parts.first() {
        Some(TemplatePart::Literal(l)) => l.len(),
        _ => 0,
    }
}

/// Whether `uri` is an expansion of the template `parts`.
///
/// Runs the parts as a set of reachable positions (an NFA simulation), so the cost is
/// `O(parts × len)` whatever the template, with no backtracking blow-up on hostile input.
fn template_matches(parts: &[TemplatePart<'_>], uri: &str) -> bool {
    let bytes = uri.as_bytes();
    let n = bytes.len();
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for part in parts {
        let mut next = vec![false; n + 1];
        match part {
            TemplatePart::Literal(lit) => {
                let lit = lit.as_bytes();
                for p in 0..=n {
                    if reach[p] && bytes[p..].starts_with(lit) {
                        next[p + lit.len()] = true;
                    }
                }
            }
            TemplatePart::Any => {
                if let Some(first) = reach.iter().position(|&r| r) {
                    next[first..].iter_mut().for_each(|r| *r = true);
                }
            }
            TemplatePart::Simple => {
                let mut in_run = false;
                for p in 0..n {
                    if bytes[p] == b'/' {
                        in_run = false;
                        continue;
                    }
                    in_run |= reach[p];
                    if in_run {
                        next[p + 1] = true;
                    }
                }
            }
        }
        if !next.iter().any(|&r| r) {
            return false;
        }
        reach = next;
    }
    reach[n]
}

/// The entries of `kind` that `grants` may see, in catalog order.
pub fn visible<'a>(
    cat: &'a MergedCatalog,
    kind: EntryKind,
    grants: &GrantedScopes,
) -> Vec<&'a Entry> {
    cat.entries(kind)
        .iter()
        .filter(|e| grants.allows(e.scope.as_deref()))
        .collect()
}

/// A cursor that did not come from us (or from an incompatible version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: {0}")]
pub struct BadCursor(pub String);

/// Version tag inside every cursor, so a future format can tell old cursors apart.
const CURSOR_PREFIX: &str = "c1:";

/// The opaque cursor naming the entry whose sort key is `key`.
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{key}"))
}

/// The sort key a cursor names, or why the cursor is not one of ours.
pub fn decode_cursor(cursor: &str) -> Result<String, BadCursor> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|e| BadCursor(format!("not unpadded base64url ({e})")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| BadCursor("the decoded cursor is not UTF-8".into()))?;
    text.strip_prefix(CURSOR_PREFIX)
        .map(str::to_owned)
        .ok_or_else(|| BadCursor("not a cursor issued by this gateway".into()))
}

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
    let size = page_size.max(1);
    let start = match cursor {
        None => 0,
        Some(c) => {
            let after = decode_cursor(c)?;
            items.partition_point(|item| key(item) <= after.as_str())
        }
    };
    let end = start.saturating_add(size).min(items.len());
    let next = (end < items.len() && end > start).then(|| encode_cursor(key(&items[end - 1])));
    Ok((start..end, next))
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

/// `(exposed name, fingerprint, scope)` of one entry, the unit [`diff`] compares.
type DiffKey<'a> = (&'a str, u64, Option<&'a str>);

/// Adds to `out` the scopes of entries added, removed or changed between `old` and `new`.
fn diff_kind<'a>(
    old: impl Iterator<Item = DiffKey<'a>>,
    new: impl Iterator<Item = DiffKey<'a>>,
    out: &mut BTreeSet<Option<String>>,
) {
    let old: HashMap<&str, (u64, Option<&str>)> = old.map(|(n, f, s)| (n, (f, s))).collect();
    let new: HashMap<&str, (u64, Option<&str>)> = new.map(|(n, f, s)| (n, (f, s))).collect();
    for (name, (fp, scope)) in &old {
        match new.get(name) {
            None => {
                out.insert(scope.map(str::to_owned));
            }
            Some((new_fp, new_scope)) if new_fp != fp => {
                out.insert(scope.map(str::to_owned));
                out.insert(new_scope.map(str::to_owned));
            }
            Some(_) => {}
        }
    }
    for (name, (_, scope)) in &new {
        if !old.contains_key(name) {
            out.insert(scope.map(str::to_owned));
        }
    }
}

/// Compares two catalogs entry by entry (by exposed name and fingerprint). Each list is
/// sorted and free of duplicates.
pub fn diff(old: &MergedCatalog, new: &MergedCatalog) -> CatalogDiff {
    fn keys(cat: &MergedCatalog, kind: EntryKind) -> Vec<DiffKey<'_>> {
        cat.entries(kind)
            .iter()
            .map(|e| (e.exposed.as_str(), e.fingerprint, e.scope.as_deref()))
            .collect()
    }
    let mut tools = BTreeSet::new();
    let mut prompts = BTreeSet::new();
    let mut resources = BTreeSet::new();
    for kind in EntryKind::ALL {
        let out = match kind {
            EntryKind::Tool => &mut tools,
            EntryKind::Prompt => &mut prompts,
            // Templates and static resources share one list_changed notification.
            EntryKind::Template | EntryKind::Resource => &mut resources,
        };
        diff_kind(
            keys(old, kind).into_iter(),
            keys(new, kind).into_iter(),
            out,
        );
    }
    CatalogDiff {
        tools: tools.into_iter().collect(),
        prompts: prompts.into_iter().collect(),
        resources: resources.into_iter().collect(),
    }
}

/// Serializes one page of a list result, `{"<key>":[entries…],"nextCursor":"…"?}`: the one
/// list serializer of the gateway (pages are cached and answered as these bytes).
pub fn list_result<'a>(
    key: &str,
    entries: impl Iterator<Item = &'a Value>,
    next_cursor: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    list_result_into(&mut out, key, entries, next_cursor);
    out
}

/// [`list_result`] appended to `out` (a page cached with the end of its answer envelope is
/// serialized once, in place).
pub fn list_result_into<'a>(
    out: &mut Vec<u8>,
    key: &str,
    entries: impl Iterator<Item = &'a Value>,
    next_cursor: Option<&str>,
) {
    out.push(b'{');
    write_json(out, key);
    out.extend_from_slice(b":[");
    for (i, entry) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(out, entry);
    }
    out.push(b']');
    if let Some(c) = next_cursor {
        out.extend_from_slice(b",\"nextCursor\":");
        write_json(out, c);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::ScopeRules;
    use serde_json::json;

    fn tool(name: &str, scope: Option<&str>) -> ToolDef {
        ToolDef {
            name: name.into(),
            title: None,
            description: format!("Does {name}."),
            scope: scope.map(Into::into),
            input_schema: json!({"type": "object"}),
            output_schema: None,
            annotations: None,
            version: "1.0.0".into(),
            deprecated: None,
        }
    }

    fn prompt(name: &str, scope: Option<&str>) -> PromptDef {
        PromptDef {
            name: name.into(),
            title: None,
            description: None,
            arguments: None,
            scope: scope.map(Into::into),
        }
    }

    fn template(name: &str, uri_template: &str, scope: Option<&str>) -> TemplateDef {
        TemplateDef {
            uri_template: uri_template.into(),
            name: name.into(),
            title: None,
            description: None,
            mime_type: None,
            scope: scope.map(Into::into),
        }
    }

    fn resource(name: &str, uri: &str, scope: Option<&str>) -> ResourceDef {
        ResourceDef {
            uri: uri.into(),
            name: name.into(),
            title: None,
            description: None,
            mime_type: None,
            scope: scope.map(Into::into),
        }
    }

    fn snap(id: &str, naming: NamingMode, tools: Vec<ToolDef>) -> BackendSnapshot {
        BackendSnapshot {
            backend_id: id.into(),
            naming,
            tools,
            prompts: vec![],
            templates: vec![],
            resources: vec![],
        }
    }

    fn grants(g: &[&str]) -> GrantedScopes {
        GrantedScopes::new(g.iter().copied(), &ScopeRules::default())
    }

    fn names<T>(items: &[T], f: impl Fn(&T) -> &str) -> Vec<String> {
        items.iter().map(|i| f(i).to_owned()).collect()
    }

    // ---- merge: tools -----------------------------------------------------------------

    #[test]
    fn tools_are_prefixed_sorted_and_indexed() {
        let cat = merge(
            &[
                snap(
                    "crm",
                    NamingMode::Prefix,
                    vec![tool("search", None), tool("get", None)],
                ),
                snap("billing", NamingMode::Prefix, vec![tool("invoice", None)]),
            ],
            &[],
        );
        assert_eq!(
            names(cat.tools(), |t| &t.exposed),
            ["billing_invoice", "crm_get", "crm_search"]
        );
        let t = cat.tool("crm_get").unwrap();
        assert_eq!(t.backend_id, "crm");
        assert_eq!(t.target, "get");
        assert!(cat.tool("get").is_none());
        assert!(cat.problems().is_empty());
    }

    #[test]
    fn tool_entry_has_the_cortex_shape() {
        let cat = merge(
            &[snap(
                "crm",
                NamingMode::Prefix,
                vec![tool("get", Some("mcp:crm:read"))],
            )],
            &[],
        );
        assert_eq!(
            cat.tool("crm_get").unwrap().entry,
            json!({
                "name": "crm_get",
                "description": "[crm] Does get.",
                "inputSchema": {"type": "object"},
                "_meta": {"version": "1.0.0", "app": "crm"}
            })
        );
    }

    #[test]
    fn tool_entry_passes_optional_fields_through() {
        let mut t = tool("get", None);
        t.title = Some("Get one".into());
        t.output_schema = Some(json!({"type": "object", "properties": {"id": {"type": "string"}}}));
        t.annotations = Some(json!({"readOnlyHint": true}));
        t.version = "2.1.0".into();
        let cat = merge(&[snap("crm", NamingMode::None, vec![t])], &[]);
        assert_eq!(
            cat.tool("get").unwrap().entry,
            json!({
                "name": "get",
                "title": "Get one",
                "description": "Does get.",
                "inputSchema": {"type": "object"},
                "outputSchema": {"type": "object", "properties": {"id": {"type": "string"}}},
                "annotations": {"readOnlyHint": true},
                "_meta": {"version": "2.1.0", "app": "crm"}
            })
        );
    }

    #[test]
    fn deprecated_tools_get_the_cortex_prefix_and_meta() {
        let mut old = tool("old", None);
        old.deprecated = Some(Deprecation {
            removed_at: Some("2026-12-01".into()),
            replaced_by: Some("new".into()),
            reason: Some("renamed".into()),
        });
        let mut partial = tool("partial", None);
        partial.deprecated = Some(Deprecation {
            removed_at: Some("2027-01-01".into()),
            ..Deprecation::default()
        });
        let mut bare = tool("bare", None);
        bare.deprecated = Some(Deprecation::default());
        let mut external = tool("ext", None);
        external.deprecated = Some(Deprecation {
            replaced_by: Some("billing_other".into()),
            ..Deprecation::default()
        });
        let cat = merge(
            &[snap(
                "crm",
                NamingMode::Prefix,
                vec![old, partial, bare, external, tool("new", None)],
            )],
            &[],
        );
        let entry = &cat.tool("crm_old").unwrap().entry;
        // A replacement that is a sibling tool is named as the agent can call it.
        assert_eq!(
            entry["description"],
            "[crm] [DEPRECATED — removal 2026-12-01, use crm_new] Does old."
        );
        assert_eq!(
            entry["_meta"]["deprecated"],
            json!({"removedAt": "2026-12-01", "replacedBy": "new", "reason": "renamed"})
        );
        assert_eq!(
            cat.tool("crm_partial").unwrap().entry["description"],
            "[crm] [DEPRECATED — removal 2027-01-01] Does partial."
        );
        assert_eq!(
            cat.tool("crm_partial").unwrap().entry["_meta"]["deprecated"],
            json!({"removedAt": "2027-01-01"})
        );
        assert_eq!(
            cat.tool("crm_bare").unwrap().entry["description"],
            "[crm] [DEPRECATED] Does bare."
        );
        assert_eq!(
            cat.tool("crm_bare").unwrap().entry["_meta"]["deprecated"],
            json!({})
        );
        assert_eq!(
            cat.tool("crm_ext").unwrap().entry["description"],
            "[crm] [DEPRECATED — use billing_other] Does ext."
        );
        assert!(cat.tool("crm_new").unwrap().entry["_meta"]
            .get("deprecated")
            .is_none());
    }

    #[test]
    fn deprecation_prefix_leaves_out_unknown_parts() {
        assert_eq!(deprecation_prefix(None, None), "[DEPRECATED] ");
        assert_eq!(
            deprecation_prefix(Some("d"), None),
            "[DEPRECATED — removal d] "
        );
        assert_eq!(deprecation_prefix(None, Some("x")), "[DEPRECATED — use x] ");
        assert_eq!(
            deprecation_prefix(Some("d"), Some("x")),
            "[DEPRECATED — removal d, use x] "
        );
    }

    #[test]
    fn naming_none_has_no_backend_prefix_and_empty_descriptions_stay_clean() {
        let mut t = tool("get", None);
        t.description = String::new();
        let cat = merge(
            &[
                snap("crm", NamingMode::None, vec![t.clone()]),
                snap("erp", NamingMode::Prefix, vec![t]),
            ],
            &[],
        );
        assert_eq!(cat.tool("get").unwrap().entry["description"], "");
        assert_eq!(cat.tool("erp_get").unwrap().entry["description"], "[erp]");
    }

    #[test]
    fn unicode_and_long_names_are_exposed_by_the_naming_rules() {
        let long = "x".repeat(200);
        let cat = merge(
            &[snap(
                "crm",
                NamingMode::Prefix,
                vec![tool("café", None), tool(&long, None)],
            )],
            &[],
        );
        let t = cat.tool("crm_caf_").unwrap();
        assert_eq!(t.target, "café");
        let exposed = naming::exposed_name("crm", &long, NamingMode::Prefix).unwrap();
        assert_eq!(exposed.len(), 128);
        assert_eq!(cat.tool(&exposed).unwrap().target, long);
    }

    #[test]
    fn first_backend_in_configuration_order_wins_a_collision() {
        let cat = merge(
            &[
                snap("zeta", NamingMode::None, vec![tool("search", Some("z"))]),
                snap("alpha", NamingMode::None, vec![tool("search", Some("a"))]),
                snap("mid", NamingMode::None, vec![tool("search", None)]),
            ],
            &[],
        );
        assert_eq!(cat.tools().len(), 1);
        assert_eq!(cat.tool("search").unwrap().backend_id, "zeta");
        assert_eq!(
            cat.problems(),
            &[CatalogProblem::Collision {
                kind: "tool",
                name: "search".into(),
                kept: Some("zeta".into()),
                dropped: vec!["alpha".into(), "mid".into()],
            }]
        );
    }

    #[test]
    fn prefix_collisions_across_backends_are_reported() {
        // Cortex never noticed: a + b_c and a_b + c both give a_b_c.
        let cat = merge(
            &[
                snap("a", NamingMode::Prefix, vec![tool("b_c", None)]),
                snap("a_b", NamingMode::Prefix, vec![tool("c", None)]),
            ],
            &[],
        );
        assert_eq!(cat.tool("a_b_c").unwrap().backend_id, "a");
        assert!(matches!(
            &cat.problems()[0],
            CatalogProblem::Collision { kept: Some(k), dropped, .. } if k == "a" && dropped == &["a_b"]
        ));
    }

    #[test]
    fn sanitized_names_colliding_within_one_backend_are_reported() {
        let cat = merge(
            &[snap(
                "crm",
                NamingMode::Prefix,
                vec![tool("a b", None), tool("a_b", None)],
            )],
            &[],
        );
        assert_eq!(cat.tools().len(), 1);
        assert_eq!(cat.tool("crm_a_b").unwrap().target, "a b");
        assert_eq!(
            cat.problems(),
            &[CatalogProblem::Collision {
                kind: "tool",
                name: "crm_a_b".into(),
                kept: Some("crm".into()),
                dropped: vec!["crm".into()],
            }]
        );
    }

    #[test]
    fn reserved_names_belong_to_the_gateway() {
        let cat = merge(
            &[
                snap(
                    "crm",
                    NamingMode::None,
                    vec![tool("whoami", None), tool("ok", None)],
                ),
                snap("erp", NamingMode::None, vec![tool("whoami", None)]),
                snap("who", NamingMode::Prefix, vec![tool("ami", None)]),
            ],
            &["whoami", "who_ami"],
        );
        assert_eq!(names(cat.tools(), |t| &t.exposed), ["ok"]);
        assert_eq!(
            cat.problems(),
            &[
                CatalogProblem::Collision {
                    kind: "tool",
                    name: "whoami".into(),
                    kept: None,
                    dropped: vec!["crm".into(), "erp".into()],
                },
                CatalogProblem::Collision {
                    kind: "tool",
                    name: "who_ami".into(),
                    kept: None,
                    dropped: vec!["who".into()],
                },
            ]
        );
    }

    #[test]
    fn empty_names_are_reported_as_invalid() {
        let mut s = snap("crm", NamingMode::None, vec![tool("", None)]);
        s.prompts.push(prompt("", None));
        let cat = merge(&[s], &[]);
        assert!(cat.tools().is_empty());
        assert!(cat.prompts().is_empty());
        assert_eq!(cat.problems().len(), 2);
        assert!(matches!(
            &cat.problems()[0],
            CatalogProblem::InvalidName { backend_id, name, .. } if backend_id == "crm" && name.is_empty()
        ));
    }

    // ---- merge: prompts, templates, resources ------------------------------------------

    #[test]
    fn prompt_template_and_resource_entries() {
        let mut s = snap("docs", NamingMode::Prefix, vec![]);
        s.prompts.push(PromptDef {
            name: "summarize".into(),
            title: Some("Summarize".into()),
            description: Some("Summarizes a doc".into()),
            arguments: Some(json!([{"name": "id", "required": true}])),
            scope: Some("mcp:docs:read".into()),
        });
        s.prompts.push(prompt("plain", None));
        s.templates.push(TemplateDef {
            uri_template: "docs://document/{id}".into(),
            name: "document".into(),
            title: Some("Document".into()),
            description: Some("One document".into()),
            mime_type: Some("text/markdown".into()),
            scope: Some("mcp:docs:read".into()),
        });
        s.resources.push(ResourceDef {
            uri: "docs://index".into(),
            name: "index".into(),
            title: None,
            description: Some("All documents".into()),
            mime_type: Some("application/json".into()),
            scope: None,
        });
        let cat = merge(&[s], &[]);
        assert_eq!(
            cat.prompt("docs_summarize").unwrap().entry,
            json!({
                "name": "docs_summarize",
                "title": "Summarize",
                "description": "Summarizes a doc",
                "arguments": [{"name": "id", "required": true}],
                "_meta": {"app": "docs"}
            })
        );
        assert_eq!(
            cat.prompt("docs_plain").unwrap().entry,
            json!({"name": "docs_plain", "_meta": {"app": "docs"}})
        );
        assert_eq!(cat.prompt("docs_plain").unwrap().target, "plain");
        assert_eq!(
            cat.templates()[0].entry,
            json!({
                "uriTemplate": "docs://document/{id}",
                "name": "docs_document",
                "title": "Document",
                "description": "One document",
                "mimeType": "text/markdown",
                "_meta": {"app": "docs"}
            })
        );
        assert_eq!(
            cat.resources()[0].entry,
            json!({
                "uri": "docs://index",
                "name": "docs_index",
                "description": "All documents",
                "mimeType": "application/json",
                "_meta": {"app": "docs"}
            })
        );
        assert_eq!(
            cat.resource_by_uri("docs://index").unwrap().exposed,
            "docs_index"
        );
        assert!(cat.problems().is_empty());
    }

    #[test]
    fn prompts_collide_on_exposed_name() {
        let mut a = snap("a", NamingMode::None, vec![]);
        a.prompts.push(prompt("p", None));
        let mut b = snap("b", NamingMode::None, vec![]);
        b.prompts.push(prompt("p", None));
        // Reserved tool names do not apply to prompts.
        b.prompts.push(prompt("whoami", None));
        let cat = merge(&[a, b], &["whoami"]);
        assert_eq!(cat.prompt("p").unwrap().backend_id, "a");
        assert_eq!(cat.prompt("whoami").unwrap().backend_id, "b");
        assert_eq!(
            cat.problems(),
            &[CatalogProblem::Collision {
                kind: "prompt",
                name: "p".into(),
                kept: Some("a".into()),
                dropped: vec!["b".into()],
            }]
        );
    }

    #[test]
    fn templates_collide_on_uri_template_and_on_name() {
        let mut a = snap("a", NamingMode::Prefix, vec![]);
        a.templates.push(template("doc", "x://doc/{id}", None));
        let mut b = snap("b", NamingMode::Prefix, vec![]);
        b.templates.push(template("other", "x://doc/{id}", None));
        b.templates.push(template("fine", "x://fine/{id}", None));
        let mut c = snap("a_doc", NamingMode::None, vec![]);
        c.templates.push(template("a_doc", "y://{id}", None));
        let cat = merge(&[a, b, c], &[]);
        assert_eq!(names(cat.templates(), |t| &t.exposed), ["a_doc", "b_fine"]);
        assert_eq!(cat.templates()[0].backend_id, "a");
        assert_eq!(
            cat.problems(),
            &[
                CatalogProblem::Collision {
                    kind: "resource template",
                    name: "a_doc".into(),
                    kept: Some("a".into()),
                    dropped: vec!["a_doc".into()],
                },
                CatalogProblem::Collision {
                    kind: "resource template",
                    name: "x://doc/{id}".into(),
                    kept: Some("a".into()),
                    dropped: vec!["b".into()],
                },
            ]
        );
    }

    #[test]
    fn resources_collide_on_uri_and_reserved_uris() {
        let mut a = snap("a", NamingMode::Prefix, vec![]);
        a.resources.push(resource("idx", "x://index", None));
        a.resources
            .push(resource("arch", "cortex://architecture", None));
        let mut b = snap("b", NamingMode::Prefix, vec![]);
        b.resources.push(resource("idx", "x://index", None));
        // A template and a resource may share a name: they are different kinds.
        b.templates.push(template("idx", "x://index/{id}", None));
        let cat = merge(&[a, b], &["cortex://architecture"]);
        assert_eq!(names(cat.resources(), |r| &r.exposed), ["a_idx"]);
        assert_eq!(names(cat.templates(), |t| &t.exposed), ["b_idx"]);
        assert_eq!(
            cat.problems(),
            &[
                // Reported in the order the collisions were met.
                CatalogProblem::Collision {
                    kind: "resource",
                    name: "cortex://architecture".into(),
                    kept: None,
                    dropped: vec!["a".into()],
                },
                CatalogProblem::Collision {
                    kind: "resource",
                    name: "x://index".into(),
                    kept: Some("a".into()),
                    dropped: vec!["b".into()],
                },
            ]
        );
    }

    // ---- fingerprints ------------------------------------------------------------------

    #[test]
    fn fingerprints_are_stable_and_track_definition_and_scope() {
        let base = || snap("crm", NamingMode::Prefix, vec![tool("get", Some("s1"))]);
        let fp = |s: BackendSnapshot| merge(&[s], &[]).tools()[0].fingerprint;
        assert_eq!(fp(base()), fp(base()));
        let mut changed = base();
        changed.tools[0].description = "Other.".into();
        assert_ne!(fp(base()), fp(changed));
        let mut rescoped = base();
        rescoped.tools[0].scope = Some("s2".into());
        assert_ne!(fp(base()), fp(rescoped));
        let mut unscoped = base();
        unscoped.tools[0].scope = None;
        let mut empty_scope = base();
        empty_scope.tools[0].scope = Some(String::new());
        assert_ne!(fp(unscoped), fp(empty_scope));
    }

    // ---- filtering and scopes ----------------------------------------------------------

    fn scoped_catalog() -> MergedCatalog {
        let mut s = snap(
            "crm",
            NamingMode::Prefix,
            vec![
                tool("read", Some("mcp:crm:read")),
                tool("write", Some("mcp:crm:write")),
                tool("open", None),
            ],
        );
        s.prompts.push(prompt("p_read", Some("mcp:crm:read")));
        s.prompts.push(prompt("p_open", None));
        s.templates
            .push(template("t_admin", "crm://a/{id}", Some("mcp:crm:admin")));
        s.resources
            .push(resource("r_read", "crm://r", Some("mcp:crm:read")));
        let mut b = snap(
            "bill",
            NamingMode::Prefix,
            vec![tool("pay", Some("mcp:bill:pay"))],
        );
        b.resources
            .push(resource("r_bill", "bill://r", Some("mcp:bill:pay")));
        merge(&[s, b], &[])
    }

    #[test]
    fn visibility_follows_grants() {
        let cat = scoped_catalog();
        let exposed = |g: &GrantedScopes| {
            visible(&cat, EntryKind::Tool, g)
                .iter()
                .map(|t| t.exposed.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(exposed(&grants(&[])), ["crm_open"]);
        assert_eq!(
            exposed(&grants(&["mcp:crm:read"])),
            ["crm_open", "crm_read"]
        );
        assert_eq!(
            exposed(&grants(&["mcp:crm:*"])),
            ["crm_open", "crm_read", "crm_write"]
        );
        assert_eq!(exposed(&grants(&["*"])).len(), 4);
        assert_eq!(
            visible(&cat, EntryKind::Prompt, &grants(&[]))
                .iter()
                .map(|p| p.exposed.as_str())
                .collect::<Vec<_>>(),
            ["crm_p_open"]
        );
        assert_eq!(
            visible(&cat, EntryKind::Prompt, &grants(&["mcp:crm:read"])).len(),
            2
        );
        assert!(visible(&cat, EntryKind::Template, &grants(&["mcp:crm:read"])).is_empty());
        assert_eq!(
            visible(&cat, EntryKind::Template, &grants(&["mcp:crm:*"])).len(),
            1
        );
        assert_eq!(
            visible(&cat, EntryKind::Resource, &grants(&["mcp:bill:pay"]))
                .iter()
                .map(|r| r.exposed.as_str())
                .collect::<Vec<_>>(),
            ["bill_r_bill"]
        );
    }

    #[test]
    fn scopes_lists_every_declared_scope_once() {
        assert_eq!(
            scoped_catalog().scopes(),
            [
                "mcp:bill:pay",
                "mcp:crm:admin",
                "mcp:crm:read",
                "mcp:crm:write"
            ]
        );
        assert!(MergedCatalog::default().scopes().is_empty());
    }

    // ---- resource routing --------------------------------------------------------------

    fn routing_catalog(templates: &[(&str, &str)], resources: &[(&str, &str)]) -> MergedCatalog {
        let mut s = snap("r", NamingMode::Prefix, vec![]);
        s.templates = templates
            .iter()
            .map(|(n, t)| template(n, t, None))
            .collect();
        s.resources = resources
            .iter()
            .map(|(n, u)| resource(n, u, None))
            .collect();
        merge(&[s], &[])
    }

    fn routed(cat: &MergedCatalog, uri: &str) -> Option<String> {
        cat.route_resource(uri).map(|r| match r {
            ResourceRoute::Static(r) => format!("static:{}", r.exposed),
            ResourceRoute::Template(t) => format!("template:{}", t.exposed),
        })
    }

    #[test]
    fn static_resources_win_over_templates() {
        let cat = routing_catalog(
            &[("doc", "docs://document/{id}")],
            &[("readme", "docs://document/readme")],
        );
        assert_eq!(
            routed(&cat, "docs://document/readme").as_deref(),
            Some("static:r_readme")
        );
        assert_eq!(
            routed(&cat, "docs://document/42").as_deref(),
            Some("template:r_doc")
        );
    }

    #[test]
    fn simple_expressions_match_one_segment() {
        let cat = routing_catalog(&[("doc", "docs://document/{id}")], &[]);
        assert!(routed(&cat, "docs://document/42").is_some());
        assert!(routed(&cat, "docs://document/é-ü").is_some());
        assert!(routed(&cat, "docs://document/").is_none());
        assert!(routed(&cat, "docs://document/4/2").is_none());
        assert!(routed(&cat, "docs://documents/42").is_none());
        assert!(routed(&cat, "other://document/42").is_none());
        let multi = routing_catalog(&[("v", "x://{a}/v{b}.json")], &[]);
        assert!(routed(&multi, "x://one/v2.json").is_some());
        assert!(routed(&multi, "x://one/v2.json.json").is_some());
        assert!(routed(&multi, "x://one/v.json").is_none());
        assert!(routed(&multi, "x://one/two/v2.json").is_none());
    }

    #[test]
    fn operator_expressions_match_across_slashes() {
        let cat = routing_catalog(
            &[
                ("files", "file:///{+path}"),
                ("segs", "seg://root{/parts*}"),
                ("frag", "frag://doc{#section}"),
                ("query", "q://search{?q,limit}"),
            ],
            &[],
        );
        assert_eq!(
            routed(&cat, "file:///a/b/c.txt").as_deref(),
            Some("template:r_files")
        );
        assert_eq!(
            routed(&cat, "seg://root/a/b").as_deref(),
            Some("template:r_segs")
        );
        assert_eq!(
            routed(&cat, "seg://root").as_deref(),
            Some("template:r_segs")
        );
        assert_eq!(
            routed(&cat, "frag://doc#a/b").as_deref(),
            Some("template:r_frag")
        );
        assert_eq!(
            routed(&cat, "q://search?q=x&limit=2").as_deref(),
            Some("template:r_query")
        );
        assert!(routed(&cat, "seg://rot/a").is_none());
    }

    #[test]
    fn the_longest_literal_prefix_wins_and_ties_follow_catalog_order() {
        let cat = routing_catalog(
            &[
                ("a_generic", "crm://{+rest}"),
                ("b_accounts", "crm://accounts/{id}"),
                ("c_accounts2", "crm://accounts/{key}"),
            ],
            &[],
        );
        assert_eq!(
            routed(&cat, "crm://accounts/7").as_deref(),
            Some("template:r_b_accounts")
        );
        assert_eq!(
            routed(&cat, "crm://contacts/7").as_deref(),
            Some("template:r_a_generic")
        );
        assert_eq!(
            routed(&cat, "crm://accounts/7/notes").as_deref(),
            Some("template:r_a_generic")
        );
    }

    #[test]
    fn malformed_templates_match_nothing() {
        let cat = routing_catalog(&[("bad", "x://{id"), ("empty", "y://{}")], &[]);
        assert!(routed(&cat, "x://{id").is_none());
        assert!(routed(&cat, "x://1").is_none());
        assert!(routed(&cat, "y://{}").is_none());
        assert!(routed(&MergedCatalog::default(), "x://1").is_none());
    }

    #[test]
    fn literal_only_templates_match_exactly() {
        let cat = routing_catalog(&[("lit", "x://fixed")], &[]);
        assert!(routed(&cat, "x://fixed").is_some());
        assert!(routed(&cat, "x://fixed2").is_none());
    }

    // ---- paging ------------------------------------------------------------------------

    fn keys(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn page_of<'a>(
        items: &'a [String],
        cursor: Option<&str>,
        size: usize,
    ) -> (Vec<&'a str>, Option<String>) {
        let (range, next) = page(items, |s| s.as_str(), cursor, size).unwrap();
        (items[range].iter().map(String::as_str).collect(), next)
    }

    #[test]
    fn pages_walk_the_whole_list() {
        let items = keys(&["a", "b", "c", "d", "e"]);
        let (p1, c1) = page_of(&items, None, 2);
        assert_eq!(p1, ["a", "b"]);
        let (p2, c2) = page_of(&items, c1.as_deref(), 2);
        assert_eq!(p2, ["c", "d"]);
        let (p3, c3) = page_of(&items, c2.as_deref(), 2);
        assert_eq!(p3, ["e"]);
        assert_eq!(c3, None);
        let (all, none) = page_of(&items, None, 5);
        assert_eq!(all.len(), 5);
        assert_eq!(none, None);
    }

    #[test]
    fn page_size_zero_is_one() {
        let items = keys(&["a", "b"]);
        let (p, c) = page_of(&items, None, 0);
        assert_eq!(p, ["a"]);
        assert!(c.is_some());
    }

    #[test]
    fn empty_lists_have_one_empty_page() {
        let items: Vec<String> = vec![];
        assert_eq!(page_of(&items, None, 3), (vec![], None));
    }

    #[test]
    fn cursors_survive_removals_and_additions_between_pages() {
        let items = keys(&["a", "b", "c", "d", "e"]);
        let (_, c1) = page_of(&items, None, 2);
        // "b" (the entry the cursor names) and "c" disappear, "aa" appears before the cursor.
        let changed = keys(&["a", "aa", "d", "e"]);
        let (p2, c2) = page_of(&changed, c1.as_deref(), 2);
        assert_eq!(p2, ["d", "e"]);
        assert_eq!(c2, None);
        // A cursor past every remaining entry gives an empty last page.
        let shrunk = keys(&["a"]);
        assert_eq!(page_of(&shrunk, c1.as_deref(), 2), (vec![], None));
    }

    #[test]
    fn cursors_are_opaque_base64url_of_a_versioned_key() {
        let c = encode_cursor("crm_get");
        assert!(!c.contains('=') && !c.contains('+') && !c.contains('/'));
        assert_eq!(URL_SAFE_NO_PAD.decode(&c).unwrap(), b"c1:crm_get");
        assert_eq!(decode_cursor(&c).unwrap(), "crm_get");
        assert_eq!(decode_cursor(&encode_cursor("ü/?")).unwrap(), "ü/?");
    }

    #[test]
    fn foreign_cursors_are_rejected_with_a_reason() {
        let items = keys(&["a"]);
        let err = |c: &str| page(&items, |s| s.as_str(), Some(c), 1).unwrap_err();
        assert!(err("not base64!").0.contains("base64url"));
        let padded = base64::engine::general_purpose::URL_SAFE.encode("c1:ab");
        assert!(padded.ends_with('='));
        assert!(err(&padded).0.contains("base64url"));
        assert!(err(&URL_SAFE_NO_PAD.encode("c2:a"))
            .0
            .contains("not a cursor"));
        assert!(err("").0.contains("not a cursor"));
        assert!(err(&URL_SAFE_NO_PAD.encode([0x63, 0x31, 0x3a, 0xff]))
            .0
            .contains("UTF-8"));
        assert!(err("x").to_string().starts_with("invalid cursor: "));
    }

    #[test]
    fn paging_visible_tools_works_on_references() {
        let cat = scoped_catalog();
        let visible = visible(&cat, EntryKind::Tool, &grants(&["*"]));
        let (range, next) = page(&visible, |t| t.exposed.as_str(), None, 3).unwrap();
        assert_eq!(range, 0..3);
        let (range2, next2) = page(&visible, |t| t.exposed.as_str(), next.as_deref(), 3).unwrap();
        assert_eq!(range2, 3..4);
        assert_eq!(next2, None);
    }

    // ---- diff --------------------------------------------------------------------------

    #[test]
    fn identical_catalogs_have_no_diff() {
        let d = diff(&scoped_catalog(), &scoped_catalog());
        assert!(d.is_empty());
        assert!(!d.tools_changed_for(&grants(&["*"])));
    }

    #[test]
    fn diff_reports_scopes_of_added_removed_and_changed_entries() {
        let old = merge(
            &[snap(
                "crm",
                NamingMode::Prefix,
                vec![
                    tool("gone", Some("s:gone")),
                    tool("same", Some("s:same")),
                    tool("edit", None),
                ],
            )],
            &[],
        );
        let mut edited = tool("edit", None);
        edited.description = "Changed.".into();
        let new = merge(
            &[snap(
                "crm",
                NamingMode::Prefix,
                vec![
                    tool("same", Some("s:same")),
                    edited,
                    tool("added", Some("s:new")),
                ],
            )],
            &[],
        );
        let d = diff(&old, &new);
        assert_eq!(
            d.tools,
            vec![None, Some("s:gone".to_string()), Some("s:new".to_string())]
        );
        assert!(d.prompts.is_empty());
        assert!(d.resources.is_empty());
        assert!(d.tools_changed_for(&grants(&[])));
    }

    #[test]
    fn a_scope_change_notifies_both_audiences() {
        let old = merge(
            &[snap("c", NamingMode::Prefix, vec![tool("t", Some("old"))])],
            &[],
        );
        let new = merge(
            &[snap("c", NamingMode::Prefix, vec![tool("t", Some("new"))])],
            &[],
        );
        let d = diff(&old, &new);
        assert_eq!(
            d.tools,
            vec![Some("new".to_string()), Some("old".to_string())]
        );
        assert!(d.tools_changed_for(&grants(&["old"])));
        assert!(d.tools_changed_for(&grants(&["new"])));
        assert!(!d.tools_changed_for(&grants(&["other"])));
    }

    #[test]
    fn diff_covers_prompts_templates_and_resources() {
        let mut a = snap("c", NamingMode::Prefix, vec![]);
        a.prompts.push(prompt("p", Some("s:p")));
        a.templates.push(template("t", "x://{id}", Some("s:t")));
        let mut b = snap("c", NamingMode::Prefix, vec![]);
        b.resources.push(resource("r", "x://r", Some("s:r")));
        let d = diff(&merge(&[a], &[]), &merge(&[b], &[]));
        assert!(d.tools.is_empty());
        assert_eq!(d.prompts, vec![Some("s:p".to_string())]);
        assert_eq!(
            d.resources,
            vec![Some("s:r".to_string()), Some("s:t".to_string())]
        );
        assert!(d.prompts_changed_for(&grants(&["s:p"])));
        assert!(!d.prompts_changed_for(&grants(&["s:r"])));
        assert!(d.resources_changed_for(&grants(&["s:*"])));
        assert!(!d.resources_changed_for(&grants(&["s:p"])));
    }

    // ---- serialization -----------------------------------------------------------------

    /// A list result of `kind` from visible entries, as the gateway builds pages.
    fn list_of(kind: EntryKind, entries: &[&Entry], next: Option<&str>) -> Vec<u8> {
        list_result(kind.list_key(), entries.iter().map(|e| &e.entry), next)
    }

    #[test]
    fn list_results_keep_order_and_add_next_cursor_only_when_given() {
        let cat = scoped_catalog();
        let all = visible(&cat, EntryKind::Tool, &grants(&["*"]));
        let v: Value =
            serde_json::from_slice(&list_of(EntryKind::Tool, &all[..2], Some("abc"))).unwrap();
        assert_eq!(v["tools"][0], all[0].entry);
        assert_eq!(v["tools"][1], all[1].entry);
        assert_eq!(v["tools"].as_array().unwrap().len(), 2);
        assert_eq!(v["nextCursor"], "abc");
        let v: Value = serde_json::from_slice(&list_of(EntryKind::Tool, &all, None)).unwrap();
        assert!(v.get("nextCursor").is_none());
        assert_eq!(list_of(EntryKind::Tool, &[], None), br#"{"tools":[]}"#);
    }

    #[test]
    fn every_kind_lists_under_its_mcp_key() {
        let cat = scoped_catalog();
        let g = grants(&["*"]);
        let of = |kind| visible(&cat, kind, &g);
        let v: Value =
            serde_json::from_slice(&list_of(EntryKind::Prompt, &of(EntryKind::Prompt), None))
                .unwrap();
        assert_eq!(v["prompts"].as_array().unwrap().len(), 2);
        let templates = of(EntryKind::Template);
        let v: Value =
            serde_json::from_slice(&list_of(EntryKind::Template, &templates, Some("c"))).unwrap();
        assert_eq!(v["resourceTemplates"][0]["uriTemplate"], "crm://a/{id}");
        assert_eq!(v["nextCursor"], "c");
        let v: Value = serde_json::from_slice(&list_of(
            EntryKind::Resource,
            &of(EntryKind::Resource),
            None,
        ))
        .unwrap();
        assert_eq!(v["resources"].as_array().unwrap().len(), 2);
        assert!(cat.iter().all(|e| cat.entries(e.kind).contains(e)));
        assert_eq!(
            cat.iter().count(),
            EntryKind::ALL
                .iter()
                .map(|k| cat.entries(*k).len())
                .sum::<usize>()
        );
    }
}
