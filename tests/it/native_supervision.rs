//! Supervision of `kind: stdio` children beyond one shared process: a child per user
//! (`per_user: true`) within `max_processes`, children stopped after `idle_timeout` and
//! started again on the next call, and a reload that keeps the children of backends whose
//! process settings did not change. The server is the Python SDK fixture
//! (tests/python/native_fixture.py); its `whoami_pid` tool tells which process answered.

use crate::common;

use std::time::Duration;

use common::{interop, Gateway, McpClient, TestConfig};
use serde_json::{json, Value};

use crate::native_stdio::wait_listed;

const WAIT: Duration = Duration::from_secs(30);
const DEV: &str = "dev-bypass-token-for-tests";

/// Two users: `test-user` (the default principal) and, with `X-Dev-Mode`, `dev:local`.
fn two_users() -> TestConfig {
    TestConfig::new().catalog("refresh: 60s").auth(&[
        "mode: none",
        "principal:",
        "  sub: test-user",
        "  scopes: [\"*\"]",
        "  token: user-token",
        "dev_bypass:",
        &format!("  token: {DEV}"),
        "  scopes: [\"*\"]",
    ])
}

/// The fixture as stdio backend `id` with these extra keys.
fn with_fixture(config: TestConfig, id: &str, extra: &[&str]) -> TestConfig {
    let python = interop::python();
    let script = interop::repo_path("tests/python/native_fixture.py");
    config.stdio_backend(
        id,
        &python.display().to_string(),
        &["-W", "ignore", &script.display().to_string(), "stdio"],
        extra,
    )
}

async fn start(yaml: &str, tool: &str) -> Gateway {
    // Not `wait_ready` (15 s): a Python child may take longer to start on a busy machine;
    // `wait_listed` waits for the first successful discovery.
    let gateway = Gateway::start(yaml).await;
    wait_listed(&gateway, tool).await;
    gateway
}

/// `client` initialized (a session of its own).
pub async fn initialized(mut c: McpClient) -> McpClient {
    let body = c.request_body(
        "initialize",
        json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {}},
            "clientInfo": {"name": "native-tests", "version": "0"}
        }),
    );
    let reply = c.post(&body, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    c.session = reply.header("mcp-session-id").map(str::to_owned);
    c.protocol_version = Some("2025-11-25".into());
    c.notify("notifications/initialized", json!({})).await;
    c
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default()
}

/// The pid of the process that answered `whoami_pid` of backend `id` (it leads its group).
pub async fn pid_of(c: &McpClient, id: &str) -> i32 {
    let r = c
        .rpc(
            "tools/call",
            json!({"name": format!("{id}_whoami_pid"), "arguments": {}}),
        )
        .await;
    let text = text_of(&r["result"]);
    let mut it = text.split(' ').filter_map(|x| x.parse::<i32>().ok());
    let (pid, pgid) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    assert!(pid > 1 && pid == pgid, "a child leading its own group: {r}");
    pid
}

/// Whether any process of group `pgid` is alive.
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks that the group exists and may be signalled.
    unsafe { libc::killpg(pgid, 0) == 0 }
}

