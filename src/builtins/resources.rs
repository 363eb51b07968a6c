//! `cortex://architecture` (live Markdown of how the gateway is set up for this caller) and
//! the `list_cortex_resources` / `read_cortex_resource` builtins, which give tool-only
//! clients the resources/list and resources/read they may lack.
//!
//! Unlike Cortex, the architecture page shows backends' internal URLs and discovery errors
//! only to holders of the admin scope, and `read_cortex_resource` applies the same scope
//! check as `resources/read` (a resource the caller may not see does not exist for it).

use std::fmt::Write as _;

use cortex_filters::catalog::{self, EntryKind};
use cortex_filters::jsonrpc::{codes, RpcError};
use serde_json::{json, Map, Value};

use crate::upstream::calls::{self, Caller};
use crate::upstream::Replies;
use cortex_filters::contract::Outcome;

use super::whoami::rfc3339_of;
use super::{
    opt_str, BuiltinCx, BuiltinError, BuiltinResult, Listing, ARCHITECTURE_URI, FIND_TOOLS,
};

/// The listed entry of `cortex://architecture`.
pub fn architecture_entry() -> Value {
    json!({
        "uri": ARCHITECTURE_URI,
        "name": "architecture",
        "title": "How this gateway is set up for you",
        "description": "Live Markdown: your identity and scopes, the apps behind this gateway and their health, the naming rule and how to find tools.",
        "mimeType": "text/markdown",
        "annotations": {"audience": ["assistant", "user"], "priority": 0.5},
    })
}

/// The `resources/read` result of a URI: `cortex://architecture` here, anything else from
/// the backend that owns it.
pub async fn read(cx: &BuiltinCx<'_>, uri: &str) -> Result<Value, RpcError> {
    read_replies(cx, uri, None)
        .await?
        .outcome()
        .await
        .into_result()
}

/// `resources/read` as the replies of the owning backend (a native backend streams what
/// happens during the read), with the request's `_meta`; the gateway's own resource is
/// answered at once.
pub async fn read_replies(
    cx: &BuiltinCx<'_>,
    uri: &str,
    meta: Option<&Value>,
) -> Result<Replies, RpcError> {
    if uri == ARCHITECTURE_URI {
        if !cx.builtins.architecture_visible(cx.principal) {
            return Err(
                RpcError::new(codes::RESOURCE_NOT_FOUND, "Resource not found")
                    .with_data(json!({"uri": ARCHITECTURE_URI})),
            );
        }
        return Ok(Replies::Final(Outcome::Result(json!({"contents": [{
            "uri": ARCHITECTURE_URI,
            "mimeType": "text/markdown",
            "text": architecture(cx),
        }]}))));
    }
    let current = cx.catalog.current();
    let caller = Caller {
        principal: cx.principal,
        catalog: &current.merged,
        client_caps: cx.client_caps,
        input_responses: None,
    };
    calls::read_resource_replies(cx.upstreams, caller, uri, meta).await
}

/// `list_cortex_resources`: every resource and template the caller may read, unpaged.
pub fn list_all(cx: &BuiltinCx<'_>) -> Value {
    let current = cx.catalog.current();
    let grants = &cx.principal.grants;
    let mut resources = Vec::new();
    if cx.builtins.architecture_visible(cx.principal) {
        resources.push(architecture_entry());
    }
    resources.extend(
        catalog::visible(&current.merged, EntryKind::Resource, grants)
            .into_iter()
            .map(|r| r.entry.clone()),
    );
    let templates: Vec<Value> = catalog::visible(&current.merged, EntryKind::Template, grants)
        .into_iter()
        .map(|t| t.entry.clone())
        .collect();
    json!({"resources": resources, "resourceTemplates": templates})
}

/// `read_cortex_resource {uri}`: like resources/read; a single text content is also given
/// as the tool's text so the model reads it directly.
pub async fn read_tool(cx: &BuiltinCx<'_>, args: &Map<String, Value>) -> BuiltinResult {
    let Some(uri) = opt_str(args, "uri")?.filter(|u| !u.trim().is_empty()) else {
        return Err(BuiltinError::invalid(
            "`uri` is required, e.g. cortex://architecture",
        ));
    };
    match read(cx, uri).await {
        Ok(v) => Ok(v),
        Err(RpcError { code, message, .. })
            if code == codes::RESOURCE_NOT_FOUND || code == codes::INVALID_PARAMS =>
        {
            Err(BuiltinError::Failed {
                code: "resource_not_found",
                message: format!(
                    "{message}: {uri} (list_cortex_resources shows what you can read)"
                ),
            })
        }
        Err(RpcError { message, .. }) => Err(BuiltinError::Failed {
            code: "backend_error",
            message,
        }),
    }
}

