//! The four list methods (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`): the caller's view of the catalog, paginated, served from the
//! per-scope-set page cache, with the gateway's own entries first, and Cortex's
//! context-saving presentations of the tool list:
//!
//! - `X-Cortex-Tool-Mode: search` (or `catalog.tool_mode: search`): backend tools get a
//!   one-sentence description (at most [`SEARCH_DESCRIPTION_CHARS`] characters, `[app] `
//!   prefix included), `inputSchema: {"type":"object"}` and no `outputSchema`; builtins stay
//!   in full and `find_tools` is listed so the agent can fetch full definitions.
//! - `X-Cortex-Backends: a,b`: only those backends' tools are listed (an empty value lists
//!   the builtins only).
//!
//! Neither changes what a caller may call. Each presentation is a separate entry of the
//! per-scope-set view cache (the `variant` of [`CatalogStore::view`]).

use std::borrow::Cow;

use cortex_filters::catalog::{self, BadCursor, EntryKind};
use cortex_filters::jsonrpc::{self, Id, RpcError};
use cortex_filters::search::one_sentence;
use serde_json::{json, Map, Value};

use crate::builtins::{resources::architecture_entry, Listing};
use crate::config::ToolMode;
use crate::upstream::{CatalogStore, ListKind, ListPage};

use super::call::{CallContext, Dispatched, ListAnswer};

/// Longest description in search mode, in characters (Cortex: 120).
pub const SEARCH_DESCRIPTION_CHARS: usize = 120;

/// How one request wants the tool list presented.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Presentation {
    /// Full or search mode.
    pub mode: ToolMode,
    /// `X-Cortex-Backends`: the backend ids to list (sorted, deduplicated, lowercase);
    /// `None` lists every backend.
    pub backends: Option<Vec<String>>,
}

impl Presentation {
    /// From the request headers, falling back to the configured default mode. An unknown
    /// mode value is ignored (as Cortex does: only `search` means search).
    pub fn from_headers(
        tool_mode: Option<&str>,
        backends: Option<&str>,
        default: ToolMode,
    ) -> Self {
        let mode = match tool_mode.map(|m| m.trim().to_ascii_lowercase()) {
            Some(m) if m == "search" => ToolMode::Search,
            Some(m) if m == "full" => ToolMode::Full,
            _ => default,
        };
        let backends = backends.map(|v| {
            let mut ids: Vec<String> = v
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect();
            ids.sort();
            ids.dedup();
            ids
        });
        Presentation { mode, backends }
    }

    /// The view-cache variant: 0 for the plain full list, a stable hash otherwise.
    pub fn variant(&self) -> u64 {
        if self.mode == ToolMode::Full && self.backends.is_none() {
            return 0;
        }
        // FNV-1a: stable, cheap, and collisions only cost a wrong cache hit between two
        // presentations of the same caller's own catalog, never another caller's scopes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        eat(if self.mode == ToolMode::Search {
            b"s"
        } else {
            b"f"
        });
        match &self.backends {
            None => eat(b"*"),
            Some(ids) => {
                for id in ids {
                    eat(b"\0");
                    eat(id.as_bytes());
                }
            }
        }
        h.max(1)
    }

    /// Whether a backend's tools are listed.
    pub fn lists_backend(&self, id: &str) -> bool {
        self.backends
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|b| b == id))
    }
}

/// A backend tool entry as presented in `mode`.
pub fn present_tool(entry: &Value, mode: ToolMode) -> Cow<'_, Value> {
    if mode == ToolMode::Full {
        return Cow::Borrowed(entry);
    }
    let Some(obj) = entry.as_object() else {
        return Cow::Borrowed(entry);
    };
    let mut out = Map::with_capacity(obj.len());
    for (k, v) in obj {
        match k.as_str() {
            "description" => {
                let short = one_sentence(v.as_str().unwrap_or(""), SEARCH_DESCRIPTION_CHARS);
                out.insert(k.clone(), Value::String(short));
            }
            "inputSchema" => {
                out.insert(k.clone(), json!({"type": "object"}));
            }
            "outputSchema" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Cow::Owned(Value::Object(out))
}

/// Parses `params.cursor`.
fn cursor(params: &Value) -> Result<Option<&str>, RpcError> {
    match params.get("cursor") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(c)) => Ok(Some(c.as_str())),
        Some(_) => Err(RpcError::invalid_params(
            "Invalid params: cursor must be a string",
        )),
    }
}