pub async fn wait_gone(pgid: i32, what: &str) {
    common::eventually(WAIT, what, || async {
        if group_alive(pgid) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        } else {
            Some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_children_are_bounded_and_idle_ones_are_reaped() {
    let yaml = with_fixture(
        two_users(),
        "py",
        &["per_user: true", "max_processes: 1", "idle_timeout: 2s"],
    )
    .build();
    let mut gateway = start(&yaml, "py_whoami_pid").await;
    let alice = initialized(gateway.client()).await;
    let dev = initialized(gateway.client().with_header("x-dev-mode", DEV)).await;

    // The first user gets a child of its own, the same one for every call while it is busy.
    let first = pid_of(&alice, "py").await;
    assert_eq!(pid_of(&alice, "py").await, first);

    // A second user over max_processes: a clear error, no process.
    let refused = dev
        .rpc(
            "tools/call",
            json!({"name": "py_whoami_pid", "arguments": {}}),
        )
        .await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("max_processes: 1") && message.contains("backend py"),
        "{refused}"
    );

    // Idle for idle_timeout: the child (its whole group) is stopped...
    wait_gone(first, "the idle child stopped").await;
    // ...which frees a place: the second user now gets a child of its own, another process.
    let second = pid_of(&dev, "py").await;
    assert_ne!(second, first);
    // And the first user's next call starts a child again once the second one idled out.
    wait_gone(second, "the second idle child stopped").await;
    let again = pid_of(&alice, "py").await;
    assert!(again != first && again != second);
    assert!(
        gateway.logs().contains("stopping an idle stdio server"),
        "{}",
        gateway.logs()
    );

    // The gateway stops: no per-user child (its whole group) outlives it.
    assert!(group_alive(again));
    gateway.stop();
    wait_gone(again, "the per-user child gone with the gateway").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_child_idle_too_long_is_stopped_and_started_again() {
    let yaml = with_fixture(
        TestConfig::new().catalog("refresh: 60s"),
        "py",
        &["idle_timeout: 2s"],
    )
    .build();
    let gateway = start(&yaml, "py_whoami_pid").await;
    let c = initialized(gateway.client()).await;
    let first = pid_of(&c, "py").await;
    // A call that outlasts idle_timeout keeps its child: a busy child is never idle.
    let r = c.call_tool("py_slow", json!({"seconds": 3})).await;
    assert_eq!(text_of(&r), "slept 3.0", "{r}");
    assert_eq!(pid_of(&c, "py").await, first);
    wait_gone(first, "the idle child stopped").await;
    let second = pid_of(&c, "py").await;
    assert_ne!(second, first);
}

/// Waits until the gateway applied `n` reloads.
async fn wait_applied(gateway: &Gateway, n: u64) {
    common::eventually(WAIT, "the reload applied", || async {
        let (_, body) = gateway.readyz().await;
        if body["reloads"]["applied"].as_u64().unwrap_or(0) >= n {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        None
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_restarts_only_the_stdio_servers_whose_settings_changed() {
    let config = |generation: &str, keep_extra: &str| {
        let base = with_fixture(
            TestConfig::new().catalog("refresh: 60s"),
            "keep",
            &[keep_extra],
        );
        with_fixture(
            base,
            "change",
            &["env:", &format!("  FIXTURE_GENERATION: \"{generation}\"")],
        )
        .build()
    };
    let gateway = start(&config("1", "naming: prefix"), "keep_whoami_pid").await;
    wait_listed(&gateway, "change_whoami_pid").await;
    let c = initialized(gateway.client()).await;
    let kept = pid_of(&c, "keep").await;
    let changed = pid_of(&c, "change").await;

    // `keep` changes only a key that is not about its process (its scopes); `change` gets
    // another environment.
    gateway.rewrite_config(&config("2", "scopes: {slow: \"mcp:slow\"}"));
    wait_applied(&gateway, 1).await;
    wait_gone(changed, "the changed backend's old child stopped").await;
    let changed_now = pid_of(&c, "change").await;
    assert_ne!(changed_now, changed);
    assert_eq!(
        pid_of(&c, "keep").await,
        kept,
        "the unchanged backend keeps its process\n{}",
        gateway.logs()
    );
    assert!(group_alive(kept));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_killed_mid_call_fails_that_call_clearly_and_the_next_call_works() {
    let yaml = with_fixture(TestConfig::new().catalog("refresh: 60s"), "py", &[]).build();
    let gateway = start(&yaml, "py_whoami_pid").await;
    let c = initialized(gateway.client()).await;
    let pid = pid_of(&c, "py").await;

    // A call the server holds open (it waits for the caller's elicitation answer)...
    let body = json!({"jsonrpc": "2.0", "id": "mid-1", "method": "tools/call", "params": {
        "name": "py_test_elicitation", "arguments": {"message": "still there?"}}});
    let mut s = c.post_stream(&body).await;
    s.wait_for_method("elicitation/create", WAIT)
        .await
        .unwrap_or_else(|| panic!("the call is in flight\n{}", gateway.logs()));
    // ...when its process dies.
    // SAFETY: kills the child the gateway started (the pid it reported itself).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let msgs = crate::native_stdio::messages_until_response(&mut s, &json!("mid-1")).await;
    let last = msgs.last().unwrap();
    let message = last["error"]["message"].as_str().unwrap_or_default();
    assert!(
        last["error"]["code"] == -32603
            && message.contains("backend py")
            && message.contains("server process exited"),
        "{last}"
    );

    // The next call starts a new child and works.
    common::eventually(WAIT, "a new child answers", || async {
        let r = c
            .rpc(
                "tools/call",
                json!({"name": "py_whoami_pid", "arguments": {}}),
            )
            .await;
        r.get("result").is_some().then_some(())
    })
    .await;
    assert_ne!(pid_of(&c, "py").await, pid);
}
