//! Configuration reload of the running binary: a changed file (or SIGHUP) changes the
//! backends and the scope implications without dropping sessions, SSE streams or calls in
//! flight; a file that does not validate is refused with check-config's errors and the
//! running policy stays; keys that need a restart are reported and not applied.

use crate::common;

use std::time::Duration;

use common::{tool, BackendSpec, Gateway, TestBackend, TestConfig};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// The `reloads` object of `/readyz`.
async fn reloads(gateway: &Gateway) -> Value {
    gateway.readyz().await.1["reloads"].clone()
}

/// Waits until `/readyz` counts `n` reloads under `key` (`applied` or `refused`).
async fn wait_reloads(gateway: &Gateway, key: &str, n: u64) -> Value {
    common::eventually(WAIT, &format!("{n} reload(s) {key}"), || async {
        let r = reloads(gateway).await;
        (r[key].as_u64() == Some(n)).then_some(r)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_swaps_backends_and_keeps_sessions_and_streams() {
    let alpha = TestBackend::start(BackendSpec::tools(&["first"], "mcp:a:read")).await;
    let beta = TestBackend::start(BackendSpec::tools(&["second"], "mcp:b:read")).await;
    let gateway = Gateway::start(&TestConfig::new().backend("alpha", &alpha.url()).build()).await;
    gateway.wait_ready().await;
    let mut client = gateway.client();
    client.initialize(common::VERSIONS[0]).await;
    let mut stream = client.open_stream(&[]).await;
    assert_eq!(stream.status, 200);
    stream
        .next_event(Duration::from_secs(5))
        .await
        .expect("priming event");
    assert!(client
        .backend_tool_names()
        .await
        .contains(&"alpha_first".to_owned()));

    gateway.rewrite_config(&TestConfig::new().backend("beta", &beta.url()).build());
    let r = wait_reloads(&gateway, "applied", 1).await;
    assert_eq!(r["last"]["outcome"], "applied", "{r}");
    assert_eq!(r["last"]["trigger"], "file change", "{r}");
    let applied: Vec<&str> = r["last"]["applied"]
        .as_array()
        .expect("applied keys")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(applied.contains(&"backends[alpha]"), "{r}");
    assert!(applied.contains(&"backends[beta]"), "{r}");
    assert_eq!(r["last"]["needsRestart"], json!([]), "{r}");

    // The open stream hears that the tool list changed, and the same session goes on.
    stream
        .wait_for_method("notifications/tools/list_changed", WAIT)
        .await
        .expect("list_changed on the open stream after the reload");
    let names = common::eventually(WAIT, "beta's tool listed", || async {
        let names = client.backend_tool_names().await;
        names.contains(&"beta_second".to_owned()).then_some(names)
    })
    .await;
    assert!(
        !names.contains(&"alpha_first".to_owned()),
        "the removed backend's tool is gone: {names:?}"
    );
    let result = client.call_tool("beta_second", json!({})).await;
    assert!(result["isError"] != json!(true), "{result}");
    assert_eq!(beta.calls("second").len(), 1);
    let gone = client
        .error(
            "tools/call",
            json!({"name": "alpha_first", "arguments": {}}),
        )
        .await;
    assert!(gone["message"].as_str().is_some(), "{gone}");
    assert!(alpha.calls("first").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_refused_with_positions_and_the_old_policy_stays() {
    let alpha = TestBackend::start(BackendSpec::tools(&["first"], "mcp:a:read")).await;
    let gateway = Gateway::start(&TestConfig::new().backend("alpha", &alpha.url()).build()).await;
    gateway.wait_ready().await;
    let client = gateway.client();

    // A typo in a key and a backend URL that is not a URL.
    let bad = TestConfig::new()
        .backend_with("alpha", "not a url", &["timeuot: 3s"])
        .build();
    gateway.rewrite_config(&bad);
    let r = wait_reloads(&gateway, "refused", 1).await;
    assert_eq!(r["applied"], 0, "{r}");
    assert_eq!(r["last"]["outcome"], "refused", "{r}");
    let error = r["last"]["error"].as_str().expect("error text").to_owned();
    // The same errors as check-config: the file, line and column, the fix.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_cortex-gateway"))
        .arg("check-config")
        .arg(gateway.path("gateway.yaml"))
        .env_clear()
        .output()
        .expect("run check-config");
    assert_eq!(check.status.code(), Some(2));
    let check_err = String::from_utf8_lossy(&check.stderr);
    assert!(error.contains("timeuot"), "{error}");
    assert!(error.contains("timeout"), "suggests the right key: {error}");
    assert!(
        error.contains("gateway.yaml:"),
        "names the file and line: {error}"
    );
    for line in error.lines().filter(|l| l.contains("gateway.yaml:")) {
        assert!(
            check_err.contains(line.trim()),
            "check-config says the same: `{line}` not in\n{check_err}"
        );
    }
    assert!(
        gateway.logs().contains("configuration reload refused"),
        "{}",
        gateway.logs()
    );

    // The running policy is untouched.
    let result = client.call_tool("alpha_first", json!({})).await;
    assert!(result["isError"] != json!(true), "{result}");
    assert_eq!(alpha.calls("first").len(), 1);

    // Fixing the file applies it.
    gateway.rewrite_config(
        &TestConfig::new()
            .backend_with("alpha", &alpha.url(), &["timeout: 3s"])
            .build(),
    );
    let r = wait_reloads(&gateway, "applied", 1).await;
    assert_eq!(
        r["last"]["applied"],
        json!(["backends[alpha].timeout"]),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_scope_implications_and_reports_restart_keys() {
    let backend = TestBackend::start(BackendSpec {
        tools: vec![tool("edit", "mcp:s:write"), tool("look", "mcp:s:read")],
        ..BackendSpec::tools(&[], "mcp:s:read")
    })
    .await;
    let config = |extra: &[&str]| {
        let mut c = TestConfig::new()
            .principal_scopes(&["mcp:s:admin", "mcp:s:read"])
            .backend("s", &backend.url());
        for line in extra {
            c = c.top(line);
        }
        c
    };
    let gateway = Gateway::start(&config(&[]).build()).await;
    gateway.wait_ready().await;
    gateway
        .wait_for_log("configuration reload: on SIGHUP", WAIT)
        .await;
    let client = gateway.client();
    let names = client.backend_tool_names().await;
    assert_eq!(names, vec!["s_look".to_owned()]);

    // SIGHUP with nothing changed: the process lives on and says so.
    gateway.signal(libc::SIGHUP);
    let r = common::eventually(WAIT, "SIGHUP handled", || async {
        let r = reloads(&gateway).await;
        (r["last"]["trigger"] == "SIGHUP").then_some(r)
    })
    .await;
    assert_eq!(r["last"]["outcome"], "unchanged", "{r}");

    // A scope implication (live) and a new listener and session secret (restart only).
    let other_port = common::free_port();
    let yaml = config(&[
        "scopes:",
        "  implies:",
        "    \"mcp:s:admin\": [\"mcp:s:write\"]",
    ])
    .server("allowed_origins: [\"https://app.example.com\"]")
    .sessions(&format!("secret: \"{}\"", common::SECRET_B))
    .build()
    .replace(
        "listen: [\"127.0.0.1:{PORT}\"]",
        &format!("listen: [\"127.0.0.1:{other_port}\"]"),
    );
    gateway.rewrite_config(&yaml);
    gateway.signal(libc::SIGHUP);
    let r = wait_reloads(&gateway, "applied", 1).await;
    let mut restart: Vec<String> = r["last"]["needsRestart"]
        .as_array()
        .expect("needsRestart")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    restart.sort();
    assert_eq!(restart, vec!["server.listen", "sessions.secret"], "{r}");
    let applied = r["last"]["applied"].to_string();
    assert!(applied.contains("scopes.implies"), "{r}");
    assert!(applied.contains("server.allowed_origins"), "{r}");
    assert!(
        gateway
            .logs()
            .contains("needs a restart and is NOT applied"),
        "{}",
        gateway.logs()
    );

    // The implication is in force; the listener did not move.
    let names = client.backend_tool_names().await;
    assert!(names.contains(&"s_edit".to_owned()), "{names:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", other_port)).is_err(),
        "the new listener must not be bound before a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_finishes_on_the_policy_it_started_with() {
    let slow = TestBackend::start(BackendSpec::tools(&["wait"], "mcp:a:read")).await;
    slow.delay("wait", Duration::from_millis(2500));
    let other = TestBackend::start(BackendSpec::tools(&["other"], "mcp:b:read")).await;
    let gateway = Gateway::start(&TestConfig::new().backend("slow", &slow.url()).build()).await;
    gateway.wait_ready().await;
    let client = gateway.client();
    let call = {
        let client = gateway.client();
        tokio::spawn(async move { client.call_tool("slow_wait", json!({})).await })
    };
    common::eventually(WAIT, "the call reached the backend", || async {
        (!slow.calls("wait").is_empty()).then_some(())
    })
    .await;

    // The backend is removed while its call runs.
    gateway.rewrite_config(&TestConfig::new().backend("other", &other.url()).build());
    wait_reloads(&gateway, "applied", 1).await;
    let result = tokio::time::timeout(WAIT, call)
        .await
        .expect("the call finishes")
        .expect("task");
    assert!(result["isError"] != json!(true), "{result}");
    // New calls see the new policy.
    common::eventually(WAIT, "the new backend listed", || async {
        client
            .backend_tool_names()
            .await
            .contains(&"other_other".to_owned())
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_env_file_is_reloaded_too() {
    let alpha = TestBackend::start(BackendSpec::tools(&["first"], "mcp:a:read")).await;
    let beta = TestBackend::start(BackendSpec::tools(&["second"], "mcp:b:read")).await;
    let env = |backends: &str, urls: &str| {
        format!(
            "OAUTH_ISSUER=https://auth.example.com\nCORTEX_DEV_BYPASS_TOKEN=dev-secret\nCORTEX_DEV_BYPASS_SCOPES=mcp:a:read,mcp:b:read\nCORTEX_TECHNICAL_TOKEN=tech-secret\nHOSTNAME=127.0.0.1\nPORT={{PORT}}\nCORTEX_BACKENDS={backends}\n{urls}"
        )
    };
    let gateway = Gateway::start_env_file(&env(
        "alpha",
        &format!("CORTEX_BACKEND_ALPHA_URL={}\n", alpha.url()),
    ))
    .await;
    gateway.wait_ready().await;
    let client = gateway.client().with_header("x-dev-mode", "dev-secret");
    assert!(client
        .backend_tool_names()
        .await
        .contains(&"alpha_first".to_owned()));

    let new = env(
        "alpha,beta",
        &format!(
            "CORTEX_BACKEND_ALPHA_URL={}\nCORTEX_BACKEND_BETA_URL={}\n",
            alpha.url(),
            beta.url()
        ),
    )
    .replace("{PORT}", &gateway.port().to_string());
    let tmp = gateway.path("cortex.env.new");
    std::fs::write(&tmp, new).expect("write env file");
    std::fs::rename(&tmp, gateway.path("cortex.env")).expect("rename env file");
    let r = wait_reloads(&gateway, "applied", 1).await;
    assert_eq!(r["last"]["applied"], json!(["backends[beta]"]), "{r}");
    common::eventually(WAIT, "beta's tool listed", || async {
        client
            .backend_tool_names()
            .await
            .contains(&"beta_second".to_owned())
            .then_some(())
    })
    .await;
}
