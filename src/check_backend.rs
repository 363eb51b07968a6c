//! `cortex-gateway check-backend URL`: for the author of a contract backend. Runs the
//! gateway's own discovery against the backend (the same client, token and parsers as a
//! running gateway), then reports the names the gateway would expose with their scopes and
//! every problem with a fix. Exit 0 when there is no problem, 2 otherwise.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use cortex_filters::catalog::{self, BackendSnapshot, CatalogProblem};

use crate::config::{BackendConfig, Config, Naming};
use crate::credentials::IdentityService;
use crate::upstream::{Backend, ContractBackend, Discovery, HttpClient};

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The backend's base URL.
    pub url: String,
    /// The contract path.
    pub path: String,
    /// The backend id (the prefix of its names).
    pub id: String,
    /// The technical token sent on discovery.
    pub token: Option<String>,
    /// Bound of each discovery call.
    pub timeout: Duration,
    /// Names exposed without the id prefix.
    pub no_prefix: bool,
}

/// One problem and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub what: String,
    /// What to do.
    pub fix: String,
}

/// The result of a check.
#[derive(Debug, Default)]
pub struct Report {
    /// The report text (exposed names, counts, problems).
    pub text: String,
    /// The problems found.
    pub problems: Vec<Problem>,
}

/// A fix for a discovery warning of the contract parsers, by what it says.
fn fix_for(warning: &str) -> String {
    // The reason, without the entry's label (`list_tools: tool #3 ("name"): reason`), so
    // that a tool's own name cannot pick the hint.
    let reason = warning
        .find('#')
        .and_then(|i| warning[i..].find(": ").map(|j| &warning[i + j + 2..]))
        .unwrap_or(warning);
    let w = reason.to_ascii_lowercase();
    let hint = if w.contains("params") || w.contains("shorthand") {
        "write `params` as the shorthand `{\"field\": \"string\", \"limit\": \"integer?\"}` or give a JSON Schema in `inputSchema` (docs/backend-contract.md §6)"
    } else if w.contains("scope") {
        "give every entry a `scope` such as `mcp:<app>:read` or `mcp:<app>:write` (docs/backend-contract.md §6)"
    } else if w.contains("name") {
        "give every entry a unique `name` of letters, digits, `_` or `-` (docs/backend-contract.md §6)"
    } else if w.contains("schema") {
        "make `inputSchema` a JSON Schema object with `\"type\": \"object\"` (docs/backend-contract.md §6)"
    } else if w.contains("description") {
        "describe every tool: agents choose tools by their description"
    } else {
        "see docs/backend-contract.md for the shape the gateway expects"
    };
    hint.to_string()
}

fn discovery_failure_fix(reason: &str, has_token: bool) -> String {
    let r = reason.to_ascii_lowercase();
    if r.contains("401") || r.contains("403") {
        if has_token {
            "the backend refused the technical token: check that it accepts this token for list_tools".into()
        } else {
            "the backend wants a token: pass --token or set CORTEX_TECHNICAL_TOKEN".into()
        }
    } else if r.contains("unreachable") || r.contains("refused") || r.contains("resolve") {
        "is the backend running, and are the URL and --path right?".into()
    } else if r.contains("timed out") {
        "list_tools must answer within the timeout (--timeout, default 10s)".into()
    } else if r.contains("404") {
        "nothing answers at this path: the default is /api/cortex/backend (--path)".into()
    } else {
        "list_tools must answer 200 with `{\"tools\": [...]}` (docs/backend-contract.md §5)".into()
    }
}

