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
    ///
    /// Implications fire for every scope the caller holds, including scopes it holds only
    /// through a wildcard: holding `mcp:crm:*` with a rule `mcp:crm:admin → mcp:billing:read`
    /// also grants `mcp:billing:read`, because `mcp:crm:*` covers `mcp:crm:admin`. The result
    /// is normalised (exact scopes covered by a wildcard and wildcards covered by a shorter
    /// one are dropped) so that equal effective grants give equal [`cache_key`]s.
    ///
    /// [`cache_key`]: GrantedScopes::cache_key
    pub fn new<I, S>(granted: I, rules: &ScopeRules) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let granted: BTreeSet<String> = granted
            .into_iter()
            .map(|s| s.as_ref().trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let (exact, prefixes) = expand(&granted, rules);
        GrantedScopes {
            exact,
            prefixes,
            granted: granted.into_iter().collect(),
        }
    }

    /// Whether these grants cover `required`. `None` (entry declares no scope) → true.
    pub fn allows(&self, required: Option<&str>) -> bool {
        match required {
            None => true,
            Some(r) => self.exact.contains(r) || covered_by_prefix(&self.prefixes, r),
        }
    }

    /// The scopes as granted (before expansion), sorted and deduplicated.
    pub fn granted(&self) -> &[String] {
        &self.granted
    }

    /// Whether these grants include the universal grant `*` (directly or through a rule).
    pub fn is_universal(&self) -> bool {
        self.prefixes.contains("")
    }

    /// A stable key identifying the effective grant set: two callers with equal keys see the
    /// same filtered catalog. Used to key the per-scope-set view cache.
    ///
    /// The key is the JSON array `[[exact…],[prefix…]]` of the normalised, sorted sets: JSON
    /// string escaping makes the join unambiguous whatever characters a scope contains.
    pub fn cache_key(&self) -> String {
        let exact: Vec<&str> = self.exact.iter().map(String::as_str).collect();
        let prefixes: Vec<&str> = self.prefixes.iter().map(String::as_str).collect();
        // Serializing string slices cannot fail; the fallback keeps this total anyway.
        serde_json::to_string(&(exact, prefixes)).unwrap_or_default()
    }
}

/// Whether any wildcard prefix covers `scope`.
fn covered_by_prefix(prefixes: &BTreeSet<String>, scope: &str) -> bool {
    prefixes.iter().any(|p| scope.starts_with(p.as_str()))
}

/// The prefix of a wildcard grant (`mcp:crm:*` → `mcp:crm:`, `*` → ``), or `None`.
fn wildcard_prefix(scope: &str) -> Option<&str> {
    scope.strip_suffix('*')
}

/// Computes the transitive closure of `granted` under `rules` and normalises it.
///
/// Work-list algorithm: every scope is visited at most once (the `seen` set makes cycles
/// harmless); when a new wildcard is reached, every rule key it covers is queued as well.
fn expand(granted: &BTreeSet<String>, rules: &ScopeRules) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<String> = granted.iter().cloned().collect();
    let mut exact = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    while let Some(scope) = queue.pop() {
        if !seen.insert(scope.clone()) {
            continue;
        }
        if let Some(implied) = rules.implies.get(&scope) {
            queue.extend(
                implied
                    .iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty() && !seen.contains(*s))
                    .map(str::to_owned),
            );
        }
        match wildcard_prefix(&scope) {
            Some(prefix) => {
                queue.extend(
                    rules
                        .implies
                        .keys()
                        .filter(|k| k.starts_with(prefix) && !seen.contains(*k))
                        .cloned(),
                );
                prefixes.insert(prefix.to_owned());
            }
            None => {
                exact.insert(scope);
            }
        }
    }
    normalise(exact, prefixes)
}

/// Drops exact scopes a wildcard covers and wildcards a shorter wildcard covers.
fn normalise(
    exact: BTreeSet<String>,
    prefixes: BTreeSet<String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut kept: BTreeSet<String> = BTreeSet::new();
    // Sorted order puts a prefix before every longer string it is a prefix of.
    for p in prefixes {
        if !covered_by_prefix(&kept, &p) {
            kept.insert(p);
        }
    }
    let exact = exact
        .into_iter()
        .filter(|s| !covered_by_prefix(&kept, s))
        .collect();
    (exact, kept)
}

