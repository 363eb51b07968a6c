//! The official Python MCP SDK (`mcp` 2.3.0, installed by scripts/toolbox.sh into a venv
//! outside the clone) connects to `cortex-gateway demo`, lists and calls tools.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Gateway;
use serde_json::{json, Value};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The toolbox venv's python; fails (never skips) with the fix when it is missing.
fn toolbox_python() -> PathBuf {
    let dir = std::env::var_os("CORTEX_TOOLBOX_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/cortex-gateway/toolbox"))
        })
        .expect("CORTEX_TOOLBOX_DIR or HOME must be set");
    let python = dir.join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/toolbox.sh (or scripts/test.sh) to install the Python MCP SDK",
        python.display()
    );
    python
}

/// Runs `python script args…` with a deadline; returns stdout, panicking with stderr on failure.
fn run_python(python: &PathBuf, args: &[&str], dir: &std::path::Path) -> String {
    let out_path = dir.join("python.out");
    let err_path = dir.join("python.err");
    let mut child = Command::new(python)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .spawn()
        .expect("spawn python");
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait python") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "python script timed out after {SCRIPT_TIMEOUT:?}\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "python exited with {status}\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_lists_and_calls_the_demo_tools() {
    let python = toolbox_python();
    let gateway = Gateway::start_demo().await;
    gateway.wait_ready().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_demo.py");
    let url = gateway.mcp_url();
    let dir = gateway.dir().to_owned();
    let stdout = tokio::task::spawn_blocking(move || run_python(&python, &[script, &url], &dir))
        .await
        .expect("python task");
    let out: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "script output is not JSON ({e}): {stdout}\n{}",
            gateway.logs()
        )
    });

    assert!(
        ["2025-11-25", "2025-06-18", "2025-03-26"]
            .contains(&out["protocolVersion"].as_str().unwrap_or("")),
        "{out}"
    );
    assert!(out["serverName"].is_string(), "{out}");
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for name in [
        "demo_get_help",
        "demo_echo",
        "demo_get_time",
        "demo_list_notes",
        "demo_save_note",
        "demo_delete_note",
    ] {
        assert!(tools.contains(&name), "{name} in {tools:?}");
    }
    assert_eq!(out["echo"]["isError"], false, "{out}");
    assert_eq!(
        out["echo"]["structured"],
        json!({"echoed": "hello from the python sdk"})
    );
    assert!(out["echo"]["text"]
        .as_str()
        .is_some_and(|t| t.contains("hello from the python sdk")));
    assert_eq!(out["save"]["isError"], false, "{out}");
    let saved = &out["save"]["structured"]["saved"];
    assert_eq!(saved["text"], "written by the python sdk", "{out}");
    assert!(
        saved["id"].as_str().is_some_and(|id| id.starts_with('n')),
        "{out}"
    );
}