/// Runs the check (discovery over the network, bounded by `options.timeout` per call).
pub async fn check(options: &CheckOptions, reserved: &[&str]) -> Report {
    let mut report = Report::default();
    let target = format!("{}{}", options.url.trim_end_matches('/'), options.path);
    let _ = writeln!(report.text, "backend `{}` at {target}", options.id);
    let config = Config {
        backends: vec![BackendConfig {
            id: options.id.clone(),
            url: options.url.clone(),
            path: options.path.clone(),
            timeout: options.timeout,
            naming: if options.no_prefix {
                Naming::None
            } else {
                Naming::Prefix
            },
            technical_token: options.token.clone(),
            ..Default::default()
        }],
        ..Config::default()
    };
    let problem = |report: &mut Report, what: String, fix: String| {
        report.problems.push(Problem { what, fix });
    };
    let identity = match IdentityService::new(&config, "http://127.0.0.1", None) {
        Ok(i) => Arc::new(i),
        Err(e) => {
            problem(&mut report, e.to_string(), "report this as a bug".into());
            return report;
        }
    };
    let backend = match ContractBackend::from_config(
        &config.backends[0],
        None,
        Arc::new(HttpClient::new()),
        identity,
    ) {
        Ok(b) => b,
        Err(e) => {
            problem(
                &mut report,
                format!("the URL cannot be used: {e}"),
                "give an absolute http:// or https:// URL, e.g. http://127.0.0.1:4820".into(),
            );
            return report;
        }
    };
    let (snapshot, warnings) = match backend.discover(None).await {
        Discovery::Ok { snapshot, warnings } => (snapshot, warnings),
        Discovery::Failed(reason) => {
            let fix = discovery_failure_fix(&reason, options.token.is_some());
            problem(&mut report, format!("discovery failed: {reason}"), fix);
            return report;
        }
    };
    for w in &warnings {
        problem(&mut report, w.clone(), fix_for(w));
    }
    if !snapshot.tools.iter().any(|t| t.name == "get_help") {
        problem(
            &mut report,
            "no `get_help` tool in list_tools".into(),
            "list a `get_help` tool (with the app's read scope) that explains the domain to an agent (docs/backend-contract.md §5)".into(),
        );
    }
    for t in snapshot.tools.iter().filter(|t| t.scope.is_none()) {
        problem(
            &mut report,
            format!("tool `{}` has no scope: every caller may use it", t.name),
            format!(
                "give it a scope, e.g. `mcp:{}:read`, and check it in the backend too",
                options.id
            ),
        );
    }
    if options.token.is_none() {
        let _ = writeln!(
            report.text,
            "note: list_tools answered without a token; a backend should require the technical token"
        );
    }
    render(&mut report, &snapshot, reserved);
    report
}

fn render(report: &mut Report, snapshot: &BackendSnapshot, reserved: &[&str]) {
    let merged = catalog::merge(std::slice::from_ref(snapshot), reserved);
    let kinds = [
        ("tools", merged.tools().len()),
        ("prompts", snapshot.prompts.len()),
        ("resource templates", snapshot.templates.len()),
        ("resources", snapshot.resources.len()),
    ];
    let counts: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(report.text, "discovered: {}", counts.join(", "));
    let _ = writeln!(report.text, "tools as the gateway exposes them:");
    let width = merged
        .tools()
        .iter()
        .map(|e| e.exposed.len())
        .max()
        .unwrap_or(0);
    for e in merged.tools() {
        let _ = writeln!(
            report.text,
            "  {:width$}  scope {}",
            e.exposed,
            e.scope.as_deref().unwrap_or("(none)"),
        );
    }
    for p in merged.problems() {
        let (what, fix) = match p {
            CatalogProblem::Collision {
                kind,
                name,
                kept: None,
                ..
            } => (
                format!("{kind} `{name}` is a name the gateway reserves for its own tools"),
                "rename it".to_string(),
            ),
            CatalogProblem::InvalidName { name, reason, .. } => (
                format!("`{name}` cannot be exposed: {reason}"),
                "use letters, digits, `_` or `-`".to_string(),
            ),
            other => (
                format!("{other:?}"),
                "rename one of the entries".to_string(),
            ),
        };
        report.problems.push(Problem { what, fix });
    }
}

impl Report {
    /// The whole report: what was found, then every problem with its fix.
    pub fn render(&self) -> String {
        let mut out = self.text.clone();
        if self.problems.is_empty() {
            out.push_str("no problems: the gateway can serve this backend\n");
        } else {
            let _ = writeln!(out, "{} problem(s):", self.problems.len());
            for p in &self.problems {
                let _ = writeln!(out, "  - {}\n    fix: {}", p.what, p.fix);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_follows_the_reason_not_the_entry_name() {
        let params = fix_for(
            r#"list_tools: tool #2 ("rename_scope"): "params" must be an object, got a string; the tool takes any arguments"#,
        );
        assert!(params.contains("shorthand"), "{params}");
        let name = fix_for(r#"list_tools: tool #3: missing "name""#);
        assert!(name.contains("unique `name`"), "{name}");
        let schema = fix_for(
            r#"list_tools: tool #1 ("a"): "inputSchema" must be an object, got an array; ignored"#,
        );
        assert!(schema.contains("JSON Schema"), "{schema}");
    }
}