/// One page of `entries` (gateway entries first, then the backends' in catalog order).
/// Sort keys are `0:<nn>` for gateway entries and `1:<name>` for backend entries, so the
/// cursor logic of `cortex_filters::catalog::page` applies unchanged.
fn page_bytes(
    key: &str,
    own: &[&Value],
    backend: Vec<(&str, Cow<'_, Value>)>,
    cursor: Option<&str>,
    page_size: usize,
) -> Result<ListPage, BadCursor> {
    let mut all: Vec<(String, Cow<'_, Value>)> = Vec::with_capacity(own.len() + backend.len());
    for (i, v) in own.iter().enumerate() {
        all.push((format!("0:{i:04}"), Cow::Borrowed(*v)));
    }
    for (name, v) in backend {
        all.push((format!("1:{name}"), v));
    }
    let (range, next) = catalog::page(&all, |(k, _)| k.as_str(), cursor, page_size)?;
    let entries = u32::try_from(range.len()).unwrap_or(u32::MAX);
    Ok(ListPage::new(entries, |out| {
        catalog::list_result_into(
            out,
            key,
            all[range].iter().map(|(_, v)| v.as_ref()),
            next.as_deref(),
        )
    }))
}

/// The answer to a list request from a built (or cached) page: the request's own envelope
/// head, then the page's shared bytes.
fn answer(id: &Id, built: Result<ListPage, BadCursor>) -> Dispatched {
    match built {
        Ok(page) => Dispatched::List {
            body: ListAnswer {
                head: jsonrpc::success_head(id),
                end: page.answer_end(),
            },
            entries: page.entries,
        },
        Err(e) => Dispatched::Answer(
            RpcError::invalid_params(format!("Invalid params: {e}")).to_response(Some(id)),
        ),
    }
}

/// Runs `build` through the page cache for the caller's scope set.
fn cached(
    catalog: &CatalogStore,
    cx: &CallContext<'_>,
    kind: ListKind,
    variant: u64,
    cursor: Option<&str>,
    build: impl FnOnce() -> Result<ListPage, BadCursor>,
) -> Result<ListPage, BadCursor> {
    let generation = catalog.current().generation;
    catalog.view(
        generation,
        kind,
        variant,
        &cx.principal.scope_key,
        cursor,
        build,
    )
}

/// Answers one of the four list methods.
pub fn list(cx: &CallContext<'_>, id: &Id, params: &Value, kind: ListKind) -> Dispatched {
    let cursor = match cursor(params) {
        Ok(c) => c,
        Err(e) => return Dispatched::Answer(e.to_response(Some(id))),
    };
    let store = &cx.shared.catalog;
    let current = store.current();
    let grants = &cx.principal.grants;
    let page_size = cx.policy.config.catalog.page_size;
    let p = &cx.presentation;
    let variant = if kind == ListKind::Tools {
        p.variant()
    } else {
        0
    };
    let built = cached(store, cx, kind, variant, cursor, || {
        let merged = &current.merged;
        match kind {
            ListKind::Tools => {
                let own: Vec<&Value> = cx
                    .policy
                    .builtins
                    .all()
                    .iter()
                    .filter(|d| d.listing == Listing::Always || p.mode == ToolMode::Search)
                    .filter(|d| grants.allows(d.scope.as_deref()))
                    .map(|d| &d.entry)
                    .collect();
                let backend = catalog::visible(merged, EntryKind::Tool, grants)
                    .into_iter()
                    .filter(|t| p.lists_backend(&t.backend_id))
                    .map(|t| (t.exposed.as_str(), present_tool(&t.entry, p.mode)))
                    .collect();
                page_bytes("tools", &own, backend, cursor, page_size)
            }
            ListKind::Resources => {
                let arch = architecture_entry();
                let own: Vec<&Value> = if cx.policy.builtins.architecture_visible(cx.principal) {
                    vec![&arch]
                } else {
                    Vec::new()
                };
                let backend = catalog::visible(merged, EntryKind::Resource, grants)
                    .into_iter()
                    .map(|r| (r.exposed.as_str(), Cow::Borrowed(&r.entry)))
                    .collect();
                page_bytes("resources", &own, backend, cursor, page_size)
            }
            ListKind::Prompts => {
                let backend = catalog::visible(merged, EntryKind::Prompt, grants)
                    .into_iter()
                    .map(|e| (e.exposed.as_str(), Cow::Borrowed(&e.entry)))
                    .collect();
                page_bytes("prompts", &[], backend, cursor, page_size)
            }
            ListKind::Templates => {
                let backend = catalog::visible(merged, EntryKind::Template, grants)
                    .into_iter()
                    .map(|e| (e.exposed.as_str(), Cow::Borrowed(&e.entry)))
                    .collect();
                page_bytes("resourceTemplates", &[], backend, cursor, page_size)
            }
        }
    });
    answer(id, built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presentation_from_headers() {
        let p =
            Presentation::from_headers(Some(" Search "), Some("crm, Demo,,crm"), ToolMode::Full);
        assert_eq!(p.mode, ToolMode::Search);
        assert_eq!(
            p.backends,
            Some(vec!["crm".to_string(), "demo".to_string()])
        );
        assert!(p.lists_backend("crm") && !p.lists_backend("erp"));
        let none = Presentation::from_headers(None, None, ToolMode::Search);
        assert_eq!(none.mode, ToolMode::Search);
        assert!(none.lists_backend("anything"));
        assert_eq!(
            Presentation::from_headers(Some("full"), None, ToolMode::Search).mode,
            ToolMode::Full
        );
        assert_eq!(
            Presentation::from_headers(Some("weird"), None, ToolMode::Full).mode,
            ToolMode::Full
        );
        let empty = Presentation::from_headers(None, Some(" "), ToolMode::Full);
        assert_eq!(empty.backends, Some(vec![]));
        assert!(!empty.lists_backend("crm"));
    }

    #[test]
    fn variants_differ_per_presentation() {
        let v = |m: Option<&str>, b: Option<&str>| {
            Presentation::from_headers(m, b, ToolMode::Full).variant()
        };
        assert_eq!(v(None, None), 0);
        let all = [
            v(Some("search"), None),
            v(None, Some("")),
            v(None, Some("a")),
            v(None, Some("a,b")),
            v(Some("search"), Some("a")),
        ];
        for (i, a) in all.iter().enumerate() {
            assert_ne!(*a, 0);
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(v(None, Some("b,a")), v(None, Some("a, b")));
    }

    #[test]
    fn search_presentation_is_compact() {
        let e = json!({
            "name": "crm_get",
            "description": "[crm] Gets a record. Long explanation follows.\nMore.",
            "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}},
            "outputSchema": {"type": "object"},
            "_meta": {"app": "crm"}
        });
        assert_eq!(present_tool(&e, ToolMode::Full).as_ref(), &e);
        let s = present_tool(&e, ToolMode::Search);
        assert_eq!(
            s.as_ref(),
            &json!({"name": "crm_get", "description": "[crm] Gets a record.", "inputSchema": {"type": "object"}, "_meta": {"app": "crm"}})
        );
    }

    #[test]
    fn answers_splice_the_cached_page_unchanged() {
        let backend = vec![("x", Cow::Owned(json!({"n": "x"})))];
        let page = page_bytes("tools", &[], backend, None, 10).unwrap();
        for id in [json!(7), json!("req-\"1\"")] {
            let Dispatched::List { body, entries } = answer(&id, Ok(page.clone())) else {
                panic!("not a list answer");
            };
            assert_eq!(entries, 1);
            assert_eq!(body.to_vec(), jsonrpc::success_raw(&id, &page.result()));
            // The page's bytes are shared with the cache, not copied.
            assert_eq!(body.end.as_ptr(), page.answer_end().as_ptr());
        }
    }

    #[test]
    fn pages_put_own_entries_first_and_cursor_through() {
        let a = json!({"n": "own"});
        let backend = vec![
            ("x", Cow::Owned(json!({"n": "x"}))),
            ("y", Cow::Owned(json!({"n": "y"}))),
        ];
        let first = page_bytes("tools", &[&a], backend.clone(), None, 2).unwrap();
        let v: Value = serde_json::from_slice(&first.result()).unwrap();
        assert_eq!(v["tools"], json!([{"n": "own"}, {"n": "x"}]));
        let next = v["nextCursor"].as_str().unwrap().to_string();
        let second: Value = serde_json::from_slice(
            &page_bytes("tools", &[&a], backend, Some(&next), 2)
                .unwrap()
                .result(),
        )
        .unwrap();
        assert_eq!(second["tools"], json!([{"n": "y"}]));
        assert!(second.get("nextCursor").is_none());
        assert!(page_bytes("tools", &[], vec![], Some("garbage!"), 2).is_err());
    }
}
