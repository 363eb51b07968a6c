//! Pages for whoever finds the gateway without a client: the MCP server card
//! (`/.well-known/mcp/server-card.json`, for discovery tools) and a plain HTML status page
//! at `/` (for a person who opens the gateway's URL in a browser).
//!
//! Both show only what a client may know anyway: the name, the version, the public MCP URL,
//! the protocol versions, how to authenticate, and each backend's id and health. Never a
//! backend URL, a token or a setting. The HTML page has no script and no external resource
//! (its Content-Security-Policy forbids both), so it renders the same in any browser and
//! behind any proxy.

use std::fmt::Write as _;

use bytes::Bytes;
use cortex_filters::version;
use http::Method;
use serde_json::json;

use crate::config::AuthMode;
use crate::http::Answer;
use crate::state::{Policy, Shared};
use crate::GATEWAY_VERSION;

/// Where the server card is served.
pub const SERVER_CARD_PATH: &str = "/.well-known/mcp/server-card.json";
/// The card schema the document follows.
const CARD_SCHEMA: &str =
    "https://static.modelcontextprotocol.io/schemas/v1/server-card.schema.json";

/// GET and HEAD only; anything else is 405 with `Allow`.
fn method_allowed(method: &Method) -> Option<Answer> {
    if *method == Method::GET || *method == Method::HEAD {
        None
    } else {
        Some(Answer::empty(405).with_header("allow", "GET, HEAD"))
    }
}

/// The MCP server card.
pub fn server_card(shared: &Shared, policy: &Policy, method: &Method) -> Answer {
    if let Some(refused) = method_allowed(method) {
        return refused;
    }
    let server = &policy.config.server;
    let name = server
        .card_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(&server.name);
    let versions: Vec<&str> = version::SUPPORTED.iter().map(|v| v.as_str()).collect();
    let authentication = match policy.config.auth.mode {
        AuthMode::Oauth => json!({
            "required": true,
            "schemes": ["oauth2"],
            "protectedResourceMetadata": shared.resource_metadata_url,
        }),
        AuthMode::None => json!({"required": false, "schemes": []}),
    };
    let card = json!({
        "$schema": CARD_SCHEMA,
        "name": name,
        "title": server.name,
        "description": format!("{} — one MCP endpoint in front of the company's apps (Cortex Gateway)", server.name),
        "version": GATEWAY_VERSION,
        "websiteUrl": policy.website_url,
        "remotes": [{
            "type": "streamable-http",
            "url": shared.canonical_uri,
            "supportedProtocolVersions": versions,
        }],
        "authentication": authentication,
    });
    Answer::json(200, serde_json::to_vec(&card).unwrap_or_default())
        .with_header("access-control-allow-origin", "*")
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1b1b1b}\
code,pre{font-family:ui-monospace,monospace;background:#f2f2f2;border-radius:4px}\
code{padding:.1rem .3rem}pre{padding:.6rem .8rem;overflow-x:auto}\
table{border-collapse:collapse}td,th{padding:.25rem .8rem;border-bottom:1px solid #ddd;text-align:left}\
.ok{color:#11772d}.bad{color:#b3261e}.stale{color:#8a5a00}.url{font-size:1.15rem}";

/// The HTML status page.
pub fn status_page(shared: &Shared, policy: &Policy, method: &Method) -> Answer {
    if let Some(refused) = method_allowed(method) {
        return refused;
    }
    let name = esc(&policy.config.server.name);
    let url = esc(&shared.canonical_uri);
    let auth = match policy.config.auth.mode {
        AuthMode::Oauth => "OAuth 2.1: your client opens the organisation's sign-in page the first time it connects; the tools you see depend on your permissions.",
        AuthMode::None => "None: this gateway serves one fixed identity on this machine only (development).",
    };
    let mut page = String::with_capacity(4096);
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<link rel=\"icon\" href=\"data:,\"><title>{name} — MCP gateway</title><style>{STYLE}</style></head><body>\
<h1>{name}</h1>\
<p>This is an <strong>MCP gateway</strong> (Cortex Gateway {version}): one Model Context Protocol \
endpoint in front of several applications. Connect an AI client to it to use their tools.</p>\
<h2>MCP URL</h2><p class=\"url\"><code id=\"mcp-url\">{url}</code></p>\
<p>Transport: Streamable HTTP. Authentication: {auth}</p>\
<h2>Connect a client</h2>\
<h3>Claude (claude.ai, desktop)</h3><p>Settings → Connectors → <em>Add custom connector</em>, \
paste the MCP URL.</p>\
<h3>Claude Code</h3><pre>claude mcp add --transport http {slug} {url}</pre>\
<h3>Cursor</h3><p>In <code>~/.cursor/mcp.json</code>:</p>\
<pre>{{ \"mcpServers\": {{ \"{slug}\": {{ \"url\": \"{url}\" }} }} }}</pre>\
<h3>MCP Inspector</h3><pre>npx @modelcontextprotocol/inspector</pre>\
<p>Transport type <em>Streamable HTTP</em>, URL: the MCP URL above.</p>",
        version = esc(GATEWAY_VERSION),
        slug = esc(&slug(&policy.config.server.name)),
    );
    page.push_str("<h2>Applications</h2>");
    let health = shared.catalog.health();
    if health.is_empty() {
        page.push_str("<p>No application is configured yet.</p>");
    } else {
        page.push_str("<table><thead><tr><th>Application</th><th>Status</th><th>Tools</th></tr></thead><tbody>");
        for b in &health {
            let (class, status) = if !b.attempted {
                ("stale", "starting")
            } else if b.healthy {
                ("ok", "up")
            } else if b.stale {
                ("stale", "unreachable, serving its last known tools")
            } else {
                ("bad", "unreachable")
            };
            let _ = write!(
                page,
                "<tr><td>{}</td><td class=\"{class}\">{status}</td><td>{}</td></tr>",
                esc(&b.id),
                b.tool_count()
            );
        }
        page.push_str("</tbody></table>");
    }
    let _ = write!(
        page,
        "<p>Machine-readable: <a href=\"{SERVER_CARD_PATH}\">server card</a>, \
<a href=\"/readyz\">readiness</a>.</p></body></html>"
    );
    Answer {
        status: 200,
        content_type: Some("text/html; charset=utf-8"),
        headers: vec![
            (
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'".into(),
            ),
            ("x-content-type-options", "nosniff".into()),
            ("referrer-policy", "no-referrer".into()),
        ],
        body: Bytes::from(page),
        tail: None,
    }
}

/// A short client-side name for the gateway: lowercase letters, digits and dashes.
fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "cortex".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<script>\"a\"&'b'</script>"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn slugs_are_plain() {
        assert_eq!(slug("Acme MCP (prod)"), "acme-mcp--prod");
        assert_eq!(slug("???"), "cortex");
    }
}
