//! The summary `cortex-gateway check-config` prints for a valid configuration. Secrets
//! (tokens, session secret) are never printed, only whether they are set.

use std::fmt::Write as _;

use super::schema::AuthMode;
use super::units::{format_duration, format_size};
use super::LoadedConfig;

/// A short human summary: listeners, canonical URI, auth, backends, overrides, warnings.
pub fn render_check_report(loaded: &LoadedConfig) -> String {
    let config = &loaded.config;
    let mut out = String::new();
    let source = match &loaded.source {
        Some(path) => path.display().to_string(),
        None => "no file (defaults and environment)".into(),
    };
    let _ = writeln!(out, "configuration OK: {source}");

    let listeners: Vec<String> = config
        .listen_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let scope = if config.all_listeners_loopback() {
        "loopback only"
    } else {
        "reachable from other hosts"
    };
    let _ = writeln!(out, "  listeners:     {} ({scope})", listeners.join(", "));
    let _ = writeln!(
        out,
        "  MCP endpoint:  {} (path {})",
        config.canonical_uri(),
        config.mcp_path()
    );
    let _ = writeln!(out, "  auth:          {}", describe_auth(loaded));
    let _ = writeln!(
        out,
        "  sessions:      {}, idle {}, absolute {}, secret {}",
        format!("{:?}", config.sessions.mode).to_lowercase(),
        format_duration(config.sessions.idle_timeout),
        format_duration(config.sessions.absolute_timeout),
        if config.sessions.secret.is_some() {
            "set"
        } else {
            "random per process"
        }
    );
    let _ = writeln!(
        out,
        "  limits:        body {}, catalog refresh {}, page size {}",
        format_size(config.server.max_body_bytes),
        format_duration(config.catalog.refresh),
        config.catalog.page_size
    );
    let _ = writeln!(
        out,
        "  technical token: {}",
        if config.technical_token.is_some() {
            "set"
        } else {
            "not set"
        }
    );

    let _ = writeln!(out, "  backends ({}):", config.backends.len());
    if config.backends.is_empty() {
        let _ = writeln!(out, "    (none)");
    }
    let width = config
        .backends
        .iter()
        .map(|b| b.id.len())
        .max()
        .unwrap_or(0);
    for backend in &config.backends {
        let _ = writeln!(
            out,
            "    {:width$}  {}{}  timeout {}{}",
            backend.id,
            backend.url.trim_end_matches('/'),
            backend.path,
            format_duration(backend.timeout),
            match backend.naming {
                super::schema::Naming::None => ", names unprefixed",
                super::schema::Naming::Prefix => "",
            },
        );
    }

    if !loaded.overrides.is_empty() {
        let _ = writeln!(
            out,
            "  environment overrides: {}",
            loaded.overrides.join(", ")
        );
    }
    if loaded.warnings.is_empty() {
        let _ = writeln!(out, "  warnings:      none");
    } else {
        let _ = writeln!(out, "  warnings ({}):", loaded.warnings.len());
        for warning in &loaded.warnings {
            let _ = writeln!(out, "    - {warning}");
        }
    }
    out
}

fn describe_auth(loaded: &LoadedConfig) -> String {
    let auth = &loaded.config.auth;
    let mut text = match auth.mode {
        AuthMode::None => format!(
            "none: every request runs as `{}` with scopes {}",
            auth.principal.sub,
            list(&auth.principal.scopes)
        ),
        AuthMode::Oauth => match &auth.oauth.issuer {
            Some(issuer) => format!("oauth, issuer {issuer}"),
            None => "oauth, no issuer (dev bypass only)".into(),
        },
    };
    if let Some(bypass) = &auth.dev_bypass {
        let _ = write!(
            text,
            "; dev bypass (X-Dev-Mode, loopback peers only) as role {} with scopes {}",
            bypass.role,
            list(&bypass.scopes)
        );
    }
    text
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(" ")
    }
}
