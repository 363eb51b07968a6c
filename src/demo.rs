//! `cortex-gateway demo`: the gateway in front of the built-in demo backend, on loopback,
//! with authentication off, so a newcomer can connect a client in one command.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::config::{AuthMode, BackendConfig, Config, Naming, PrincipalConfig};
use crate::server;

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The demo backend could not bind.
    #[error("cannot start the demo backend on 127.0.0.1: {0}")]
    Bind(std::io::Error),
    /// The gateway address is not loopback (auth is off in the demo).
    #[error("the demo runs without authentication, so it only listens on loopback (got {0})")]
    NotLoopback(SocketAddr),
    /// The gateway could not be built.
    #[error(transparent)]
    Start(#[from] server::StartError),
    /// The gateway's port is taken.
    #[error(
        "cannot listen on {0}: {1} (is another gateway running? use --listen 127.0.0.1:<port>)"
    )]
    Busy(SocketAddr, std::io::Error),
}

/// The technical (discovery) token shared by the demo gateway and its backend.
const DEMO_TECHNICAL_TOKEN: &str = "demo-technical-token";

/// Options of `cortex-gateway demo`.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// `--oauth`: real OAuth against the built-in development authorization server instead of
    /// no authentication (see [`crate::dev_as::demo`]).
    pub oauth: bool,
    /// `--data-dir`: where the demo keeps its store and keys; default
    /// `~/.cache/cortex-gateway/demo`.
    pub data_dir: Option<std::path::PathBuf>,
}

/// Runs the demo (no authentication) until the process is stopped.
pub fn run(listen: SocketAddr) -> Result<std::convert::Infallible, DemoError> {
    run_with(listen, DemoOptions::default())
}

/// Runs the demo with `options` until the process is stopped.
pub fn run_with(
    listen: SocketAddr,
    options: DemoOptions,
) -> Result<std::convert::Infallible, DemoError> {
    if !listen.ip().is_loopback() {
        return Err(DemoError::NotLoopback(listen));
    }
    // Fail early with a clear message when the port is taken.
    drop(TcpListener::bind(listen).map_err(|e| DemoError::Busy(listen, e))?);
    let backend = TcpListener::bind("127.0.0.1:0").map_err(DemoError::Bind)?;
    let backend_addr = backend.local_addr().map_err(DemoError::Bind)?;
    backend.set_nonblocking(true).map_err(DemoError::Bind)?;
    std::thread::Builder::new()
        .name("demo-backend".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("demo backend runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(backend) {
                    Ok(l) => {
                        if let Err(e) = crate::demo_backend::serve(
                            l,
                            DEMO_TECHNICAL_TOKEN.to_string(),
                            std::future::pending::<()>(),
                        )
                        .await
                        {
                            tracing::error!("demo backend stopped: {e}");
                        }
                    }
                    Err(e) => tracing::error!("demo backend listener: {e}"),
                }
            });
        })
        .map_err(DemoError::Bind)?;

    let mut config = Config::default();
    config.server.listen = vec![listen.to_string()];
    config.server.canonical_uri = Some(format!("http://{listen}/mcp"));
    config.server.name = "cortex-gateway-demo".into();
    config.auth.mode = AuthMode::None;
    config.auth.principal = PrincipalConfig {
        sub: "demo-user".into(),
        email: Some("demo@localhost".into()),
        role: Some("admin".into()),
        pool: None,
        scopes: vec!["mcp:demo:read".into(), "mcp:demo:write".into()],
        token: Some("demo-user-token".into()),
    };
    config.technical_token = Some(DEMO_TECHNICAL_TOKEN.into());
    config.catalog.refresh = Duration::from_secs(30);
    // A development process: stop promptly on Ctrl-C / SIGTERM.
    config.server.grace_period = Duration::from_secs(1);
    // Keep the demo's files (store, keys) out of the working directory, and keep stdout for
    // people: audit records go to the store only.
    let data_dir = options.data_dir.clone().unwrap_or_else(demo_data_dir);
    config.data_dir = Some(data_dir.to_string_lossy().into_owned());
    config.audit.stdout = false;
    config.backends = vec![BackendConfig {
        id: "demo".into(),
        url: format!("http://{backend_addr}"),
        path: "/api/cortex/backend".into(),
        timeout: Duration::from_secs(10),
        naming: Naming::Prefix,
        technical_token: None,
        identity: Default::default(),
        audience: None,
        resource: None,
        ..Default::default()
    }];
    crate::logging::init("info", false);
    let url = format!("http://{listen}/mcp");
    if options.oauth {
        crate::dev_as::demo::configure(&mut config);
        eprintln!(
            "{}",
            crate::dev_as::demo::banner(
                &config,
                &format!("http://{backend_addr}/api/cortex/backend")
            )
        );
    } else {
        eprintln!(
            "\n  Cortex Gateway demo\n\n  MCP endpoint:  {url}\n  Demo backend:  http://{backend_addr}/api/cortex/backend (tools demo_get_help, demo_echo, demo_get_time, demo_list_notes, demo_save_note, demo_delete_note)\n  Auth:          none (loopback only)\n\n  Connect a client:\n    MCP Inspector:  npx @modelcontextprotocol/inspector   (transport: Streamable HTTP, URL: {url})\n    Claude Code:    claude mcp add --transport http cortex-demo {url}\n    curl:           curl -s {url} -H 'content-type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}}'\n\n  Stop with Ctrl-C.\n"
        );
    }
    let (server, state) = server::build(config)?;
    server::run(server, &state)
}

/// Where the demo keeps what it persists: `~/.cache/cortex-gateway/demo` (stable, so the dev
/// authorization server's key and registered clients survive a restart), else a temp folder.
fn demo_data_dir() -> std::path::PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => std::path::PathBuf::from(home).join(".cache/cortex-gateway/demo"),
        None => std::env::temp_dir().join("cortex-gateway-demo"),
    }
}