/// Parses a space- or comma-separated scope list (`OAUTH_REQUIRED_SCOPES`,
/// `CORTEX_DEV_BYPASS_SCOPES`), dropping empties and duplicates, keeping first-seen order.
pub fn parse_scope_list(s: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .filter(|part| seen.insert(*part))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(pairs: &[(&str, &[&str])]) -> ScopeRules {
        ScopeRules {
            implies: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    fn grants(g: &[&str], r: &ScopeRules) -> GrantedScopes {
        GrantedScopes::new(g.iter().copied(), r)
    }

    #[test]
    fn exact_grants_match_exactly() {
        let g = grants(&["mcp:crm:read"], &ScopeRules::default());
        assert!(g.allows(Some("mcp:crm:read")));
        assert!(!g.allows(Some("mcp:crm:write")));
        assert!(!g.allows(Some("mcp:crm:rea")));
        assert!(!g.allows(Some("mcp:crm:read2")));
        assert!(!g.allows(Some("")));
    }

    #[test]
    fn unscoped_entries_are_visible_to_everyone() {
        let g = grants(&[], &ScopeRules::default());
        assert!(g.allows(None));
        assert!(!g.allows(Some("mcp:crm:read")));
    }

    #[test]
    fn star_is_universal() {
        let g = grants(&["*"], &ScopeRules::default());
        assert!(g.is_universal());
        assert!(g.allows(Some("anything:at:all")));
        assert!(g.allows(Some("")));
        assert!(g.allows(None));
    }

    #[test]
    fn prefix_wildcards_cover_their_prefix_only() {
        let g = grants(&["mcp:crm:*"], &ScopeRules::default());
        assert!(g.allows(Some("mcp:crm:read")));
        assert!(g.allows(Some("mcp:crm:")));
        assert!(g.allows(Some("mcp:crm:deep:nested")));
        assert!(!g.allows(Some("mcp:crm")));
        assert!(!g.allows(Some("mcp:crmx:read")));
        assert!(!g.allows(Some("mcp:billing:read")));
        assert!(!g.is_universal());
    }

    #[test]
    fn implications_are_transitive() {
        let r = rules(&[
            ("mcp:crm:admin", &["mcp:crm:write"]),
            ("mcp:crm:write", &["mcp:crm:read"]),
        ]);
        let admin = grants(&["mcp:crm:admin"], &r);
        assert!(admin.allows(Some("mcp:crm:admin")));
        assert!(admin.allows(Some("mcp:crm:write")));
        assert!(admin.allows(Some("mcp:crm:read")));
        let write = grants(&["mcp:crm:write"], &r);
        assert!(!write.allows(Some("mcp:crm:admin")));
        assert!(write.allows(Some("mcp:crm:read")));
        let read = grants(&["mcp:crm:read"], &r);
        assert!(!read.allows(Some("mcp:crm:write")));
    }

    #[test]
    fn implication_cycles_terminate() {
        let r = rules(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a", "d"]),
            ("x", &["x"]),
        ]);
        let g = grants(&["a"], &r);
        for s in ["a", "b", "c", "d"] {
            assert!(g.allows(Some(s)), "{s}");
        }
        assert!(!g.allows(Some("x")));
        let self_loop = grants(&["x"], &r);
        assert!(self_loop.allows(Some("x")));
        assert_eq!(grants(&["b"], &r).cache_key(), g.cache_key());
    }

    #[test]
    fn implication_target_may_be_a_wildcard() {
        let r = rules(&[("mcp:crm:admin", &["mcp:crm:*"]), ("root", &["*"])]);
        let g = grants(&["mcp:crm:admin"], &r);
        assert!(g.allows(Some("mcp:crm:export")));
        assert!(!g.allows(Some("mcp:other:read")));
        assert!(grants(&["root"], &r).allows(Some("mcp:other:read")));
    }

    #[test]
    fn wildcard_grants_fire_the_rules_they_cover() {
        let r = rules(&[("mcp:crm:admin", &["mcp:billing:read"])]);
        let g = grants(&["mcp:crm:*"], &r);
        assert!(g.allows(Some("mcp:billing:read")));
        assert!(!g.allows(Some("mcp:billing:write")));
    }

    #[test]
    fn granted_is_sorted_and_deduplicated_before_expansion() {
        let r = rules(&[("b", &["z"])]);
        let g = grants(&["b", "a", "b", " ", ""], &r);
        assert_eq!(g.granted(), &["a".to_string(), "b".to_string()]);
        assert!(g.allows(Some("z")));
    }

    #[test]
    fn cache_key_identifies_effective_grants() {
        let r = rules(&[("w", &["r"])]);
        assert_eq!(
            grants(&["w"], &r).cache_key(),
            grants(&["r", "w"], &r).cache_key()
        );
        assert_eq!(
            grants(&["b", "a"], &r).cache_key(),
            grants(&["a", "b"], &r).cache_key()
        );
        assert_ne!(
            grants(&["r"], &r).cache_key(),
            grants(&["w"], &r).cache_key()
        );
        // Wildcards normalise away what they cover.
        assert_eq!(
            grants(&["mcp:*", "mcp:crm:*", "mcp:crm:read"], &r).cache_key(),
            grants(&["mcp:*"], &r).cache_key()
        );
        assert_eq!(
            grants(&["*", "x"], &r).cache_key(),
            grants(&["*"], &r).cache_key()
        );
        // An exact scope and a wildcard with the same text differ.
        assert_ne!(
            grants(&["a:*"], &r).cache_key(),
            grants(&["a:"], &r).cache_key()
        );
        // Joining is unambiguous even with separators inside scopes.
        assert_ne!(
            grants(&["a\",\"b"], &r).cache_key(),
            grants(&["a", "b"], &r).cache_key()
        );
        assert_ne!(grants(&[], &r).cache_key(), grants(&["*"], &r).cache_key());
    }

    #[test]
    fn parse_scope_list_splits_on_spaces_and_commas() {
        assert_eq!(
            parse_scope_list(" a, b  c,,a\tb\nd "),
            vec!["a", "b", "c", "d"]
        );
        assert!(parse_scope_list("").is_empty());
        assert!(parse_scope_list(" , ,").is_empty());
        assert_eq!(parse_scope_list("mcp:x:*"), vec!["mcp:x:*"]);
    }
}
