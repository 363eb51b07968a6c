//! What `cortex-gateway demo --oauth` changes in the demo configuration: OAuth on, pointed
//! at the built-in development authorization server, plus what the banner tells a newcomer.

use crate::config::{AuthMode, Config, DevClientConfig};

/// The pre-registered confidential client of the demo (client_credentials).
pub const DEMO_CLIENT_ID: &str = "demo-service";
/// Its secret. Public on purpose: the demo listens on loopback only.
pub const DEMO_CLIENT_SECRET: &str = "demo-service-secret";

/// Browser origins of MCP Inspector (its web UI), so it can call the demo directly.
const INSPECTOR_ORIGINS: [&str; 2] = ["http://localhost:6274", "http://127.0.0.1:6274"];

/// Turns the demo configuration (listeners and canonical URI already set) into the OAuth
/// demo: `auth.mode: oauth` with the built-in authorization server as issuer, its default
/// users `reader` and `writer`, and the `demo-service` client.
pub fn configure(config: &mut Config) {
    let issuer = super::issuer_for(config);
    config.auth.mode = AuthMode::Oauth;
    config.auth.oauth.issuer = Some(issuer);
    config.dev_authorization_server.enabled = true;
    config.dev_authorization_server.clients = vec![DevClientConfig {
        id: DEMO_CLIENT_ID.into(),
        secret: Some(DEMO_CLIENT_SECRET.into()),
        scopes: vec!["mcp:demo:read".into(), "mcp:demo:write".into()],
        redirect_uris: Vec::new(),
    }];
    for origin in INSPECTOR_ORIGINS {
        if !config.server.allowed_origins.iter().any(|o| o == origin) {
            config.server.allowed_origins.push(origin.into());
        }
    }
}

/// The start banner of `demo --oauth`.
pub fn banner(config: &Config, backend: &str) -> String {
    let url = config.canonical_uri();
    let issuer = super::issuer_for(config);
    let das = &config.dev_authorization_server;
    let key_file = das
        .key_file
        .clone()
        .unwrap_or_else(|| super::default_key_file(config).display().to_string());
    let users: Vec<String> = das
        .users
        .iter()
        .map(|u| format!("{} ({})", u.name, u.scopes.join(" ")))
        .collect();
    format!(
        "
  Cortex Gateway demo, with real OAuth

  MCP endpoint:   {url}
  Demo backend:   {backend} (tools demo_get_help, demo_echo, demo_get_time, demo_list_notes; writer also demo_save_note, demo_delete_note)
  Auth:           OAuth 2.1, issuer {issuer} (the built-in DEVELOPMENT authorization server; loopback only)
  Users:          {users}: chosen on a sign-in page, no password
  M2M client:     {DEMO_CLIENT_ID} / {DEMO_CLIENT_SECRET} (client_credentials)
  Signing key:    {key_file}

  Connect a client; it registers itself and opens the sign-in page, pick reader or writer:
    MCP Inspector:  npx @modelcontextprotocol/inspector   (Streamable HTTP, URL {url}, then Connect)
    Claude Code:    claude mcp add --transport http cortex-demo {url}   (then /mcp, Authenticate)
    curl:           TOKEN=$(curl -s -u {DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET} -d grant_type=client_credentials -d scope=mcp:demo:read {issuer}/oauth/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')
                    curl -s {url} -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}}'

  A development convenience: production points auth.oauth.issuer at a real authorization server.
  Stop with Ctrl-C.
",
        users = users.join(", "),
    )
}
