//! The official Python MCP SDK's own OAuth client (`OAuthClientProvider`, mcp 2.3.0 from the
//! toolbox venv) through the gateway: discovery from the 401, dynamic client registration and
//! the PKCE authorization-code flow at oidc-provider (its dev login scripted as user `alice`),
//! then tools/list and tools/call with the token it obtained.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::oidc::{decode_jwt, toolbox_dir, OAuthSetup};
use common::{tool, BackendSpec, TestBackend, TestConfig};
use serde_json::Value;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// The toolbox venv's python; fails (never skips) with the fix when it is missing.
fn toolbox_python() -> PathBuf {
    let python = toolbox_dir().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/toolbox.sh (or scripts/test.sh) to install the Python MCP SDK",
        python.display()
    );
    python
}

fn run(python: &Path, args: &[String], dir: &Path) -> String {
    let out_path = dir.join("oauth_flow.out");
    let err_path = dir.join("oauth_flow.err");
    let mut child = Command::new(python)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
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
                "python timed out\n{}",
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
async fn the_python_sdk_oauth_client_reaches_the_tools_through_the_gateway() {
    let python = toolbox_python();
    let backend = TestBackend::start(BackendSpec {
        tools: vec![
            tool("echo", "mcp:demo:read"),
            tool("save", "mcp:demo:write"),
        ],
        ..BackendSpec::default()
    })
    .await;
    let setup = OAuthSetup::start(TestConfig::new().backend("demo", &backend.url()), &[]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/oauth_flow.py").to_string();
    let args = vec![
        script,
        setup.gateway.mcp_url(),
        "alice".to_string(),
        "demo_save".to_string(),
        r#"{"message": "from the python oauth client"}"#.to_string(),
    ];
    let dir = setup.gateway.dir().to_owned();
    let stdout = tokio::task::spawn_blocking(move || run(&python, &args, &dir))
        .await
        .unwrap();
    let out: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));

    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"demo_echo") && tools.contains(&"demo_save"),
        "{out}"
    );
    assert_ne!(out["call"]["isError"], true, "{out}");
    assert_eq!(
        out["registered"], true,
        "dynamic client registration: {out}"
    );
    let auth = &out["authorization"];
    assert_eq!(
        auth["resource"],
        setup.gateway.mcp_url(),
        "RFC 8707 resource = canonical URI: {out}"
    );
    assert_eq!(auth["code_challenge_method"], "S256");
    let scope = auth["scope"].as_str().unwrap_or_default();
    assert!(
        scope.contains("mcp:demo:read") && scope.contains("mcp:demo:write"),
        "scopes from the challenge: {out}"
    );

    // The call reached the backend as alice, with alice's token.
    let call = backend
        .calls("save")
        .pop()
        .expect("demo_save reached the backend");
    assert_eq!(call.header("x-cortex-user-id"), Some("alice"));
    assert_eq!(
        call.header("x-cortex-user-email"),
        Some("alice@example.com")
    );
    assert_eq!(
        call.header("x-cortex-user-role"),
        Some("admin"),
        "metadata.role"
    );
    let token = call
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap();
    let (_, claims) = decode_jwt(token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], setup.gateway.mcp_url());
    assert_eq!(call.params["message"], "from the python oauth client");
}
