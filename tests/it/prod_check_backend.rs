//! `cortex-gateway check-backend URL` against real contract backends: the crate's demo
//! backend passes; a backend with broken tool definitions gets every problem with a fix and
//! exit code 2; an unreachable one gets a discovery failure with a fix.

use crate::common;

use std::process::{Command, Output, Stdio};

use common::{BackendSpec, DemoBackend, TestBackend};
use serde_json::json;

async fn check_backend(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_cortex-gateway"))
            .arg("check-backend")
            .args(&args)
            .args(["--timeout", "5s"])
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .expect("run check-backend")
    })
    .await
    .expect("task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_backend_passes_and_its_exposed_names_are_shown() {
    let demo = DemoBackend::start().await;
    let out = check_backend(vec![
        demo.url(),
        "--id".into(),
        "shop".into(),
        "--token".into(),
        common::demo::DEMO_TECHNICAL_TOKEN.into(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("shop_get_help"), "{stdout}");
    assert!(stdout.contains("scope mcp:demo:read"), "{stdout}");
    assert!(stdout.contains("no problems"), "{stdout}");

    // Without the token the demo backend refuses discovery: exit 2 and what to do.
    let out = check_backend(vec![demo.url(), "--id".into(), "shop".into()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("401"), "{stdout}");
    assert!(
        stdout.contains("fix: the backend wants a token"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_tool_definitions_are_each_reported_with_a_fix() {
    let backend = TestBackend::start(BackendSpec {
        tools: vec![
            json!({"name": "search", "scope": "mcp:x:read", "description": "Search.", "params": "q"}),
            json!({"name": "open", "description": "Open without a scope."}),
            json!({"description": "No name at all.", "scope": "mcp:x:read"}),
            json!({"name": "whoami", "scope": "mcp:x:read", "description": "Clashes with a builtin.", "params": {}}),
        ],
        ..BackendSpec::default()
    })
    .await;
    let out = check_backend(vec![
        backend.url(),
        "--id".into(),
        "x".into(),
        "--token".into(),
        "t".into(),
        "--no-prefix".into(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    // The names the gateway would expose (no prefix, as asked).
    assert!(stdout.contains("  search  "), "{stdout}");
    for expected in [
        "\"params\" must be an object",
        "fix: write `params` as the shorthand",
        "tool `open` has no scope",
        "missing \"name\"",
        "no `get_help` tool",
        "`whoami` is a name the gateway reserves",
    ] {
        assert!(stdout.contains(expected), "`{expected}` missing:\n{stdout}");
    }
    let problems = stdout.matches("\n    fix: ").count();
    assert!(problems >= 5, "every problem has a fix:\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_is_a_discovery_failure() {
    let port = common::unused_port();
    let out = check_backend(vec![format!("http://127.0.0.1:{port}")]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("discovery failed"), "{stdout}");
    assert!(stdout.contains("fix: is the backend running"), "{stdout}");
}
