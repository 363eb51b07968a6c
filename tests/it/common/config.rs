//! A tiny builder for test YAML, so each test states only what it changes.

use super::SECRET_A;

/// Builds a gateway YAML listening on `127.0.0.1:{PORT}` (substituted by
/// [`Gateway::start`](super::Gateway::start)). Defaults: `auth.mode: none` (principal with
/// scopes `*` and token `user-token`), `sessions.secret` = [`SECRET_A`], `catalog.refresh: 1s`,
/// `technical_token: tech-secret`, `server.grace_period: 0s`, and no per-caller rate limit
/// (suites that drive hundreds of requests through one principal must not meet the default
/// 200/min; a `rate_limits:` line given to [`TestConfig::top`] replaces this one).
#[derive(Debug, Clone)]
pub struct TestConfig {
    server: Vec<String>,
    sessions: Vec<String>,
    catalog: Vec<String>,
    auth: Vec<String>,
    top: Vec<String>,
    backends: Vec<String>,
}

impl Default for TestConfig {
    fn default() -> Self {
        TestConfig {
            // grace_period 0s: a test gateway stops at once on SIGTERM.
            server: vec![
                "listen: [\"127.0.0.1:{PORT}\"]".into(),
                "grace_period: 0s".into(),
            ],
            sessions: vec![format!("secret: \"{SECRET_A}\"")],
            catalog: vec!["refresh: 1s".into()],
            auth: vec![
                "mode: none".into(),
                "principal:".into(),
                "  sub: test-user".into(),
                "  scopes: [\"*\"]".into(),
                "  token: user-token".into(),
            ],
            top: vec![
                "technical_token: tech-secret".into(),
                "rate_limits: {per_subject: \"\"}".into(),
            ],
            backends: Vec::new(),
        }
    }
}

impl TestConfig {
    pub fn new() -> TestConfig {
        TestConfig::default()
    }

    /// Adds a line under `server:` (e.g. `max_body_bytes: 2048`).
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.into());
        self
    }

    /// Adds a line under `sessions:`; a `secret:` line replaces the default secret.
    pub fn sessions(mut self, line: &str) -> Self {
        if line.trim_start().starts_with("secret:") {
            self.sessions.retain(|l| !l.starts_with("secret:"));
        }
        self.sessions.push(line.into());
        self
    }

    /// Adds a line under `catalog:`; a `refresh:` line replaces the default.
    pub fn catalog(mut self, line: &str) -> Self {
        if line.trim_start().starts_with("refresh:") {
            self.catalog.retain(|l| !l.starts_with("refresh:"));
        }
        self.catalog.push(line.into());
        self
    }

    /// Replaces the whole `auth:` block with `lines` (each relative to `auth:`).
    pub fn auth(mut self, lines: &[&str]) -> Self {
        self.auth = lines.iter().map(|l| l.to_string()).collect();
        self
    }

    /// The principal of `auth.mode: none` with these scopes.
    pub fn principal_scopes(self, scopes: &[&str]) -> Self {
        let list = scopes
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let scopes_line = format!("  scopes: [{list}]");
        self.auth(&[
            "mode: none",
            "principal:",
            "  sub: test-user",
            &scopes_line,
            "  token: user-token",
        ])
    }

    /// Adds a top-level line; a `rate_limits:` line replaces the default one.
    pub fn top(mut self, line: &str) -> Self {
        if line.starts_with("rate_limits:") {
            self.top.retain(|l| !l.starts_with("rate_limits:"));
        }
        self.top.push(line.into());
        self
    }

    /// Adds a backend `{id, url}`.
    pub fn backend(self, id: &str, url: &str) -> Self {
        self.backend_with(id, url, &[])
    }

    /// Adds a backend with extra keys (e.g. `timeout: 300ms`, `naming: none`).
    pub fn backend_with(mut self, id: &str, url: &str, extra: &[&str]) -> Self {
        let mut entry = format!("  - id: {id}\n    url: \"{url}\"");
        for line in extra {
            entry.push_str(&format!("\n    {line}"));
        }
        self.backends.push(entry);
        self
    }

    /// Adds a `kind: stdio` backend running `command` with `args`, plus extra keys.
    pub fn stdio_backend(mut self, id: &str, command: &str, args: &[&str], extra: &[&str]) -> Self {
        let quoted: Vec<String> = args
            .iter()
            .map(|a| serde_json::json!(a).to_string())
            .collect();
        let mut entry = format!(
            "  - id: {id}\n    kind: stdio\n    command: {}\n    args: [{}]",
            serde_json::json!(command),
            quoted.join(", ")
        );
        for line in extra {
            entry.push_str(&format!("\n    {line}"));
        }
        self.backends.push(entry);
        self
    }

    /// Adds a `kind: mcp` backend (an MCP server over streamable HTTP at `url`).
    pub fn mcp_backend(mut self, id: &str, url: &str, extra: &[&str]) -> Self {
        let mut entry = format!("  - id: {id}\n    kind: mcp\n    url: \"{url}\"");
        for line in extra {
            entry.push_str(&format!("\n    {line}"));
        }
        self.backends.push(entry);
        self
    }

    pub fn build(&self) -> String {
        let block = |name: &str, lines: &[String]| {
            if lines.is_empty() {
                return String::new();
            }
            let mut out = format!("{name}:\n");
            for line in lines {
                out.push_str(&format!("  {line}\n"));
            }
            out
        };
        let mut yaml = String::new();
        yaml.push_str(&block("server", &self.server));
        yaml.push_str(&block("sessions", &self.sessions));
        yaml.push_str(&block("catalog", &self.catalog));
        yaml.push_str(&block("auth", &self.auth));
        for line in &self.top {
            yaml.push_str(line);
            yaml.push('\n');
        }
        if !self.backends.is_empty() {
            yaml.push_str("backends:\n");
            for entry in &self.backends {
                yaml.push_str(entry);
                yaml.push('\n');
            }
        }
        yaml
    }
}