/// The Markdown of `cortex://architecture` for this caller.
pub fn architecture(cx: &BuiltinCx<'_>) -> String {
    let p = cx.principal;
    let builtins = cx.builtins;
    let admin = builtins.is_admin(p);
    let current = cx.catalog.current();
    let health = cx.catalog.health();
    let mut md = String::with_capacity(4096);
    let _ = writeln!(
        md,
        "# {} — how this gateway is set up for you\n",
        cx.config.server.name
    );
    let _ = writeln!(
        md,
        "One MCP endpoint ({}) in front of {} app(s). The gateway lists and allows exactly the \
         tools your token's scopes grant and forwards each call to the app that owns the tool, \
         with your identity; each app enforces its own permissions.\n",
        cx.canonical_uri,
        cx.upstreams.len()
    );

    md.push_str("## You\n\n");
    let _ = writeln!(md, "- Subject: `{}`", p.sub);
    if let Some(e) = &p.email {
        let _ = writeln!(md, "- Email: {e}");
    }
    if let Some(r) = p.role.as_deref().filter(|r| !r.is_empty()) {
        let _ = writeln!(md, "- Role: {r}");
    }
    let scopes = p.grants.granted();
    if scopes.is_empty() {
        md.push_str("- Scopes: none (you see only tools that require no scope)\n");
    } else {
        let list: Vec<String> = scopes.iter().map(|s| format!("`{s}`")).collect();
        let _ = writeln!(md, "- Scopes: {}", list.join(", "));
    }
    let _ = writeln!(
        md,
        "- Administrator (`{}`): {}\n",
        builtins.admin_scope(),
        if admin { "yes" } else { "no" }
    );

    md.push_str("## Apps\n\n");
    if admin {
        md.push_str("| App | Health | Tools (yours / all) | Last discovery | URL | Last error |\n| --- | --- | --- | --- | --- | --- |\n");
    } else {
        md.push_str(
            "| App | Health | Tools you can use | Last discovery |\n| --- | --- | --- | --- |\n",
        );
    }
    for b in cx.upstreams.iter() {
        let h = health.iter().find(|h| h.id == b.id());
        let status = match h {
            None => "unknown",
            Some(h) if !h.attempted => "starting",
            Some(h) if h.healthy => "healthy",
            Some(h) if h.stale => "degraded (serving its last known tools)",
            Some(_) => "unreachable",
        };
        let all = current
            .merged
            .tools()
            .iter()
            .filter(|t| t.backend_id == b.id());
        let total = all.clone().count();
        let yours = all.filter(|t| p.grants.allows(t.scope.as_deref())).count();
        let last = h
            .and_then(|h| h.last_ok)
            .map(rfc3339_of)
            .unwrap_or_else(|| "never".into());
        if admin {
            let err = h
                .and_then(|h| h.last_error.as_deref())
                .map(|e| e.replace('|', "/"))
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "| `{}` | {status} | {yours} / {total} | {last} | {} | {err} |",
                b.id(),
                b.location()
            );
        } else {
            let _ = writeln!(md, "| `{}` | {status} | {yours} | {last} |", b.id());
        }
    }
    if cx.upstreams.is_empty() {
        md.push_str("| (none configured) | | | |\n");
    }

    md.push_str("\n## Naming rule\n\n");
    md.push_str(
        "- App tools are named `<app>_<tool>` (e.g. `crm_list_contacts`); the description starts \
         with `[<app>]`. An app configured without prefixing exposes its own names.\n\
         - When two entries would get the same name, the app listed first in the configuration \
         keeps it; the other is dropped and reported to operators.\n\
         - Before guessing how an app works, call its `<app>_get_help` tool when it has one.\n",
    );
    let names: Vec<String> = builtins
        .all()
        .iter()
        .filter(|d| p.grants.allows(d.scope.as_deref()))
        .map(|d| match d.listing {
            Listing::Always => format!("`{}`", d.name),
            Listing::SearchMode => format!("`{}` (listed in search mode, callable always)", d.name),
        })
        .collect();
    let _ = writeln!(
        md,
        "- The gateway's own tools have unprefixed names no app can take: {}.\n",
        names.join(", ")
    );

    md.push_str("## Finding tools\n\n");
    let _ = writeln!(
        md,
        "- `{FIND_TOOLS}` finds tools by exact name or by a ranked text query and returns their \
         full definitions.\n\
         - Request header `X-Cortex-Tool-Mode: search` lists short descriptions and bare schemas \
         (default here: `{}`); `X-Cortex-Backends: a,b` lists only those apps' tools. Neither \
         changes what you may call.\n\
         - `whoami` shows how many tools are hidden from you and which scopes would reveal them.\n\
         - Something missing? `report_missing_capability` files a ticket for the people running \
         these apps.",
        match cx.config.catalog.tool_mode {
            crate::config::ToolMode::Full => "full",
            crate::config::ToolMode::Search => "search",
        }
    );
    md
}
