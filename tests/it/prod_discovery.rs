//! The discovery pages of the running binary: the MCP server card and the HTML status page
//! at `/`, the latter also loaded in a real headless browser (Debian's chromium).

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BackendSpec, Gateway, TestBackend, TestConfig};

async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_card_names_the_endpoint_versions_and_authentication() {
    let gateway = Gateway::start(
        &TestConfig::new()
            .server("name: Acme Gateway")
            .server("card_name: com.example/acme-mcp")
            .build(),
    )
    .await;
    let (status, card) = gateway.get_json("/.well-known/mcp/server-card.json").await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(card["name"], "com.example/acme-mcp");
    assert_eq!(card["title"], "Acme Gateway");
    assert_eq!(card["version"], env!("CARGO_PKG_VERSION"));
    let remote = &card["remotes"][0];
    assert_eq!(remote["type"], "streamable-http");
    assert_eq!(remote["url"], gateway.mcp_url());
    let versions: Vec<&str> = remote["supportedProtocolVersions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for v in common::VERSIONS {
        assert!(versions.contains(&v), "{versions:?}");
    }
    assert_eq!(card["authentication"]["required"], false, "{card}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cortex_server_card_name_sets_the_card_name() {
    let gateway = Gateway::start_env_file(
        "PORT={PORT}\nHOSTNAME=127.0.0.1\nCORTEX_SERVER_NAME=From Env\nCORTEX_SERVER_CARD_NAME=io.example/from-env\nOAUTH_ISSUER=https://issuer.example.com\n",
    )
    .await;
    let (status, card) = gateway.get_json("/.well-known/mcp/server-card.json").await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(card["name"], "io.example/from-env");
    assert_eq!(card["title"], "From Env");
    // OAuth: required, with the protected-resource metadata to start from.
    assert_eq!(card["authentication"]["required"], true, "{card}");
    assert!(card["authentication"]["protectedResourceMetadata"]
        .as_str()
        .unwrap_or("")
        .contains("/.well-known/oauth-protected-resource"));
    assert!(
        !gateway.logs().contains("CORTEX_SERVER_CARD_NAME"),
        "no longer reported as unsupported:\n{}",
        gateway.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_url_and_backends_without_internals() {
    let backend = TestBackend::start(BackendSpec::tools(&["echo", "other"], "mcp:c:read")).await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .server("name: \"Acme <Gateway>\"")
            .backend_with(
                "crm",
                &backend.url(),
                &["technical_token: crm-discovery-secret"],
            )
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let resp = get(&format!("{}/", gateway.url())).await;
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(resp.headers().contains_key("content-security-policy"));
    let html = resp.text().await.expect("body");
    assert!(html.contains(&gateway.mcp_url()), "{html}");
    assert!(
        html.contains("Acme &lt;Gateway&gt;"),
        "escaped name: {html}"
    );
    assert!(!html.contains("<Gateway>"));
    for client in ["Claude Code", "Cursor", "MCP Inspector", "Claude"] {
        assert!(html.contains(client), "{client}: {html}");
    }
    assert!(
        html.contains("<td>crm</td><td class=\"ok\">up</td><td>2</td>"),
        "{html}"
    );
    assert!(!html.contains(&backend.url()), "no backend URL: {html}");
    assert!(!html.contains("crm-discovery-secret") && !html.contains("tech-secret"));
    assert!(!html.contains("user-token"));

    let post = reqwest::Client::new()
        .post(format!("{}/", gateway.url()))
        .send()
        .await
        .expect("POST /");
    assert_eq!(post.status(), 405);
}

/// Loads `url` in headless chromium; returns (DOM, console lines).
fn chromium(url: &str, profile: &Path) -> (String, Vec<String>) {
    let out = Command::new("timeout")
        .arg("60")
        .arg("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run chromium (Debian package `chromium`): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed:\n{stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_owned)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_loads_in_a_headless_browser_without_console_errors() {
    let profile = tempfile::tempdir().expect("temp dir");
    // The console is really captured: a page that logs an error is seen doing so.
    let probe = profile.path().join("probe.html");
    std::fs::write(
        &probe,
        "<!doctype html><script>console.error('probe-error')</script>",
    )
    .unwrap();
    let (_, console) = tokio::task::spawn_blocking({
        let url = format!("file://{}", probe.display());
        let dir = profile.path().join("p1");
        move || chromium(&url, &dir)
    })
    .await
    .expect("chromium");
    assert!(
        console.iter().any(|l| l.contains("probe-error")),
        "console capture does not work: {console:?}"
    );

    let backend = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:c:read")).await;
    let gateway = Gateway::start(&TestConfig::new().backend("crm", &backend.url()).build()).await;
    gateway.wait_ready().await;
    let (dom, console) = tokio::task::spawn_blocking({
        let url = format!("{}/", gateway.url());
        let dir = profile.path().join("p2");
        move || chromium(&url, &dir)
    })
    .await
    .expect("chromium");
    assert!(console.is_empty(), "console messages: {console:?}");
    assert!(dom.contains(&gateway.mcp_url()), "{dom}");
    assert!(dom.contains("id=\"mcp-url\""), "{dom}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_audit_trail_verifies_without_a_configuration_file() {
    let mut gateway = Gateway::start_demo().await;
    gateway.wait_ready().await;
    let client = gateway.client();
    let result = client
        .call_tool("demo_echo", serde_json::json!({"message": "audited"}))
        .await;
    assert!(result["isError"] != serde_json::json!(true), "{result}");
    // A graceful stop flushes the audit queue.
    gateway.signal(libc::SIGTERM);
    let code = gateway.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(Some(0)), "{}", gateway.logs());

    let verify = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_cortex-gateway"))
            .args(["audit", "verify", "--data-dir"])
            .arg(dir)
            .env_clear()
            .output()
            .expect("audit verify")
    };
    let out = verify(&gateway.path("data"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("audit chain OK:"), "{stdout}");
    assert!(
        !stdout.contains("no records"),
        "the call was recorded: {stdout}"
    );
    // Not a directory: a clear error.
    let out = verify(&gateway.path("nowhere"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
}
