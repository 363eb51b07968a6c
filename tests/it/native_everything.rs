//! The reference MCP server `@modelcontextprotocol/server-everything` (pinned in
//! scripts/toolbox.sh) behind the gateway as a native backend, over stdio and over streamable
//! HTTP, driven through the gateway by the official Python SDK client
//! (tests/python/native_everything.py): every list, tool calls, resources (static and
//! templated), prompts, completion, progress notifications, and the server's sampling and
//! elicitation requests answered by the client's callbacks.

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{interop, Gateway, TestConfig};
use serde_json::{json, Value};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The server's entry point in the toolbox.
fn everything() -> PathBuf {
    let path = interop::toolbox_dir().join(
        "server-everything/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
    );
    assert!(
        path.exists(),
        "@modelcontextprotocol/server-everything is not installed ({} is missing): run scripts/toolbox.sh",
        path.display()
    );
    path
}

/// A child process killed (and reaped) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the client script against `gateway` and returns its report.
async fn drive(gateway: &Gateway) -> Value {
    crate::native_stdio::wait_listed(gateway, "ev_echo").await;
    let script = interop::repo_path("tests/python/native_everything.py");
    let stdout = interop::run_python_script(
        vec![script.display().to_string(), gateway.mcp_url()],
        gateway.dir().to_owned(),
        SCRIPT_TIMEOUT,
    )
    .await;
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{}", gateway.logs()))
}

fn assert_report(out: &Value) {
    let names = |key: &str| -> Vec<String> {
        out[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let tools = names("tools");
    for tool in [
        "ev_echo",
        "ev_get-sum",
        "ev_trigger-long-running-operation",
        "ev_trigger-sampling-request",
        "ev_trigger-elicitation-request",
    ] {
        assert!(tools.iter().any(|t| t == tool), "{tool} in {tools:?}");
    }
    let prompts = names("prompts");
    assert!(
        prompts.iter().any(|p| p == "ev_simple-prompt")
            && prompts.iter().any(|p| p == "ev_completable-prompt"),
        "{prompts:?}"
    );
    assert!(!names("resources").is_empty(), "{out}");
    assert!(
        names("templates")
            .iter()
            .any(|t| t.starts_with("demo://resource/dynamic/text/")),
        "{out}"
    );
    assert!(
        out["echo"]
            .as_str()
            .is_some_and(|t| t.contains("through the gateway")),
        "{out}"
    );
    assert!(
        out["sum"].as_str().is_some_and(|t| t.contains("42")),
        "{out}"
    );
    assert!(
        out["longRun"]
            .as_str()
            .is_some_and(|t| t.contains("Long running operation completed")),
        "{out}"
    );
    assert_eq!(out["progress"], json!([1.0, 2.0, 3.0]), "{out}");
    assert_eq!(out["read"]["contents"], 1, "{out}");
    assert!(out["templated"].is_string(), "{out}");
    assert!(out["prompt"].as_u64().unwrap_or(0) >= 1, "{out}");
    assert_eq!(out["completion"], json!(["Engineering"]), "{out}");
    assert_eq!(
        out["sampling"]["requests"].as_array().map(Vec::len),
        Some(1),
        "{out}"
    );
    assert!(
        out["sampling"]["result"]
            .as_str()
            .is_some_and(|t| t.contains("sampled by the python client")),
        "{out}"
    );
    assert_eq!(
        out["elicitation"]["requests"].as_array().map(Vec::len),
        Some(1),
        "{out}"
    );
    assert!(
        out["elicitation"]["result"]
            .as_str()
            .is_some_and(|t| t.to_lowercase().contains("decline")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_over_stdio_through_the_gateway() {
    let node = interop::node().display().to_string();
    let server = everything().display().to_string();
    let path = format!(
        "PATH: \"{}:/usr/bin:/bin\"",
        interop::node_bin_dir().display()
    );
    let yaml = TestConfig::new()
        .catalog("refresh: 60s")
        .stdio_backend(
            "ev",
            &node,
            &[&server, "stdio"],
            &["timeout: 30s", "env:", &format!("  {path}")],
        )
        .build();
    let gateway = Gateway::start(&yaml).await;
    gateway.wait_ready().await;
    let out = drive(&gateway).await;
    assert_report(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_over_streamable_http_through_the_gateway() {
    let port = common::free_port();
    let dir = tempfile::tempdir().expect("dir");
    let _server = Killed(
        Command::new(interop::node())
            .arg(everything())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server-everything"),
    );
    common::eventually(
        Duration::from_secs(60),
        "server-everything listening",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    let yaml = TestConfig::new()
        .catalog("refresh: 60s")
        .mcp_backend(
            "ev",
            &format!("http://127.0.0.1:{port}/mcp"),
            &["timeout: 30s"],
        )
        .build();
    let gateway = Gateway::start(&yaml).await;
    gateway.wait_ready().await;
    let out = drive(&gateway).await;
    assert_report(&out);
}
