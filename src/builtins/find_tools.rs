//! `find_tools {names?, query?, limit?}`: full definitions of tools by exact name, or the
//! best matches of a text query ranked with BM25 (`cortex_filters::search`), among the tools
//! the caller may use (builtins included). `X-Cortex-Backends` does not narrow it, as in
//! Cortex: the header shapes the list, not what can be found or called.
//!
//! The index covers the whole catalog and is rebuilt once per catalog generation; results
//! are filtered by the caller's scopes at query time and carry no scores, so nothing about
//! hidden tools shows.

use std::sync::{Arc, Mutex};

use cortex_filters::search::{Bm25Index, SearchDoc};
use serde_json::{json, Map, Value};

use crate::upstream::CatalogState;

use super::{opt_limit, opt_str, BuiltinCx, BuiltinError, BuiltinResult, Builtins};

/// Default number of query results.
pub const DEFAULT_LIMIT: usize = 10;
/// Most query results.
pub const MAX_LIMIT: usize = 50;
/// Most names in one `names` lookup.
pub const MAX_NAMES: usize = 100;

/// The index of one catalog generation: documents `0..builtins` are the builtins, the rest
/// the catalog's tools in catalog order.
pub struct ToolIndex {
    catalog: Arc<CatalogState>,
    builtins: usize,
    index: Bm25Index,
}

/// The index of the current generation, built on first use.
#[derive(Default)]
pub struct IndexCache {
    slot: Mutex<Option<Arc<ToolIndex>>>,
}

impl IndexCache {
    /// The index for `catalog`, building it when the generation changed. Concurrent callers
    /// may both build; the last one stored wins, which is harmless.
    pub fn get(&self, builtins: &Builtins, catalog: Arc<CatalogState>) -> Arc<ToolIndex> {
        if let Some(hit) = self.lock().as_ref() {
            if hit.catalog.generation == catalog.generation {
                return hit.clone();
            }
        }
        let built = Arc::new(build(builtins, catalog));
        *self.lock() = Some(built.clone());
        built
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<ToolIndex>>> {
        match self.slot.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

fn build(builtins: &Builtins, catalog: Arc<CatalogState>) -> ToolIndex {
    let defs = builtins.all();
    let docs = defs
        .iter()
        .map(|d| SearchDoc {
            name: d.name,
            alt_name: None,
            description: d.entry["description"].as_str().unwrap_or(""),
        })
        .chain(catalog.merged.tools().iter().map(|t| SearchDoc {
            name: &t.exposed,
            alt_name: Some(&t.original),
            description: t.entry["description"].as_str().unwrap_or(""),
        }));
    let index = Bm25Index::build(docs);
    ToolIndex {
        builtins: defs.len(),
        index,
        catalog,
    }
}

/// The `find_tools` builtin.
pub fn find_tools(cx: &BuiltinCx<'_>, args: &Map<String, Value>) -> BuiltinResult {
    let builtins = cx.builtins;
    let grants = &cx.principal.grants;
    if let Some(names) = names_arg(args)? {
        let current = cx.catalog.current();
        let mut tools = Vec::new();
        let mut not_found = Vec::new();
        for name in names {
            let entry = match builtins.usable(&name, cx.principal) {
                Some(d) => Some(d.entry.clone()),
                None => current
                    .merged
                    .tool(&name)
                    .filter(|t| grants.allows(t.scope.as_deref()))
                    .map(|t| t.entry.clone()),
            };
            match entry {
                Some(e) => tools.push(e),
                None => not_found.push(Value::String(name)),
            }
        }
        let mut out = json!({"tools": tools});
        if !not_found.is_empty() {
            out["notFound"] = Value::Array(not_found);
        }
        return Ok(out);
    }
    let query = opt_str(args, "query")?
        .map(str::trim)
        .filter(|q| !q.is_empty());
    let Some(query) = query else {
        return Err(BuiltinError::invalid(
            "find_tools needs `names` (exact tool names) or `query` (words describing what you want to do)",
        ));
    };
    let limit = opt_limit(args, "limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let idx = cx.runtime.index.get(builtins, cx.catalog.current());
    let defs = builtins.all();
    let tools = idx.catalog.merged.tools();
    let allowed = |doc: usize| {
        if doc < idx.builtins {
            grants.allows(defs[doc].scope.as_deref())
        } else {
            tools
                .get(doc - idx.builtins)
                .is_some_and(|t| grants.allows(t.scope.as_deref()))
        }
    };
    let hits = idx.index.search(query, allowed, limit);
    let entries: Vec<Value> = hits
        .iter()
        .filter_map(|h| {
            if h.doc < idx.builtins {
                defs.get(h.doc).map(|d| d.entry.clone())
            } else {
                tools.get(h.doc - idx.builtins).map(|t| t.entry.clone())
            }
        })
        .collect();
    Ok(json!({"tools": entries, "query": query}))
}

/// `names`: an array of strings (a single string is accepted too); `None` when absent or
/// empty, so that `query` applies.
fn names_arg(args: &Map<String, Value>) -> Result<Option<Vec<String>>, BuiltinError> {
    let bad = || BuiltinError::invalid("`names` must be an array of tool names");
    let names: Vec<String> = match args.get("names") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    let mut names: Vec<String> = names
        .into_iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if names.len() > MAX_NAMES {
        return Err(BuiltinError::invalid(format!(
            "at most {MAX_NAMES} names per call"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    Ok((!names.is_empty()).then_some(names))
}
