//! The scope model: what a caller's granted scopes allow.
//!
//! A tool, prompt or resource template declares one required scope (Cortex: one string, e.g.
//! `mcp:crm:read`). A caller holds a set of granted scopes. A grant covers a requirement when:
//! - it is equal to it;
//! - it is the universal grant `*` (used by `auth.mode: none` and dev principals);
//! - it is a prefix wildcard ending in `*` (e.g. `mcp:crm:*`) and the requirement starts with the
//!   part before the `*`;
//! - it implies it through the configured implication rules (transitively, e.g.
//!   `mcp:crm:admin → mcp:crm:write → mcp:crm:read`); an implication target may itself be a
//!   wildcard (`mcp:crm:admin → mcp:crm:*`).
//!
//! An entry that declares no scope is visible to every authenticated caller.

use std::collections::{BTreeMap, BTreeSet};

/// Configured implication rules: `granted → [implied, …]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeRules {
    /// Direct implications as configured (`scopes.implies` in YAML).
    pub implies: BTreeMap<String, Vec<String>>,
}

/// A caller's effective grants, expanded once per request (or once per cached scope set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantedScopes {
    /// Exact scopes, after expanding implications.
    exact: BTreeSet<String>,
    /// Prefixes of wildcard grants (`mcp:crm:*` → `mcp:crm:`); `""` is the universal grant.
    prefixes: BTreeSet<String>,
    /// The scopes as granted, before expansion (sorted, deduplicated): shown in whoami/audit.
    granted: Vec<String>,
}

impl GrantedScopes {
    /// Expands `granted` through `rules` (transitively, cycles tolerated).
    pub fn new<I, S>(granted: I, rules: &ScopeRules) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        todo!("expand {:?}", (granted.into_iter().count(), rules))
    }

    /// Whether these grants cover `required`. `None` (entry declares no scope) → true.
    pub fn allows(&self, required: Option<&str>) -> bool {
        todo!("{required:?} {self:?}")
    }

    /// The scopes as granted (before expansion), sorted and deduplicated.
    pub fn granted(&self) -> &[String] {
        &self.granted
    }

    /// A stable key identifying the effective grant set: two callers with equal keys see the
    /// same filtered catalog. Used to key the per-scope-set view cache.
    pub fn cache_key(&self) -> String {
        todo!()
    }
}

/// Parses a space- or comma-separated scope list (`OAUTH_REQUIRED_SCOPES`,
/// `CORTEX_DEV_BYPASS_SCOPES`), dropping empties and duplicates, keeping first-seen order.
pub fn parse_scope_list(s: &str) -> Vec<String> {
    todo!("{s}")
}
