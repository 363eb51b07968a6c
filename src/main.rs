//! The `cortex-gateway` command line.

/// jemalloc as the allocator (docs/performance.md, "Levers"): glibc's malloc spent about an
/// eighth of the gateway's CPU on a proxied call, much of it consolidating its fast bins
/// before every large allocation (a request's boxed futures).
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cortex_gateway::config::{self, EnvSource, LogFormat, ProcessEnv};
use cortex_gateway::{demo, healthcheck, preflight, server};

#[derive(Parser)]
#[command(
    name = "cortex-gateway",
    version,
    about = "A federated MCP gateway: one OAuth 2.1-protected MCP endpoint in front of N apps."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gateway.
    Serve {
        /// YAML configuration (optional: a Cortex env file or the environment alone also work).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// A Cortex-style env file (KEY=VALUE lines); the process environment wins over it.
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
    /// Runs the gateway with a built-in demo backend on loopback, no authentication.
    Demo {
        /// Listen address of the gateway.
        #[arg(long, default_value = "127.0.0.1:3213")]
        listen: SocketAddr,
        /// Real OAuth: a built-in development authorization server with a one-click user
        /// picker (`reader`, `writer`) issues the tokens.
        #[arg(long)]
        oauth: bool,
        /// Where the demo keeps its store and keys (default `~/.cache/cortex-gateway/demo`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Validates a configuration and prints a summary (exit 0) or every problem (exit 2).
    CheckConfig {
        /// YAML configuration.
        #[arg(conflicts_with = "diff")]
        file: Option<PathBuf>,
        /// A Cortex-style env file (applies to both files with --diff).
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// Validates NEW and shows what changes from RUNNING, and which changes a reload
        /// applies live or need a restart (exit 0 when NEW is valid, 2 when not).
        #[arg(long, num_args = 2, value_names = ["RUNNING", "NEW"])]
        diff: Option<Vec<PathBuf>>,
    },
    /// Asks the running gateway's `GET /healthz` on its first listener (from the same
    /// configuration as `serve`); exit 0 when it answers 200, 1 otherwise. For container
    /// health checks in images without an HTTP client.
    Healthcheck {
        /// YAML configuration (the same one the gateway serves with).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// A Cortex-style env file.
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// Bound of each step (connect, send, read), e.g. `2s` or `500ms`.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Prints the JSON Schema (draft 2020-12) of the YAML configuration, for editors.
    ConfigSchema,
    /// For the author of a contract backend: runs the gateway's discovery against URL with a
    /// technical token, shows the names the gateway would expose and every problem with a fix
    /// (exit 0 without problems, 2 with).
    CheckBackend {
        /// The backend's base URL, e.g. http://127.0.0.1:4820.
        url: String,
        /// The contract path.
        #[arg(long, default_value = "/api/cortex/backend")]
        path: String,
        /// The backend id (the prefix of its exposed names).
        #[arg(long, default_value = "app")]
        id: String,
        /// The technical token (default: CORTEX_TECHNICAL_TOKEN).
        #[arg(long)]
        token: Option<String>,
        /// Bound of each discovery call.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Expose the names without the `<id>_` prefix (`naming: none`).
        #[arg(long)]
        no_prefix: bool,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// The per-user token vault.
    Vault {
        #[command(subcommand)]
        action: VaultCommand,
    },
    /// The admin API of a running gateway (pinning report and approvals, backends). Prints
    /// the gateway's JSON; exit 0 on success, 1 when refused or unreachable.
    Admin {
        /// Base URL of the gateway.
        #[arg(long, default_value = "http://127.0.0.1:3213")]
        url: String,
        /// The admin secret (default: CORTEX_ADMIN_SECRET).
        #[arg(long, env = "CORTEX_ADMIN_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// A bearer token carrying `admin.scope`, instead of the secret.
        #[arg(long)]
        token: Option<String>,
        #[command(subcommand)]
        action: AdminCommand,
    },
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Re-seals every stored grant and client secret under the newest vault key, while
    /// gateways keep running (their ring must hold the old and the new key); prints the
    /// counts per key after.
    Rotate {
        /// YAML configuration (the same one the gateway serves with).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// A Cortex-style env file.
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
    /// Prints how many records are sealed under each key id.
    Status {
        /// YAML configuration (the same one the gateway serves with).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// A Cortex-style env file.
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// The pinning report (GET /admin/integrity).
    Integrity,
    /// Approves one tool or a whole backend as listed now (POST /admin/integrity/approve).
    Approve {
        /// The backend id.
        #[arg(long)]
        backend: String,
        /// One tool (its name at the backend); absent: every tool of the backend.
        #[arg(long)]
        tool: Option<String>,
    },
    /// Exports the baseline (GET /admin/integrity/baseline).
    Baseline,
    /// Backend health, staleness, last error and catalog counts (GET /admin/backends).
    Backends,
    /// Rediscovers a backend now (POST /admin/backends/<id>/refresh).
    Refresh {
        /// The backend id.
        backend: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks the audit hash chain and names the first broken record (exit 0 intact,
    /// 1 broken, 2 configuration or secret unusable, 3 store unreadable).
    Verify {
        /// YAML configuration (the same one the gateway serves with).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// A Cortex-style env file.
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// Verifies the trail kept under a data directory with the default storage (SQLite
        /// and the generated audit secret there), without a configuration file: e.g. the
        /// demo's (`~/.cache/cortex-gateway/demo`, or its `--data-dir`).
        #[arg(long, conflicts_with_all = ["config", "env_file"])]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, env_file } => serve(config, env_file),
        Command::Demo {
            listen,
            oauth,
            data_dir,
        } => match demo::run_with(listen, demo::DemoOptions { oauth, data_dir }) {
            Ok(never) => match never {},
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Healthcheck {
            config,
            env_file,
            timeout,
        } => healthcheck(config, env_file, timeout),
        Command::CheckConfig {
            file,
            env_file,
            diff: None,
        } => check_config(file, env_file),
        Command::CheckConfig {
            env_file,
            diff: Some(files),
            ..
        } => match files.as_slice() {
            [running, new] => check_config_diff(running, new, env_file),
            _ => ExitCode::from(2),
        },
        Command::CheckBackend {
            url,
            path,
            id,
            token,
            timeout,
            no_prefix,
        } => check_backend(cortex_gateway::check_backend::CheckOptions {
            url,
            path,
            id,
            token: token.or_else(|| {
                std::env::var("CORTEX_TECHNICAL_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty())
            }),
            timeout,
            no_prefix,
        }),
        Command::ConfigSchema => {
            print!("{}", config::json_schema_text());
            ExitCode::SUCCESS
        }
        Command::Audit {
            action:
                AuditCommand::Verify {
                    config,
                    env_file,
                    data_dir,
                },
        } => match data_dir {
            Some(dir) => audit_verify_data_dir(&dir),
            None => audit_verify(config, env_file),
        },
        Command::Vault { action } => {
            use cortex_gateway::vault::cli::Action;
            let (config, env_file, action) = match action {
                VaultCommand::Rotate { config, env_file } => (config, env_file, Action::Rotate),
                VaultCommand::Status { config, env_file } => (config, env_file, Action::Status),
            };
            let env = match environment(env_file.as_ref()) {
                Ok(e) => e,
                Err(code) => return code,
            };
            match preflight::load(config.as_deref(), env.as_ref()) {
                Ok(loaded) => {
                    ExitCode::from(cortex_gateway::vault::cli::run_cli(&loaded.config, action))
                }
                Err(errors) => {
                    eprintln!("configuration is invalid:\n{errors}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Admin {
            url,
            secret,
            token,
            action,
        } => admin(url, secret, token, action),
    }
}

fn admin(
    url: String,
    secret: Option<String>,
    token: Option<String>,
    action: AdminCommand,
) -> ExitCode {
    use cortex_gateway::admin::client::{self, Request, Target};
    let request = match action {
        AdminCommand::Integrity => Request::Integrity,
        AdminCommand::Approve { backend, tool } => Request::Approve { backend, tool },
        AdminCommand::Baseline => Request::Baseline,
        AdminCommand::Backends => Request::Backends,
        AdminCommand::Refresh { backend } => Request::Refresh { backend },
    };
    let target = Target {
        url,
        secret: secret.filter(|s| !s.is_empty()),
        token,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(client::run(&target, &request)) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Exit codes follow Docker's HEALTHCHECK: 0 healthy, 1 unhealthy (2 is reserved there), so
/// an unreadable configuration is reported as unhealthy too.
fn healthcheck(
    file: Option<PathBuf>,
    env_file: Option<PathBuf>,
    timeout: std::time::Duration,
) -> ExitCode {
    let Ok(env) = environment(env_file.as_ref()) else {
        return ExitCode::from(1);
    };
    let loaded = match preflight::load(file.as_deref(), env.as_ref()) {
        Ok(l) => l,
        Err(errors) => {
            eprintln!("configuration is invalid:\n{errors}");
            return ExitCode::from(1);
        }
    };
    match healthcheck::check_listeners(&loaded.config.listen_addrs(), timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::from(1)
        }
    }
}

fn audit_verify(file: Option<PathBuf>, env_file: Option<PathBuf>) -> ExitCode {
    let env = match environment(env_file.as_ref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    match preflight::load(file.as_deref(), env.as_ref()) {
        Ok(loaded) => ExitCode::from(cortex_gateway::audit::verify::run_cli(&loaded.config)),
        Err(errors) => {
            eprintln!("configuration is invalid:\n{errors}");
            ExitCode::from(2)
        }
    }
}

fn check_backend(options: cortex_gateway::check_backend::CheckOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let reserved = cortex_gateway::builtins::reserved_names();
    let report = runtime.block_on(cortex_gateway::check_backend::check(&options, &reserved));
    print!("{}", report.render());
    if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// `audit verify --data-dir DIR`: the defaults (SQLite under DIR, the audit secret
/// generated there) with DIR as the data directory, as the demo keeps them.
fn audit_verify_data_dir(dir: &std::path::Path) -> ExitCode {
    if !dir.is_dir() {
        eprintln!("error: {} is not a directory", dir.display());
        return ExitCode::from(2);
    }
    let quoted = serde_json::to_string(&dir.to_string_lossy()).unwrap_or_default();
    let yaml = format!("data_dir: {quoted}\nauth:\n  mode: none\n");
    match preflight::load_str(&yaml, "--data-dir", &config::MapEnv::default()) {
        Ok(loaded) => ExitCode::from(cortex_gateway::audit::verify::run_cli(&loaded.config)),
        Err(errors) => {
            eprintln!("the data directory cannot be verified:\n{errors}");
            ExitCode::from(2)
        }
    }
}

fn environment(env_file: Option<&PathBuf>) -> Result<Box<dyn EnvSource>, ExitCode> {
    match env_file {
        None => Ok(Box::new(ProcessEnv)),
        Some(path) => match config::read_env_file(path) {
            Ok(file) => Ok(Box::new(config::LayeredEnv::new(ProcessEnv, file))),
            Err(e) => {
                eprintln!("error: {e}");
                Err(ExitCode::from(2))
            }
        },
    }
}

fn check_config(file: Option<PathBuf>, env_file: Option<PathBuf>) -> ExitCode {
    let env = match environment(env_file.as_ref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    match preflight::load(file.as_deref(), env.as_ref()) {
        Ok(loaded) => {
            println!("{}", config::render_check_report(&loaded));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("configuration is invalid:\n{errors}");
            ExitCode::from(2)
        }
    }
}

/// `check-config --diff RUNNING NEW`: NEW checked as `check-config` checks it, then the
/// changes from RUNNING.
fn check_config_diff(
    running: &std::path::Path,
    new: &std::path::Path,
    env_file: Option<PathBuf>,
) -> ExitCode {
    let env = match environment(env_file.as_ref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let new_loaded = match preflight::load(Some(new), env.as_ref()) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("configuration is invalid:\n{errors}");
            return ExitCode::from(2);
        }
    };
    let running_loaded = match preflight::load(Some(running), env.as_ref()) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!(
                "the running configuration {} does not load, so there is nothing to compare with:\n{errors}",
                running.display()
            );
            return ExitCode::from(2);
        }
    };
    println!("{}", config::render_check_report(&new_loaded));
    println!("changes from {}:", running.display());
    print!(
        "{}",
        config::render_diff(&config::diff(&running_loaded.config, &new_loaded.config))
    );
    ExitCode::SUCCESS
}

fn serve(file: Option<PathBuf>, env_file: Option<PathBuf>) -> ExitCode {
    let env = match environment(env_file.as_ref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let loaded = match preflight::load(file.as_deref(), env.as_ref()) {
        Ok(l) => l,
        Err(errors) => {
            eprintln!("configuration is invalid, not starting:\n{errors}");
            return ExitCode::from(2);
        }
    };
    cortex_gateway::logging::init(
        &loaded.config.logging.level,
        loaded.config.logging.format == LogFormat::Json,
    );
    for w in &loaded.warnings {
        tracing::warn!("config: {w}");
    }
    // SIGHUP reloads the configuration once the reload service listens for it; until then
    // (start-up) it is ignored rather than killing the process, its default action.
    // SAFETY: setting a signal disposition to SIG_IGN before any thread of ours handles
    // signals; tokio replaces it with its handler when the reload service starts.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let source = cortex_gateway::reload::ConfigSource { file, env_file };
    match server::build_with(loaded.config, Some(source)) {
        Ok((server, state)) => server::run(server, &state),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
