//! The official Python MCP SDK (`mcp` 2.3.0, installed by scripts/toolbox.sh into a venv
//! outside the clone) connects to `cortex-gateway demo`, lists and calls tools.

use crate::common;

use std::time::Duration;

use common::Gateway;
use serde_json::{json, Value};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_lists_and_calls_the_demo_tools() {
    let gateway = Gateway::start_demo().await;
    gateway.wait_ready().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_demo.py");
    let url = gateway.mcp_url();
    let dir = gateway.dir().to_owned();
    let stdout =
        common::interop::run_python_script(vec![script.to_string(), url], dir, SCRIPT_TIMEOUT)
            .await;
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
